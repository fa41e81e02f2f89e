import numpy as np
import pandas as pd
import pytest

from tests.vflgan_app.conftest import make_table
from vflgan_app.data.partition import (
    check_alignment,
    prepare_parties,
    prepare_party,
    split_vertical,
    validate_party_map,
)
from vflgan_app.data.schema import TableSchema
from vflgan_app.data.sources import load_dataset, read_idx

SPLIT = [["a", "color", "count"], ["b", "c", "kind"]]


def test_encode_decode_round_trip(table):
    data = table.drop(columns=["record_id"])
    schema = TableSchema.fit(data, categorical=["color", "kind"])
    x = schema.encode(data)
    assert x.shape == (32, 1 + 3 + 1 + 1 + 1 + 2) and x.dtype == np.float32
    # one-hot spans are exactly one-hot; numerics are z-scored
    sl = schema.column_slices()
    assert np.all(x[:, sl["color"]].sum(1) == 1)
    assert abs(x[:, sl["a"]].mean()) < 1e-6 and abs(x[:, sl["a"]].std() - 1) < 1e-5
    back = schema.decode(x)
    assert list(back.columns) == list(data.columns)
    np.testing.assert_allclose(back["a"], data["a"], atol=1e-5)
    assert (back["color"] == data["color"]).all() and (
        back["kind"] == data["kind"]
    ).all()
    assert back["count"].dtype.kind == "i" and (back["count"] == data["count"]).all()
    # schema survives JSON (it is what the handshake exchanges)
    assert TableSchema.from_json(schema.to_json()) == schema


def test_integer_categories_decode_to_original_type():
    df = pd.DataFrame({"quality": [3, 5, 5, 8]})
    schema = TableSchema.fit(df, categorical=["quality"])
    back = schema.decode(schema.encode(df))
    assert back["quality"].tolist() == [3, 5, 5, 8]


def test_bounded_pixels_map_to_unit_interval():
    df = pd.DataFrame({"p": [0.0, 8.0, 16.0]})
    schema = TableSchema.fit(df, bounded={"p": (0, 16)})
    np.testing.assert_allclose(schema.encode(df)[:, 0], [-1, 0, 1])
    np.testing.assert_allclose(schema.decode(np.array([[-1.0], [1.0]]))["p"], [0, 16])
    with pytest.raises(ValueError, match=r"'p'.*expected within \[0.0, 16.0\]"):
        schema.encode(pd.DataFrame({"p": [17.0]}))


def test_output_spans_merge_linear_and_split_onehot(table):
    schema = TableSchema.fit(
        table.drop(columns=["record_id"]), categorical=["color", "kind"]
    )
    kinds = [(s.kind, s.end - s.start) for s in schema.output_spans()]
    assert kinds == [("linear", 2), ("onehot", 3), ("linear", 2), ("onehot", 2)]


@pytest.mark.parametrize(
    "party_columns, message",
    [
        ([["a", "b", "color", "count", "c", "kind"]], "at least 2 parties"),
        (
            [["a", "color", "count"], ["a", "b", "c", "kind"]],
            "'a' is in party 0 and party 1",
        ),
        ([["a", "color"], ["b", "c", "kind"]], r"\['count'\] are in no party"),
        ([["a", "color", "count", "zzz"], ["b", "c", "kind"]], "unknown column 'zzz'"),
        ([["a", "color", "count"], []], "party 1 holds no columns"),
    ],
)
def test_party_map_errors(table, party_columns, message):
    with pytest.raises(ValueError, match=message):
        validate_party_map(list(table.columns), party_columns, "record_id")


