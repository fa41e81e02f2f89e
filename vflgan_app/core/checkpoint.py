"""Resumable checkpoints: each party saves only its own state, the server D_S + progress.

Layout (STYLE rule 17)::

    <party checkpoint dir>/checkpoint-<step>/party-<k>/{state.safetensors, state.json,
                                                       schema.json, run.json}
    <server checkpoint dir>/checkpoint-<step>/server/{state.safetensors, state.json,
                                                      run.json, COMPLETE}

In a real federation the party folders live on the parties' machines (``checkpoint-dir``
in each SuperNode's ``--node-config``); in a simulation they may share one folder. A
checkpoint is taken at a flushed boundary (no step in flight), so every state in it is the
state after exactly ``step`` training steps. Since z, alpha, the batches and the Gumbel
noise all derive from ``(seed, step)``, a resumed run continues exactly as the
uninterrupted one would.

Every folder knows its run (``run.json``, :class:`RunIdentity`): a random run id drawn
when a fresh run starts, and the run's config fingerprint (:func:`config_fingerprint`).
A resume refuses a folder of another run or one written with other settings, naming
the field. Each folder is written into a temporary sibling and renamed into place, so a
process killed mid-write leaves no folder a resume would pick; the server's folder
(with ``COMPLETE``) is renamed last, after every party's.

State dicts are stored as tensors (safetensors) plus a JSON skeleton for everything
else: no pickled Python objects, neither on disk nor on the wire (``codec`` reuses
:func:`flatten_state`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from trainkit import CheckpointError, atomic_write_bytes, atomic_write_text

if TYPE_CHECKING:
    from vflgan_app.architectures import Architecture
    from vflgan_app.config import VFLGANConfig

logger = logging.getLogger(__name__)

_TENSOR = "__tensor__"
RUN_FILE = "run.json"
COMPLETE = "COMPLETE"
#: Checkpoints kept by the server and by every party (the newest ones).
DEFAULT_KEEP = 2
_STEP_DIR = re.compile(r"checkpoint-(\d+)")


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
    # always a valid safetensors file (16 bytes without tensors): 0 bytes means truncated
    atomic_write_bytes(folder / "state.safetensors", save(tensors))
    atomic_write_text(folder / "state.json", skeleton)


def read_state(folder: Path) -> Any:
    """Read a state written by :func:`write_state` (no pickle involved).

    Raises:
        FileNotFoundError: ``state.json`` or ``state.safetensors`` is missing.
        CheckpointError: a file is empty, truncated or corrupt (the message names it).
    """
    from safetensors.torch import load

    folder = Path(folder)
    skeleton_path, tensors_path = folder / "state.json", folder / "state.safetensors"
    for path in (skeleton_path, tensors_path):
        if not path.exists():
            raise FileNotFoundError(f"checkpoint state not found: {path}")
    raw = tensors_path.read_bytes()
    try:
        # 0 bytes: an older checkpoint without tensors, or a truncated file; the
        # skeleton below tells the two apart
        tensors = load(raw) if raw else {}
    except Exception as e:  # safetensors raises SafetensorError for a cut file
        raise CheckpointError(f"checkpoint file {tensors_path} ({len(raw)} bytes) cannot "
                              f"be read; it is truncated or corrupt: {e}") from e
    skeleton = _read_text(skeleton_path)
    try:
        return unflatten_state(tensors, skeleton)
    except json.JSONDecodeError as e:
        raise CheckpointError(f"checkpoint file {skeleton_path} ({len(skeleton)} bytes) is "
                              f"not valid JSON; it is truncated or corrupt: {e}") from e
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise CheckpointError(f"checkpoint files {tensors_path} ({len(raw)} bytes) and "
                              f"{skeleton_path} do not match (missing tensor {e}); one of "
                              "them is truncated or corrupt") from e


def _read_text(path: Path) -> str:
    try:
        return path.read_text()
    except UnicodeDecodeError as e:
        raise CheckpointError(f"checkpoint file {path} is not UTF-8 text; it is corrupt: "
                              f"{e}") from e


def write_folder_atomically(folder: Path, write: Callable[[Path], None]) -> Path:
    """Write a whole folder into a temporary sibling, then rename it into place.

    A process killed mid-write leaves only a hidden ``.<name>.*.tmp`` sibling, which no
    reader picks and the next save of the same checkpoint root removes. An existing
    ``folder`` (the same step saved again after a resume) is swapped out and removed.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        write(tmp)
        if folder.exists():
            old = folder.with_name(f".{folder.name}.{uuid.uuid4().hex[:8]}.old")
            os.replace(folder, old)
            os.replace(tmp, folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, folder)
        _fsync_dir(folder.parent)
    except Exception:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for leftover in folder.parent.glob(f".{folder.name}.*"):  # of an earlier, killed write
        if _is_leftover(leftover):
            shutil.rmtree(leftover, ignore_errors=True)
    return folder


