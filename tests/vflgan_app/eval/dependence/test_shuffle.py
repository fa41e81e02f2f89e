"""Party-shuffle control and two-sample AUC tests (planted signals)."""

import numpy as np

from tests.vflgan_app.eval.dependence.conftest import SLICES, N, make_table
from vflgan_app.eval.dependence import party_shuffle, shuffle_two_sample_auc


def test_party_shuffle_keeps_each_party_rows_but_breaks_pairing():
    # Prepare
    x, _ = make_table("linear", N, seed=0)

    # Execute
    shuffled = party_shuffle(x, SLICES, np.random.default_rng(0))

    # Assert: every party's multiset of rows is unchanged ...
    for s in SLICES:
        assert np.array_equal(np.sort(shuffled[:, s], axis=0), np.sort(x[:, s], axis=0))
    # ... but the linear cross-party correlation is gone.
    assert abs(np.corrcoef(x[:, 0], x[:, 2])[0, 1]) > 0.95
    assert abs(np.corrcoef(shuffled[:, 0], shuffled[:, 2])[0, 1]) < 0.15


def test_shuffle_auc_separates_joint_from_shuffled(planted):
    kind, _, _, holdout, _, shuffled = planted

    auc_joint = shuffle_two_sample_auc(holdout, SLICES, seed=0)
    auc_shuffled = shuffle_two_sample_auc(shuffled, SLICES, seed=0)

    assert 0.4 < auc_shuffled < 0.6
    if kind == "independent":
        assert 0.4 < auc_joint < 0.6
        assert abs(auc_joint - auc_shuffled) < 0.1
    else:
        assert auc_joint > 0.8
