"""Cross-party predictive utility tests (planted signals)."""

import numpy as np

from tests.vflgan_app.eval.dependence.conftest import SLICES, N, make_table
from vflgan_app.eval.dependence import (
    Target,
    cross_party_utility,
    party_shuffle,
    targets_from_spans,
)


def test_cross_party_utility_separates_joint_from_shuffled(planted):
    kind, train, _, holdout, _, shuffled = planted
    targets = [Target("b0", party=1, columns=slice(2, 3), kind="numeric")]

    (row,) = cross_party_utility(
        train, holdout, {"joint": holdout, "shuffled": shuffled}, SLICES, targets
    )

    assert (row["source_party"], row["target_party"], row["score"]) == (0, 1, "r2")
    joint, shuf = row["synthetic"]["joint"], row["synthetic"]["shuffled"]
    assert shuf["trts"] < 0.1 and shuf["tstr"] < 0.1
    if kind == "independent":
        assert row["trtr"] < 0.1 and joint["trts"] < 0.1
    else:
        assert row["trtr"] > 0.8
        assert joint["trts"] > 0.8 and joint["tstr"] > 0.8


def test_cross_party_utility_scores_categorical_targets_by_accuracy():
    # Prepare: party B holds a one-hot of the label, which party A's a0 determines.
    x, labels = make_table("linear", 2 * N, seed=4)
    one_hot = np.eye(3)[labels]
    table = np.column_stack([x[:, :2], one_hot])  # A: a0, a1; B: 3-way one-hot
    slices = [slice(0, 2), slice(2, 5)]
    train, holdout = table[:N], table[N:]
    shuffled = party_shuffle(holdout, slices, np.random.default_rng(0))
    (target,) = targets_from_spans(slices, [slice(2, 5)], names=["tercile"])

    # Execute
    (row,) = cross_party_utility(train, holdout, {"s": shuffled}, slices, [target])

    # Assert
    assert target == Target("tercile", 1, slice(2, 5), "categorical")
    assert row["score"] == "accuracy"
    assert row["trtr"] > 0.95
    assert row["synthetic"]["s"]["trts"] < 0.5  # chance is 1/3
