"""Column schemas: how one party's table is encoded for the GAN and decoded back.

A :class:`TableSchema` encodes one party's columns for the GAN and decodes generated rows
back to the original names and values:

* ``numeric`` columns are z-scored (mean/std of the real table; integer columns are
  rounded on the way back),
* ``categorical`` columns are one-hot (categories sorted; decoded by argmax),
* ``bounded`` columns (image pixels) map ``[low, high]`` linearly onto ``[-1, 1]``
  (the paper's ``Normalize(0.5, 0.5)`` for MNIST),
* date/time columns (tz-naive ``datetime64``) are numeric columns in seconds since
  1970-01-01, decoded back to the real column's ``datetime64`` resolution.

:meth:`TableSchema.fit` learns all of this from the real table, exactly: it is the schema
without DP. Under DP the schema must not depend on the table except through a DP
release: columns get their domain from a declared public domain
(:func:`load_public_domain`, :func:`public_column_spec`, the ``dp.public-domain``
setting) or from :mod:`vflgan_app.dp.domain`, and carry ``clip=True``: a value outside
the domain is mapped at encode time (numbers clipped to ``[low, high]``, a category to
the column's ``fallback``), never released.

Which party holds which columns, and how rows are aligned, is :mod:`vflgan_app.data.partition`.
"""

from __future__ import annotations

import difflib
import json
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

ColumnKind = Literal["numeric", "categorical", "bounded"]
KINDS = ("numeric", "categorical", "bounded")


@dataclass(frozen=True)
class ColumnSpec:
    """How one original column is encoded.

    Attributes:
        name: the original column name.
        kind: ``"numeric"``, ``"categorical"`` or ``"bounded"``.
        categories: sorted category values (categorical only), as strings.
        mean: mean used for z-scoring (numeric).
        std: standard deviation used for z-scoring (numeric; 1.0 for a constant column).
        integer: round decoded numeric values (the real column held integers).
        low: lower bound (bounded).
        high: upper bound (bounded).
        value_type: Python type of categorical values in the real table (``"int"``,
            ``"float"``, ``"bool"`` or ``"str"``), restored on decode.
        clip: the domain is fixed (a DP schema): encoding maps a value outside it
            instead of refusing it (numeric and bounded: clipped to ``[low, high]``;
            categorical: encoded as ``fallback``), and decoded numbers are clipped to
            ``[low, high]``. False (without DP): an unknown category or a bounded
            value out of range is an error, and numeric columns have no bounds.
        fallback: the category an unknown value is encoded as (with ``clip``).
        domain: where the domain comes from: ``""`` (fitted exactly from the real
            table: not private), ``"public"`` (declared) or ``"dp"`` (released with DP).
        min_value: the real column's minimum (numeric, without DP; None = not
            recorded): decoded values are clipped to ``[min_value, max_value]``.
        max_value: the real column's maximum (see ``min_value``).
        decimals: decoded values are rounded to this many decimal digits (numeric,
            not integer; None = full precision). Without DP the real values' precision;
            under DP only a declared one (``"decimals"`` in ``dp.public-domain``).
        dtype: the real column's dtype (``"float32"``, ``"int16"``, ``"bool"``,
            ``"category"``, ``"string"``, ...), restored on decode; ``""`` = the
            default (float64 / int64 / the value type; always so under DP).
        datetime: the real column's date/time dtype (``"datetime64[us]"``, ...; a
            numeric column): its numbers (``mean``, ``std``, ``low``, ``high``,
            ``min_value``, ``max_value``) are seconds since 1970-01-01, and decoding
            always returns this dtype (it is the column's type, not a dtype detail:
            kept without ``keep_dtypes`` and under DP). ``""`` = not a date/time.
        time_step: decoded date/times are rounded to a multiple of this many seconds
            (86400: dates; 3600, 60, 1), the coarsest that holds every real value
            (without DP, with ``enforce_rounding``); 0 = none (``integer`` and
            ``decimals`` then apply to the seconds).
    """

    name: str
    kind: ColumnKind
    categories: tuple[str, ...] = ()
    mean: float = 0.0
    std: float = 1.0
    integer: bool = False
    low: float = 0.0
    high: float = 1.0
    value_type: str = "str"
    clip: bool = False
    fallback: str = ""
    domain: str = ""
    min_value: float | None = None
    max_value: float | None = None
    decimals: int | None = None
    dtype: str = ""
    datetime: str = ""
    time_step: int = 0

    @property
    def width(self) -> int:
        """Number of encoded columns this column occupies."""
        return len(self.categories) if self.kind == "categorical" else 1


@dataclass(frozen=True)
class OutputSpan:
    """A run of encoded columns sharing one generator output activation.

    ``kind`` is ``"linear"`` (z-scored numeric), ``"tanh"`` (bounded) or ``"onehot"``
    (one categorical column: hard Gumbel-softmax over ``end - start`` logits).
    """

    kind: Literal["linear", "tanh", "onehot"]
    start: int
    end: int


