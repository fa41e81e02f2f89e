"""Party-shuffle two-sample tests: can a critic tell joint records from shuffled?"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import roc_auc_score


def party_shuffle(
    x: np.ndarray, party_slices: Sequence[slice], rng: np.random.Generator
) -> np.ndarray:
    """Permute each party's rows independently, destroying all cross-party dependence.

    Every party's marginal distribution (the multiset of its rows) is unchanged; the
    pairing of parties within a record becomes random.

    Args:
        x: Encoded table, shape (N, D).
        party_slices: Each party's contiguous columns, party 0 first.
        rng: Source of the K permutations.

    Returns:
        A new (N, D) array.
    """
    out = np.empty_like(x)
    for s in party_slices:
        out[:, s] = x[rng.permutation(x.shape[0]), s]
    return out


def _as_rng(seed: int | np.random.Generator) -> np.random.Generator:
    return (
        seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    )


def _child_seed(rng: np.random.Generator) -> int:
    return int(rng.integers(2**31 - 1))


def _joint_vs_shuffled(
    x: np.ndarray, party_slices: Sequence[slice], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    # Each party's rows appear once in each class, so the classes have identical
    # per-party marginals and only the pairing differs.
    features = np.vstack([x, party_shuffle(x, party_slices, rng)])  # (2N, D)
    y = np.r_[np.ones(x.shape[0]), np.zeros(x.shape[0])]
    return features, y


def fit_shuffle_critic(
    x: np.ndarray, party_slices: Sequence[slice], seed: int = 0
) -> RandomForestClassifier:
    """Fit a classifier that tells joint records of ``x`` from party-shuffled ones.

    A random forest (50 trees) is used on purpose: because both classes have the same
    per-party marginals, no single-feature split has any gain at the root, which stalls
    greedy boosting; a forest's random feature subsets still grow into the cross-party
    interactions.

    Args:
        x: Encoded table, shape (N, D).
        party_slices: Each party's contiguous columns.
        seed: Seed for the shuffle and the forest.

    Returns:
        A fitted classifier; class 1 = joint, class 0 = shuffled.
    """
    rng = np.random.default_rng(seed)
    features, y = _joint_vs_shuffled(x, party_slices, rng)
    return RandomForestClassifier(
        n_estimators=50, min_samples_leaf=2, random_state=seed, n_jobs=-1
    ).fit(features, y)


def shuffle_critic_auc(
    critic: RandomForestClassifier,
    x: np.ndarray,
    party_slices: Sequence[slice],
    seed: int = 0,
) -> float:
    """ROC AUC of ``critic`` on ``x`` (joint, class 1) against ``x`` party-shuffled.

    Args:
        critic: From ``fit_shuffle_critic``, fitted on rows disjoint from ``x``.
        x: Encoded table, shape (N, D).
        party_slices: Each party's contiguous columns.
        seed: Seed for the shuffle.

    Returns:
        AUC in [0, 1]; 0.5 means the critic sees no cross-party dependence in ``x``.
    """
    features, y = _joint_vs_shuffled(x, party_slices, np.random.default_rng(seed))
    return float(roc_auc_score(y, critic.predict_proba(features)[:, 1]))


def shuffle_two_sample_auc(
    x: np.ndarray,
    party_slices: Sequence[slice],
    seed: int | np.random.Generator = 0,
    test_fraction: float = 0.5,
) -> float:
    """Held-out AUC of a classifier telling ``x``'s joint records from party-shuffled.

    The rows are split once; a critic (``fit_shuffle_critic``) is trained on the first
    part (joint vs its own shuffle) and scored on the held-out part (joint vs its own
    shuffle). The test sees linear and nonlinear cross-party dependence alike.

    Args:
        x: Encoded table, shape (N, D), N >= 4.
        party_slices: Each party's contiguous columns.
        seed: Seed or generator for the split, shuffles and forest.
        test_fraction: Share of rows held out, in (0, 1).

    Returns:
        AUC; about 0.5 when the parties are independent, near 1 for strong dependence.

    Raises:
        ValueError: If ``test_fraction`` is outside (0, 1) or ``x`` has under 4 rows.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction={test_fraction}, expected a value in (0, 1)")
    if x.shape[0] < 4:
        raise ValueError(f"x has {x.shape[0]} rows, expected at least 4 for a split")
    rng = _as_rng(seed)
    rows = rng.permutation(x.shape[0])
    n_test = min(max(2, round(test_fraction * x.shape[0])), x.shape[0] - 2)
    critic = fit_shuffle_critic(x[rows[n_test:]], party_slices, _child_seed(rng))
    return shuffle_critic_auc(critic, x[rows[:n_test]], party_slices, _child_seed(rng))
