"""Tables, their encoding, and vertical partitions (which party holds which columns).

A :class:`TableSchema` encodes one party's columns for the GAN and decodes generated rows
back to the original names and values:

* ``numeric`` columns are z-scored (mean/std of the real table; integer columns are
  rounded on the way back),
* ``categorical`` columns are one-hot (categories sorted; decoded by argmax),
* ``bounded`` columns (image pixels) map ``[low, high]`` linearly onto ``[-1, 1]``
  (the paper's ``Normalize(0.5, 0.5)`` for MNIST).

Rows are aligned across parties by a record-id column: each party sorts its rows by id
and the parties compare a hash of their id lists before training (VFLGAN's code assumes
aligned rows; we check it).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
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
            elif (
                name in cat
                or not pd.api.types.is_numeric_dtype(col)
                or col.dtype == bool
            ):
                if name not in cat and col.dtype == object:
                    # a numeric column with a stray string is a mistake, not a category
                    as_num = pd.to_numeric(col, errors="coerce")
                    if as_num.notna().mean() > 0.9:
                        bad = col[as_num.isna()].iloc[0]
                        raise ValueError(
                            f"column {name!r}: value {bad!r} is not numeric; expected a "
                            "number in a numeric column (declare the column categorical "
                            "if it is one)"
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
                cats = (
                    tuple(str(v) for v in uniq)
                    if value_type != "str"
                    else tuple(sorted(col.astype(str).unique()))
                )
                specs.append(
                    ColumnSpec(
                        str(name), "categorical", categories=cats, value_type=value_type
                    )
                )
            else:
                values = col.to_numpy(dtype=np.float64)
                std = float(values.std())
                integer = bool(np.all(np.mod(values, 1) == 0))
                specs.append(
                    ColumnSpec(
                        str(name),
                        "numeric",
                        mean=float(values.mean()),
                        std=std if std > 0 else 1.0,
                        integer=integer,
                    )
                )
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
# vertical partitions


@dataclass
class PartyData:
    """One party's aligned, encoded columns.

    Attributes:
        party_id: 0-based party index.
        schema: the encoding of this party's columns.
        ids: record ids, sorted (the alignment key).
        x: encoded values ``(N, schema.width)``, rows in ``ids`` order.
    """

    party_id: int
    schema: TableSchema
    ids: np.ndarray
    x: np.ndarray = field(repr=False)

    @property
    def id_hash(self) -> str:
        """SHA-256 of the sorted id list: parties compare these, never the ids."""
        return hash_ids(self.ids)


def hash_ids(ids: np.ndarray) -> str:
    """Return a SHA-256 hex digest of an id list (order-sensitive)."""
    h = hashlib.sha256()
    for v in np.asarray(ids).tolist():
        h.update(repr(v).encode())
        h.update(b"\x00")
    return h.hexdigest()


def validate_party_map(
    columns: Sequence[str],
    party_columns: Sequence[Sequence[str]],
    id_column: str | None,
) -> None:
    """Check that every data column belongs to exactly one party.

    Args:
        columns: the table's columns.
        party_columns: the columns each party holds, party 0 first.
        id_column: the record-id column (held by every party, not a data column).

    Raises:
        ValueError: fewer than 2 parties, a party with no columns, unknown column names,
            a column in two parties, or a column in none.
    """
    if len(party_columns) < 2:
        raise ValueError(
            f"party map has {len(party_columns)} part(ies); expected at least 2 parties"
        )
    seen: dict[str, int] = {}
    known = set(columns)
    for k, cols in enumerate(party_columns):
        if len(cols) == 0:
            raise ValueError(f"party {k} holds no columns; expected at least one")
        for c in cols:
            if c not in known:
                raise ValueError(
                    f"party {k}: unknown column {c!r}; expected one of {sorted(known)[:20]}"
                )
            if c == id_column:
                raise ValueError(
                    f"party {k}: the id column {c!r} cannot be a data column"
                )
            if c in seen:
                raise ValueError(
                    f"column {c!r} is in party {seen[c]} and party {k}; expected each "
                    "column in exactly one party"
                )
            seen[c] = k
    orphans = [c for c in columns if c not in seen and c != id_column]
    if orphans:
        raise ValueError(
            f"columns {orphans[:10]} are in no party; expected every column in exactly "
            "one party (drop them from the table or assign them)"
        )


def prepare_party(
    party_id: int,
    table: pd.DataFrame,
    id_column: str,
    categorical: Sequence[str] = (),
    bounded: Mapping[str, tuple[float, float]] | None = None,
    schema: TableSchema | None = None,
) -> PartyData:
    """Sort one party's table by id, fit (or reuse) its schema and encode it.

    This runs at the party: only the schema and the id hash ever leave it.

    Raises:
        ValueError: no id column, duplicate or missing ids, or bad values (see
            :meth:`TableSchema.fit`).
    """
    if id_column not in table.columns:
        raise ValueError(
            f"party {party_id}: id column {id_column!r} not found; expected it among "
            f"{list(table.columns)[:20]}"
        )
    validate_table(table, f"party {party_id} table")
    ids = table[id_column]
    if ids.duplicated().any():
        dup = ids[ids.duplicated()].tolist()[0]
        raise ValueError(
            f"party {party_id}: id {dup!r} appears more than once in {id_column!r}; "
            "expected unique record ids"
        )
    order = np.argsort(ids.to_numpy(), kind="stable")
    table = table.iloc[order].reset_index(drop=True)
    data = table.drop(columns=[id_column])
    if schema is None:
        schema = TableSchema.fit(
            data,
            categorical=[c for c in categorical if c in data],
            bounded={k: v for k, v in (bounded or {}).items() if k in data},
        )
    x = schema.encode(data)
    return PartyData(party_id, schema, table[id_column].to_numpy(), x)


def check_alignment(parties: Sequence[PartyData]) -> None:
    """Refuse to train unless every party holds the same sorted id list.

    Compares row counts and id-list hashes (what a real federation exchanges).

    Raises:
        ValueError: mismatched row counts or id hashes, naming the parties.
    """
    ref = parties[0]
    for p in parties[1:]:
        if len(p.ids) != len(ref.ids):
            raise ValueError(
                f"party {p.party_id} has {len(p.ids)} rows but party {ref.party_id} has "
                f"{len(ref.ids)}; expected the same aligned rows at every party"
            )
        if p.id_hash != ref.id_hash:
            raise ValueError(
                f"record ids of party {p.party_id} do not match those of party "
                f"{ref.party_id} (id-list hashes {p.id_hash[:12]} vs {ref.id_hash[:12]}); "
                "expected the same ids at every party: the rows are misaligned"
            )


def split_vertical(
    table: pd.DataFrame,
    party_columns: Sequence[Sequence[str]],
    id_column: str,
) -> list[pd.DataFrame]:
    """Cut one joined table into per-party tables (each with the id column).

    Used for built-in datasets and simulations; real parties start from their own tables.
    """
    validate_party_map(list(table.columns), party_columns, id_column)
    return [table[[id_column, *cols]].copy() for cols in party_columns]


def prepare_parties(
    tables: Sequence[pd.DataFrame],
    id_column: str,
    categorical: Sequence[str] = (),
    bounded: Mapping[str, tuple[float, float]] | None = None,
) -> list[PartyData]:
    """Prepare every party's table and check the rows are aligned.

    Raises:
        ValueError: fewer than two parties, a column held by two parties, or any error of
            :func:`prepare_party` / :func:`check_alignment`.
    """
    if len(tables) < 2:
        raise ValueError(f"got {len(tables)} party table(s); expected at least 2")
    for k, t in enumerate(tables):
        if id_column not in t.columns:
            raise ValueError(
                f"party {k}: id column {id_column!r} not found; expected it among "
                f"{list(t.columns)[:20]}"
            )
    seen: dict[str, int] = {}
    for k, t in enumerate(tables):
        for c in t.columns:
            if c == id_column:
                continue
            if c in seen:
                raise ValueError(
                    f"column {c!r} is in party {seen[c]} and party {k}; expected each "
                    "column in exactly one party"
                )
            seen[c] = k
    parties = [
        prepare_party(k, t, id_column, categorical, bounded)
        for k, t in enumerate(tables)
    ]
    check_alignment(parties)
    return parties