@dataclass(frozen=True)
class TableSchema:
    """Encoding of an ordered set of columns (one party's, or a whole table's)."""

    columns: tuple[ColumnSpec, ...]

    # -- construction -------------------------------------------------------------
    @classmethod
    def fit(
        cls,
        df: pd.DataFrame,
        categorical: Sequence[str] = (),
        bounded: Mapping[str, tuple[float, float]] | None = None,
        *,
        enforce_min_max_values: bool = True,
        enforce_rounding: bool = True,
        keep_dtypes: bool = True,
    ) -> TableSchema:
        """Learn the encoding from a real table.

        Args:
            df: the table (only the columns to encode, in order).
            categorical: names of categorical columns. Columns of object/string/bool
                dtype are categorical even if not listed.
            bounded: ``{name: (low, high)}`` for bounded columns (image pixels).
            enforce_min_max_values: record each numeric column's min and max; decoded
                values are clipped to them (as SDV does by default).
            enforce_rounding: record each numeric column's precision (decimal digits
                of its real values; for a date/time column the coarsest time step, e.g.
                whole days); decoded values are rounded to it.
            keep_dtypes: record each column's dtype; decoding restores it.

        A tz-naive ``datetime64`` column is numeric, in seconds since 1970-01-01
        (z-scored like any number); decoding returns its ``datetime64`` dtype.

        Raises:
            ValueError: empty table, unknown column names, NaNs (NaT), infinite values,
                non-numeric values in a numeric column, numbers stored as text, a
                date/time with a time zone or listed in ``categorical`` / ``bounded``,
                or a time span or complex column (each named, with what to do).
        """
        bounded = dict(bounded or {})
        validate_table(df, "table")
        check_column_names(list(df.columns), categorical, bounded)
        cat = set(categorical)
        for name in df.columns:
            _check_column_type(str(name), df[name], declared=name in cat)
        specs = []
        for name in df.columns:
            col = df[name]
            if is_datetime(col):
                if name in bounded:
                    raise ValueError(
                        f"bounded[{name!r}]: column {name!r} is a date/time ({col.dtype}); "
                        "expected bounded columns to be numbers (a date/time column is "
                        "encoded as seconds since 1970-01-01 without declaring bounds)")
                specs.append(_datetime_spec(str(name), col, enforce_min_max_values,
                                            enforce_rounding))
                continue
            if name in bounded:
                low, high = bounded[name]
                if not (np.isfinite(low) and np.isfinite(high) and low < high):
                    raise ValueError(f"bounded[{name!r}]: got ({low}, {high}); expected "
                                     "finite (low, high) with low < high")
                spec = ColumnSpec(str(name), "bounded", low=float(low), high=float(high))
            elif name in cat or not pd.api.types.is_numeric_dtype(col) or col.dtype == bool:
                spec = _categorical_spec(str(name), col, declared=name in cat)
            else:
                spec = _numeric_spec(str(name), col, enforce_min_max_values,
                                     enforce_rounding)
            if keep_dtypes:
                spec = replace(spec, dtype=_dtype_name(col))
            specs.append(spec)
        return cls(tuple(specs))

    # -- shape --------------------------------------------------------------------
    @property
    def private(self) -> bool:
        """Whether every column's domain is declared public or released with DP."""
        return all(c.domain in ("public", "dp") for c in self.columns)

    @property
    def names(self) -> list[str]:
        """Original column names in order."""
        return [c.name for c in self.columns]

    @property
    def width(self) -> int:
        """Number of encoded columns."""
        return sum(c.width for c in self.columns)

    def output_spans(self) -> list[OutputSpan]:
        """Generator output spans, merging neighbouring linear/tanh columns."""
        spans: list[OutputSpan] = []
        pos = 0
        for c in self.columns:
            kind = {"numeric": "linear", "bounded": "tanh", "categorical": "onehot"}[
                c.kind
            ]
            if (
                kind != "onehot"
                and spans
                and spans[-1].kind == kind
                and spans[-1].end == pos
            ):
                spans[-1] = OutputSpan(kind, spans[-1].start, pos + c.width)
            else:
                spans.append(OutputSpan(kind, pos, pos + c.width))
            pos += c.width
        return spans

    def column_slices(self) -> dict[str, slice]:
        """Encoded column range of each original column."""
        out, pos = {}, 0
        for c in self.columns:
            out[c.name] = slice(pos, pos + c.width)
            pos += c.width
        return out

    # -- encode / decode ----------------------------------------------------------
    def encode(self, df: pd.DataFrame) -> np.ndarray:
        """Encode a table with these columns into a float32 array ``(N, width)``.

        Raises:
            ValueError: missing columns, NaNs, unknown categories, non-numeric values or
                values outside a bounded column's range.
        """
        missing = [n for n in self.names if n not in df.columns]
        if missing:
            raise ValueError(
                f"table is missing columns {missing}; expected {self.names}"
            )
        validate_table(df[self.names], "table")
        parts = []
        for c in self.columns:
            col = df[c.name]
            if c.kind == "categorical":
                index = {v: i for i, v in enumerate(c.categories)}
                if c.clip:  # a fixed domain: unknown values are encoded as the fallback
                    values = category_keys(col, c.value_type)
                    values = np.where(np.isin(values, c.categories), values, c.fallback)
                else:
                    values = col.astype(str).to_numpy()
                unknown = sorted(set(values) - set(index))
                if unknown:
                    raise ValueError(
                        f"column {c.name!r}: unknown categories {unknown[:5]}; expected one "
                        f"of {list(c.categories)[:20]}"
                    )
                onehot = np.zeros((len(values), len(c.categories)), dtype=np.float32)
                onehot[np.arange(len(values)), [index[v] for v in values]] = 1.0
                parts.append(onehot)
                continue
            values = _spec_values(col, c)
            if c.clip:
                values = np.clip(values, c.low, c.high)
            if c.kind == "bounded":
                if values.min() < c.low or values.max() > c.high:
                    raise ValueError(
                        f"column {c.name!r}: values in [{values.min()}, {values.max()}]; "
                        f"expected within [{c.low}, {c.high}]"
                    )
                enc = 2.0 * (values - c.low) / (c.high - c.low) - 1.0
            else:
                enc = (values - c.mean) / c.std
            parts.append(enc.astype(np.float32)[:, None])
        return (
            np.concatenate(parts, axis=1)
            if parts
            else np.zeros((len(df), 0), np.float32)
        )

    def decode(self, x: np.ndarray) -> pd.DataFrame:
        """Decode an encoded array back to original column names and values."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.width:
            raise ValueError(
                f"encoded array has shape {x.shape}; expected (N, {self.width})"
            )
        out = {}
        for c, sl in zip(self.columns, self.column_slices().values(), strict=True):
            block = x[:, sl]
            if c.kind == "categorical":
                labels = np.asarray(c.categories, dtype=object)[block.argmax(axis=1)]
                cast = {"int": int, "float": float, "bool": lambda v: v == "True"}
                out[c.name] = _restore_dtype(
                    pd.Series(labels).map(cast[c.value_type]).to_numpy()
                    if c.value_type in cast
                    else labels, c)
            elif c.kind == "bounded":
                out[c.name] = _restore_dtype((np.clip(block[:, 0], -1, 1) + 1.0) / 2.0 * (
                    c.high - c.low
                ) + c.low, c)
            else:
                values = block[:, 0] * c.std + c.mean
                if c.clip:
                    values = np.clip(values, c.low, c.high)
                elif c.min_value is not None and c.max_value is not None:
                    values = np.clip(values, c.min_value, c.max_value)
                if c.datetime:
                    out[c.name] = seconds_to_datetime(values, c)
                    continue
                if c.integer:
                    values = np.round(values).astype(np.int64)
                elif c.decimals is not None:
                    values = np.round(values, c.decimals)
                out[c.name] = _restore_dtype(values, c)
        return pd.DataFrame(out, columns=self.names)

    # -- serialisation ------------------------------------------------------------
    def out_of_domain(self, df: pd.DataFrame) -> dict[str, int]:
        """Rows of ``df`` that encoding maps or clips, per column with a fixed domain.

        For the party's own log only (it counts real rows; never send it).
        """
        out = {}
        for c in self.columns:
            if not c.clip:
                continue
            if c.kind == "categorical":
                keys = category_keys(df[c.name], c.value_type)
                n = int((~np.isin(keys, c.categories)).sum())
            else:
                v = _spec_values(df[c.name], c)
                n = int(((v < c.low) | (v > c.high)).sum())
            if n:
                out[c.name] = n
        return out

    def to_json(self) -> str:
        """Return a canonical JSON description (used in the handshake and outputs).

        The fields of a fixed domain (``clip``, ``fallback``, ``domain``) and of
        faithful decoding (``min_value``, ``max_value``, ``decimals``, ``dtype``) are
        written only when set, so a schema without them reads exactly as before they
        existed (and an older ``schema.json`` still loads: they default).
        """
        return json.dumps(
            [{k: v for k, v in asdict(c).items()
              if k not in _OPTIONAL_FIELDS or v != _OPTIONAL_FIELDS[k]}
             for c in self.columns],
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> TableSchema:
        """Inverse of :meth:`to_json`."""
        cols = []
        for d in json.loads(text):
            d["categories"] = tuple(d.get("categories", ()))
            cols.append(ColumnSpec(**d))
        return cls(tuple(cols))


#: Fields of a fixed (DP) domain and their defaults: left out of the JSON when default.
_DOMAIN_FIELDS = {"clip": False, "fallback": "", "domain": ""}
#: Every optional field (fixed domain, faithful decoding) and its default.
_OPTIONAL_FIELDS = {**_DOMAIN_FIELDS, "min_value": None, "max_value": None,
                    "decimals": None, "dtype": "", "datetime": "", "time_step": 0}

#: The most decimal digits recorded as a column's precision (more = full precision).
MAX_DECIMALS = 10


def check_column_names(columns: Sequence[str], categorical: Sequence[str] = (),
                       bounded: Mapping[str, Any] | None = None) -> None:
    """Refuse names in ``categorical`` / ``bounded`` that are no column, with close matches.

    Raises:
        ValueError: naming each unknown column and the close matches (difflib).
    """
    known = [str(c) for c in columns]
    for what, names in (("categorical", list(categorical)), ("bounded", list(bounded or {}))):
        for name in names:
            if name in known:
                continue
            close = difflib.get_close_matches(str(name), known, n=3, cutoff=0.6)
            hint = (f"did you mean {' or '.join(repr(c) for c in close)}?" if close
                    else f"expected one of {known[:20]}")
            raise ValueError(f"{what}: column {name!r} is not in the table; {hint}")


def _dtype_name(col: pd.Series) -> str:
    """The dtype to restore on decode ("" where the default is right)."""
    if isinstance(col.dtype, pd.CategoricalDtype):
        return "category"
    if isinstance(col.dtype, pd.StringDtype):
        return "string"
    name = str(col.dtype)
    return "" if name in ("float64", "int64", "object") else name


def _restore_dtype(values: np.ndarray, c: ColumnSpec):
    """Decoded ``values`` in the column's recorded dtype (as they are without one)."""
    if not c.dtype:
        return values
    if c.dtype == "category":
        cats = list(pd.Series(values).unique()) if c.kind != "categorical" else None
        if c.kind == "categorical":
            cast = {"int": int, "float": float, "bool": lambda v: v == "True"}
            cats = [cast[c.value_type](v) if c.value_type in cast else v
                    for v in c.categories]
        return pd.Categorical(values, categories=cats)
    if c.dtype == "string":
        return pd.array(values, dtype="string")
    try:
        dtype = np.dtype(c.dtype)
    except TypeError:  # a pandas extension dtype (Int64, boolean, ...)
        return pd.array(values, dtype=c.dtype)
    if dtype.kind in "iu" and np.asarray(values).dtype.kind == "f":
        info = np.iinfo(dtype)
        values = np.clip(np.round(values), info.min, info.max)
    return np.asarray(values).astype(dtype)


