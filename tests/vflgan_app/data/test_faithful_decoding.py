"""Faithful decoding (issue 14 item 2): ranges, precision and dtypes survive decoding.

Without DP each numeric column's min/max and precision are recorded at fit and
enforced at decode (options to turn them off), dtypes are restored, and unknown names
in ``categorical`` / ``bounded`` are refused with the close matches. Under DP nothing
is read from the real table for this: the private domain's bounds clip, and only a
declared ``decimals`` rounds.
"""

import json

import numpy as np
import pandas as pd
import pytest

from vflgan_app.data.partition import prepare_parties
from vflgan_app.data.schema import (
    ColumnSpec,
    TableSchema,
    load_public_domain,
    public_column_spec,
)


def table(n=60, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "sulfur": np.round(rng.uniform(6, 40, n), 1),              # 1 decimal, min 6
        "acid": np.round(rng.uniform(0, 1, n), 2),                 # 2 decimals, min 0
        "f32": rng.normal(size=n).round(3).astype(np.float32),
        "i16": rng.integers(3, 9, n).astype(np.int16),
        "flag": rng.random(n) > 0.5,
        "cat": pd.Categorical(rng.choice(["x", "y"], n)),
        "s": pd.array(rng.choice(["p", "q"], n), dtype="string"),
    })


def far(schema, n=200, scale=10.0, seed=1):
    """Encoded rows far outside the real range (a badly trained generator)."""
    return np.random.default_rng(seed).normal(scale=scale, size=(n, schema.width))


def test_min_max_and_precision_are_enforced_by_default():
    t = table()
    schema = TableSchema.fit(t)
    back = schema.decode(far(schema))
    for name, decimals in (("sulfur", 1), ("acid", 2)):
        assert back[name].min() >= t[name].min() and back[name].max() <= t[name].max()
        np.testing.assert_array_equal(back[name], np.round(back[name], decimals))
    assert back["sulfur"].min() == t["sulfur"].min()  # clipped, not wrapped
    spec = schema.columns[0]
    assert (spec.min_value, spec.max_value, spec.decimals) == (
        t["sulfur"].min(), t["sulfur"].max(), 1)


def test_options_turn_enforcement_off():
    t = table()
    schema = TableSchema.fit(t, enforce_min_max_values=False, enforce_rounding=False,
                             keep_dtypes=False)
    back = schema.decode(far(schema))
    assert back["sulfur"].min() < t["sulfur"].min()
    assert not np.array_equal(back["acid"], np.round(back["acid"], 2))
    assert back["f32"].dtype == np.float64


def test_dtypes_are_preserved():
    t = table()
    schema = TableSchema.fit(t, categorical=["i16"])
    back = schema.decode(far(schema, scale=1.0))
    assert back["f32"].dtype == np.float32
    assert back["i16"].dtype == np.int16 and set(back["i16"]) <= set(t["i16"])
    assert back["flag"].dtype == bool
    assert isinstance(back["cat"].dtype, pd.CategoricalDtype)
    assert list(back["cat"].cat.categories) == ["x", "y"]
    assert isinstance(back["s"].dtype, pd.StringDtype)
    assert set(back["s"]) <= {"p", "q"}
    numeric = TableSchema.fit(t[["i16"]])  # an int16 numeric column stays int16
    assert numeric.decode(far(numeric))["i16"].dtype == np.int16


def test_schema_json_round_trips_and_old_json_still_loads():
    schema = TableSchema.fit(table())
    assert TableSchema.from_json(schema.to_json()) == schema
    old = json.dumps([{"categories": [], "high": 1.0, "integer": False, "kind": "numeric",
                       "low": 0.0, "mean": 2.0, "name": "v", "std": 1.0,
                       "value_type": "str"}])
    spec = TableSchema.from_json(old).columns[0]
    assert (spec.min_value, spec.decimals, spec.dtype) == (None, None, "")
    # a schema without the new fields writes exactly as before
    assert TableSchema.from_json(old).to_json() == json.dumps(json.loads(old), sort_keys=True)


@pytest.mark.parametrize("kw, match", [
    ({"categorical": ["qualty"]}, r"categorical: column 'qualty' is not in the table; "
                                  r"did you mean 'quality'\?"),
    ({"bounded": {"alcohl": (0, 1)}}, r"bounded: column 'alcohl' .* did you mean 'alcohol'"),
    ({"categorical": ["zzz"]}, r"column 'zzz' is not in the table; expected one of"),
])
def test_unknown_names_are_refused_with_close_matches(kw, match):
    a = pd.DataFrame({"id": [1, 2, 3], "alcohol": [9.0, 10.0, 11.0]})
    b = pd.DataFrame({"id": [1, 2, 3], "quality": [5, 6, 5]})
    with pytest.raises(ValueError, match=match):
        prepare_parties([a, b], "id", **kw)
    with pytest.raises(ValueError, match=match.split(";")[0]):
        TableSchema.fit(pd.concat([a, b.drop(columns="id")], axis=1).drop(columns="id"), **kw)


def test_under_dp_only_the_declared_domain_and_decimals_are_used():
    base = ColumnSpec("v", "numeric", mean=3.0, std=1.0, min_value=2.0, max_value=4.0,
                      decimals=1, dtype="float32")  # the exact spec: never reused
    declared = load_public_domain('{"v": {"low": 0, "high": 10, "decimals": 2}}')
    spec = public_column_spec("v", declared["v"], base)
    assert (spec.min_value, spec.max_value, spec.dtype) == (None, None, "")
    assert (spec.low, spec.high, spec.decimals, spec.clip) == (0.0, 10.0, 2, True)
    back = TableSchema((spec,)).decode(far(TableSchema((spec,))))["v"]
    assert back.min() >= 0 and back.max() <= 10 and back.dtype == np.float64
    np.testing.assert_array_equal(back, np.round(back, 2))
    undeclared = public_column_spec("v", load_public_domain('{"v": {"low": 0, "high": 10}}')["v"], base)
    assert undeclared.decimals is None
    with pytest.raises(ValueError, match=r"decimals: got -1"):
        load_public_domain('{"v": {"low": 0, "high": 10, "decimals": -1}}')


def test_dp_fit_releases_no_exact_range_precision_or_dtype():
    from vflgan_app import api
    from vflgan_app.config import DPConfig, VFLGANConfig

    t = table(64)[["sulfur", "acid", "f32", "i16"]]
    t.insert(0, "id", np.arange(64))
    domain = json.dumps({"sulfur": {"low": 0, "high": 50}, "acid": {"low": 0, "high": 1},
                         "f32": {"low": -5, "high": 5}, "i16": {"low": 0, "high": 10,
                                                                "integer": True}})
    cfg = VFLGANConfig(dataset="custom", architecture="breast_cancer", steps=2, batch_size=8,
                       progress=False, dp=DPConfig(mode="paper", target_epsilon=50.0,
                                                   public_domain=domain))
    model = api.fit([t[["id", "sulfur", "acid"]], t[["id", "f32", "i16"]]], cfg,
                    id_column="id")
    for s in model.schemas:
        for c in s.columns:
            assert (c.min_value, c.max_value, c.decimals, c.dtype) == (None, None, None, "")
    out = model.sample(50, seed=0)
    assert out["sulfur"].between(0, 50).all() and out["i16"].dtype.kind == "i"
