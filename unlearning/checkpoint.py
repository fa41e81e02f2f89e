"""Publish models in diffusers format (+ ``unlearning_meta.json``) and load them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trainkit import atomic_write_json, git_commit
from unlearning.pipeline import ClassConditionalDDPMPipeline

META_FILE = "unlearning_meta.json"


def save_pipeline(
    pipe: ClassConditionalDDPMPipeline, out_dir: str | Path, meta: dict[str, Any]
) -> Path:
    """``save_pretrained`` the pipeline and write ``unlearning_meta.json`` next to it.

    ``meta`` should name the source model, forgotten class, method, steps and seed; the
    git commit is added here.
    """
    out = Path(out_dir)
    pipe.save_pretrained(out)
    atomic_write_json(out / META_FILE, {**meta, "git_commit": git_commit()})
    return out


def load_pipeline(
    path: str | Path, device: str = "cpu"
) -> ClassConditionalDDPMPipeline:
    """Load a pipeline written by :func:`save_pipeline` (or ``save_pretrained``)."""
    p = Path(path)
    if not (p / "model_index.json").exists():
        raise FileNotFoundError(f"no model_index.json in {p}: not a saved pipeline")
    pipe = ClassConditionalDDPMPipeline.from_pretrained(p)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def load_meta(path: str | Path) -> dict[str, Any]:
    """Read ``unlearning_meta.json`` of a saved model ({} if absent)."""
    import json

    f = Path(path) / META_FILE
    return json.loads(f.read_text()) if f.exists() else {}
