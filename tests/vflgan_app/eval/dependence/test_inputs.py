"""Input checks of the dependence metrics: targets and party slices."""

import pytest

from tests.vflgan_app.eval.dependence.conftest import SLICES
from vflgan_app.eval.dependence import Target, targets_from_spans, validate_party_slices


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            dict(columns=slice(0, 2), kind="numeric"),
            "spans 2 columns, expected exactly",
        ),
        (dict(columns=slice(0, 1), kind="categorical"), "at least 2"),
        (dict(columns=slice(0, 1), kind="ordinal"), "kind='ordinal'"),
        (dict(columns=slice(3, 3), kind="numeric"), "non-empty"),
    ],
)
def test_target_rejects_bad_fields(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Target("t", party=0, **kwargs)


def test_targets_from_spans_rejects_span_crossing_parties():
    with pytest.raises(ValueError, match="not inside any party"):
        targets_from_spans(SLICES, [slice(1, 3)])


def test_validate_party_slices_rejects_stepped_slice():
    with pytest.raises(ValueError, match=r"party_slices\[0\].*step 1"):
        validate_party_slices([slice(0, 2, 2), slice(2, 5)], 5)