def _fsync_dir(path: Path) -> None:
    # the rename is durable only once the parent directory is flushed (POSIX)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _is_leftover(path: Path) -> bool:
    return path.name.startswith(".") and path.name.endswith((".tmp", ".old"))


# -- which run wrote a checkpoint ----------------------------------------------------
#: Config fields left out of the fingerprint: they may change when a run resumes,
#: because they do not change what a training step computes. Everything else of
#: :class:`~vflgan_app.config.VFLGANConfig` (and of its ``dp``) is fingerprinted,
#: including fields added later. Loop and runtime settings are not config fields and
#: are never fingerprinted (checkpoint cadence and the number kept, the run folder or
#: ``flower.run-name``, timeouts, ``flower.evaluate``, ``flower.cache-party``, resume,
#: overwrite), except ``steps_per_round`` (K), which changes the updates.
RESUME_MAY_CHANGE: dict[str, str] = {
    "steps": "the step to train to (a resume may train further)",
    "n_samples": "rows to publish",
    "data_root": "where the dataset files are (the rows are fingerprinted: data.*)",
    "output_dir": "where outputs go",
    "device": "where the modules run",
    "threads": "CPU threads",
    "progress": "logging",
    "log_every": "logging",
}
# preset values: ``None`` in the config means "the preset's", fingerprinted resolved
_RESOLVED = ("batch_size", "lr", "latent_dim", "lambda_gp")


def config_fingerprint(config: VFLGANConfig, arch: Architecture | None = None,
                       steps_per_round: int = 1) -> dict[str, Any]:
    """The settings a resumed run must share with the run that wrote the checkpoint.

    Args:
        config: the run's config.
        arch: the architecture the run trains (default: the config's preset with its
            overrides); its sizes are fingerprinted as ``architecture.<field>``.
        steps_per_round: K (1 = exact mode).

    Returns:
        ``{field: value}``, JSON-plain: every config field but
        :data:`RESUME_MAY_CHANGE`, preset values resolved, ``dp.<field>`` for DP.
    """
    arch = arch or config.resolve_architecture()
    values = config.to_dict()
    dp = values.pop("dp")
    values.pop("architecture", None)  # a preset name: its resolved sizes are below
    out: dict[str, Any] = {k: v for k, v in values.items() if k not in RESUME_MAY_CHANGE}
    out.update({name: getattr(arch, name) for name in _RESOLVED})
    out.update({f"architecture.{k}": v for k, v in dataclasses.asdict(arch).items()
                if k not in _RESOLVED})
    out.update({f"dp.{k}": v for k, v in dp.items()})
    out["steps_per_round"] = int(steps_per_round)
    return _plain(out)


def _plain(fingerprint: Mapping[str, Any]) -> dict[str, Any]:
    # what a JSON round trip gives (tuples -> lists), so saved and current compare equal
    return json.loads(json.dumps(dict(fingerprint), sort_keys=True))


def _letters(raw: bytes) -> str:
    # letters a-p for the 16 nibble values: an id or digest carries no digits, so nothing
    # in it reads as a number on the wire (the wire audit searches strings for numbers)
    return "".join("abcdefghijklmnop"[b >> 4] + "abcdefghijklmnop"[b & 15] for b in raw)


def fingerprint_digest(fingerprint: Mapping[str, Any]) -> str:
    """A short digest of a fingerprint (what parties store and compare)."""
    canonical = json.dumps(_plain(fingerprint), sort_keys=True).encode()
    return _letters(hashlib.sha256(canonical).digest()[:16])


