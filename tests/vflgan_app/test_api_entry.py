"""``api.fit``'s entry forms, party names in saved models, and date/time columns.

Issue 14 items 1 and 2: one joined DataFrame plus a party map ``parties={name:
[columns]}`` trains the same model as the per-party tables; the id may be a column or
the index; a bad party map is refused before anything trains. Parties keep their
names: ``save`` writes ``<name>/`` folders, ``load`` finds them by the ``party_folders``
map of ``config.json``, and folders saved as ``party-<k>`` still load. Date/time columns
are numbers in seconds and decode to their own ``datetime64`` resolution; under DP they
need a declared range.
"""

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from tests.vflgan_app.conftest import TINY_DOMAIN, make_table
from vflgan_app import api
from vflgan_app.config import DPConfig, VFLGANConfig
from vflgan_app.data.partition import split_vertical
from vflgan_app.data.schema import (
    TableSchema,
    datetime_seconds,
    load_public_domain,
    public_column_spec,
)

CFG = VFLGANConfig(dataset="custom", architecture="breast_cancer", steps=3, batch_size=8,
                   progress=False)
PARTIES = {"bank": ["a", "color", "count"], "shop": ["b", "c", "kind"]}
DATA_COLUMNS = ["a", "b", "color", "count", "c", "kind"]  # make_table's order


def joined(n=48):
    return make_table(n)


def per_party(n=48):
    t0, t1 = split_vertical(joined(n), list(PARTIES.values()), "record_id")
    return {"bank": t0, "shop": t1}


# -- item 1: one joined DataFrame plus a party map ------------------------------------


def test_joined_table_trains_the_same_model_as_the_per_party_tables():
    # Prepare: the same data as per-party tables, a joined table with an id column,
    # a joined table indexed by the id, and one whose index is its row number
    by_party = api.fit(per_party(), CFG)
    table = joined()
    # Execute
    with_column = api.fit(table, CFG, parties=PARTIES)
    by_index = api.fit(table.set_index("record_id"), CFG, parties=PARTIES, id_column=None)
    by_index_name = api.fit(table.set_index("record_id"), CFG, parties=PARTIES,
                            id_column="record_id")
    # Assert: same party order and names; samples in the joined table's column order
    want = by_party.sample(40, seed=5)
    assert list(want.columns) == PARTIES["bank"] + PARTIES["shop"]
    for model in (with_column, by_index, by_index_name):
        assert model.party_names == ["bank", "shop"]
        assert [s.names for s in model.schemas] == list(PARTIES.values())
        got = model.sample(40, seed=5)
        assert list(got.columns) == DATA_COLUMNS
        pd.testing.assert_frame_equal(got, want[DATA_COLUMNS])


def test_the_index_aligns_per_party_tables_in_any_row_order():
    tables = per_party()
    shuffled = {k: t.set_index("record_id").sample(frac=1.0, random_state=i)
                for i, (k, t) in enumerate(tables.items())}
    model = api.fit(shuffled, CFG, id_column=None)
    pd.testing.assert_frame_equal(model.sample(20, seed=1),
                                  api.fit(tables, CFG).sample(20, seed=1))


def _refused_before_training(monkeypatch):
    from vflgan_app.core import loop

    def trained(*args, **kwargs):
        raise AssertionError("training started before the input was refused")

    monkeypatch.setattr(loop, "fit", trained)


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"parties": {"bank": ["a", "colour", "count"], "shop": ["b", "c", "kind"]}},
     ValueError, r"parties\['bank'\]: unknown column 'colour'; did you mean 'color'\?"),
    ({"parties": {"bank": ["a", "color", "count", "b"], "shop": ["b", "c", "kind"]}},
     ValueError, r"parties: column 'b' is in party 'bank' and party 'shop'; expected each "
                 r"column in exactly one party"),
    ({"parties": {"bank": ["a", "color", "a", "count"], "shop": ["b", "c", "kind"]}},
     ValueError, r"parties\['bank'\]: column 'a' is listed twice"),
    ({"parties": {"bank": ["a", "color"], "shop": ["b", "c", "kind"]}},
     ValueError, r"parties: columns \['count'\] are in no party; expected every column "
                 r"except the id in exactly one party"),
    ({"parties": {"bank": ["record_id", "a", "color", "count"], "shop": ["b", "c", "kind"]}},
     ValueError, r"parties\['bank'\]: the id column 'record_id' cannot be a data column"),
    ({"parties": {"bank": DATA_COLUMNS}}, ValueError, r"expected at least 2 parties"),
    ({"parties": {"bank": DATA_COLUMNS, "shop": []}},
     ValueError, r"parties\['shop'\]: got no columns"),
    ({"parties": {"bank/x": PARTIES["bank"], "shop": PARTIES["shop"]}},
     ValueError, r"parties: party name 'bank/x' is not a safe folder name"),
    ({"parties": {"server": PARTIES["bank"], "shop": PARTIES["shop"]}},
     ValueError, r"party name 'server' is reserved"),
    ({"parties": {"Bank": PARTIES["bank"], "bank": PARTIES["shop"]}},
     ValueError, r"party names 'Bank' and 'bank' differ only in case"),
    ({"parties": {"bank": "a", "shop": PARTIES["shop"]}},
     TypeError, r"parties\['bank'\]: got 'a'; expected a list of column names"),
    ({"parties": [PARTIES["bank"], PARTIES["shop"]]}, TypeError, r"parties: got a list"),
    ({}, ValueError, r"parties: got one joined DataFrame and no party map"),
    ({"parties": PARTIES, "id_column": "customer_id"},
     ValueError, r"id_column: got 'customer_id', which is neither a column of the table "
                 r"nor the name of its index; .* or id_column=None"),
])
def test_a_bad_party_map_is_refused_before_training(monkeypatch, kwargs, error, match):
    _refused_before_training(monkeypatch)
    with pytest.raises(error, match=match):
        api.fit(joined(), CFG, **kwargs)


