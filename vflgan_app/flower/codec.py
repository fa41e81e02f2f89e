"""Wire format of the Flower app: message types, calls/replies <-> records, party state.

Both sides import the message-type constants from here (STYLE rule 3). Tensors travel as
``ArrayRecord`` s and small values (step numbers, sizes, strings) as ``ConfigRecord`` s;
nothing is pickled. One message carries an ordered list of :class:`Call` s (the fused
protocol), laid out as::

    "calls"      ConfigRecord {"methods": [...]}
    "c<i>.v"     ConfigRecord  scalar arguments of call i, plus "_refs.*": where its
                 tensors (nested dicts as "grads.h_real") sit in "stack"
    "stack"      ArrayRecord   every tensor of the message, stacked by (dtype, shape)

and the reply as ``"replies"`` ({"n"}), ``"r<i>.v"`` and ``"stack"``.

That layout is what the code reads; on the wire it is **packed** (:func:`pack`) into one
record, ``"wire"``: a JSON header (every record, key, scalar value, dtype and shape) and
one byte string holding every array's bytes back to back. Flower moves each record and
each array as its own object, one HTTP request each, so the plain layout costs 6-8
objects per exact-mode message and 80+ for a K = 32 chunk; packed, it is 3 (message,
record dict, ``"wire"``), or 5 plus flwr's 5 MiB chunks when the bytes exceed
:data:`INLINE_MAX` and travel as one uint8 array instead. :func:`unpack` rebuilds the
layout exactly and refuses any byte the header does not account for, so nothing can
ride along unseen (the wire audit reads messages through it).
"""

from __future__ import annotations

import base64
import io
import json
import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict
from flwr.common.constant import SType
from numpy.lib import format as npy

from vflgan_app.core.checkpoint import flatten_state, unflatten_state
from vflgan_app.core.protocol import METHOD_GROUPS, Call

# -- message types (category.action; handlers registered in client_app.py) -------------
QUERY_HELLO = "query.hello"  # handshake: party id, schema, id-list hash
TRAIN_STEP = "train.step"  # fused training calls (backward of t, forward of t+1 / chunks)
TRAIN_CHECKPOINT = "train.checkpoint"  # save or load the party's own checkpoint
QUERY_GENERATE = "query.generate"  # publication: each party samples its columns
QUERY_DELIVER = "query.deliver"  # after publication: the synthetic data to a recipient

# which Party methods each message type may run (the groups of core.protocol)
ALLOWED_METHODS: dict[str, frozenset[str]] = {
    QUERY_HELLO: METHOD_GROUPS["hello"],
    TRAIN_STEP: METHOD_GROUPS["step"],
    TRAIN_CHECKPOINT: METHOD_GROUPS["checkpoint"],
    QUERY_GENERATE: METHOD_GROUPS["generate"],
    QUERY_DELIVER: METHOD_GROUPS["deliver"],
}


def message_type_for(calls: Sequence[Call]) -> str:
    """The message type that may carry ``calls`` (all calls must share it).

    Raises:
        ValueError: the calls need different message types.
    """
    kinds = {next(k for k, allowed in ALLOWED_METHODS.items() if c.method in allowed)
             for c in calls}
    if len(kinds) != 1:
        raise ValueError(f"calls {[c.method for c in calls]} span message types "
                         f"{sorted(kinds)}; expected one")
    return kinds.pop()