@dataclasses.dataclass(frozen=True)
class RunIdentity:
    """Which run a checkpoint belongs to, written as ``run.json`` into every folder.

    The server's ``run.json`` holds the whole fingerprint (a resume names the field that
    differs); a party's holds its digest, which is all the server sends it.

    Attributes:
        run_id: random id (32 letters) drawn when a fresh run starts; a resumed run
            keeps it.
        digest: :func:`fingerprint_digest` of the fingerprint.
        fingerprint: the run's settings (:func:`config_fingerprint` plus ``data.*``:
            row count and id-list hash); None where only the digest is known (a party).
    """

    run_id: str
    digest: str
    fingerprint: dict[str, Any] | None = None

    @classmethod
    def new(cls, fingerprint: Mapping[str, Any], run_id: str | None = None) -> RunIdentity:
        """A run's identity; without ``run_id`` a fresh run's (a new random id)."""
        fp = _plain(fingerprint)
        return cls(run_id or _letters(os.urandom(16)), fingerprint_digest(fp), fp)

    def to_call(self, step: int) -> dict[str, Any]:
        """Arguments of a party checkpoint call: step, run id, fingerprint digest."""
        return {"step": int(step), "run_id": self.run_id, "fingerprint": self.digest}

    @classmethod
    def from_call(cls, run_id: str, fingerprint: str) -> RunIdentity:
        """Inverse of :meth:`to_call` (a party's view: the digest only)."""
        return cls(str(run_id), str(fingerprint))

    def write(self, folder: Path, step: int, **extra: Any) -> None:
        """Write ``run.json`` into ``folder``."""
        meta = {"run_id": self.run_id, "step": int(step), **extra,
                "fingerprint_digest": self.digest}
        if self.fingerprint is not None:
            meta["fingerprint"] = self.fingerprint
        atomic_write_text(folder / RUN_FILE, json.dumps(meta, indent=1, sort_keys=True))

    @classmethod
    def read(cls, folder: Path) -> RunIdentity:
        """Read the ``run.json`` of ``folder``.

        Raises:
            FileNotFoundError: no ``run.json`` (a folder written before run ids).
            CheckpointError: the file is empty, truncated or corrupt.
        """
        path = Path(folder) / RUN_FILE
        if not path.exists():
            raise FileNotFoundError(f"checkpoint {folder} has no {RUN_FILE}; expected one "
                                    "in every checkpoint folder (it names the run)")
        text = _read_text(path)
        try:
            meta = json.loads(text)
            fp = meta.get("fingerprint")
            return cls(str(meta["run_id"]), str(meta["fingerprint_digest"]),
                       None if fp is None else _plain(fp))
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
            raise CheckpointError(f"checkpoint file {path} ({len(text)} bytes) cannot be "
                                  f"read; it is truncated or corrupt: "
                                  f"{type(e).__name__}: {e}") from e

    def check(self, saved: RunIdentity, where: str, *, same_run: bool = True) -> None:
        """Refuse ``saved`` (read from ``where``) unless it matches this run.

        Args:
            saved: the identity read from a checkpoint folder.
            where: the folder, for the message (e.g. ``"checkpoint-400"``).
            same_run: also require the same run id (a party's folder must be one of
                this run's; the server adopts the run id of the checkpoint it resumes).

        Raises:
            ValueError: a fingerprint field differs (the message names each one, where
                both fingerprints are known; else the digests), or the folder belongs
                to another run.
        """
        if saved.fingerprint is not None and self.fingerprint is not None:
            diff = fingerprint_diff(saved.fingerprint, self.fingerprint)
            if diff:
                was = ", ".join(f"{k}={_show(a)}" for k, a, _ in diff)
                now = ", ".join(f"{k}={_show(b)}" for k, _, b in diff)
                raise ValueError(
                    f"{where} was written with {was}, this run has {now}; resume with "
                    "the same settings or start a new run (on resume only "
                    f"{', '.join(sorted(RESUME_MAY_CHANGE))} and the loop's settings "
                    "may change)")
        if same_run and saved.run_id != self.run_id:
            raise ValueError(
                f"{where} belongs to run {saved.run_id}, this run is {self.run_id}: a "
                "folder of another run (a reused checkpoint folder?); refusing to resume "
                "from it")
        if saved.digest != self.digest:
            raise ValueError(
                f"{where} was written with other settings (fingerprint digest "
                f"{saved.digest}, this run has {self.digest}); refusing to resume from it")


_MISSING = object()


def fingerprint_diff(saved: Mapping[str, Any], current: Mapping[str, Any]
                     ) -> list[tuple[str, Any, Any]]:
    """``[(field, saved value, current value)]`` for every field that differs."""
    keys = sorted(set(saved) | set(current))
    return [(k, saved.get(k, _MISSING), current.get(k, _MISSING)) for k in keys
            if saved.get(k, _MISSING) != current.get(k, _MISSING)]


def _show(v: Any) -> str:
    if v is _MISSING:
        return "<not recorded>"
    return "none" if v is None else str(v)


