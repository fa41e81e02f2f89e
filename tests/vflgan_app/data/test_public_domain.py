"""Declared public domains (dp.public-domain): parsing, errors, encoding from the
declaration alone, and the schema without DP unchanged (issue 12 item 6)."""

import json

import numpy as np
import pandas as pd
import pytest

from tests.vflgan_app.conftest import make_table
from vflgan_app.data.schema import (
    ColumnSpec,
    TableSchema,
    category_key,
    load_public_domain,
    public_column_spec,
)

OLD_FIELDS = ("name", "kind", "categories", "mean", "std", "integer", "low", "high",
              "value_type")


def test_schema_json_without_dp_is_the_old_format_exactly(table):
    # Prepare: the exact schema of a mixed table (what a party without DP sends)
    # (faithful decoding off: its optional fields, issue 14, are then not written)
    data = table.drop(columns=["record_id"])
    schema = TableSchema.fit(data, categorical=["color", "kind"],
                             enforce_min_max_values=False, enforce_rounding=False,
                             keep_dtypes=False)
    # Execute: the JSON written independently with the nine fields it always had
    ref = json.dumps(
        [{f: (list(getattr(c, f)) if f == "categories" else getattr(c, f))
          for f in OLD_FIELDS} for c in schema.columns],
        sort_keys=True,
    )
    # Assert: byte-identical, not private, and nothing clips
    assert schema.to_json() == ref
    assert not schema.private and not any(c.clip for c in schema.columns)
    assert TableSchema.from_json(ref) == schema
    # with faithful decoding on (the default) the old fields are unchanged, plus only
    # the optional ones
    faithful = json.loads(TableSchema.fit(data, categorical=["color", "kind"]).to_json())
    for old, new in zip(json.loads(ref), faithful, strict=True):
        assert {k: new[k] for k in old} == old
        assert set(new) - set(old) <= {"min_value", "max_value", "decimals", "dtype"}


@pytest.mark.parametrize(("declared", "message"), [
    ({"color": {"categories": []}},
     r"dp.public-domain.color.categories: got \[\], expected a non-empty list"),
    ({"a": {"low": 3, "high": 3}}, r"dp.public-domain.a.low: got 3, expected < high \(3\)"),
    ({"a": {"low": 5, "high": -1}}, r"dp.public-domain.a.low: got 5, expected < high \(-1\)"),
    ({"a": {"low": 0}}, r"dp.public-domain.a: no \"high\"; expected both"),
    ({"a": {"low": "0", "high": 1}}, r"dp.public-domain.a.low: got '0', expected a finite"),
    ({"a": {"low": 0, "high": 1, "integer": "yes"}},
     r"dp.public-domain.a.integer: got 'yes', expected true or false"),
    ({"a": {"lo": 0, "high": 1}}, r"dp.public-domain.a: unknown field\(s\) \['lo'\]"),
    ({"a": {"categories": [1], "low": 0, "high": 1}}, r"expected either \"categories\""),
    ({"a": [0, 1]}, r"dp.public-domain.a: got \[0, 1\], expected an object"),
    ({"a": {}}, r"dp.public-domain.a: no \"low\""),
    ({"color": {"categories": ["red", "red"]}}, r"got \['red'\] more than once"),
    ({"color": {"categories": ["red"], "other": "blue"}},
     r"dp.public-domain.color.other: got 'blue', expected one of its categories"),
    ({"color": {"categories": [None]}}, r"got None, expected strings, numbers"),
])
def test_bad_declarations_name_field_value_and_expectation(declared, message):
    with pytest.raises(ValueError, match=message):
        load_public_domain(json.dumps(declared))


def test_declaration_text_and_file_errors(tmp_path):
    with pytest.raises(ValueError, match=r"dp.public-domain: not valid JSON"):
        load_public_domain("{not json")
    with pytest.raises(ValueError, match=r"dp.public-domain: got a JSON list"):
        load_public_domain(str(_write(tmp_path / "list.json", "[]")))
    with pytest.raises(FileNotFoundError, match=r"dp.public-domain: got 'missing.json'"):
        load_public_domain("missing.json")
    path = _write(tmp_path / "domain.json", json.dumps({"a": {"low": 0, "high": 2}}))
    assert load_public_domain(str(path)) == {"a": {"low": 0.0, "high": 2.0,
                                                   "integer": False}}
    assert load_public_domain(None) == {}