# -- values <-> records --------------------------------------------------------------
def _split(values: dict[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """A flat-or-nested dict as ``({"a.b": array}, {"c": scalar})`` (keys dotted)."""
    arrays: dict[str, np.ndarray] = {}
    config: dict[str, Any] = {}

    def put(prefix: str, d: dict) -> None:
        for k, v in d.items():
            key = f"{prefix}{k}"
            if isinstance(v, torch.Tensor):
                arrays[key] = v.detach().cpu().numpy()
            elif isinstance(v, np.ndarray):
                arrays[key] = v
            elif isinstance(v, dict):
                put(key + ".", v)
            elif v is None:
                continue
            elif isinstance(v, bool | int | float | str | bytes | list):
                config[key] = v
            else:
                raise TypeError(f"codec: {key} is a {type(v).__name__}; expected a tensor, "
                                "array, scalar, string or list")

    put("", values)
    return arrays, config


def _nest(values: dict[str, Any], key: str, value: Any) -> None:
    """Set ``values["a"]["b"] = value`` for ``key = "a.b"``."""
    node = values
    parts = key.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value


def encode_values(values: dict[str, Any]) -> tuple[ArrayRecord, ConfigRecord]:
    """Split a flat-or-nested dict into tensors (ArrayRecord) and scalars (ConfigRecord)."""
    arrays, config = _split(values)
    return ArrayRecord({k: Array(a) for k, a in arrays.items()}), ConfigRecord(config)


def decode_values(arrays: ArrayRecord | None, config: ConfigRecord | None) -> dict[str, Any]:
    """Inverse of :func:`encode_values` (arrays come back as torch tensors)."""
    out: dict[str, Any] = dict(config.items()) if config is not None else {}
    for key, arr in (arrays.items() if arrays is not None else []):
        _nest(out, key, torch.from_numpy(np.array(arr.numpy(), copy=True)))
    return out


# The plain layout of a message before packing, as the code builds and reads it:
# ``{record name: ("config", {key: value}) | ("arrays", {key: numpy array})}``. Kept as
# plain numpy, not flwr ``Array`` s, on the hot path: each ``Array`` is an ``np.save``
# and each ``.numpy()`` an ``np.load``, which cost a 16-step joint chunk ~0.3 s a party.
_Layout = dict[str, tuple[str, dict[str, Any]]]


def _pack(items: Sequence[dict[str, Any]], prefix: str) -> _Layout:
    """Encode a list of dicts; tensors of equal shape and dtype are stacked into one array.

    Flower moves every Array as its own object, so a chunk of K steps sent as 3K small
    arrays costs thousands of requests; stacked, it is a handful per message.
    """
    layout: _Layout = {}
    groups: dict[tuple, list[np.ndarray]] = {}
    for i, item in enumerate(items):
        arrays, config = _split(item)
        refs_key, refs_group, refs_index = [], [], []
        for key, a in arrays.items():
            gkey = (a.dtype.str, a.shape)
            members = groups.setdefault(gkey, [])
            refs_key.append(key)
            refs_group.append(list(groups).index(gkey))
            refs_index.append(len(members))
            members.append(a)
        config["_refs.key"], config["_refs.group"] = refs_key, refs_group
        config["_refs.index"] = refs_index
        layout[f"{prefix}{i}.v"] = ("config", config)
    layout["stack"] = ("arrays", {f"g{g}": np.stack(m) for g, m in enumerate(groups.values())})
    return layout


def _unpack(layout: _Layout, prefix: str, n: int) -> list[dict[str, Any]]:
    stack = layout["stack"][1] if "stack" in layout else {}
    out = []
    for i in range(n):
        config = dict(layout[f"{prefix}{i}.v"][1])
        keys = config.pop("_refs.key", [])
        groups = config.pop("_refs.group", [])
        index = config.pop("_refs.index", [])
        values = decode_values(None, ConfigRecord(config))
        for key, g, j in zip(keys, groups, index, strict=True):
            _nest(values, key, torch.from_numpy(np.array(stack[f"g{g}"][j], copy=True)))
        out.append(values)
    return out


def _layout_of(content: RecordDict) -> _Layout:
    """A plain-layout ``RecordDict`` as a :data:`_Layout`."""
    layout: _Layout = {}
    for name, rec in content.items():
        if isinstance(rec, ConfigRecord):
            layout[name] = ("config", dict(rec.items()))
        elif isinstance(rec, ArrayRecord):
            layout[name] = ("arrays", {k: a.numpy() for k, a in rec.items()})
        else:
            raise TypeError(f"codec: record {name!r} is a {type(rec).__name__}; expected "
                            "a ConfigRecord or an ArrayRecord")
    return layout


def _record_dict(layout: _Layout) -> RecordDict:
    out = RecordDict()
    for name, (kind, items) in layout.items():
        out[name] = ConfigRecord(items) if kind == "config" else ArrayRecord(
            {k: Array(a) for k, a in items.items()})
    return out


# -- the packed wire form ---------------------------------------------------------------
WIRE = "wire"  # the one record of a packed message
WIRE_BYTES = "wire.bytes"  # the ArrayRecord of the bytes when they exceed INLINE_MAX
WIRE_VERSION = 1
INLINE_MAX = 4 * 2**20  # larger payloads travel as an Array, which flwr cuts into chunks
_DTYPE_KINDS = "biuf"  # bool, signed and unsigned integers, floats: nothing else travels


def pack(content: RecordDict) -> RecordDict:
    """``content`` (ConfigRecords and ArrayRecords) as one ``"wire"`` record.

    Raises:
        TypeError: a record that is neither, or an array of a dtype other than bool,
            integer or float.
    """
    return _wire(_layout_of(content))


def _wire(layout: _Layout) -> RecordDict:
    records, chunks, offset = [], [], 0
    for name, (kind, items) in layout.items():
        if kind == "config":
            records.append([name, "config", {k: _json_value(v) for k, v in items.items()}])
            continue
        entries = []
        for key, arr in items.items():
            a = np.require(arr, requirements="C")  # 0-d stays 0-d
            if a.dtype.kind not in _DTYPE_KINDS:
                raise TypeError(f"codec: {name}/{key} has dtype {a.dtype}; expected "
                                "bool, integer or float")
            entries.append([key, a.dtype.str, list(a.shape), offset, a.nbytes])
            chunks.append(a.reshape(-1).view(np.uint8) if a.nbytes else b"")
            offset += a.nbytes
        records.append([name, "arrays", entries])
    header = json.dumps({"v": WIRE_VERSION, "records": records, "nbytes": offset})
    out = RecordDict()
    if offset <= INLINE_MAX:
        out[WIRE] = ConfigRecord({"header": header,
                                  "payload": b"".join(chunks)})
    else:
        out[WIRE] = ConfigRecord({"header": header})
        out[WIRE_BYTES] = ArrayRecord({"payload": _byte_array(chunks, offset)})
    return out


def _byte_array(chunks: list, nbytes: int) -> Array:
    """``Array(np.frombuffer(b"".join(chunks), np.uint8))`` with one copy instead of three.

    flwr's ``Array`` holds an ``.npy`` file (``np.save``'s bytes): the header is written
    here and the chunks joined behind it.
    """
    head = io.BytesIO()
    npy.write_array_header_1_0(head, {"descr": "|u1", "fortran_order": False,
                                      "shape": (nbytes,)})
    return Array(dtype="uint8", shape=(nbytes,), stype=SType.NUMPY,
                 data=b"".join([head.getvalue(), *chunks]))


def is_packed(content: RecordDict) -> bool:
    """Whether ``content`` is in the packed wire form."""
    return WIRE in content


def unpack(content: RecordDict) -> RecordDict:
    """Inverse of :func:`pack`: the plain layout, every byte accounted for.

    Raises:
        ValueError: not a packed message, a header that does not parse or does not
            describe the bytes exactly (a gap, an overlap, trailing bytes, a size that
            does not match a dtype and shape), a dtype other than bool/integer/float,
            or records besides the packed ones.
    """
    return _record_dict(_unwire(content))


def _unwire(content: RecordDict) -> _Layout:
    names = set(content.keys())
    if WIRE not in names or not names <= {WIRE, WIRE_BYTES}:
        raise ValueError(f"message records {sorted(names)}; expected the packed form "
                         f"({WIRE!r}, optionally {WIRE_BYTES!r})")
    wire = content[WIRE]
    try:
        header = json.loads(str(wire["header"]))
        records, total = header["records"], int(header["nbytes"])
        version = header["v"]
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"packed message: unreadable header ({e})") from e
    if version != WIRE_VERSION:
        raise ValueError(f"packed message version {version!r}; expected {WIRE_VERSION}")
    if WIRE_BYTES in names:
        arr = content[WIRE_BYTES]["payload"].numpy()
        if arr.dtype != np.uint8 or arr.ndim != 1 or "payload" in wire:
            raise ValueError("packed message: expected the bytes either inline or as one "
                             "1-D uint8 array, not both")
        payload = arr
    else:
        payload = np.frombuffer(bytes(wire["payload"]) if "payload" in wire else b"",
                                np.uint8)
    if len(payload) != total:
        raise ValueError(f"packed message: {len(payload)} bytes; the header says {total}")
    try:
        out, offset = _unpack_records(records, payload)
    except (TypeError, KeyError) as e:  # a header of the wrong structure
        raise ValueError(f"packed message: malformed header ({type(e).__name__}: {e})") from e
    if offset != total:
        raise ValueError(f"packed message: the header accounts for {offset} of {total} "
                         "bytes; expected all of them")
    return out


def _unpack_records(records, payload: np.ndarray) -> tuple[_Layout, int]:
    out: _Layout = {}
    offset = 0
    for entry in records:
        name, kind, items = entry
        if kind == "config":
            out[name] = ("config", {k: _from_json(v) for k, v in items.items()})
        elif kind == "arrays":
            arrays = {}
            for key, dtype, shape, start, nbytes in items:
                dt = np.dtype(str(dtype))
                if dt.kind not in _DTYPE_KINDS:
                    raise ValueError(f"packed message: {name}/{key} has dtype {dt}; "
                                     "expected bool, integer or float")
                size = int(np.prod(shape, dtype=np.int64))
                if start != offset or nbytes != dt.itemsize * size \
                        or any(int(d) < 0 for d in shape):
                    raise ValueError(f"packed message: {name}/{key} at bytes {start}+"
                                     f"{nbytes} with shape {shape}; expected it at {offset} "
                                     f"with {dt.itemsize} bytes per value")
                arrays[key] = payload[start:start + nbytes].view(dt).reshape(shape)
                offset += nbytes
            out[name] = ("arrays", arrays)
        else:
            raise ValueError(f"packed message: record {name!r} of kind {kind!r}; expected "
                             "'config' or 'arrays'")
    return out, offset


def _json_value(v):
    if isinstance(v, bytes):
        return {"bytes": base64.b64encode(v).decode()}
    if isinstance(v, list) and v and isinstance(v[0], bytes):
        return {"bytes-list": [base64.b64encode(x).decode() for x in v]}
    return v


def _from_json(v):
    if isinstance(v, dict):
        if set(v) == {"bytes"}:
            return base64.b64decode(v["bytes"])
        if set(v) == {"bytes-list"}:
            return [base64.b64decode(x) for x in v["bytes-list"]]
        raise ValueError(f"packed message: config value {v!r}; expected a scalar, a list "
                         "or bytes")
    return v


def _plain(content: RecordDict) -> _Layout:
    return _unwire(content) if is_packed(content) else _layout_of(content)


def encode_calls(calls: Sequence[Call]) -> RecordDict:
    """The content of one message carrying ``calls`` in order (packed)."""
    layout = _pack([c.args for c in calls], "c")
    layout["calls"] = ("config", {"methods": [c.method for c in calls]})
    return _wire(layout)


def decode_calls(content: RecordDict, message_type: str | None = None) -> list[Call]:
    """Inverse of :func:`encode_calls`; with ``message_type``, only the calls it may carry.

    Raises:
        ValueError: the content has no call list, or a call that ``message_type`` may
            not carry.
    """
    layout = _plain(content)
    if "calls" not in layout:
        raise ValueError("message has no 'calls' record; expected a VFLGAN call list")
    methods = list(layout["calls"][1]["methods"])
    if message_type is not None:
        allowed = ALLOWED_METHODS.get(message_type, frozenset())
        bad = [m for m in methods if m not in allowed]
        if bad:
            raise ValueError(f"message {message_type!r} may not run {bad}; expected "
                             f"{sorted(allowed)}")
    return [Call(m, args) for m, args in zip(methods, _unpack(layout, "c", len(methods)),
                                             strict=True)]


def encode_replies(replies: Sequence[dict]) -> RecordDict:
    """The content of the reply to a call list (packed)."""
    layout = _pack(replies, "r")
    layout["replies"] = ("config", {"n": len(replies)})
    return _wire(layout)


def decode_replies(content: RecordDict) -> list[dict]:
    """Inverse of :func:`encode_replies`.

    Raises:
        ValueError: the content is not a reply list.
    """
    layout = _plain(content)
    if "replies" not in layout:
        raise ValueError("reply has no 'replies' record; expected a VFLGAN reply list")
    return _unpack(layout, "r", int(layout["replies"][1]["n"]))


# -- party state in context.state ----------------------------------------------------
STATE_ARRAYS = "party.arrays"
STATE_META = "party.meta"


def store_party_state(state: RecordDict, party, version: str) -> None:
    """Write ``party``'s modules, optimizers and in-flight forwards into ``state``."""
    tensors, skeleton = flatten_state(party.state_dict())
    state[STATE_ARRAYS] = ArrayRecord({k: Array(v.numpy()) for k, v in tensors.items()})
    state[STATE_META] = ConfigRecord({
        "skeleton": skeleton, "pending": json.dumps(party.pending_forwards()),
        "version": version, "party-id": int(party.party_id),
    })


def new_version() -> str:
    """A fresh version token for a stored party state."""
    return uuid.uuid4().hex


def stored_version(state: RecordDict) -> str | None:
    """The version token of the stored party state (None before the first store)."""
    return str(state[STATE_META]["version"]) if STATE_META in state else None


def restore_party_state(state: RecordDict, party) -> None:
    """Load the stored state into a freshly built ``party`` and replay its forwards."""
    meta = state[STATE_META]
    tensors = {k: torch.from_numpy(np.array(a.numpy(), copy=True))
               for k, a in state[STATE_ARRAYS].items()}
    party.load_state_dict(unflatten_state(tensors, str(meta["skeleton"])))
    party.replay_forwards(json.loads(str(meta["pending"])))