# -- party side ----------------------------------------------------------------------
def party_folder(root: str | Path | None, step: int, party_id: int) -> Path:
    """``<root>/checkpoint-<step>/party-<k>``."""
    if root is None:
        raise ValueError("checkpoint: this party has no checkpoint_dir; expected a folder "
                         "(node-config checkpoint-dir, or run-config checkpoint-dir)")
    return Path(root) / f"checkpoint-{int(step)}" / f"party-{int(party_id)}"


def _step_dirs(root: str | Path) -> dict[int, Path]:
    root = Path(root)
    if not root.is_dir():
        return {}
    out = {}
    for d in root.iterdir():
        m = _STEP_DIR.fullmatch(d.name)
        if m and d.is_dir():
            out[int(m.group(1))] = d
    return out


def party_steps(root: str | Path | None, party_id: int, run_id: str | None = None
                ) -> list[int]:
    """Steps with a folder of ``party_id`` under ``root`` (of run ``run_id`` if given)."""
    if root is None:
        return []
    out = []
    for step, d in _step_dirs(root).items():
        folder = d / f"party-{int(party_id)}"
        if not folder.is_dir():
            continue
        if run_id is not None:
            try:
                if RunIdentity.read(folder).run_id != run_id:
                    continue
            except (FileNotFoundError, CheckpointError):
                continue
        out.append(step)
    return sorted(out)


def start_party_checkpoints(root: str | Path | None, party_id: int,
                            overwrite: bool = False) -> None:
    """A fresh run begins: refuse a folder holding this party's checkpoints.

    Raises:
        FileExistsError: ``root`` holds checkpoints of this party and not ``overwrite``.
    """
    if root is None:
        party_folder(root, 0, party_id)  # raises: no folder
    steps = party_steps(root, party_id)
    if steps and not overwrite:
        raise FileExistsError(
            f"party {party_id}: checkpoint folder {root} already holds checkpoint-"
            f"{steps[-1]} of a previous run ({len(steps)} checkpoint(s)); resume that run "
            "or start over with overwrite (CLI --overwrite, run config "
            "flower.overwrite=true), which deletes them")
    for step in steps:
        _remove_part(Path(root) / f"checkpoint-{step}", f"party-{int(party_id)}")


def save_party_checkpoint(root: str | Path | None, step: int, party, identity: RunIdentity,
                          keep: int = DEFAULT_KEEP) -> Path:
    """Write ``party.state_dict()`` (its own modules and optimizers only), atomically.

    Then remove this run's older folders of this party, keeping the newest ``keep``.
    """
    folder = party_folder(root, step, party.party_id)

    def write(tmp: Path) -> None:
        write_state(tmp, party.state_dict())
        atomic_write_text(tmp / "schema.json", party.data.schema.to_json())
        identity.write(tmp, step, party_id=int(party.party_id))

    write_folder_atomically(folder, write)
    steps = party_steps(root, party.party_id, identity.run_id)
    for old in steps[: max(0, len(steps) - max(1, keep))]:
        _remove_part(Path(root) / f"checkpoint-{old}", f"party-{int(party.party_id)}")
    return folder


def check_party_checkpoint(root: str | Path | None, step: int, party,
                           identity: RunIdentity) -> Any:
    """Everything a resume needs from this party's folder, read and checked; its state.

    Raises:
        FileNotFoundError: this party has no such checkpoint (the message names the
            folder).
        ValueError: the folder belongs to another run, was written with other settings
            or another column schema.
        CheckpointError: a file of it is empty, truncated or corrupt.
    """
    folder = party_folder(root, step, party.party_id)
    if not folder.is_dir():
        have = party_steps(root, party.party_id)
        raise FileNotFoundError(
            f"party {party.party_id}: no checkpoint-{step} in its checkpoint folder "
            f"{root} (missing {folder}; it holds {have or 'none'}); every party must "
            "hold the step the server resumes")
    identity.check(RunIdentity.read(folder), f"party {party.party_id}: {folder}")
    saved_schema = folder / "schema.json"
    if saved_schema.exists() and _read_text(saved_schema) != party.data.schema.to_json():
        raise ValueError(f"checkpoint {folder}: saved with another column schema than "
                         f"party {party.party_id} holds now")
    state = read_state(folder)
    if not isinstance(state, dict) or state.get("party_id") != party.party_id:
        got = state.get("party_id") if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"checkpoint {folder}: holds the state of party {got}; expected "
                         f"party {party.party_id}")
    return state