def _decimals(values: np.ndarray, dtype: np.dtype) -> int | None:
    """Fewest decimal digits that write every value (None: more than MAX_DECIMALS)."""
    eps = np.finfo(dtype).eps if np.dtype(dtype).kind == "f" else np.finfo(np.float64).eps
    tol = 4 * eps * np.maximum(1.0, np.abs(values))
    with np.errstate(over="ignore", invalid="ignore"):  # huge values: no precision
        for d in range(MAX_DECIMALS + 1):
            if np.all(np.abs(np.round(values, d) - values) <= tol):
                return d
    return None


def _categorical_spec(name: str, col: pd.Series, declared: bool) -> ColumnSpec:
    """One-hot encoding of ``col``; categories sorted (numbers by value)."""
    if not declared and col.dtype == object:
        # a numeric column with a stray string is a mistake, not a category
        as_num = pd.to_numeric(col, errors="coerce")
        if as_num.notna().mean() > 0.9:
            bad = col[as_num.isna()].iloc[0]
            raise ValueError(
                f"column {name!r}: value {bad!r} is not numeric; expected a number in a "
                "numeric column (declare the column categorical if it is one)"
            )
    value_type = "str"
    if col.dtype == bool:
        value_type = "bool"
    elif pd.api.types.is_integer_dtype(col):
        value_type = "int"
    elif pd.api.types.is_float_dtype(col):
        value_type = "float"
    uniq = col.unique()
    if value_type in ("int", "float"):
        uniq = np.sort(uniq)
    cats = (tuple(str(v) for v in uniq) if value_type != "str"
            else tuple(sorted(col.astype(str).unique())))
    return ColumnSpec(name, "categorical", categories=cats, value_type=value_type)


