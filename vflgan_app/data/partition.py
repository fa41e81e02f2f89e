"""Vertical partitions: which party holds which columns, and rows aligned by record id.

Each party sorts its rows by id and the parties compare a hash of their id lists before
training (VFLGAN's code assumes aligned rows; we check it). A column held by two
parties, a NaN, an empty table or a misaligned id list is refused with an error that
names the column or party.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from vflgan_app.data.schema import TableSchema, check_column_names, validate_table


@dataclass
class PartyData:
    """One party's aligned, encoded columns.

    Attributes:
        party_id: 0-based party index.
        schema: the encoding of this party's columns.
        ids: record ids, sorted (the alignment key).
        x: encoded values ``(N, schema.width)``, rows in ``ids`` order.
        table: the real values of the columns that are not bounded, rows in ``ids``
            order (None when every column is bounded): what the DP release of the
            schema reads (:mod:`vflgan_app.dp.domain`). It never leaves the party, and
            is dropped once the DP schema replaces the exact one.
    """

    party_id: int
    schema: TableSchema
    ids: np.ndarray
    x: np.ndarray = field(repr=False)
    table: pd.DataFrame | None = field(default=None, repr=False, compare=False)

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
    **faithful: bool,
) -> PartyData:
    """Sort one party's table by id, fit (or reuse) its schema and encode it.

    This runs at the party: only the schema and the id hash ever leave it.
    ``faithful`` are the decoding options of :meth:`TableSchema.fit`
    (``enforce_min_max_values``, ``enforce_rounding``, ``keep_dtypes``; all on by
    default).

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
            **faithful,
        )
    x = schema.encode(data)
    raw = [c.name for c in schema.columns if c.kind != "bounded"]
    return PartyData(party_id, schema, table[id_column].to_numpy(), x,
                     table=data[raw].reset_index(drop=True) if raw else None)


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
    **faithful: bool,
) -> list[PartyData]:
    """Prepare every party's table and check the rows are aligned.

    ``faithful``: the decoding options of :meth:`TableSchema.fit` (all on by default).

    Raises:
        ValueError: fewer than two parties, a column held by two parties, a name in
            ``categorical`` / ``bounded`` that no party holds (with the close matches),
            or any error of :func:`prepare_party` / :func:`check_alignment`.
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
    check_column_names(list(seen), categorical, bounded)
    parties = [
        prepare_party(k, t, id_column, categorical, bounded, **faithful)
        for k, t in enumerate(tables)
    ]
    check_alignment(parties)
    return parties


def decode_parts(schemas: Sequence[TableSchema], parts: Sequence[np.ndarray]) -> pd.DataFrame:
    """Decode per-party encoded blocks and join them column-wise (party order)."""
    return pd.concat([s.decode(x) for s, x in zip(schemas, parts, strict=True)], axis=1)
