"""Wire format of the Flower app: message types, calls/replies <-> records, party state.

Both sides import the message-type constants from here (STYLE rule 3). Tensors travel as
``ArrayRecord`` s and small values (step numbers, sizes, strings) as ``ConfigRecord`` s;
nothing is pickled. One message carries an ordered list of :class:`Call` s (the fused
protocol), laid out as::

    "calls"      ConfigRecord {"methods": [...]}
    "c<i>.v"     ConfigRecord  scalar arguments of call i
    "c<i>.a"     ArrayRecord   tensor arguments of call i (nested dicts as "grads.h_real")

and the reply, for each call i, as ``"r<i>.v"`` / ``"r<i>.a"``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict

from vflgan_app.checkpoint import flatten_state, unflatten_state
from vflgan_app.transport import Call

# -- message types (category.action; handlers registered in client_app.py) -------------
QUERY_HELLO = "query.hello"  # handshake: party id, schema, id-list hash
TRAIN_STEP = "train.step"  # fused training calls (backward of t, forward of t+1 / chunks)
TRAIN_CHECKPOINT = "train.checkpoint"  # save or load the party's own checkpoint
QUERY_GENERATE = "query.generate"  # publication: each party samples its columns

# which Party methods each message type may run
ALLOWED_METHODS: dict[str, frozenset[str]] = {
    QUERY_HELLO: frozenset({"hello"}),
    TRAIN_STEP: frozenset({"critic_forward", "critic_backward", "generator_forward",
                           "generator_backward", "critic_features", "generator_features",
                           "critic_apply", "generator_apply"}),
    TRAIN_CHECKPOINT: frozenset({"save_checkpoint", "load_checkpoint"}),
    QUERY_GENERATE: frozenset({"sample"}),
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


def encode_calls(calls: Sequence[Call]) -> RecordDict:
    """The content of one message carrying ``calls`` in order."""
    content = RecordDict({"calls": ConfigRecord({"methods": [c.method for c in calls]})})
    for i, c in enumerate(calls):
        a, v = encode_values(c.args)
        content[f"c{i}.a"], content[f"c{i}.v"] = a, v
    return content


def decode_calls(content: RecordDict) -> list[Call]:
    """Inverse of :func:`encode_calls`.

    Raises:
        ValueError: the content has no call list.
    """
    if "calls" not in content:
        raise ValueError("message has no 'calls' record; expected a VFLGAN call list")
    methods = list(content["calls"]["methods"])
    return [Call(m, decode_values(content.get(f"c{i}.a"), content.get(f"c{i}.v")))
            for i, m in enumerate(methods)]


def encode_replies(replies: Sequence[dict]) -> RecordDict:
    """The content of the reply to a call list."""
    content = RecordDict({"replies": ConfigRecord({"n": len(replies)})})
    for i, r in enumerate(replies):
        a, v = encode_values(r)
        content[f"r{i}.a"], content[f"r{i}.v"] = a, v
    return content


def decode_replies(content: RecordDict) -> list[dict]:
    """Inverse of :func:`encode_replies`.

    Raises:
        ValueError: the content is not a reply list.
    """
    if "replies" not in content:
        raise ValueError("reply has no 'replies' record; expected a VFLGAN reply list")
    n = int(content["replies"]["n"])
    return [decode_values(content.get(f"r{i}.a"), content.get(f"r{i}.v")) for i in range(n)]


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
