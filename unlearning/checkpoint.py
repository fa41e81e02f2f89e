"""Publish models in diffusers format (+ ``unlearning_meta.json``) and load them.

A saved folder is a diffusers pipeline folder that also carries its own loading code
(``pipeline.py``, see :mod:`unlearning.pipeline`), so plain diffusers can open it.
:func:`load_pipeline` here never runs code from the folder: it rebuilds the components
with this package's classes. It also accepts a bare class-conditional ``UNet2DModel``
folder (``unet.save_pretrained(dir)``) as the model to unlearn (a timestep-embedded one
with its class count given, ``num_classes``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from diffusers import DDPMScheduler, UNet2DModel

from trainkit import atomic_write_json, git_commit
from unlearning.mlp import ClassConditionalMLP
from unlearning.model import build_scheduler
from unlearning.pipeline import ClassConditionalDDPMPipeline

logger = logging.getLogger(__name__)

META_FILE = "unlearning_meta.json"

#: ``model_index.json`` / ``config.json`` class names we can rebuild without running
#: code from the folder.
MODEL_CLASSES = {"UNet2DModel": UNet2DModel, "ClassConditionalMLP": ClassConditionalMLP}

# diffusers defaults to low_cpu_mem_usage=True, which needs `accelerate`; without it,
# every from_pretrained logs "Cannot initialize model with low cpu memory usage because
# `accelerate` was not found". accelerate may or may not be installed (peft brings it;
# the models are small either way), so we ask for the plain loading path explicitly,
# which also silences that warning.
_LOAD_KWARGS = {"low_cpu_mem_usage": False}


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


def _model_class(name: str, where: Path) -> type:
    if name not in MODEL_CLASSES:
        raise ValueError(
            f"{where}: model class {name!r}, expected one of {sorted(MODEL_CLASSES)}"
        )
    return MODEL_CLASSES[name]


def load_pipeline(
    path: str | Path, device: str = "cpu", num_classes: int | None = None
) -> ClassConditionalDDPMPipeline:
    """Load a saved pipeline folder, or a bare class-conditional UNet folder.

    Args:
        path: a folder written by :func:`save_pipeline` (``model_index.json``, with
            ``unet/`` and ``scheduler/``), any diffusers pipeline folder with a
            class-conditional ``unet/``, or a ``UNet2DModel.save_pretrained`` folder
            (``config.json``); the last gets the default DDPM schedule
            (:func:`unlearning.model.build_scheduler`), with a warning.
        device: where to put the model.
        num_classes: the number of classes K. Needed for a ``class_embed_type=
            "timestep"`` UNet whose folder does not store it (a bare UNet folder, or
            a pipeline folder without ``num_classes`` in ``model_index.json``);
            otherwise optional, and it must agree with the folder.

    Raises:
        FileNotFoundError: neither ``model_index.json`` nor ``config.json`` in ``path``.
        ValueError: a model class we do not know, an unconditional or unsupported
            model, a missing or inconsistent K (see
            :func:`unlearning.pipeline.class_count`).
    """
    p = Path(path)
    if (p / "model_index.json").exists():
        index = json.loads((p / "model_index.json").read_text())
        if "unet" not in index:
            raise ValueError(f"{p}: model_index.json has no 'unet' component")
        stored = index.get("num_classes")
        if num_classes is not None and stored is not None and num_classes != stored:
            raise ValueError(
                f"num_classes: got {num_classes}, but {p / 'model_index.json'} "
                f"stores num_classes={stored}, expected the same (or leave it unset)"
            )
        num_classes = stored if num_classes is None else num_classes
        cls = _model_class(index["unet"][1], p / "model_index.json")
        unet = cls.from_pretrained(p, subfolder="unet", **_LOAD_KWARGS)
        scheduler = DDPMScheduler.from_pretrained(p, subfolder="scheduler")
    elif (p / "config.json").exists():
        name = json.loads((p / "config.json").read_text()).get("_class_name")
        unet = _model_class(name, p / "config.json").from_pretrained(p, **_LOAD_KWARGS)
        scheduler = build_scheduler()
        logger.warning(
            "%s: a bare model folder with no scheduler; assuming the default DDPM "
            "schedule (T=1000, linear betas 1e-4..0.02, epsilon prediction)",
            p,
        )
    else:
        raise FileNotFoundError(
            f"no model_index.json or config.json in {p}: not a saved pipeline or model"
        )
    pipe = ClassConditionalDDPMPipeline(
        unet=unet, scheduler=scheduler, num_classes=num_classes
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def load_meta(path: str | Path) -> dict[str, Any]:
    """Read ``unlearning_meta.json`` of a saved model ({} if absent)."""
    f = Path(path) / META_FILE
    return json.loads(f.read_text()) if f.exists() else {}