def test_other_bad_entries_are_refused_before_training(monkeypatch):
    _refused_before_training(monkeypatch)
    with pytest.raises(ValueError, match=r"parties: got a party map with per-party tables"):
        api.fit(per_party(), CFG, parties=PARTIES)
    with pytest.raises(ValueError, match=r"tables_by_party: party name 'my bank' is not a "
                                         r"safe folder name"):
        api.fit({"my bank": per_party()["bank"], "shop": per_party()["shop"]}, CFG)
    with pytest.raises(TypeError, match=r"tables_by_party: party name 0 is a int"):
        api.fit(dict(enumerate(per_party().values())), CFG)
    repeated = joined().set_index(pd.Index([0, *range(47)], name="record_id"))
    with pytest.raises(ValueError, match=r"table: index value 0 appears more than once"):
        api.fit(repeated.drop(columns="record_id"), CFG, parties=PARTIES, id_column=None)


# -- item 2: party names in saved models -----------------------------------------------


def named_model():
    # names whose alphabetical order is not the party order
    tables = per_party()
    return api.fit({"zeta": tables["bank"], "alpha": tables["shop"]}, CFG)


def test_save_writes_each_party_under_its_name_and_load_finds_it(tmp_path):
    model = named_model()
    model.save(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        "alpha", "config.json", "server", "zeta"]
    meta = json.loads((tmp_path / "m" / "config.json").read_text())
    assert meta["party_folders"] == {"zeta": 0, "alpha": 1}
    assert json.loads((tmp_path / "m" / "zeta" / "schema.json").read_text())[0]["name"] == "a"
    loaded = api.VFLGANModel.load(tmp_path / "m")
    assert loaded.party_names == ["zeta", "alpha"]
    pd.testing.assert_frame_equal(loaded.sample(30, seed=2), model.sample(30, seed=2))
    # the instance form, on a model built with default names, takes the saved names
    fresh = api.build_federation(api.prepare_parties(list(per_party().values()),
                                                     "record_id"), CFG)
    assert fresh.party_names == ["party-0", "party-1"]
    fresh.load(tmp_path / "m")
    assert fresh.party_names == ["zeta", "alpha"]
    pd.testing.assert_frame_equal(fresh.sample(10, seed=3), model.sample(10, seed=3))


def test_a_joined_table_model_keeps_its_column_order_when_loaded(tmp_path):
    model = api.fit(joined(), CFG, parties=PARTIES)
    model.save(tmp_path / "m")
    loaded = api.VFLGANModel.load(tmp_path / "m")
    assert list(loaded.sample(5, seed=1).columns) == DATA_COLUMNS
    pd.testing.assert_frame_equal(loaded.sample(5, seed=1), model.sample(5, seed=1))


def test_a_folder_saved_as_party_k_still_loads(tmp_path):
    # Prepare: a folder in the layout written before parties had names
    model = named_model()
    old = model.save(tmp_path / "m")
    (old / "zeta").rename(old / "party-0")
    (old / "alpha").rename(old / "party-1")
    meta = json.loads((old / "config.json").read_text())
    del meta["party_folders"]
    (old / "config.json").write_text(json.dumps(meta))
    # Execute
    loaded = api.VFLGANModel.load(old)
    fresh = api.build_federation(api.prepare_parties(list(per_party().values()),
                                                     "record_id"), CFG)
    fresh.load(old)
    # Assert
    assert loaded.party_names == fresh.party_names == ["party-0", "party-1"]
    want = model.sample(20, seed=4)
    pd.testing.assert_frame_equal(loaded.sample(20, seed=4), want)
    pd.testing.assert_frame_equal(fresh.sample(20, seed=4), want)


