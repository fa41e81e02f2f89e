import json

import numpy as np
import pandas as pd
import pytest
import torch

from vflgan_app.architectures import Architecture

TINY = Architecture(latent_dim=4, gen_hidden=(8, 16), critic_hidden=(16, 8), server_hidden=(8,),
                    tau=0.5, lambda_gp=10.0, lr=1e-3, batch_size=8)


def make_table(n=32, seed=0):
    """A small mixed table: 2 numeric, 1 categorical, 1 integer column, plus ids."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n)
    return pd.DataFrame({
        "record_id": np.arange(n),
        "a": a,
        "b": 2 * a + rng.normal(scale=0.1, size=n),
        "color": rng.choice(["red", "green", "blue"], size=n),
        "count": rng.integers(0, 5, size=n),
        "c": rng.normal(size=n),
        "kind": np.where(a > 0, "pos", "neg"),
    })


@pytest.fixture
def table():
    return make_table()


@pytest.fixture
def tiny_arch():
    return TINY


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


#: The domain of ``make_table``'s columns, declared public for DP runs: tiny test tables
#: are too few rows for the thresholds of a DP schema release
#: (tests/vflgan_app/dp/test_private_schema.py tests the release itself).
TINY_DOMAIN = json.dumps({
    "a": {"low": -8, "high": 8}, "b": {"low": -8, "high": 8}, "c": {"low": -8, "high": 8},
    "count": {"low": 0, "high": 4, "integer": True},
    "color": {"categories": ["blue", "green", "red"]}, "kind": {"categories": ["neg", "pos"]},
})
