"""Vertical partitions: which party holds which columns, and rows aligned by record id.

Each party sorts its rows by id and the parties compare a hash of their id lists before
training (VFLGAN's code assumes aligned rows; we check it). A column held by two
parties, a NaN, an empty table or a misaligned id list is refused with an error that
names the column or party. Parties have names (``"bank"``, or ``"party-<k>"`` by
default), which are also the folders a saved model keeps them in.
"""

from __future__ import annotations

import difflib
import hashlib
import re
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


#: A party name: also the folder its part of a saved model goes to, so a safe file name.
PARTY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
#: Names a party cannot have: the other entries of a saved model's folder.
RESERVED_PARTY_NAMES = ("server", "config.json")


def default_party_names(k: int) -> list[str]:
    """``["party-0", "party-1", ...]``: the names of parties given as a list."""
    return [f"party-{i}" for i in range(k)]


def validate_party_names(names: Sequence[object], field: str = "parties") -> list[str]:
    """Check party names: safe folder names, distinct (ignoring case), not reserved.

    Args:
        names: the names, party 0 first.
        field: what the names were given as (error messages start with it).

    Returns:
        ``names`` as a list.

    Raises:
        TypeError: a name that is not a string.
        ValueError: a name that does not match :data:`PARTY_NAME`, a reserved name,
            or two names that differ only in case (one folder on some file systems).
    """
    out: list[str] = []
    seen: dict[str, str] = {}
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"{field}: party name {name!r} is a {type(name).__name__}; "
                            "expected a string")
        if not PARTY_NAME.fullmatch(name):
            raise ValueError(
                f"{field}: party name {name!r} is not a safe folder name; expected 1 to "
                "64 letters, digits, '_', '.' or '-', starting with a letter or digit "
                f"(the regex {PARTY_NAME.pattern})")
        if name.lower() in RESERVED_PARTY_NAMES:
            raise ValueError(f"{field}: party name {name!r} is reserved; expected a "
                             f"name other than {list(RESERVED_PARTY_NAMES)}")
        if name.lower() in seen:
            raise ValueError(
                f"{field}: party names {seen[name.lower()]!r} and {name!r} differ only "
                "in case; expected distinct names (they would share a folder on "
                "case-insensitive file systems)")
        seen[name.lower()] = name
        out.append(name)
    return out


def validate_party_map(
    columns: Sequence[str],
    party_columns: Sequence[Sequence[str]],
    id_column: str | None,
    names: Sequence[str] | None = None,
) -> None:
    """Check that every data column belongs to exactly one party.

    Args:
        columns: the table's columns.
        party_columns: the columns each party holds, party 0 first.
        id_column: the record-id column (held by every party, not a data column).
        names: the parties' names (the keys of a ``parties={name: [columns]}`` map);
            None = parties by index. Only the messages use them.

    Raises:
        ValueError: fewer than 2 parties, a party with no columns, unknown column names
            (with the close matches), a column listed twice, in two parties or in none.
    """
    prefix = "" if names is None else "parties: "

    def party(k: int) -> str:
        return f"party {k}" if names is None else f"party {names[k]!r}"

    if len(party_columns) < 2:
        raise ValueError(
            f"{prefix}party map has {len(party_columns)} part(ies); expected at least 2 "
            "parties"
        )
    seen: dict[str, int] = {}
    known = list(columns)
    known_set = set(known)
    for k, cols in enumerate(party_columns):
        where = f"party {k}" if names is None else f"parties[{names[k]!r}]"
        if len(cols) == 0:
            raise ValueError(f"{party(k)} holds no columns; expected at least one"
                             if names is None else
                             f"{where}: got no columns; expected at least one column")
        for c in cols:
            if c not in known_set:
                close = difflib.get_close_matches(
                    str(c), [str(n) for n in known if n != id_column], n=3, cutoff=0.6)
                hint = (f"did you mean {' or '.join(repr(n) for n in close)}?" if close
                        else f"expected one of {[n for n in known if n != id_column][:20]}")
                raise ValueError(f"{where}: unknown column {c!r}; {hint}")
            if c == id_column:
                raise ValueError(
                    f"{where}: the id column {c!r} cannot be a data column"
                )
            if seen.get(c) == k:
                raise ValueError(f"{where}: column {c!r} is listed twice; expected each "
                                 "column once")
            if c in seen:
                raise ValueError(
                    f"{prefix}column {c!r} is in {party(seen[c])} and {party(k)}; "
                    "expected each column in exactly one party"
                )
            seen[c] = k
    orphans = [c for c in columns if c not in seen and c != id_column]
    if orphans:
        raise ValueError(
            f"{prefix}columns {orphans[:10]} are in no party; expected every column "
            "except the id in exactly one party (drop them from the table or assign them)"
        )


