"""Wire format of the Flower app: message types, calls/replies <-> records, party state.

Both sides import the message-type constants from here (STYLE rule 3). Tensors travel as
``ArrayRecord`` s and small values (step numbers, sizes, strings) as ``ConfigRecord`` s;
nothing is pickled. One message carries an ordered list of :class:`Call` s (the fused
protocol), laid out as::

    "calls"      ConfigRecord {"methods": [...]}
    "c<i>.v"     ConfigRecord  scalar arguments of call i, plus "_refs.*": where its
                 tensors (nested dicts as "grads.h_real") sit in "stack"
    "stack"      ArrayRecord   every tensor of the message, stacked by (dtype, shape)

and the reply as ``"replies"`` ({"n"}), ``"r<i>.v"`` and ``"stack"``. Stacking matters:
Flower moves each Array as a separate object, so a K-step chunk sent as 3K arrays costs
thousands of requests per message.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict

from vflgan_app.core.checkpoint import flatten_state, unflatten_state
from vflgan_app.core.protocol import METHOD_GROUPS, Call

# -- message types (category.action; handlers registered in client_app.py) -------------
QUERY_HELLO = "query.hello"  # handshake: party id, schema, id-list hash
TRAIN_STEP = "train.step"  # fused training calls (backward of t, forward of t+1 / chunks)
TRAIN_CHECKPOINT = "train.checkpoint"  # save or load the party's own checkpoint
QUERY_GENERATE = "query.generate"  # publication: each party samples its columns

# which Party methods each message type may run (the groups of core.protocol)
ALLOWED_METHODS: dict[str, frozenset[str]] = {
    QUERY_HELLO: METHOD_GROUPS["hello"],
    TRAIN_STEP: METHOD_GROUPS["step"],
    TRAIN_CHECKPOINT: METHOD_GROUPS["checkpoint"],
    QUERY_GENERATE: METHOD_GROUPS["generate"],
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
def encode_values(values: dict[str, Any]) -> tuple[ArrayRecord, ConfigRecord]:
    """Split a flat-or-nested dict into tensors (ArrayRecord) and scalars (ConfigRecord)."""
    arrays: dict[str, Array] = {}
    config: dict[str, Any] = {}

    def put(prefix: str, d: dict) -> None:
        for k, v in d.items():
            key = f"{prefix}{k}"
            if isinstance(v, torch.Tensor):
                arrays[key] = Array(v.detach().cpu().numpy())
            elif isinstance(v, np.ndarray):
                arrays[key] = Array(v)
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
    return ArrayRecord(arrays), ConfigRecord(config)


def decode_values(arrays: ArrayRecord | None, config: ConfigRecord | None) -> dict[str, Any]:
    """Inverse of :func:`encode_values` (arrays come back as torch tensors)."""
    out: dict[str, Any] = dict(config.items()) if config is not None else {}
    for key, arr in (arrays.items() if arrays is not None else []):
        parts = key.split(".")
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = torch.from_numpy(np.array(arr.numpy(), copy=True))
    return out


def _pack(items: Sequence[dict[str, Any]], prefix: str) -> RecordDict:
    """Encode a list of dicts; tensors of equal shape and dtype are stacked into one Array.

    Flower moves every Array as its own object, so a chunk of K steps sent as 3K small
    arrays costs thousands of requests; stacked, it is a handful per message.
    """
    content = RecordDict()
    groups: dict[tuple, list[np.ndarray]] = {}
    for i, item in enumerate(items):
        arrays, config = encode_values(item)
        refs_key, refs_group, refs_index = [], [], []
        for key, arr in arrays.items():
            a = arr.numpy()
            gkey = (a.dtype.str, a.shape)
            members = groups.setdefault(gkey, [])
            refs_key.append(key)
            refs_group.append(list(groups).index(gkey))
            refs_index.append(len(members))
            members.append(a)
        config["_refs.key"], config["_refs.group"] = refs_key, refs_group
        config["_refs.index"] = refs_index
        content[f"{prefix}{i}.v"] = config
    content["stack"] = ArrayRecord({f"g{g}": Array(np.stack(m))
                                    for g, m in enumerate(groups.values())})
    return content


def _unpack(content: RecordDict, prefix: str, n: int) -> list[dict[str, Any]]:
    stack = {k: a.numpy() for k, a in content["stack"].items()} if "stack" in content else {}
    out = []
    for i in range(n):
        config = dict(content[f"{prefix}{i}.v"].items())
        keys = config.pop("_refs.key", [])
        groups = config.pop("_refs.group", [])
        index = config.pop("_refs.index", [])
        values = decode_values(None, ConfigRecord(config))
        for key, g, j in zip(keys, groups, index, strict=True):
            node = values
            parts = key.split(".")
            for p in parts[:-1]:
                node = node.setdefault(p, {})
            node[parts[-1]] = torch.from_numpy(np.array(stack[f"g{g}"][j], copy=True))
        out.append(values)
    return out


def encode_calls(calls: Sequence[Call]) -> RecordDict:
    """The content of one message carrying ``calls`` in order."""
    content = _pack([c.args for c in calls], "c")
    content["calls"] = ConfigRecord({"methods": [c.method for c in calls]})
    return content


def decode_calls(content: RecordDict, message_type: str | None = None) -> list[Call]:
    """Inverse of :func:`encode_calls`; with ``message_type``, only the calls it may carry.

    Raises:
        ValueError: the content has no call list, or a call that ``message_type`` may
            not carry.
    """
    if "calls" not in content:
        raise ValueError("message has no 'calls' record; expected a VFLGAN call list")
    methods = list(content["calls"]["methods"])
    if message_type is not None:
        allowed = ALLOWED_METHODS.get(message_type, frozenset())
        bad = [m for m in methods if m not in allowed]
        if bad:
            raise ValueError(f"message {message_type!r} may not run {bad}; expected "
                             f"{sorted(allowed)}")
    return [Call(m, args) for m, args in zip(methods, _unpack(content, "c", len(methods)),
                                             strict=True)]


def encode_replies(replies: Sequence[dict]) -> RecordDict:
    """The content of the reply to a call list."""
    content = _pack(replies, "r")
    content["replies"] = ConfigRecord({"n": len(replies)})
    return content


def decode_replies(content: RecordDict) -> list[dict]:
    """Inverse of :func:`encode_replies`.

    Raises:
        ValueError: the content is not a reply list.
    """
    if "replies" not in content:
        raise ValueError("reply has no 'replies' record; expected a VFLGAN reply list")
    return _unpack(content, "r", int(content["replies"]["n"]))


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