def _write(path, text):
    path.write_text(text)
    return path


def test_declared_domain_encodes_from_the_declaration_alone(table):
    # Prepare: two different tables with the same declaration
    domain = load_public_domain(json.dumps({
        "color": {"categories": ["red", "green", "blue"], "other": "green"},
        "count": {"low": 0, "high": 3, "integer": True},
        "a": {"low": -1, "high": 1},
    }))
    data = table.drop(columns=["record_id"])[["a", "color", "count"]]
    exact = TableSchema.fit(data, categorical=["color"])
    other = make_table(50, seed=9)[["a", "color", "count"]].assign(color="violet")
    # Execute
    specs = [public_column_spec(c.name, domain[c.name], c) for c in exact.columns]
    schema = TableSchema(tuple(specs))
    again = TableSchema(tuple(public_column_spec(c.name, domain[c.name], c) for c in
                              TableSchema.fit(other, categorical=["color"]).columns))
    # Assert: no value of the table in it; centre/scale are mid-range / half-range
    assert schema == again and schema.private
    a, color, count = schema.columns
    assert (a.mean, a.std, a.low, a.high, a.clip) == (0.0, 1.0, -1.0, 1.0, True)
    assert (count.mean, count.std, count.integer) == (1.5, 1.5, True)
    assert color.categories == ("blue", "green", "red") and color.fallback == "green"
    # values outside the domain: clipped / encoded as the fallback, never an error
    probe = pd.DataFrame({"a": [-5.0, 0.5, 9.0], "color": ["violet", "red", "blue"],
                          "count": [7, 2, -1]})
    x = schema.encode(probe)
    back = schema.decode(x)
    assert back["a"].tolist() == [-1.0, 0.5, 1.0]
    assert back["color"].tolist() == ["green", "red", "blue"]
    assert back["count"].tolist() == [3, 2, 0]
    assert schema.out_of_domain(probe) == {"a": 2, "color": 1, "count": 2}
    # generated values beyond the bounds decode inside them
    wild = np.zeros((1, schema.width), np.float32)
    wild[0, 0], wild[0, -1] = 40.0, -40.0
    assert schema.decode(wild)[["a", "count"]].values.tolist() == [[1.0, 0.0]]
    # the JSON round trip keeps the domain fields
    assert TableSchema.from_json(schema.to_json()) == schema


def test_declared_kind_must_fit_the_column():
    cat = ColumnSpec("color", "categorical", categories=("a",))
    px = ColumnSpec("px", "bounded", low=0.0, high=16.0)
    num = ColumnSpec("n", "numeric")
    with pytest.raises(ValueError, match=r"dp.public-domain.color: got \"low\"/\"high\" "
                                         r"for a categorical column; expected"):
        public_column_spec("color", {"low": 0.0, "high": 1.0}, cat)
    with pytest.raises(ValueError, match=r"dp.public-domain.px: got \"categories\" for a "
                                         r"bounded column"):
        public_column_spec("px", {"categories": [0, 1], "other": 0}, px)
    # a numeric column may be declared categorical (its values become categories)
    spec = public_column_spec("n", {"categories": [3, 5, 4], "other": 5}, num)
    assert spec.categories == ("3", "4", "5") and spec.value_type == "int"
    assert public_column_spec("px", {"low": 0.0, "high": 8.0}, px).kind == "bounded"


def test_category_keys_do_not_depend_on_how_pandas_typed_the_column():
    # an int column read as float (one stray 3.5 in a CSV) still matches declared ints
    spec = public_column_spec("q", {"categories": [3, 4, 5], "other": 4},
                              ColumnSpec("q", "numeric"))
    x = TableSchema((spec,)).encode(pd.DataFrame({"q": [3.0, 5.0, 3.5]}))
    assert x.argmax(1).tolist() == [0, 2, 1]  # 3.5 is outside: the fallback 4
    assert category_key(5.0, "int") == "5" and category_key(5, "float") == "5.0"
    assert category_key(True, "bool") == "True" and category_key("x", "int") == "x"