#: Categories above which a categorical column is warned about (also above half the rows).
HIGH_CARDINALITY = 1000


def _check_column_type(name: str, col: pd.Series, declared: bool) -> None:
    """Refuse columns that would otherwise be mangled silently (each error names them)."""
    kind = col.dtype.kind
    if isinstance(col.dtype, pd.DatetimeTZDtype):
        raise ValueError(
            f"column {name!r}: dtype {col.dtype} (a date/time with a time zone); expected "
            "tz-naive date/times (convert with .dt.tz_convert(None) for UTC, or "
            ".dt.tz_localize(None) for local wall time)")
    if kind == "M":
        if declared:
            raise ValueError(
                f"categorical: column {name!r} is a date/time ({col.dtype}); expected "
                "it not listed (date/times are encoded as numbers; to treat it as "
                "categories, convert it to strings first)")
        return
    if kind in "mc" or isinstance(col.dtype, pd.PeriodDtype):
        what = {"m": "a time span", "M": "a date/time", "c": "a complex number"}.get(
            kind, "a period")
        raise ValueError(
            f"column {name!r}: dtype {col.dtype} ({what}); expected numbers or categories "
            "(convert it first, e.g. a date to days since a fixed origin, or to a string "
            "column declared categorical)")
    if kind in "fiu" and not declared:
        values = col.to_numpy(dtype=np.float64)
        bad = np.flatnonzero(~np.isfinite(values))
        if len(bad):
            raise ValueError(
                f"column {name!r}: {len(bad)} infinite value(s) at rows {bad[:5].tolist()} "
                f"(e.g. {values[bad[0]]}); expected finite numbers")
    if kind == "O" and not declared and len(col):
        as_num = pd.to_numeric(col, errors="coerce")
        if as_num.notna().all():
            raise ValueError(
                f"column {name!r}: numbers stored as text (e.g. {col.iloc[0]!r}); expected "
                "a numeric dtype (convert with pandas.to_numeric) or the column declared "
                "categorical")
    categorical = declared or kind in "OSUb" or isinstance(col.dtype, pd.CategoricalDtype)
    if categorical and len(col) >= 20:
        n_cat = int(col.nunique())
        if n_cat > HIGH_CARDINALITY or n_cat > 0.5 * len(col):
            warnings.warn(
                f"column {name!r}: {n_cat} categories in {len(col)} rows; a one-hot of "
                "this width is slow and mostly unseen values (an id, a free-text or a date "
                "column?). Drop it, bin it, or convert it to numbers", UserWarning,
                stacklevel=4)


