"""Run folders that record the resolved config, the seed and the git commit."""

from __future__ import annotations

import datetime as _dt
import subprocess
from pathlib import Path
from typing import Any

from trainkit.checkpoint import atomic_write_json


def git_commit(cwd: str | Path | None = None) -> str:
    """Return the current git commit (with ``-dirty`` if the tree has changes).

    Returns ``"unknown"`` outside a git checkout or without git.
    """
    where = Path(cwd) if cwd else Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return sha + ("-dirty" if dirty else "")


def run_metadata(config: dict[str, Any], seed: int) -> dict[str, Any]:
    """Return the metadata every output carries: config, seed, commit, time."""
    return {
        "config": config,
        "seed": int(seed),
        "git_commit": git_commit(),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }


def create_run_dir(
    root: str | Path,
    config: dict[str, Any],
    seed: int,
    name: str | None = None,
    exist_ok: bool = False,
) -> Path:
    """Create a run folder holding ``config.json`` (config, seed, git commit).

    Args:
        root: parent folder (created if missing).
        config: the resolved configuration, JSON-serialisable.
        seed: the run's seed.
        name: folder name; default a timestamp.
        exist_ok: reuse an existing folder (for resume) instead of raising.

    Returns:
        The run folder.
    """
    name = name or _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = Path(root) / name
    if run_dir.exists() and not exist_ok:
        raise FileExistsError(f"run folder already exists: {run_dir}")
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run_dir / "config.json", run_metadata(config, seed))
    return run_dir
