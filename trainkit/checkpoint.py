"""Atomic writes and checkpoints: write to a temporary file, fsync, then rename.

A crash mid-write leaves the previous file intact; a file that is truncated anyway
(copied partly, disk full elsewhere) raises :class:`CheckpointError` naming the path.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch


class CheckpointError(RuntimeError):
    """A checkpoint file exists but cannot be read (truncated or corrupt)."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes the file 0600; give it the mode a plain open() would (0644 under
        # the usual umask), so published outputs are readable like any other file
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with _suppress_missing():
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    return atomic_write_text(
        path, json.dumps(obj, indent=2, sort_keys=True, default=str)
    )


def state_fingerprint(state: Mapping[str, torch.Tensor] | torch.nn.Module,
                      length: int = 16) -> str:
    """A short sha256 of a state dict (or a module's): names, dtypes, shapes and bytes.

    Two models get the same fingerprint exactly when every tensor is bit-identical, so
    a result can record which weights produced it and a rebuilt model can be told apart
    from the one that was measured. Order of the keys does not matter.
    """
    if isinstance(state, torch.nn.Module):
        state = state.state_dict()
    if not 1 <= length <= 64:
        raise ValueError(f"length: got {length}, expected 1..64 hex digits")
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name]
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"state[{name!r}]: got {type(t).__name__}, expected a tensor")
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:length]


def save_checkpoint(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` ``obj`` to ``path`` atomically (temp file + rename)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """Load a checkpoint written by :func:`save_checkpoint` (tensors, dicts, lists, scalars).

    Nothing but plain data is unpickled (``torch.load(weights_only=True)``): a file that
    would construct other objects or call functions is refused with CheckpointError.

    Args:
        path: the file.
        map_location: passed to ``torch.load``.

    Raises:
        FileNotFoundError: the file does not exist.
        CheckpointError: the file is empty, truncated or not a torch checkpoint.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes): it is truncated")
    try:
        # weights_only: tensors, containers and scalars only; a crafted pickle that would
        # run code is refused (a checkpoint may come from someone else)
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises several types for a cut file
        raise CheckpointError(
            f"checkpoint {path} ({size} bytes) could not be read; it is probably "
            f"truncated or corrupt: {type(e).__name__}: {e}"
        ) from e


class _suppress_missing:
    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        return exc_type is not None and issubclass(exc_type, FileNotFoundError)
