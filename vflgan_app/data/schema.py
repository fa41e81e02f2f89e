"""Column schemas: how one party's table is encoded for the GAN and decoded back.

A :class:`TableSchema` encodes one party's columns for the GAN and decodes generated rows
back to the original names and values:

* ``numeric`` columns are z-scored (mean/std of the real table; integer columns are
  rounded on the way back),
* ``categorical`` columns are one-hot (categories sorted; decoded by argmax),
* ``bounded`` columns (image pixels) map ``[low, high]`` linearly onto ``[-1, 1]``
  (the paper's ``Normalize(0.5, 0.5)`` for MNIST).

Which party holds which columns, and how rows are aligned, is :mod:`vflgan_app.data.partition`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Literal

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
    ) -> TableSchema:
        """Learn the encoding from a real table.

        Args:
            df: the table (only the columns to encode, in order).
            categorical: names of categorical columns. Columns of object/string/bool
                dtype are categorical even if not listed.
            bounded: ``{name: (low, high)}`` for bounded columns (image pixels).

        Raises:
            ValueError: empty table, unknown column names, NaNs, non-numeric values in a
                numeric column.
        """
        bounded = dict(bounded or {})
        validate_table(df, "table")
        unknown = [c for c in [*categorical, *bounded] if c not in df.columns]
        if unknown:
            raise ValueError(
                f"columns {unknown} were named as categorical/bounded but are not in the "
                f"table; expected a subset of {list(df.columns)[:20]}"
            )
        cat = set(categorical)
        specs = []
        for name in df.columns:
            col = df[name]
            if name in bounded:
                low, high = bounded[name]
                specs.append(
                    ColumnSpec(str(name), "bounded", low=float(low), high=float(high))
                )
            elif name in cat or not pd.api.types.is_numeric_dtype(col) or col.dtype == bool:
                specs.append(_categorical_spec(str(name), col, declared=name in cat))
            else:
                specs.append(_numeric_spec(str(name), col))
        return cls(tuple(specs))

    # -- shape --------------------------------------------------------------------
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
                values = col.astype(str).to_numpy()
                index = {v: i for i, v in enumerate(c.categories)}
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
            values = _numeric_values(col, c.name)
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
                out[c.name] = (
                    pd.Series(labels).map(cast[c.value_type]).to_numpy()
                    if c.value_type in cast
                    else labels
                )
            elif c.kind == "bounded":
                out[c.name] = (np.clip(block[:, 0], -1, 1) + 1.0) / 2.0 * (
                    c.high - c.low
                ) + c.low
            else:
                values = block[:, 0] * c.std + c.mean
                out[c.name] = np.round(values).astype(np.int64) if c.integer else values
        return pd.DataFrame(out, columns=self.names)

    # -- serialisation ------------------------------------------------------------
    def to_json(self) -> str:
        """Return a canonical JSON description (used in the handshake and outputs)."""
        return json.dumps([asdict(c) for c in self.columns], sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TableSchema:
        """Inverse of :meth:`to_json`."""
        cols = []
        for d in json.loads(text):
            d["categories"] = tuple(d.get("categories", ()))
            cols.append(ColumnSpec(**d))
        return cls(tuple(cols))


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


def _numeric_spec(name: str, col: pd.Series) -> ColumnSpec:
    """z-score encoding of ``col`` (std 1 for a constant column)."""
    values = col.to_numpy(dtype=np.float64)
    std = float(values.std())
    integer = bool(np.all(np.mod(values, 1) == 0))
    return ColumnSpec(name, "numeric", mean=float(values.mean()),
                      std=std if std > 0 else 1.0, integer=integer)


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