def _numeric_spec(name: str, col: pd.Series, min_max: bool = True,
                  rounding: bool = True) -> ColumnSpec:
    """z-score encoding of ``col`` (std 1 for a constant column).

    ``min_max``: record the real min and max; ``rounding``: the real precision.
    """
    values = col.to_numpy(dtype=np.float64)
    # scaled first: the square of a 1e300 outlier would overflow to an infinite std
    scale = float(np.abs(values).max()) or 1.0
    std = float((values / scale).std() * scale)
    integer = bool(np.all(np.mod(values, 1) == 0))
    extra: dict[str, Any] = {}
    if min_max:
        extra.update(min_value=float(values.min()), max_value=float(values.max()))
    if rounding and not integer:
        extra["decimals"] = _decimals(values, col.dtype)
    return ColumnSpec(name, "numeric", mean=float(values.mean()),
                      std=std if std > 0 else 1.0, integer=integer, **extra)


def is_datetime(col: pd.Series) -> bool:
    """Whether ``col`` holds tz-naive date/times (``datetime64``)."""
    return col.dtype.kind == "M" and not isinstance(col.dtype, pd.DatetimeTZDtype)


#: Ticks per second of the ``datetime64`` units a column may have.
_TICKS_PER_SECOND = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}
#: Rounding steps of a date/time column, coarsest first: day, hour, minute, second.
TIME_STEPS = (86400, 3600, 60, 1)
#: 1970-01-01, the origin of a date/time column's seconds (and of declared bounds).
EPOCH = pd.Timestamp(0)


def _time_unit(dtype: Any, name: str) -> tuple[str, int]:
    unit = np.datetime_data(np.dtype(dtype))[0]
    if unit not in _TICKS_PER_SECOND:
        raise ValueError(f"column {name!r}: dtype {dtype} (unit {unit!r}); expected a "
                         f"date/time in one of the units {list(_TICKS_PER_SECOND)}")
    return unit, _TICKS_PER_SECOND[unit]


def datetime_seconds(col: pd.Series, name: str) -> np.ndarray:
    """Seconds since 1970-01-01 of a tz-naive date/time column (float64).

    Whole seconds and the fraction are split before the float conversion, so whole
    seconds are exact (sub-microsecond parts of nanosecond times are not kept).

    Raises:
        ValueError: ``col`` is not a tz-naive ``datetime64`` column.
    """
    if not is_datetime(col):
        raise ValueError(f"column {name!r}: dtype {col.dtype}; expected a tz-naive "
                         "date/time (datetime64) column, as in the fitted table")
    ticks = col.to_numpy()
    _, per = _time_unit(ticks.dtype, name)
    whole, rest = np.divmod(ticks.view(np.int64), per)
    return whole.astype(np.float64) + rest / per


