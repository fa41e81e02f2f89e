"""Per-party classifier agreement on a shared label (a dependence metric)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.linear_model import LogisticRegression


def fit_party_classifiers(
    x: np.ndarray, labels: np.ndarray, party_slices: Sequence[slice], seed: int = 0
) -> list[LogisticRegression]:
    """Fit one logistic regression per party predicting ``labels`` from its columns.

    Args:
        x: Real encoded table, shape (N, D).
        labels: Shared attribute, shape (N,), e.g. the digit label.
        party_slices: Each party's contiguous columns.
        seed: Seed for the solvers.

    Returns:
        K fitted classifiers, one per party.
    """
    return [
        LogisticRegression(max_iter=1000, random_state=seed).fit(x[:, s], labels)
        for s in party_slices
    ]


def party_agreement(
    classifiers: Sequence[LogisticRegression],
    x: np.ndarray,
    party_slices: Sequence[slice],
) -> dict[str, float]:
    """How often the per-party classifiers predict the same label for a record.

    Args:
        classifiers: One fitted classifier per party (``fit_party_classifiers``).
        x: Encoded records to score, shape (N, D).
        party_slices: Each party's contiguous columns.

    Returns:
        ``pairwise``: mean over party pairs of the agreement rate; ``all_agree``: share
        of records on which all K parties agree; ``chance``: the pairwise agreement
        expected if the parties' predictions were independent with the same label
        frequencies (what party-shuffled data converges to).
    """
    preds = [c.predict(x[:, s]) for c, s in zip(classifiers, party_slices)]  # K x (N,)
    classes = classifiers[0].classes_
    freqs = [np.array([(p == c).mean() for c in classes]) for p in preds]
    pairwise, chance = [], []
    for i in range(len(preds)):
        for j in range(i + 1, len(preds)):
            pairwise.append(float((preds[i] == preds[j]).mean()))
            chance.append(float(freqs[i] @ freqs[j]))
    all_agree = np.all([p == preds[0] for p in preds[1:]], axis=0)
    return {
        "pairwise": float(np.mean(pairwise)),
        "all_agree": float(all_agree.mean()),
        "chance": float(np.mean(chance)),
    }
