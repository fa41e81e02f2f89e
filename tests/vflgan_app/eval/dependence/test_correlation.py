"""Cross-party correlation error tests (planted signals)."""

import math

import numpy as np
import pytest

from tests.vflgan_app.eval.dependence.conftest import SLICES, N, make_table
from vflgan_app.eval.dependence import (
    cross_party_correlation_error,
    cross_party_correlations,
    mean_cross_party_correlation_error,
    party_shuffle,
)


def test_correlation_error_separates_linear_and_is_blind_to_nonlinear(planted):
    kind, train, _, holdout, _, shuffled = planted

    joint = cross_party_correlation_error(train, holdout, SLICES)
    shuf = cross_party_correlation_error(train, shuffled, SLICES)

    assert joint["n_pairs"] == 2 * 3 and joint["n_focused"] == 1  # ceil(0.1 * 6)
    if kind == "linear":
        assert joint["focused"] < 0.05
        assert shuf["focused"] > 0.8
        assert shuf["all"] > 0.2
    else:
        # The planted nonlinear function is invisible to linear correlation: this is
        # why the AUC and MI metrics exist.
        assert np.abs(cross_party_correlations(train, SLICES)).max() < 0.15
        assert abs(joint["focused"] - shuf["focused"]) < 0.15


def test_constant_column_counts_as_zero_correlation_not_nan():
    x, _ = make_table("linear", N, seed=0)
    x[:, 2] = 3.0  # b0 constant

    corr = cross_party_correlations(x, SLICES)

    assert np.isfinite(corr).all()
    # Block A x B is row-major: pairs (a0, b0) and (a1, b0) are entries 0 and 3.
    assert corr[0] == 0.0 and corr[3] == 0.0
    assert corr[1] < -0.95  # (a0, b1) is still there


def test_focused_error_uses_the_top_decile_of_real_pairs():
    # Prepare: 10 x 10 cross pairs; only (a0, b0) is correlated in the reference.
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(4000, 20))
    ref[:, 10] = ref[:, 0] + 0.1 * rng.normal(size=4000)
    other = rng.normal(size=(4000, 20))  # nothing correlated
    slices = [slice(0, 10), slice(10, 20)]

    # Execute
    err = cross_party_correlation_error(ref, other, slices)

    # Assert: 10 focused pairs; the strong pair dominates their mean.
    assert err["n_pairs"] == 100 and err["n_focused"] == math.ceil(0.1 * 100)
    assert err["focused"] > 0.99 / 10
    assert err["focused"] > 2 * err["all"]


def test_cross_party_correlations_match_numpy_corrcoef_in_block_order():
    # Prepare: three parties of widths 2, 1, 2 with some correlated columns.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 5))
    x[:, 2] += x[:, 0]
    x[:, 4] -= 0.5 * x[:, 1]
    slices = [slice(0, 2), slice(2, 3), slice(3, 5)]
    c = np.corrcoef(x, rowvar=False)

    # Execute
    corr = cross_party_correlations(x, slices)

    # Assert: blocks (0,1), (0,2), (1,2), row-major within each block
    expected = [c[0, 2], c[1, 2], c[0, 3], c[0, 4], c[1, 3], c[1, 4], c[2, 3], c[2, 4]]
    assert np.allclose(corr, expected, atol=1e-12)


def test_mean_error_is_the_all_pairs_error_over_each_cross_pair_once():
    # Prepare
    rng = np.random.default_rng(1)
    ref, other = rng.normal(size=(2, 200, 5))
    ref[:, 3] += ref[:, 0]
    slices = [slice(0, 2), slice(2, 5)]
    c_ref, c_other = np.corrcoef(ref, rowvar=False), np.corrcoef(other, rowvar=False)
    by_hand = np.mean(
        [abs(c_ref[i, j] - c_other[i, j]) for i in range(2) for j in range(2, 5)]
    )

    # Execute
    mean = mean_cross_party_correlation_error(ref, other, slices)

    # Assert
    assert mean == pytest.approx(by_hand, abs=1e-12)
    assert mean == cross_party_correlation_error(ref, other, slices)["all"]


def test_float32_input_is_correlated_in_float64():
    x, _ = make_table("linear", N, seed=0)
    shuffled = party_shuffle(x, SLICES, np.random.default_rng(0))

    low = cross_party_correlation_error(x.astype(np.float32), shuffled, SLICES)
    high = cross_party_correlation_error(x, shuffled, SLICES)

    assert abs(low["all"] - high["all"]) < 1e-9
    assert abs(low["focused"] - high["focused"]) < 1e-9


@pytest.mark.parametrize(
    "other, slices, match",
    [
        (np.zeros((10, 4)), SLICES, r"reference has shape \(10, 5\) but other"),
        (np.zeros((10, 5)), [slice(0, 2), slice(2, 4)], r"cover columns \[0, 4\)"),
    ],
)
def test_mean_error_rejects_mismatched_columns_and_slices(other, slices, match):
    with pytest.raises(ValueError, match=match):
        mean_cross_party_correlation_error(np.ones((10, 5)), other, slices)