def test_a_bad_party_folders_map_is_refused(tmp_path):
    model = named_model()
    path = model.save(tmp_path / "m")
    meta = json.loads((path / "config.json").read_text())

    def with_folders(folders):
        (path / "config.json").write_text(json.dumps({**meta, "party_folders": folders}))

    with_folders({"../zeta": 0, "alpha": 1})
    with pytest.raises(ValueError, match=r"party_folders: party name '../zeta' is not a "
                                         r"safe folder name"):
        api.VFLGANModel.load(path)
    with_folders({"zeta": 0, "alpha": 2})
    with pytest.raises(ValueError, match=r"party_folders: got indices \[0, 2\]; expected "
                                         r"0, 1"):
        api.VFLGANModel.load(path)
    with_folders({"zeta": 0, "alpha": 1})
    shutil.rmtree(path / "alpha")
    with pytest.raises(FileNotFoundError, match=r"alpha: no such party folder"):
        api.VFLGANModel.load(path)


# -- date/time columns -------------------------------------------------------------------


def dated(n=48):
    """make_table plus a date column (whole days) and a timestamp column (seconds)."""
    table = make_table(n)
    rng = np.random.default_rng(1)
    table["opened"] = pd.Timestamp("2021-03-01") + pd.to_timedelta(
        rng.integers(0, 400, n), unit="D")
    table["seen"] = (pd.Timestamp("2024-01-01") + pd.to_timedelta(
        rng.integers(0, 86400 * 30, n), unit="s")).astype("datetime64[s]")
    return table


DATED_PARTIES = {"bank": ["a", "color", "count", "opened"], "shop": ["b", "c", "kind", "seen"]}