def unused_name(name: str, taken: Sequence[object]) -> str:
    """``name``, prefixed with ``_`` until it is not in ``taken``."""
    taken_set = set(taken)
    while name in taken_set:
        name = "_" + name
    return name


def index_as_column(table: pd.DataFrame, what: str, name: str | None = None,
                    avoid: Sequence[object] = ()) -> tuple[pd.DataFrame, str]:
    """``table`` with its index moved into a first column (the record id), and its name.

    Args:
        table: the table.
        what: the table in error messages.
        name: the new column's name; None = the index's name (or ``"index"``),
            prefixed with ``_`` until it is no column of ``table`` nor in ``avoid``.
        avoid: names the new column must not have.

    Raises:
        ValueError: a MultiIndex, or an index with missing or repeated values.
    """
    index = table.index
    if isinstance(index, pd.MultiIndex):
        raise ValueError(f"{what}: the index is a MultiIndex ({index.nlevels} levels); "
                         "expected a single-level index as the record id (or id_column= "
                         "naming an id column)")
    if index.hasnans:
        raise ValueError(f"{what}: the index has {int(index.isna().sum())} missing "
                         "value(s); expected a record id in every row")
    if index.has_duplicates:
        dup = index[index.duplicated()].tolist()[0]
        raise ValueError(f"{what}: index value {dup!r} appears more than once; expected "
                         "unique record ids (the index aligns the rows)")
    if name is None:
        name = unused_name(str(index.name) if index.name is not None else "index",
                           [*table.columns, *avoid])
    out = table.copy()
    out.index = pd.RangeIndex(len(out))
    out.insert(0, name, index.to_numpy())
    return out, name


def split_joined(
    table: pd.DataFrame,
    parties: Mapping[str, Sequence[str]],
    id_column: str | None,
) -> tuple[list[pd.DataFrame], str]:
    """Cut one joined table into per-party tables by a named party map.

    Args:
        table: every party's columns, one row per record.
        parties: ``{party name: [its columns]}``; every column but the id in exactly
            one party; the map's order is the party order.
        id_column: the record-id column; None, or a name that is the index's and no
            column's: the index is the record id.

    Returns:
        The per-party tables (each with the id column first) and the id column's name.

    Raises:
        TypeError: ``parties`` is not a mapping, a party's columns are not a list.
        ValueError: a bad party name, an id column that is neither a column nor the
            index, or a bad party map (see :func:`validate_party_map`).
    """
    if not isinstance(parties, Mapping):
        raise TypeError(f"parties: got a {type(parties).__name__}; expected a dict "
                        "{party name: [column, ...]}")
    names = validate_party_names(list(parties))
    columns = []
    for name, cols in parties.items():
        if isinstance(cols, str) or not isinstance(cols, Sequence | pd.Index | np.ndarray):
            raise TypeError(f"parties[{name!r}]: got {cols!r}; expected a list of column "
                            "names")
        columns.append(list(cols))
    if id_column is None or (id_column not in table.columns
                             and id_column == table.index.name):
        table, id_column = index_as_column(table, "table",
                                           avoid=[c for cols in columns for c in cols])
    elif id_column not in table.columns:
        raise ValueError(
            f"id_column: got {id_column!r}, which is neither a column of the table nor "
            f"the name of its index; expected one of {list(table.columns)[:20]}, or "
            "id_column=None to align the rows by the index")
    validate_party_map(list(table.columns), columns, id_column, names=names)
    return [table[[id_column, *cols]].copy() for cols in columns], id_column


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
