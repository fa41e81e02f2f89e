"""Resumable checkpoints: each party saves only its own state, the server D_S + progress.

Layout (STYLE rule 17)::

    <party checkpoint dir>/checkpoint-<step>/party-<k>/{state.safetensors, state.json}
    <server checkpoint dir>/checkpoint-<step>/server/{state.safetensors, state.json, COMPLETE}

In a real federation the party folders live on the parties' machines (``checkpoint-dir``
in each SuperNode's ``--node-config``); in a simulation they may share one folder. A
checkpoint is taken at a flushed boundary (no step in flight), so every state in it is the
state after exactly ``step`` training steps. Since z, alpha, the batches and the Gumbel
noise all derive from ``(seed, step)``, a resumed run continues exactly as the
uninterrupted one would.

State dicts are stored as tensors (safetensors) plus a JSON skeleton for everything
else: no pickled Python objects, neither on disk nor on the wire (``codec`` reuses
:func:`flatten_state`).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path
from typing import Any

import torch

from trainkit import atomic_write_bytes, atomic_write_text

logger = logging.getLogger(__name__)

_TENSOR = "__tensor__"


# -- state dict <-> (tensors, JSON skeleton) -------------------------------------------
def flatten_state(obj: Any) -> tuple[dict[str, torch.Tensor], str]:
    """Split a nested state (dicts, lists, scalars, tensors) into tensors and JSON.

    Returns:
        ``({key: tensor}, skeleton)`` where the JSON skeleton holds every non-tensor
        value and a ``{"__tensor__": key}`` placeholder for each tensor.
    """
    tensors: dict[str, torch.Tensor] = {}

    def walk(x: Any, path: str) -> Any:
        if isinstance(x, torch.Tensor):
            tensors[path] = x.detach().cpu().contiguous()
            return {_TENSOR: path}
        if isinstance(x, dict):
            return {"__dict__": [[_key(k), walk(v, f"{path}.{k}")] for k, v in x.items()]}
        if isinstance(x, list | tuple):
            return [walk(v, f"{path}.{i}") for i, v in enumerate(x)]
        if x is None or isinstance(x, bool | int | float | str):
            return x
        raise TypeError(f"state: {path} is a {type(x).__name__}; expected tensors, "
                        "dicts, lists and scalars only")

    skeleton = walk(obj, "s")
    return tensors, json.dumps(skeleton)


def unflatten_state(tensors: dict[str, torch.Tensor], skeleton: str) -> Any:
    """Inverse of :func:`flatten_state`."""

    def build(x: Any) -> Any:
        if isinstance(x, dict):
            if _TENSOR in x:
                return tensors[x[_TENSOR]]
            return {_unkey(k): build(v) for k, v in x["__dict__"]}
        if isinstance(x, list):
            return [build(v) for v in x]
        return x

    return build(json.loads(skeleton))


def _key(k: Any) -> Any:
    # optimizer state dicts use int keys; JSON object keys would turn them into str
    return ["i", k] if isinstance(k, int) else ["s", str(k)]


def _unkey(k: list) -> Any:
    return int(k[1]) if k[0] == "i" else k[1]


def write_state(folder: Path, state: Any) -> None:
    """Write a nested state as ``state.safetensors`` + ``state.json`` (each file atomically)."""
    from safetensors.torch import save

    tensors, skeleton = flatten_state(state)
    atomic_write_bytes(folder / "state.safetensors", save(tensors) if tensors else b"")
    atomic_write_text(folder / "state.json", skeleton)


def read_state(folder: Path) -> Any:
    """Read a state written by :func:`write_state` (no pickle involved)."""
    from safetensors.torch import load

    if not (folder / "state.json").exists():
        raise FileNotFoundError(f"checkpoint state not found: {folder / 'state.json'}")
    raw = (folder / "state.safetensors").read_bytes()
    tensors = load(raw) if raw else {}
    return unflatten_state(tensors, (folder / "state.json").read_text())


# -- party side ----------------------------------------------------------------------
def party_folder(root: str | Path | None, step: int, party_id: int) -> Path:
    """``<root>/checkpoint-<step>/party-<k>``."""
    if root is None:
        raise ValueError("checkpoint: this party has no checkpoint_dir; expected a folder "
                         "(node-config checkpoint-dir, or run-config checkpoint-dir)")
    return Path(root) / f"checkpoint-{int(step)}" / f"party-{int(party_id)}"


def save_party_checkpoint(root: str | Path | None, step: int, party) -> Path:
    """Write ``party.state_dict()`` (its own modules and optimizers only)."""
    folder = party_folder(root, step, party.party_id)
    write_state(folder, party.state_dict())
    atomic_write_text(folder / "schema.json", party.data.schema.to_json())
    return folder


def load_party_checkpoint(root: str | Path | None, step: int, party) -> None:
    """Restore ``party`` from its own folder of ``checkpoint-<step>``.

    Raises:
        FileNotFoundError: this party has no such checkpoint.
        ValueError: the checkpoint belongs to another party or another schema.
    """
    folder = party_folder(root, step, party.party_id)
    saved_schema = folder / "schema.json"
    if saved_schema.exists() and saved_schema.read_text() != party.data.schema.to_json():
        raise ValueError(f"checkpoint {folder}: saved with another column schema than "
                         f"party {party.party_id} holds now")
    party.load_state_dict(read_state(folder))


# -- server side ---------------------------------------------------------------------
def server_folder(root: str | Path, step: int) -> Path:
    """``<root>/checkpoint-<step>/server``."""
    return Path(root) / f"checkpoint-{int(step)}" / "server"


def save_server_checkpoint(root: str | Path, step: int, state: dict, keep: int = 2) -> Path:
    """Write the server's state and mark the checkpoint complete; keep the last ``keep``."""
    folder = server_folder(root, step)
    write_state(folder, state)
    atomic_write_text(folder / "COMPLETE", f"{int(step)}\n")
    steps = sorted(s for s in completed_steps(root) if s != step)
    for old in steps[: max(0, len(steps) - (keep - 1))]:
        shutil.rmtree(Path(root) / f"checkpoint-{old}", ignore_errors=True)
    return folder


def completed_steps(root: str | Path) -> list[int]:
    """Steps with a complete server checkpoint under ``root``, ascending."""
    root = Path(root)
    if not root.exists():
        return []
    out = []
    for d in root.iterdir():
        m = re.fullmatch(r"checkpoint-(\d+)", d.name)
        if m and (d / "server" / "COMPLETE").exists():
            out.append(int(m.group(1)))
    return sorted(out)


def latest_step(root: str | Path) -> int | None:
    """The newest complete checkpoint step, or None."""
    steps = completed_steps(root)
    return steps[-1] if steps else None


def load_server_checkpoint(root: str | Path, step: int) -> dict:
    """Read the server's state of ``checkpoint-<step>``."""
    return read_state(server_folder(root, step))
