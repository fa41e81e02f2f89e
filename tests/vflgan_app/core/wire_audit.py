"""Wire audit helpers: search every payload that crosses the transport for a party's secrets.

:func:`find_leaks` looks for the rows and the columns of each secret table (a party's raw
numeric values, its encoded rows, chunks of its weights) inside every array, list,
scalar and string of every message, in both directions:

* **dtype.** Each array is compared in its own dtype: the secret is cast to that dtype
  (float32, float16, bfloat16, integers; float64 payloads are compared at float32
  precision) and values are compared as ordered bit patterns, so the tolerance is a
  number of units in the last place of that dtype (:data:`ULPS`).
* **where.** An array is cut into *lines*: every 1-D slice along every axis, plus the
  whole array flattened. A secret **row** (length w) is found when it appears, within
  the tolerance, as a contiguous run anywhere in a line (a zero-padded prefix, a window
  at any offset, a row stored as a column). A secret **column** (one value per record)
  is found when a line holds at least 4 of its values (8 on the coarse 16-bit grids),
  at least 3 of them distinct and, on the 16-bit grids, making up a share of the line
  (:data:`COLUMN_SHARE`): an order-free test, so a column gathered at the batch rows,
  or laid out along a row, is found too. In integer arrays an integer secret column
  is found as a run of :data:`INT_RUN` consecutive records in order (an order-free
  test cannot tell a low-cardinality column from a set of row indices, which
  legitimately travel): a gathered integer column in an integer array is not found.
* **what is not searched**, because it would match legitimate traffic by coincidence:
  zeros (every zero-padded or sparse array has them) are never a column value, and
  neither are whole numbers outside integer arrays (sizes, bounds and schemas are full
  of them); secret columns that are constant, more than half zero or have fewer than 3
  distinct values left (one-hot and integer columns, in float arrays) are skipped;
  secret rows that are constant, more than half zero or hold no non-integer value
  (fewer than 2 on 16-bit grids) are skipped. Rows are not searched in integer arrays
  (row indices legitimately travel and are small integers), and runs of an integer
  column with fewer than 3 distinct values or more than half zeros are skipped. A
  scalar is a leak when it equals a non-integer secret value exactly.

:func:`find_off_protocol` is the structural half of the audit (keys, shapes, dtypes).
Both return human-readable findings; an empty list means the traffic is clean.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord

#: Tolerance, in units in the last place of the payload's dtype. Low-precision dtypes
#: compare exactly (one step of float16 is 1e-3 relative: a wider window would make
#: coincidences likely); float32 allows for a few roundings in the leaker's arithmetic.
ULPS = {"float32": 4, "float16": 0, "bfloat16": 0, "int": 0}

# How much of a secret a line must hold before it counts as found, by grid. A legitimate
# (continuous) value matches one given secret value by chance with odds of about 1e-6
# on the float32 grid at 4 ulps, but of a few percent on float16's (2^-10) and
# bfloat16's (2^-7) grids; the coarse grids therefore need more, and denser, matches.
# (Checked: no finding in the test runs' traffic over 6 seeds, nor in the same traffic
# re-cast to float16 and bfloat16.)
#: values of one secret column a line must hold (at least 3 of them distinct) ...
MIN_COLUMN_HITS = {"float32": 4, "float16": 8, "bfloat16": 8}
MIN_COLUMN_DISTINCT = 3
#: ... and the share of the line they must make up
COLUMN_SHARE = {"float32": 0.0, "float16": 0.25, "bfloat16": 0.5}
#: in integer arrays, an integer secret column is found as a run of this many
#: consecutive records' values (in order), holding at least 3 distinct values
INT_RUN = 8
#: non-integer values a secret row needs to be searched (the others may be 0/1 one-hots)
MIN_ROW_FRACTIONAL = {"float32": 1, "float16": 2, "bfloat16": 2}
WEIGHT_CHUNK = 16  # weights are searched as contiguous chunks of this length

_NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")


@dataclass(frozen=True)
class Secret:
    """A table whose rows (and, with ``columns``, whose columns) must never travel.

    Attributes:
        name: how findings name it, e.g. ``"party 0 raw numeric"``.
        values: ``(N, w)`` values; rows are records, columns are fields.
        columns: also search its columns (off for weight chunks, which are not fields).
    """

    name: str
    values: np.ndarray
    columns: bool = True

    def __post_init__(self) -> None:
        v = np.asarray(self.values, dtype=np.float64)
        if v.ndim != 2:
            raise ValueError(f"secret {self.name}: values of shape {v.shape}; expected (N, w)")
        object.__setattr__(self, "values", v)


def weight_secret(name: str, tensor) -> Secret:
    """A weight or buffer tensor as a secret: contiguous chunks of its rows.

    Each row (the tensor reshaped to ``(shape[0], -1)``; a 1-D tensor is one row) is cut
    into chunks of :data:`WEIGHT_CHUNK` values (a last chunk shorter than 4 is dropped).
    """
    a = torch.as_tensor(tensor).detach().cpu().double().numpy()
    a = a.reshape(a.shape[0], -1) if a.ndim > 1 else a.reshape(1, -1)
    chunks = [row[i:i + WEIGHT_CHUNK] for row in a for i in range(0, len(row), WEIGHT_CHUNK)]
    chunks = [c for c in chunks if len(c) >= 4]
    width = max((len(c) for c in chunks), default=0)
    # pad with NaN to a table; NaN never matches and marks the end of a short chunk
    out = np.full((len(chunks), width), np.nan)
    for i, c in enumerate(chunks):
        out[i, : len(c)] = c
    return Secret(name, out, columns=False)


# -- values as ordered integers in a dtype ---------------------------------------------
_BITS = {"float16": (np.int16, 15), "float32": (np.int32, 31)}
_OFF_GRID = np.iinfo(np.int64).min  # a secret value the grid cannot hold


def _ordered(bits: np.ndarray, top: int) -> np.ndarray:
    """Sign-magnitude bit patterns -> integers in value order (+0 and -0 both 0)."""
    b = bits.astype(np.int64)
    mag = b & ((1 << top) - 1)
    return np.where(b < 0, -mag, mag)


def _grid(kind: str, values: np.ndarray) -> np.ndarray:
    """``values`` (float64 or the payload) on ``kind``'s grid, as ordered integers.

    NaN, inf and values beyond the grid's range map to :data:`_OFF_GRID` (left out of
    the probes).
    """
    v = np.asarray(values, dtype=np.float64)
    bad = ~np.isfinite(v)
    v = np.where(bad, 0, v)
    if kind == "int":
        return np.where(bad, _OFF_GRID, v.astype(np.int64))
    with np.errstate(over="ignore"):  # beyond float16's range: inf, never matched
        f = torch.from_numpy(v.astype(np.float32)).to(torch.bfloat16).float().numpy() \
            if kind == "bfloat16" else v.astype(kind)
    bad |= ~np.isfinite(f)
    if kind == "bfloat16":
        out = _ordered(torch.from_numpy(f).to(torch.bfloat16).view(torch.int16).numpy(), 15)
    else:
        np_type, top = _BITS[kind]
        out = _ordered(f.view(np_type), top)
    return np.where(bad, _OFF_GRID, out)


def _payload_grid(a) -> tuple[str, np.ndarray] | None:
    """(grid kind, ordered integers) of a payload array; None for what is not searched."""
    # non-finite payload values become an integer no secret value maps to
    never = np.iinfo(np.int64).max
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu()
        if a.dtype == torch.bfloat16:
            ords = _ordered(a.view(torch.int16).numpy(), 15)
            return "bfloat16", np.where(torch.isfinite(a).numpy(), ords, never)
        if a.dtype == torch.bool or a.is_complex():
            return None
        a = a.numpy()
    a = np.asarray(a)
    if a.dtype.kind in "iu":
        return "int", a.astype(np.int64)
    if a.dtype.kind != "f":
        return None  # bool, strings, objects
    if a.dtype == np.float16:
        return "float16", np.where(np.isfinite(a), _ordered(a.view(np.int16), 15), never)
    with np.errstate(over="ignore"):
        f32 = a.astype(np.float32)  # float64 payloads at float32 precision
    return "float32", np.where(np.isfinite(f32), _ordered(f32.view(np.int32), 31), never)


# -- probes: what is searched, per grid kind --------------------------------------------
@dataclass
class _RowProbe:
    secret: str
    row: int
    values: np.ndarray  # ordered integers; NaN-padded tails removed
    anchor: int  # position of the value the search hashes on


@dataclass
class _ColumnProbe:
    secret: str
    column: int
    keys: np.ndarray  # sorted ordered integers of the values that count, +- tolerance


@dataclass
class _Probes:
    tol: int
    rows: list[_RowProbe] = field(default_factory=list)
    anchors: dict[int, list[int]] = field(default_factory=dict)  # key -> row probe ids
    anchor_keys: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    columns: list[_ColumnProbe] = field(default_factory=list)
    column_keys: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    # integer grid: hash of a run of INT_RUN values -> [(secret, column, first record)]
    runs: dict[int, list[tuple[str, int, int, np.ndarray]]] = field(default_factory=dict)
    run_keys: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint64))


def _informative(v: np.ndarray) -> bool:
    """Not constant and at most half zeros (``v`` finite float64)."""
    return len(v) > 0 and np.ptp(v) > 0 and np.mean(v == 0) <= 0.5


def _build_probes(kind: str, secrets: Iterable[Secret]) -> _Probes:
    p = _Probes(tol=ULPS[kind])
    spread = np.arange(-p.tol, p.tol + 1)
    for s in secrets:
        grid = _grid(kind, s.values)
        if kind != "int":  # rows: never in integer arrays (see the module doc)
            for i, row in enumerate(s.values):
                n = int(np.isfinite(row).sum())
                raw = row[:n]
                fractional = np.flatnonzero(raw != np.round(raw))
                if (n < 2 or not _informative(raw) or len(fractional) < MIN_ROW_FRACTIONAL[kind]
                        or (grid[i, :n] == _OFF_GRID).any()):
                    continue
                j = int(fractional[np.argmax(np.abs(raw[fractional]))])
                p.rows.append(_RowProbe(s.name, i, grid[i, :n], j))
        if not s.columns:
            continue
        for c in range(s.values.shape[1]):
            raw = s.values[:, c]
            integral = raw == np.round(raw)
            if kind == "int":
                if integral.all() and _informative(raw):
                    _add_runs(p, s.name, c, grid[:, c])
                continue
            # what counts as a hit: non-zero, non-integer values (zeros pad arrays, and
            # small whole numbers fill legitimate sizes, bounds and schemas)
            use = (raw != 0) & ~integral
            if not _informative(raw) or len(np.unique(raw[use])) < MIN_COLUMN_DISTINCT:
                continue
            ords = np.unique(grid[:, c][use & (grid[:, c] != _OFF_GRID)])
            keys = np.unique((ords[:, None] + spread[None, :]).ravel())
            p.columns.append(_ColumnProbe(s.name, c, keys[keys != 0]))
    for k, probe in enumerate(p.rows):
        for d in spread:
            p.anchors.setdefault(int(probe.values[probe.anchor] + d), []).append(k)
    p.anchor_keys = np.array(sorted(p.anchors), dtype=np.int64)
    if p.columns:
        p.column_keys = np.unique(np.concatenate([c.keys for c in p.columns]))
    p.run_keys = np.array(sorted(p.runs), dtype=np.uint64)
    return p


_RUN_POWERS = np.uint64(1_000_003) ** np.arange(INT_RUN, dtype=np.uint64)


def _run_hashes(windows: np.ndarray) -> np.ndarray:
    """A hash (uint64, wrapping) of each run of :data:`INT_RUN` integers (last axis)."""
    with np.errstate(over="ignore"):
        return (windows.astype(np.uint64) * _RUN_POWERS).sum(axis=-1, dtype=np.uint64)


def _add_runs(p: _Probes, secret: str, column: int, values: np.ndarray) -> None:
    """Index every run of INT_RUN consecutive records of an integer column.

    Runs with fewer than 3 distinct values or more than half zeros are left out
    (a run of one repeated small number is in legitimate framing lists).
    """
    if len(values) < INT_RUN:
        return
    windows = np.lib.stride_tricks.sliding_window_view(values, INT_RUN)
    for j, (w, h) in enumerate(zip(windows, _run_hashes(windows), strict=True)):
        if len(np.unique(w)) >= MIN_COLUMN_DISTINCT and np.mean(w == 0) <= 0.5:
            p.runs.setdefault(int(h), []).append((secret, column, j, w.copy()))


def _member(values: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """``np.isin(values, keys)`` for sorted unique ``keys`` (no re-sorting per call)."""
    if not len(keys):
        return np.zeros(values.shape, bool)
    pos = np.minimum(np.searchsorted(keys, values), len(keys) - 1)
    return keys[pos] == values


# -- lines of an array ----------------------------------------------------------------
def _lines(a: np.ndarray) -> Iterator[tuple[str, np.ndarray]]:
    """(where, (m, L) lines): every 1-D slice along every axis, and the flattening."""
    if a.ndim == 0 or a.size == 0:
        return
    if a.ndim == 1:
        yield "", a[None, :]
        return
    for axis in range(a.ndim):
        yield f"axis {axis}", np.moveaxis(a, axis, -1).reshape(-1, a.shape[axis])
    yield "flattened", a.reshape(1, -1)


def _search(kind: str, ords: np.ndarray, probes: _Probes) -> list[str]:
    """Findings (without the message label) of one payload array."""
    found: dict[tuple, str] = {}
    rows_found: dict[str, list] = {}  # secret -> [first finding, rows found]
    share = COLUMN_SHARE.get(kind, 0.0)
    for where, lines in _lines(ords):
        m, L = lines.shape
        if kind == "int":  # integer columns: ordered runs (see the module doc)
            if L < INT_RUN or not len(probes.run_keys):
                continue
            windows = np.lib.stride_tricks.sliding_window_view(lines, INT_RUN, axis=1)
            hashes = _run_hashes(windows)  # (m, L - INT_RUN + 1)
            for i, k in zip(*np.nonzero(_member(hashes, probes.run_keys)), strict=True):
                for secret, column, j, w in probes.runs[int(hashes[i, k])]:
                    if np.array_equal(windows[i, k], w):
                        found.setdefault(("column", secret, column), (
                            f"{secret} column {column} (records {j}..{j + INT_RUN - 1} "
                            f"in order at line {i} {where} offset {k})".replace("  ", " ")))
            continue
        # secret rows: hash on the anchor, verify the whole window
        if len(probes.anchor_keys):
            for i, k in zip(*np.nonzero(_member(lines, probes.anchor_keys)), strict=True):
                for pid in probes.anchors[int(lines[i, k])]:
                    r = probes.rows[pid]
                    off = int(k) - r.anchor
                    if off < 0 or off + len(r.values) > L:
                        continue
                    if np.all(np.abs(lines[i, off:off + len(r.values)] - r.values) <= probes.tol):
                        first = rows_found.setdefault(r.secret, [
                            f"row {r.row} ({len(r.values)} values) at line {i} {where} "
                            f"offset {off}".replace("  ", " "), set()])
                        first[1].add(r.row)
        # secret columns: enough of a column's values in one line, in any order
        if not len(probes.columns):
            continue
        need = max(MIN_COLUMN_HITS[kind], math.ceil(share * L))
        if L < need:
            continue
        member = _member(lines, probes.column_keys)
        for i in np.flatnonzero(member.sum(axis=1) >= need):
            for c in probes.columns:
                hit = _member(lines[i], c.keys)
                if hit.sum() >= need and len(np.unique(lines[i][hit])) >= MIN_COLUMN_DISTINCT:
                    found.setdefault(("column", c.secret, c.column), (
                        f"{c.secret} column {c.column} ({int(hit.sum())} of {L} values of "
                        f"line {i} {where})".replace(" )", ")")))
    rows = [f"{len(rs)} rows of {secret}, e.g. {first}"
            for secret, (first, rs) in rows_found.items()]
    return rows + list(found.values())


# -- payloads -------------------------------------------------------------------------
def payload_items(payload) -> Iterator[tuple[str, object]]:
    """(key, value) of a nested dict payload or of a Flower ``RecordDict``.

    Keys of nested dicts are dotted (``"grads.h_real"``); record items are
    ``"<record>/<key>"`` (arrays come out as numpy). A packed message (what travels:
    :func:`vflgan_app.flower.codec.pack`) is read through the codec's strict
    :func:`~vflgan_app.flower.codec.unpack`, which refuses any byte its header does not
    account for, so nothing in the packed bytes escapes the search.
    """
    from vflgan_app.flower import codec

    if not isinstance(payload, dict) and codec.is_packed(payload):
        payload = codec.unpack(payload)
    if isinstance(payload, dict):
        stack = [("", payload)]
        while stack:
            prefix, d = stack.pop()
            for k, v in d.items():
                if isinstance(v, dict):
                    stack.append((f"{prefix}{k}.", v))
                else:
                    yield f"{prefix}{k}", v
        return
    for name, rec in payload.items():
        if isinstance(rec, ArrayRecord):
            for k, a in rec.items():
                yield f"{name}/{k}", a.numpy()
        elif isinstance(rec, ConfigRecord):
            for k, v in rec.items():
                yield f"{name}/{k}", v
        else:
            yield f"{name}", rec  # flagged by find_off_protocol


def _as_array(v) -> object | None:
    """A payload value as something :func:`_payload_grid` takes (None: not an array)."""
    if isinstance(v, torch.Tensor | np.ndarray):
        return v
    if isinstance(v, list | tuple) and v and all(
            isinstance(x, int | float | np.number) and not isinstance(x, bool) for x in v):
        return np.asarray(v)
    if isinstance(v, str | bytes):
        text = v.decode("latin-1") if isinstance(v, bytes) else v
        numbers = [float(x) for x in _NUMBER.findall(text)]
        return np.asarray(numbers, dtype=np.float64) if numbers else None
    if isinstance(v, list | tuple):  # e.g. a list of strings: search their numbers
        numbers = [x for s in v if isinstance(s, str) for x in _NUMBER.findall(s)]
        return np.asarray([float(x) for x in numbers]) if numbers else None
    return None


Message = tuple[str, str, object]  # (direction, kind: method or message type, payload)


def find_leaks(messages: Iterable[Message], secrets: Iterable[Secret]) -> list[str]:
    """Every place a secret's row or column (or a secret value as a scalar) travels.

    Args:
        messages: ``(direction, kind, payload)``; ``payload`` a nested dict of tensors,
            arrays, lists and scalars (in-process) or a Flower ``RecordDict``.
        secrets: the tables to look for.

    Returns:
        One line per (message, key, secret row / column) found; empty if none.
    """
    secrets = list(secrets)
    probes: dict[str, _Probes] = {}
    table_values = np.unique(np.concatenate(
        [s.values[np.isfinite(s.values)].ravel() for s in secrets if s.columns] or [[]]))
    scalar_values = set(table_values[table_values != np.round(table_values)].tolist())
    findings = []
    for n, (direction, kind, payload) in enumerate(messages):
        label = f"message {n} ({direction} {kind})"
        for key, v in payload_items(payload):
            if isinstance(v, float | np.floating) and float(v) in scalar_values:
                findings.append(f"{label}: {key} = {float(v)!r} is a secret value")
                continue
            arr = _as_array(v)
            if arr is None:
                continue
            if getattr(arr, "ndim", 1) == 0:  # a 0-d tensor: a scalar
                if float(arr) in scalar_values:
                    findings.append(f"{label}: {key} = {float(arr)!r} is a secret value")
                continue
            got = _payload_grid(arr)
            if got is None:
                continue
            grid_kind, ords = got
            if grid_kind not in probes:
                probes[grid_kind] = _build_probes(grid_kind, secrets)
            dtype = str(getattr(arr, "dtype", "list")).removeprefix("torch.")
            shape = tuple(getattr(arr, "shape", ()))
            findings += [f"{label}: {key} ({dtype} {shape}) carries {f}"
                         for f in _search(grid_kind, ords, probes[grid_kind])]
    return findings


# -- structure: keys, shapes, dtypes ------------------------------------------------------
ALLOWED_KEYS = {
    # handshake
    "party_id", "n_rows", "id_hash", "schema", "width", "if_dim", "trunk",
    # training: row indices, step numbers, IFs, gradients w.r.t. IFs, scalar losses
    "step", "idx", "batch_size", "loss", "h_real", "h_fake", "h_hat", "h_gen", "grads",
    # the joint objective's mid-step exchange: dD_S/dIF (u), per-row squared norms (s),
    # J J^T u (a), per-row penalty weights (w)
    "u", "s", "a", "w",
    # ... and in chunked mode, each interpolated row's Jacobian Gram matrix J J^T (G, its
    # upper triangle)
    "G",
    # a shared generator trunk: its output for the step's z (server -> party) and the
    # generator loss's gradient with respect to it (party -> server)
    "t",
    # publication request (n rows from a seed, a slice at an offset with a trunk); its
    # reply "x" is synthetic rows
    "n", "seed", "independent", "offset",
    # checkpoint calls: the run id and the config fingerprint's digest (letters only),
    # how many checkpoints to keep, whether a fresh run may overwrite
    "run_id", "fingerprint", "keep", "overwrite",
    # call framing (Flower codec: tensors stacked in "g<k>" arrays, referenced by key)
    "methods", "key", "group", "index",
}
PUBLICATION = {"sample", "query.generate"}  # kinds whose replies carry synthetic rows "x"


def find_off_protocol(messages: Iterable[Message], *, if_dim: int,
                      batch_size: int | None = None,
                      trunk_width: int | None = None) -> list[str]:
    """Keys, shapes and dtypes that the protocol does not send.

    Float arrays must be IF-shaped (``(B, if_dim)``, or a codec stack ``(n, B, if_dim)``)
    or, with ``batch_size`` (the joint objective), per-row scalars ``(B,)`` / ``(n, B)``,
    or, with ``trunk_width`` (a shared generator trunk), trunk outputs and their
    gradients ``t`` of shape ``(rows, trunk_width)``;
    integer arrays must be row indices (``idx`` ``(B,)``, or a stack ``(n, B)``); the
    schema must be a list of column specs. Publication replies (``"x"``) are exempt from
    the shape rule (their content is still searched by :func:`find_leaks`).
    """
    out = []
    for n, (direction, kind, payload) in enumerate(messages):
        label = f"message {n} ({direction} {kind})"
        for key, v in payload_items(payload):
            leaf = re.split(r"[./]", key)[-1]
            stacked = leaf[:1] == "g" and leaf[1:].isdigit()
            if key.endswith("_refs.key"):
                bad = [k for k in v if re.split(r"[./]", k)[-1] not in ALLOWED_KEYS | {"x"}]
                if bad:
                    out.append(f"{label}: stacked tensors under unexpected keys {bad}")
                continue
            if leaf == "x" and kind in PUBLICATION:
                continue
            if not (leaf in ALLOWED_KEYS or stacked or ".grads." in f".{key}"):
                out.append(f"{label}: unexpected key {key!r}")
                continue
            if isinstance(v, torch.Tensor):
                v = v.detach().cpu()
                is_float, shape = v.is_floating_point(), tuple(v.shape)
            elif isinstance(v, np.ndarray):
                is_float, shape = v.dtype.kind == "f", v.shape
            else:
                if leaf == "schema" and not all(
                        set(c) >= {"name", "kind"} for c in json.loads(v)):
                    out.append(f"{label}: schema entries without name/kind")
                continue
            if is_float:
                gram = leaf == "G" or stacked
                ok = (len(shape) in (2, 3) and shape[-1] == if_dim) or (
                    gram and len(shape) in (2, 3) and shape[-1] == if_dim * (if_dim + 1) // 2
                ) or (
                    batch_size is not None and len(shape) in (1, 2) and shape[-1] == batch_size)
                if stacked and kind in PUBLICATION:
                    ok = True  # the codec's stack of the synthetic rows
                if leaf == "t":
                    ok = trunk_width is not None and len(shape) == 2 \
                        and shape[-1] == trunk_width
            else:
                ok = (leaf == "idx" and len(shape) == 1) or (stacked and len(shape) == 2)
            if not ok:
                out.append(f"{label}: {key} is a {'float' if is_float else 'integer'} array "
                           f"of shape {shape}")
    return out