@pytest.mark.parametrize("keep_dtypes", [True, False])
def test_datetime_columns_round_trip_through_a_model(tmp_path, keep_dtypes):
    table = dated()
    model = api.fit(table, CFG, parties=DATED_PARTIES, keep_dtypes=keep_dtypes)
    synth = model.sample(300, seed=3)
    for name in ("opened", "seen"):
        assert synth[name].dtype == table[name].dtype, name  # the real resolution
        assert synth[name].min() >= table[name].min(), name
        assert synth[name].max() <= table[name].max(), name
    assert synth["opened"].nunique() > 1
    assert (synth["opened"] == synth["opened"].dt.normalize()).all()  # dates stay dates
    model.save(tmp_path / "m")
    pd.testing.assert_frame_equal(api.VFLGANModel.load(tmp_path / "m").sample(20, seed=1),
                                  model.sample(20, seed=1))


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_the_datetime_encoding_is_exact_at_each_resolution(unit):
    ticks = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}[unit]
    seconds = np.array([-86400 * 365, 0, 1_700_000_000, 1_700_000_001, 1_750_000_000])
    values = (seconds * ticks + np.array([0, 0, 0, ticks // 1000, ticks // 2])).astype(
        np.int64).view(f"datetime64[{unit}]")
    df = pd.DataFrame({"t": values})
    schema = TableSchema.fit(df)
    spec = schema.columns[0]
    assert (spec.kind, spec.datetime) == ("numeric", f"datetime64[{unit}]")
    assert spec.min_value == -86400 * 365 and spec.max_value == 1_750_000_000 + 0.5 * (
        unit != "s")
    # exact in float64 (the GAN's float32 z-scores keep about 7 digits, as for any number)
    z = (datetime_seconds(df["t"], "t") - spec.mean) / spec.std
    decoded = schema.decode(z[:, None])
    assert decoded["t"].dtype == df["t"].dtype
    pd.testing.assert_series_equal(decoded["t"], df["t"])
    far = schema.decode(np.array([[-50.0], [50.0]]))["t"]  # min/max enforced
    assert far.tolist() == [df["t"].min(), df["t"].max()]
    close = schema.decode(schema.encode(df))["t"]
    assert (abs(close - df["t"]) < pd.Timedelta(minutes=5)).all()
    assert TableSchema.from_json(schema.to_json()) == schema


def test_bad_datetime_columns_are_refused_by_name():
    table = pd.DataFrame({"t": pd.date_range("2020-01-01", periods=20), "x": range(20)})
    with pytest.raises(ValueError, match=r"column 't': dtype datetime64\[\w+, UTC\] \(a "
                                         r"date/time with a time zone\)"):
        TableSchema.fit(table.assign(t=table["t"].dt.tz_localize("UTC")))
    with pytest.raises(ValueError, match=r"categorical: column 't' is a date/time"):
        TableSchema.fit(table, categorical=["t"])
    with pytest.raises(ValueError, match=r"bounded\['t'\]: column 't' is a date/time"):
        TableSchema.fit(table, bounded={"t": (0, 1)})
    with pytest.raises(ValueError, match=r"column 't' has 1 missing value\(s\) \(NaN\) at rows \[3\]"):
        TableSchema.fit(table.assign(t=table["t"].where(table.index != 3)))


def dp_config(domain):
    return VFLGANConfig(dataset="custom", architecture="breast_cancer", steps=3,
                        batch_size=8, progress=False,
                        dp=DPConfig(mode="paper", target_epsilon=50.0, noise_multiplier=1.0,
                                    public_domain=domain))


def dated_domain(**extra):
    return json.dumps({**json.loads(TINY_DOMAIN), **extra})


@pytest.mark.parametrize("domain", [None, dated_domain(), dated_domain(
    seen={"low": "2024-01-01", "high": "2024-02-01"})])
def test_under_dp_a_datetime_column_needs_a_declared_range(monkeypatch, domain):
    _refused_before_training(monkeypatch)
    with pytest.raises(ValueError, match=r"party 0: column 'opened' is a date/time "
                                         r"\(datetime64\[\w+\]\) with no public domain; .*"
                                         r"expected it in dp.public-domain"):
        api.fit(dated(), dp_config(domain), parties=DATED_PARTIES)


def test_under_dp_a_declared_datetime_range_bounds_the_samples():
    domain = dated_domain(opened={"low": "2021-01-01", "high": "2022-12-31"},
                          seen={"low": 1_704_067_200, "high": 1_706_745_600, "integer": True})
    table = dated()
    model = api.fit(table, dp_config(domain), parties=DATED_PARTIES)
    synth = model.sample(300, seed=3)
    assert all(s.private for s in model.schemas)
    assert synth["opened"].dtype == table["opened"].dtype
    assert synth["seen"].dtype == table["seen"].dtype
    assert synth["opened"].between(pd.Timestamp("2021-01-01"), pd.Timestamp("2022-12-31")).all()
    assert synth["seen"].between(pd.Timestamp("2024-01-01"), pd.Timestamp("2024-02-01")).all()


def test_declared_datetime_bounds_are_checked():
    with pytest.raises(ValueError, match=r"dp.public-domain.t.low: got '2020-13-45', expected "
                                         r"a finite number or a tz-naive date/time"):
        load_public_domain('{"t": {"low": "2020-13-45", "high": "2021-01-01"}}')
    with pytest.raises(ValueError, match=r"dp.public-domain.t.high: got '2021-01-01T00:00Z'"):
        load_public_domain('{"t": {"low": "2020-01-01", "high": "2021-01-01T00:00Z"}}')
    with pytest.raises(ValueError, match=r"dp.public-domain.t: got low '2020-01-01' and "
                                         r"high 5; expected both numbers or both"):
        load_public_domain('{"t": {"low": "2020-01-01", "high": 5}}')
    with pytest.raises(ValueError, match=r"dp.public-domain.t.low: got 2021-01-01, expected "
                                         r"< high \(2020-01-01\)"):
        load_public_domain('{"t": {"low": "2021-01-01", "high": "2020-01-01"}}')
    number = TableSchema.fit(pd.DataFrame({"t": np.arange(5.0)})).columns[0]
    entry = load_public_domain('{"t": {"low": "2020-01-01", "high": "2021-01-01"}}')["t"]
    with pytest.raises(ValueError, match=r"dp.public-domain.t.low: got '2020-01-01' \(a "
                                         r"date/time\) for a column that is not a date/time"):
        public_column_spec("t", entry, number)
    when = TableSchema.fit(pd.DataFrame({"t": pd.date_range("2020-01-01", periods=5)}))
    spec = public_column_spec("t", entry, when.columns[0])
    assert (spec.low, spec.high, spec.datetime) == (1577836800.0, 1609459200.0,
                                                    when.columns[0].datetime)
    with pytest.raises(ValueError, match=r"dp.public-domain.t: got \"categories\" for a "
                                         r"date/time column"):
        public_column_spec("t", {"categories": ["a"], "other": "a"}, when.columns[0])