def test_alignment_sorts_by_id_and_refuses_mismatch(table):
    t0, t1 = split_vertical(table, SPLIT, "record_id")
    # a different row order is fine: each party sorts by id
    parties = prepare_parties(
        [t0, t1.sample(frac=1.0, random_state=1)],
        "record_id",
        categorical=["color", "kind"],
    )
    np.testing.assert_array_equal(parties[0].ids, parties[1].ids)
    np.testing.assert_allclose(
        parties[1].x, prepare_party(1, t1, "record_id", ["kind"]).x
    )
    # different ids are refused, naming both parties
    bad = t1.copy()
    bad.loc[0, "record_id"] = 999
    with pytest.raises(
        ValueError, match="record ids of party 1 do not match those of party 0"
    ):
        prepare_parties([t0, bad], "record_id", categorical=["color", "kind"])
    # mismatched row counts
    with pytest.raises(ValueError, match="party 1 has 31 rows but party 0 has 32"):
        prepare_parties([t0, t1.iloc[1:]], "record_id", categorical=["color", "kind"])


def test_bad_values_give_clear_errors(table):
    t0, t1 = split_vertical(table, SPLIT, "record_id")
    with_nan = t0.copy()
    with_nan.loc[3, "a"] = np.nan
    with pytest.raises(
        ValueError, match=r"column 'a' has 1 missing value\(s\) \(NaN\) at rows \[3\]"
    ):
        prepare_parties([with_nan, t1], "record_id")
    text = t0.copy()
    text["a"] = text["a"].astype(object)
    text.loc[5, "a"] = "oops"
    with pytest.raises(ValueError, match="column 'a': value 'oops' is not numeric"):
        prepare_parties([text, t1], "record_id")
    with pytest.raises(ValueError, match="is empty"):
        prepare_parties([t0.iloc[:0], t1.iloc[:0]], "record_id")
    with pytest.raises(ValueError, match="id column 'rid' not found"):
        prepare_parties([t0, t1], "rid")
    dup = t0.copy()
    dup.loc[1, "record_id"] = 0
    with pytest.raises(ValueError, match="id 0 appears more than once"):
        prepare_parties([dup, t1], "record_id")
    with pytest.raises(ValueError, match="'a' is in party 0 and party 1"):
        prepare_parties([t0, t1.assign(a=1.0)], "record_id")
    schema = TableSchema.fit(t1.drop(columns=["record_id"]), categorical=["kind"])
    with pytest.raises(
        ValueError, match=r"column 'kind': unknown categories \['maybe'\]"
    ):
        schema.encode(t1.assign(kind="maybe"))
    with pytest.raises(ValueError, match=r"missing columns \['b'\]"):
        schema.encode(t1.drop(columns=["b"]))


def test_check_alignment_direct():
    t = make_table(8)
    a, b = split_vertical(t, SPLIT, "record_id")
    pa = prepare_party(0, a, "record_id", ["color"])
    pb = prepare_party(1, b.assign(record_id=b.record_id + 1), "record_id", ["kind"])
    with pytest.raises(ValueError, match="misaligned"):
        check_alignment([pa, pb])


def test_builtin_embedded_datasets():
    digits = load_dataset("digits")
    assert digits.image_shape == (8, 8) and len(digits.table) == 1797
    assert [len(c) for c in digits.party_columns] == [32, 32]
    assert digits.party_columns[1][0] == "px_4_0"  # bottom half starts at pixel row 4
    bc = load_dataset("breast_cancer")
    assert "diagnosis" in bc.party_columns[1] and bc.target == "diagnosis"
    with pytest.raises(ValueError, match="dataset: got 'nope'"):
        load_dataset("nope")


def test_missing_files_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="adult.data not found"):
        load_dataset("adult", data_root=tmp_path)
    with pytest.raises(FileNotFoundError, match="MNIST IDX files not found"):
        load_dataset("mnist", data_root=tmp_path)


def test_idx_reader_round_trip(tmp_path):
    import gzip
    import struct

    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / "x-images-idx3-ubyte.gz"
    with gzip.open(path, "wb") as fh:
        fh.write(
            struct.pack(">BBBB", 0, 0, 0x08, 3)
            + struct.pack(">3I", 2, 3, 4)
            + arr.tobytes()
        )
    np.testing.assert_array_equal(read_idx(path), arr)
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(bad)
