"""Sampling like SDV (issue 14 item 4): fresh randomness by default, ``seed=`` reproduces,
``num_rows=`` and the positional ``n`` both work, ``seed=None`` is fresh randomness."""

import pandas as pd
import pytest

from tests.vflgan_app.conftest import make_table
from vflgan_app import api
from vflgan_app.config import VFLGANConfig
from vflgan_app.data.partition import prepare_parties, split_vertical

SPLIT = [["a", "color", "count"], ["b", "c", "kind"]]
CFG = VFLGANConfig(dataset="custom", architecture="breast_cancer", steps=4, batch_size=8,
                   progress=False)


@pytest.fixture(scope="module")
def model():
    return api.fit(split_vertical(make_table(32), SPLIT, "record_id"), CFG,
                   categorical=["color", "kind"])


def test_two_calls_differ_by_default(model):
    assert not model.sample(num_rows=30).equals(model.sample(num_rows=30))
    assert not model.sample(30, seed=None).equals(model.sample(30, seed=None))


def test_seed_reproduces_and_n_forms_agree(model):
    a = model.sample(num_rows=20, seed=7)
    pd.testing.assert_frame_equal(a, model.sample(20, seed=7))
    pd.testing.assert_frame_equal(a, model.sample(n=20, seed=7))
    assert len(model.sample(5)) == 5


def test_bad_requests_are_refused(model):
    with pytest.raises(ValueError, match="got num_rows=3 and n=4"):
        model.sample(3, n=4)
    with pytest.raises(ValueError, match="no num_rows"):
        model.sample()
    with pytest.raises(ValueError, match="seed got -1"):
        model.sample(3, seed=-1)


def test_baseline_samples_the_same_way():
    parties = prepare_parties(split_vertical(make_table(32), SPLIT, "record_id"),
                              "record_id", ["color", "kind"])
    base = api.fit_baseline("vertigan", parties, VFLGANConfig(**{**CFG.to_dict(), "steps": 2}))
    assert not base.sample(num_rows=20).equals(base.sample(num_rows=20))
    pd.testing.assert_frame_equal(base.sample(20, seed=3), base.sample(n=20, seed=3))