def seconds_to_datetime(values: np.ndarray, c: ColumnSpec) -> np.ndarray:
    """Decoded seconds since 1970-01-01 as ``c.datetime`` (rounded to its step)."""
    step = c.time_step or (1 if c.integer else 0)
    if step:
        values = np.round(values / step) * step
    _, per = _time_unit(c.datetime, c.name)
    limit = np.iinfo(np.int64).max // per - 1  # an unclipped sample must not wrap around
    values = np.clip(values, -limit, limit)
    whole = np.floor(values)
    # the fraction is rounded apart: near 1.7e9 s a float64 keeps only ~0.2 us
    digits = 0 if step else (c.decimals if c.decimals is not None else 9)
    quantum = 10 ** max(int(math.log10(per)) - digits, 0)  # ticks per kept digit
    parts = np.round((values - whole) * (per // quantum)).astype(np.int64) * quantum
    ticks = whole.astype(np.int64) * per + parts
    return ticks.view(np.dtype(c.datetime))


def _datetime_spec(name: str, col: pd.Series, min_max: bool = True,
                   rounding: bool = True) -> ColumnSpec:
    """A date/time column as a numeric one in seconds (its step: the coarsest unit)."""
    seconds = datetime_seconds(col, name)
    spec = _numeric_spec(name, pd.Series(seconds), min_max, rounding)
    step = 0
    if rounding and spec.integer:
        step = next(s for s in TIME_STEPS if np.all(np.mod(seconds, s) == 0))
    return replace(spec, integer=False, decimals=None if step else spec.decimals,
                   datetime=str(col.dtype), time_step=step)


def _spec_values(col: pd.Series, c: ColumnSpec) -> np.ndarray:
    """The numbers a numeric or bounded column encodes (a date/time's seconds)."""
    return datetime_seconds(col, c.name) if c.datetime else _numeric_values(col, c.name)


def _numeric_values(col: pd.Series, name: str) -> np.ndarray:
    values = pd.to_numeric(col, errors="coerce")
    if values.isna().any():
        bad = col[values.isna()].iloc[0]
        raise ValueError(
            f"column {name!r}: value {bad!r} is not numeric; expected a number"
        )
    return values.to_numpy(dtype=np.float64)


def validate_table(df: pd.DataFrame, what: str) -> None:
    """Refuse empty tables and missing values, naming the column and rows.

    Raises:
        ValueError: no rows, no columns, duplicate column names, or NaN/None values.
    """
    if len(df) == 0:
        raise ValueError(f"{what} is empty (0 rows); expected at least one row")
    if df.shape[1] == 0:
        raise ValueError(f"{what} has no columns; expected at least one")
    dup = df.columns[df.columns.duplicated()].tolist()
    if dup:
        raise ValueError(
            f"{what} has duplicate column names {dup}; expected unique names"
        )
    na = df.isna()
    if na.to_numpy().any():
        name = na.any().idxmax()
        rows = np.flatnonzero(na[name].to_numpy())
        raise ValueError(
            f"{what}: column {name!r} has {len(rows)} missing value(s) (NaN) at rows "
            f"{rows[:5].tolist()}; expected no missing values (impute or drop them first)"
        )


# ---------------------------------------------------------------------------------
# fixed domains (DP): declared public domains and category keys

#: The setting a public domain is declared with (error messages name it).
DOMAIN_SETTING = "dp.public-domain"
_CATEGORICAL_KEYS = {"categories", "other"}
_NUMERIC_KEYS = {"low", "high", "integer", "decimals"}


def category_key(value: Any, value_type: str) -> str:
    """The string a categorical value is known by in a fixed domain.

    Normalised by the column's value type, so the key does not depend on how pandas
    happened to type the column: for ``"int"`` an integral number ``5`` / ``5.0`` is
    ``"5"``; for ``"float"`` a number is ``str(float(v))`` (``"5.0"``); ``"bool"`` and
    ``"str"`` are ``str(v)``. The keys of :meth:`TableSchema.fit` are the same for
    values of the column's own dtype.
    """
    if value_type in ("int", "float") and not isinstance(value, bool | np.bool_):
        try:
            v = float(value)
        except (TypeError, ValueError):
            return str(value)
        if value_type == "int":
            return str(int(v)) if math.isfinite(v) and v.is_integer() else str(value)
        return str(v)
    return str(value)


def category_keys(col: pd.Series, value_type: str) -> np.ndarray:
    """:func:`category_key` of every value of ``col`` (object array)."""
    if value_type in ("str", "bool"):
        return col.astype(str).to_numpy(dtype=object)
    return np.asarray([category_key(v, value_type) for v in col.to_numpy()], dtype=object)


def sort_categories(keys: Sequence[str], value_type: str) -> tuple[str, ...]:
    """Keys in the order :meth:`TableSchema.fit` uses: numbers by value, else text."""
    if value_type in ("int", "float"):
        return tuple(sorted(keys, key=lambda k: (float(k), k)))
    return tuple(sorted(keys))


def load_public_domain(value: str | None) -> dict[str, dict]:
    """Read and check a ``dp.public-domain`` declaration.

    Args:
        value: JSON text of an object, or the path of a JSON file holding one; None =
            nothing declared. Each key is a column name; its value is
            ``{"categories": [v, ...], "other": v}`` (categorical; ``other``, optional,
            is the category an unknown value is encoded as, default the first listed)
            or ``{"low": a, "high": b, "integer": bool, "decimals": d}`` (numeric or
            bounded; ``integer`` optional, default false; true: decoded values are
            rounded to integers; ``decimals`` optional: decoded values are rounded to
            ``d`` decimal digits, numeric only). For a date/time column ``low`` and
            ``high`` are tz-naive date/times as text (``"2020-01-01"``, ISO 8601) or
            seconds since 1970-01-01, and ``integer`` / ``decimals`` round the seconds.

    Returns:
        ``{column: entry}`` with every entry complete (``other``/``integer`` filled in).

    Raises:
        FileNotFoundError: a path that does not exist.
        ValueError: not JSON, not an object, or a bad entry; the message names the
            column, the field, the value and what was expected.
    """
    if value is None:
        return {}
    text = value.strip()
    if not text.startswith("{"):
        path = Path(text)
        if not path.is_file():
            raise FileNotFoundError(
                f"{DOMAIN_SETTING}: got {value!r}, which is neither a JSON object nor "
                "an existing file; expected JSON text or the path of a JSON file"
            )
        text = path.read_text()
    try:
        declared = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(
            f"{DOMAIN_SETTING}: not valid JSON ({e.msg} at line {e.lineno} column "
            f"{e.colno}); expected an object {{column: {{...}}}}"
        ) from None
    return check_public_domain(declared)


def check_public_domain(declared: Any) -> dict[str, dict]:
    """Check a parsed declaration (see :func:`load_public_domain`)."""
    if not isinstance(declared, dict):
        raise ValueError(
            f"{DOMAIN_SETTING}: got a JSON {type(declared).__name__}, expected an object "
            "{column: {\"categories\": [...]} or {\"low\": a, \"high\": b}}"
        )
    out = {}
    for name, entry in declared.items():
        key = f"{DOMAIN_SETTING}.{name}"
        if not isinstance(entry, dict):
            raise ValueError(
                f"{key}: got {entry!r}, expected an object with \"categories\" (a "
                "categorical column) or \"low\" and \"high\" (a numeric column)"
            )
        unknown = sorted(set(entry) - _CATEGORICAL_KEYS - _NUMERIC_KEYS)
        if unknown:
            raise ValueError(
                f"{key}: unknown field(s) {unknown}; expected \"categories\" (and "
                "\"other\") or \"low\", \"high\" (and \"integer\", \"decimals\")"
            )
        if set(entry) & _CATEGORICAL_KEYS and set(entry) & _NUMERIC_KEYS:
            raise ValueError(
                f"{key}: got fields {sorted(entry)}; expected either \"categories\" "
                "(categorical) or \"low\"/\"high\" (numeric), not both"
            )
        out[str(name)] = (_check_categories(key, entry) if set(entry) & _CATEGORICAL_KEYS
                          else _check_bounds(key, entry))
    return out


def _is_number(v: Any) -> bool:
    return (isinstance(v, int | float) and not isinstance(v, bool)
            and math.isfinite(v))


def _check_categories(key: str, entry: dict) -> dict:
    cats = entry.get("categories")
    if not isinstance(cats, list) or not cats:
        raise ValueError(
            f"{key}.categories: got {cats!r}, expected a non-empty list of values"
        )
    for v in cats:
        if not (isinstance(v, str | bool) or _is_number(v)):
            raise ValueError(
                f"{key}.categories: got {v!r}, expected strings, numbers or booleans"
            )
    value_type = declared_value_type(cats)
    keys = [category_key(v, value_type) for v in cats]
    dup = sorted({k for k in keys if keys.count(k) > 1})
    if dup:
        raise ValueError(
            f"{key}.categories: got {dup} more than once; expected distinct values"
        )
    other = entry.get("other", cats[0])
    if category_key(other, value_type) not in keys:
        raise ValueError(
            f"{key}.other: got {other!r}, expected one of its categories {cats[:20]}"
        )
    return {"categories": list(cats), "other": other}


def _check_bounds(key: str, entry: dict) -> dict:
    for field in ("low", "high"):
        if field not in entry:
            raise ValueError(f"{key}: no \"{field}\"; expected both \"low\" and "
                             "\"high\" for a numeric column")
        if isinstance(entry[field], str):
            bound_seconds(entry[field], f"{key}.{field}")  # a date/time column's bound
        elif not _is_number(entry[field]):
            raise ValueError(f"{key}.{field}: got {entry[field]!r}, expected a finite "
                             "number (or a date/time as text, for a date/time column)")
    low, high = entry["low"], entry["high"]
    if isinstance(low, str) != isinstance(high, str):
        raise ValueError(f"{key}: got low {low!r} and high {high!r}; expected both "
                         "numbers or both date/times as text")
    if not bound_seconds(low, f"{key}.low") < bound_seconds(high, f"{key}.high"):
        raise ValueError(f"{key}.low: got {low}, expected < high ({high})")
    integer = entry.get("integer", False)
    if not isinstance(integer, bool):
        raise ValueError(f"{key}.integer: got {integer!r}, expected true or false")
    decimals = entry.get("decimals")
    if decimals is not None and (isinstance(decimals, bool) or not isinstance(decimals, int)
                                 or not 0 <= decimals <= MAX_DECIMALS):
        raise ValueError(f"{key}.decimals: got {decimals!r}, expected an integer in "
                         f"[0, {MAX_DECIMALS}] (decimal digits decoded values keep)")
    out = {"low": low if isinstance(low, str) else float(low),
           "high": high if isinstance(high, str) else float(high), "integer": integer}
    if decimals is not None:
        out["decimals"] = decimals
    return out


def bound_seconds(value: Any, key: str = DOMAIN_SETTING) -> float:
    """A declared bound as a number: date/time text as seconds since 1970-01-01.

    Raises:
        ValueError: text that is no tz-naive date/time (the message names ``key``).
    """
    if not isinstance(value, str):
        return float(value)
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError):
        stamp = None
    if stamp is None or stamp is pd.NaT or stamp.tzinfo is not None:
        raise ValueError(f"{key}: got {value!r}, expected a finite number or a tz-naive "
                         "date/time as text (e.g. \"2020-01-01\" or "
                         "\"2020-01-01T12:00:00\")")
    return (stamp - EPOCH) / pd.Timedelta(seconds=1)


def declared_value_type(categories: Sequence[Any]) -> str:
    """The value type of declared categories: bool, int, float (any number) or str."""
    if all(isinstance(v, bool) for v in categories):
        return "bool"
    if all(_is_number(v) for v in categories):
        return "int" if all(isinstance(v, int) for v in categories) else "float"
    return "str"


def public_column_spec(name: str, entry: Mapping[str, Any], base: ColumnSpec) -> ColumnSpec:
    """The encoding of a column from its declared public domain alone.

    Args:
        name: the column.
        entry: its checked declaration (:func:`load_public_domain`).
        base: its exact spec (only its kind and date/time dtype are read: declared
            categories make a numeric column categorical; bounds on a categorical
            column, categories on a bounded or date/time one, and bounds given as
            date/times on any other column are refused).

    Raises:
        ValueError: the declaration does not fit the column's kind.
    """
    key = f"{DOMAIN_SETTING}.{name}"
    if "categories" in entry:
        if base.datetime:
            raise ValueError(f"{key}: got \"categories\" for a date/time column; "
                             "expected \"low\" and \"high\" (e.g. \"2020-01-01\")")
        if base.kind == "bounded":
            raise ValueError(f"{key}: got \"categories\" for a bounded column; expected "
                             "\"low\" and \"high\"")
        value_type = declared_value_type(entry["categories"])
        keys = [category_key(v, value_type) for v in entry["categories"]]
        return ColumnSpec(name, "categorical",
                          categories=sort_categories(keys, value_type),
                          value_type=value_type, clip=True,
                          fallback=category_key(entry["other"], value_type),
                          domain="public")
    if base.kind == "categorical":
        raise ValueError(f"{key}: got \"low\"/\"high\" for a categorical column; "
                         "expected \"categories\": [...]")
    if isinstance(entry["low"], str) and not base.datetime:
        raise ValueError(f"{key}.low: got {entry['low']!r} (a date/time) for a column "
                         "that is not a date/time; expected a number")
    low, high = bound_seconds(entry["low"], key), bound_seconds(entry["high"], key)
    if base.kind == "bounded":
        return ColumnSpec(name, "bounded", low=low, high=high, clip=True, domain="public")
    integer = bool(entry.get("integer", False))
    # a date/time keeps its dtype: the column's type, like a categorical's value type
    return ColumnSpec(name, "numeric", mean=(low + high) / 2, std=(high - low) / 2,
                      integer=integer, low=low, high=high, clip=True, domain="public",
                      decimals=None if integer else entry.get("decimals"),
                      datetime=base.datetime)
