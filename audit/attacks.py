"""The attack: a random forest that tells IN shadows from OUT shadows by their features.

The paper's attack (``mia.py``): ``RandomForestClassifier(n_estimators=1000,
max_depth=3)``, trained on the features of 70 IN and 70 OUT shadows and tested on the
other 30 + 30, over 5 random splits of the seeds. Scores are P(IN): a larger score means
"more likely a member".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.ensemble import RandomForestClassifier

Split = tuple[np.ndarray, np.ndarray]  # (train seeds, test seeds)


@dataclass(frozen=True)
class ForestSettings:
    """Hyper-parameters of the random-forest attack."""

    n_estimators: int = 1000
    max_depth: int | None = 3
    max_features: str | float | int | None = "sqrt"
    n_jobs: int = 1


@dataclass
class AttackScores:
    """Held-out scores of one attack (one target, one feature set).

    Attributes:
        splits: per random split, (scores of the IN test shadows, scores of the OUT
            test shadows).
        pooled_in: cross-fitted score of every IN shadow, shape (n_shadows,).
        pooled_out: cross-fitted score of every OUT shadow, shape (n_shadows,).
    """

    splits: list[tuple[np.ndarray, np.ndarray]]
    pooled_in: np.ndarray
    pooled_out: np.ndarray


def fit_attack(
    x: np.ndarray, y: np.ndarray, forest: ForestSettings, seed: int
) -> RandomForestClassifier:
    """Fit the forest on features ``x`` (n, f) with labels ``y`` (1 = IN, 0 = OUT)."""
    model = RandomForestClassifier(
        n_estimators=forest.n_estimators,
        max_depth=forest.max_depth,
        max_features=forest.max_features,
        n_jobs=forest.n_jobs,
        random_state=seed,
    )
    model.fit(x, y)
    # Parallel predict_proba sums the trees' votes in thread order, which changes the
    # last bits of the scores; score in one thread so reruns are bit-identical.
    return model.set_params(n_jobs=1)


def member_scores(model: RandomForestClassifier, x: np.ndarray) -> np.ndarray:
    """P(IN) for each row of ``x``; larger = more likely a member."""
    return model.predict_proba(x)[:, list(model.classes_).index(1)]


def score_held_out(
    x_in: np.ndarray,
    x_out: np.ndarray,
    splits: Sequence[Split],
    forest: ForestSettings,
    seed: Sequence[int],
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Train on each split's train seeds, score its test seeds.

    Args:
        x_in: features of the IN shadows, shape (n_shadows, f), row s = seed s.
        x_out: features of the OUT shadows, same shape.
        splits: (train seeds, test seeds) pairs; a seed's IN and OUT shadows always
            fall on the same side.
        forest: forest settings.
        seed: entropy for the forests' seeds (one forest per split).

    Returns:
        Per split, (IN test scores, OUT test scores).
    """
    out = []
    for i, (train, test) in enumerate(splits):
        x = np.vstack([x_in[train], x_out[train]])
        y = np.concatenate([np.ones(len(train)), np.zeros(len(train))]).astype(int)
        rs = int(np.random.SeedSequence([*seed, i]).generate_state(1)[0])
        model = fit_attack(x, y, forest, rs)
        out.append(
            (member_scores(model, x_in[test]), member_scores(model, x_out[test]))
        )
    return out


def run_attack(
    x_in: np.ndarray,
    x_out: np.ndarray,
    splits: Sequence[Split],
    folds: Sequence[Split],
    forest: ForestSettings,
    seed: Sequence[int],
) -> AttackScores:
    """Score the random splits (paper protocol) and the cross-fit folds (pooled).

    The folds' test seeds partition all seeds, so the pooled scores give every shadow
    exactly one score from a forest that never saw it.
    """
    per_split = score_held_out(x_in, x_out, splits, forest, [*seed, 0])
    per_fold = score_held_out(x_in, x_out, folds, forest, [*seed, 1])
    pooled_in = np.empty(len(x_in))
    pooled_out = np.empty(len(x_out))
    for (_, test), (s_in, s_out) in zip(folds, per_fold):
        pooled_in[test], pooled_out[test] = s_in, s_out
    return AttackScores(per_split, pooled_in, pooled_out)
