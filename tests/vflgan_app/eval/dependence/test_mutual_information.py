"""Cross-party mutual-information tests (planted signals)."""

import numpy as np

from tests.vflgan_app.eval.dependence.conftest import SLICES
from vflgan_app.eval.dependence import column_mutual_information, select_mi_columns


def test_mutual_information_separates_joint_from_shuffled(planted):
    kind, train, _, holdout, _, shuffled = planted
    columns = select_mi_columns(train, SLICES)

    mi_joint = column_mutual_information(columns, holdout)
    mi_shuffled = column_mutual_information(columns, shuffled)

    assert mi_shuffled < 0.1
    if kind == "independent":
        assert mi_joint < 0.1
    else:
        assert mi_joint > 0.5


def test_select_mi_columns_keeps_highest_variance_columns_per_party():
    x = np.column_stack([np.arange(10.0) * k for k in (1, 3, 2, 0, 5)])

    columns = select_mi_columns(x, SLICES, n_columns=1)

    assert [c.tolist() for c in columns] == [[1], [4]]
