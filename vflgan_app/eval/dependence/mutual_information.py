"""k-NN mutual information between cross-party column pairs (a dependence metric)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.feature_selection import mutual_info_regression

MI_COLUMNS = 8  # highest-variance columns per party for the mutual-information estimate


def select_mi_columns(
    x: np.ndarray, party_slices: Sequence[slice], n_columns: int = MI_COLUMNS
) -> list[np.ndarray]:
    """Pick each party's highest-variance columns for the mutual-information estimate.

    Args:
        x: Real encoded table, shape (N, D).
        party_slices: Each party's contiguous columns.
        n_columns: Columns kept per party (all if a party has fewer); ties keep the
            earlier column.

    Returns:
        K arrays of absolute column indices, one per party.
    """
    var = x.var(axis=0)  # (D,)
    picked = []
    for s in party_slices:
        order = np.argsort(-var[s], kind="stable")[:n_columns]
        picked.append(np.sort(order) + s.start)
    return picked


def column_mutual_information(
    columns: Sequence[np.ndarray],
    x: np.ndarray,
    seed: int = 0,
) -> float:
    """Largest k-NN mutual information between a column of one party and one of another.

    For each party pair, scikit-learn's ``mutual_info_regression`` (Kraskov estimator,
    3 neighbours) estimates the MI of every selected column of one party with every
    selected column of the other (``select_mi_columns``, 8 per party by default); the
    pair's value is the largest, and the result is the mean over party pairs. It sees
    nonlinear dependence (B = A^2, where correlation is 0) but only between single
    columns, so dependence spread thinly over many pixels shows up weakly. Estimates
    are clipped at 0 by scikit-learn, and taking the maximum adds a small positive bias
    (about 0.05 nats at 600 rows) for independent parties; constant columns score 0.

    Args:
        columns: Per-party absolute column indices, from ``select_mi_columns``.
        x: Encoded table, shape (N, D).
        seed: Seed for the estimator's jitter.

    Returns:
        Mutual information in nats.
    """
    keep = [c[np.ptp(x[:, c], axis=0) > 0] for c in columns]  # drop constant columns
    values = []
    for i in range(len(keep)):
        for j in range(i + 1, len(keep)):
            if keep[i].size == 0 or keep[j].size == 0:
                values.append(0.0)  # a constant party carries no information
                continue
            best = max(
                mutual_info_regression(
                    x[:, keep[i]], x[:, c], n_neighbors=3, random_state=seed
                ).max()
                for c in keep[j]
            )
            values.append(float(best))
    return float(np.mean(values))