def load_party_checkpoint(root: str | Path | None, step: int, party,
                          identity: RunIdentity) -> None:
    """Restore ``party`` from its own folder of ``checkpoint-<step>``.

    Raises:
        FileNotFoundError, ValueError, CheckpointError: as :func:`check_party_checkpoint`;
            CheckpointError also for a state that lacks one of the party's entries.
    """
    state = check_party_checkpoint(root, step, party, identity)
    folder = party_folder(root, step, party.party_id)
    try:
        party.load_state_dict(state)
    except KeyError as e:
        raise CheckpointError(f"checkpoint {folder}: the state has no entry {e}; it is "
                              "truncated or from another version") from e


def _remove_part(step_dir: Path, name: str) -> None:
    """Remove ``step_dir/name`` (and leftovers); then ``step_dir`` if nothing is left."""
    shutil.rmtree(step_dir / name, ignore_errors=True)
    for leftover in step_dir.glob(f".{name}.*"):
        if _is_leftover(leftover):
            shutil.rmtree(leftover, ignore_errors=True)
    try:
        step_dir.rmdir()  # only when empty: other parties' folders may share it
    except OSError:
        pass


# -- server side ---------------------------------------------------------------------
def server_folder(root: str | Path, step: int) -> Path:
    """``<root>/checkpoint-<step>/server``."""
    return Path(root) / f"checkpoint-{int(step)}" / "server"


def start_server_checkpoints(root: str | Path, overwrite: bool = False,
                             remove: bool = False) -> None:
    """A fresh run begins in ``root``: refuse a folder that holds anything.

    Args:
        root: the server's checkpoint folder.
        overwrite: allowed to delete the ``checkpoint-<step>`` folders found there.
        remove: delete them now (after every party has agreed).

    Raises:
        FileExistsError: ``root`` holds checkpoints and not ``overwrite``, or holds
            anything but ``checkpoint-<step>`` folders (never deleted).
    """
    root = Path(root)
    if not root.is_dir():
        return
    entries = sorted(root.iterdir())
    other = [e.name for e in entries if not (_STEP_DIR.fullmatch(e.name) and e.is_dir())]
    if other:
        raise FileExistsError(
            f"checkpoint folder {root} holds files that are not checkpoints ({other[:5]}); "
            "expected an empty folder or checkpoint-<step> folders only; nothing deleted")
    if entries and not overwrite:
        steps = completed_steps(root)
        newest = f"checkpoint-{steps[-1]}" if steps else entries[-1].name
        raise FileExistsError(
            f"checkpoint folder {root} already holds {len(entries)} checkpoint folder(s) "
            f"of a previous run (newest complete: {newest if steps else 'none'}); resume "
            "that run (CLI --resume, run config flower.resume=true) or start over with "
            "overwrite (CLI --overwrite, run config flower.overwrite=true, API "
            "overwrite=True), which deletes them")
    if remove:
        for e in entries:
            shutil.rmtree(e, ignore_errors=True)


def save_server_checkpoint(root: str | Path, step: int, state: dict,
                           identity: RunIdentity, keep: int = DEFAULT_KEEP) -> Path:
    """Write the server's state and ``COMPLETE`` atomically; keep this run's last ``keep``.

    Older checkpoints of this run lose their ``server`` folder (a party prunes its own
    folders when it saves), and their ``checkpoint-<step>`` folder once it is empty.
    """
    folder = server_folder(root, step)

    def write(tmp: Path) -> None:
        write_state(tmp, state)
        identity.write(tmp, step)
        atomic_write_text(tmp / COMPLETE, f"{int(step)}\n")

    write_folder_atomically(folder, write)
    steps = [s for s in completed_steps(root) if _run_id_or_none(root, s) == identity.run_id]
    for old in steps[: max(0, len(steps) - max(1, keep))]:
        _remove_part(Path(root) / f"checkpoint-{old}", "server")
    return folder


def _run_id_or_none(root: str | Path, step: int) -> str | None:
    try:
        return RunIdentity.read(server_folder(root, step)).run_id
    except (FileNotFoundError, CheckpointError):
        return None


def completed_steps(root: str | Path) -> list[int]:
    """Steps with a complete server checkpoint under ``root``, ascending."""
    return sorted(s for s, d in _step_dirs(root).items()
                  if (d / "server" / COMPLETE).exists())


def latest_step(root: str | Path) -> int | None:
    """The newest complete checkpoint step, or None."""
    steps = completed_steps(root)
    return steps[-1] if steps else None


def read_server_identity(root: str | Path, step: int) -> RunIdentity:
    """The run that wrote the server's folder of ``checkpoint-<step>``."""
    return RunIdentity.read(server_folder(root, step))


def load_server_checkpoint(root: str | Path, step: int) -> dict:
    """Read the server's state of ``checkpoint-<step>``."""
    return read_state(server_folder(root, step))
