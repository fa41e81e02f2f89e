"""Per-party classifier agreement tests (planted signals)."""

import numpy as np
import pytest

from tests.vflgan_app.eval.dependence.conftest import SLICES, N
from vflgan_app.eval.dependence import (
    fit_party_classifiers,
    party_agreement,
    party_shuffle,
)


def test_agreement_separates_joint_from_shuffled(planted):
    kind, train, labels_train, holdout, _, shuffled = planted
    if kind == "nonlinear":
        pytest.skip("a linear per-party classifier cannot read a0's tercile from a0^2")
    classifiers = fit_party_classifiers(train, labels_train, SLICES)

    joint = party_agreement(classifiers, holdout, SLICES)
    shuf = party_agreement(classifiers, shuffled, SLICES)

    assert abs(shuf["pairwise"] - shuf["chance"]) < 0.08
    if kind == "linear":
        assert joint["pairwise"] > 0.85
        assert shuf["pairwise"] < 0.45
    else:
        assert abs(joint["pairwise"] - shuf["pairwise"]) < 0.08


def test_agreement_with_three_parties_reports_all_agree_rate():
    # Prepare: three parties each hold a noisy copy of a0.
    rng = np.random.default_rng(0)
    a0 = rng.uniform(-1.5, 1.5, 2 * N)
    x = np.column_stack([a0 + 0.1 * rng.normal(size=2 * N) for _ in range(3)])
    labels = np.digitize(a0, [-0.5, 0.5])
    slices = [slice(0, 1), slice(1, 2), slice(2, 3)]
    classifiers = fit_party_classifiers(x[:N], labels[:N], slices)

    # Execute
    joint = party_agreement(classifiers, x[N:], slices)
    shuf = party_agreement(
        classifiers, party_shuffle(x[N:], slices, np.random.default_rng(1)), slices
    )

    # Assert: all-agree <= pairwise, near 1 jointly and near 1/9 shuffled.
    assert joint["all_agree"] <= joint["pairwise"]
    assert joint["all_agree"] > 0.8
    assert shuf["all_agree"] < 0.25
