"""Bad values in a user's table are refused with the column named, or handled without
loss, before anything trains (issue 12 item 11, the data part)."""

import numpy as np
import pandas as pd
import pytest

from vflgan_app.data.schema import TableSchema


def table(**extra):
    base = {"x": np.linspace(0, 1, 20), "c": ["a", "b"] * 10}
    return pd.DataFrame(base | extra)


@pytest.mark.parametrize(
    ("column", "match"),
    [
        (np.r_[np.ones(19), np.inf], r"column 'bad': 1 infinite value\(s\) at rows \[19\]"),
        (np.r_[-np.inf, np.ones(19)], r"infinite value\(s\) at rows \[0\]"),
        ([str(v) for v in range(20)], "column 'bad': numbers stored as text"),
        (pd.date_range("2020-01-01", periods=20, tz="UTC"),
         r"dtype datetime64\[\w+, UTC\] \(a date/time with a time zone\)"),
        (pd.to_timedelta(np.arange(20), unit="D"), r"\(a time span\)"),
        (np.arange(20) + 1j, r"\(a complex number\)"),
    ],
    ids=["inf", "minus-inf", "numeric-strings", "datetime-tz", "timedelta", "complex"],
)
def test_columns_that_would_be_mangled_are_refused_by_name(column, match):
    with pytest.raises(ValueError, match=match):
        TableSchema.fit(table(bad=column), categorical=["c"])


def test_numbers_stored_as_text_may_be_declared_categorical():
    schema = TableSchema.fit(table(code=[str(v % 3) for v in range(20)]),
                             categorical=["c", "code"])
    assert schema.columns[2].kind == "categorical"


def test_a_huge_outlier_keeps_the_encoding_finite():
    values = np.r_[np.linspace(0, 1, 19), 1e300]
    df = table(big=values)
    schema = TableSchema.fit(df, categorical=["c"])
    spec = schema.columns[2]
    assert np.isfinite(spec.std) and spec.std > 0
    encoded = schema.encode(df)
    assert np.isfinite(encoded).all()
    decoded = schema.decode(encoded)
    assert np.isfinite(decoded["big"].to_numpy(float)).all()
    assert decoded["big"].max() == pytest.approx(1e300, rel=1e-6)


@pytest.mark.parametrize("bounds", [(0, 0), (16, 0), (0, np.inf), (np.nan, 1)])
def test_bad_bounds_are_refused_by_name(bounds):
    with pytest.raises(ValueError, match=r"bounded\['x'\]: got .* expected finite \(low, high\)"):
        TableSchema.fit(table(), categorical=["c"], bounded={"x": bounds})


def test_a_high_cardinality_categorical_is_warned_about():
    ids = table(code=[f"id-{i}" for i in range(20)])
    with pytest.warns(UserWarning, match=r"column 'code': 20 categories in 20 rows"):
        TableSchema.fit(ids, categorical=["c"])


def test_an_ordinary_categorical_is_not_warned_about(recwarn):
    TableSchema.fit(table(), categorical=["c"])
    assert not [w for w in recwarn if "categories in" in str(w.message)]
