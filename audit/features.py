"""Feature sets an attack reads from one shadow's output (ASSD and ASIF).

ASSD (the synthetic table), as in the paper's ``features.py`` and ``mia_naive.py``:

* ``correlation``: upper triangle (k = 1) of the Pearson correlation matrix of the
  encoded synthetic table, NaN (a constant column) set to 0;
* ``naive``: per numeric column [mean, median, variance], per categorical column [most
  frequent code, least frequent code, number of distinct values];
* ``knn`` (beyond the paper): the distances from the target to its k nearest synthetic
  records, and the fraction of synthetic records closer to the target than its nearest
  real neighbour (the density around the target). A generator that memorises the
  target puts synthetic records at distance ~0.

ASIF (one party's intermediate features of a fixed table), as in ``mia_IF_corr.py`` and
``mia_IF_naive.py``: ``correlation`` (upper triangle of the IF correlation matrix) and
``naive`` (global mean, median and variance over the IF matrix: 3 numbers).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from audit.schema import CATEGORICAL, TableSchema


def correlation_features(x: np.ndarray) -> np.ndarray:
    """Upper triangle (k = 1) of the Pearson correlation of the columns of ``x``.

    Args:
        x: shape (n_rows, d).

    Returns:
        Shape (d * (d - 1) / 2,); pairs with a constant column are 0 (the paper's NaN
        -> 0).
    """
    x = np.asarray(x, dtype=np.float64)
    centred = x - x.mean(axis=0)
    std = np.sqrt((centred**2).mean(axis=0))  # (d,)
    ok = std > 1e-12 * (1.0 + np.abs(x).max(axis=0))
    safe = np.where(ok, std, 1.0)
    corr = (centred.T @ centred) / len(x) / np.outer(safe, safe)  # (d, d)
    corr[~ok, :] = 0.0
    corr[:, ~ok] = 0.0
    return corr[np.triu_indices(x.shape[1], k=1)]


def naive_table_features(table: pd.DataFrame, schema: TableSchema) -> np.ndarray:
    """The paper's naive statistics of a normalised table, 3 numbers per column."""
    out = []
    for spec in schema.columns:
        if spec.kind == CATEGORICAL:
            codes, counts = np.unique(
                schema.codes(table, spec.name), return_counts=True
            )
            # np.unique sorts the codes, so ties go to the smallest code.
            out += [codes[np.argmax(counts)], codes[np.argmin(counts)], len(codes)]
        else:
            values = table[spec.name].to_numpy()
            out += [values.mean(), np.median(values), values.var()]
    return np.asarray(out, dtype=np.float64)


def knn_features(
    encoded: np.ndarray, target: np.ndarray, k: int, radius: float
) -> np.ndarray:
    """Distances from the target to its k nearest synthetic rows, plus the density.

    Args:
        encoded: encoded synthetic table, shape (n_rows, width).
        target: the encoded target record, shape (width,).
        k: number of nearest rows; needs n_rows >= k.
        radius: the target's distance to its nearest other real record.

    Returns:
        Shape (k + 1,): the k distances in increasing order, then the fraction of
        synthetic rows within ``radius`` of the target.
    """
    dist = np.sqrt(((encoded - target[None, :]) ** 2).sum(axis=1))  # (n_rows,)
    nearest = np.partition(dist, k - 1)[:k] if len(dist) > k else dist
    return np.append(np.sort(nearest), np.mean(dist <= radius))


def naive_if_features(x: np.ndarray) -> np.ndarray:
    """Global [mean, median, variance] of an IF matrix (the paper's IF-naive)."""
    x = np.asarray(x, dtype=np.float64)
    return np.array([x.mean(), np.median(x), x.var()])


class FeatureExtractor:
    """Turns one shadow's output into named feature vectors for one target.

    Names are ``"assd/<set>"`` for the synthetic table and ``"asif/party-<k>/<set>"``
    for party k's intermediate features.
    """

    def __init__(
        self,
        schema: TableSchema,
        target: np.ndarray,
        radius: float,
        feature_sets: Sequence[str],
        if_feature_sets: Sequence[str],
        knn_k: int,
    ) -> None:
        """Fix the target (encoded, shape (width,)) and the feature sets to compute."""
        self.schema, self.target, self.radius = schema, target, radius
        self.feature_sets, self.if_feature_sets = (
            tuple(feature_sets),
            tuple(if_feature_sets),
        )
        self.knn_k = knn_k

    def extract(
        self,
        synthetic: pd.DataFrame,
        intermediate: Sequence[np.ndarray] | None,
        where: str,
    ) -> dict[str, np.ndarray]:
        """Compute every feature set of one shadow.

        Args:
            synthetic: the normalised synthetic table.
            intermediate: per party, an IF matrix of shape (n_rows, d_k), or ``None``.
            where: the shadow, for error messages.

        Raises:
            ValueError: the synthetic table has fewer than ``knn_k`` rows (with the
                ``knn`` set).
        """
        out: dict[str, np.ndarray] = {}
        encoded = None
        if "correlation" in self.feature_sets or "knn" in self.feature_sets:
            encoded = self.schema.encode(synthetic)
        for name in self.feature_sets:
            if name == "correlation":
                out["assd/correlation"] = correlation_features(encoded)
            elif name == "naive":
                out["assd/naive"] = naive_table_features(synthetic, self.schema)
            elif name == "knn":
                if len(synthetic) < self.knn_k:
                    raise ValueError(
                        f"{where}: the synthetic table has {len(synthetic)} rows; the "
                        f"knn features need at least knn_k={self.knn_k}"
                    )
                out["assd/knn"] = knn_features(
                    encoded, self.target, self.knn_k, self.radius
                )
        for k, x in enumerate(intermediate or ()):
            for name in self.if_feature_sets:
                fn = (
                    correlation_features if name == "correlation" else naive_if_features
                )
                out[f"asif/party-{k}/{name}"] = fn(x)
        return out


def attack_max_features(feature_set: str, default):
    """``max_features`` of the forest for a feature set (the paper: all for IF-naive)."""
    return (
        1.0
        if feature_set.startswith("asif/") and feature_set.endswith("/naive")
        else default
    )
