"""Unlearning for class-conditional diffusion models: baselines, DiMRA attack, DiMUM.

Python API::

    from unlearning import (load_dataset, split_forget_retain, auxiliary_set,
                            pretrain, unlearn, run_relearning_attack, train_judge,
                            evaluate_pipeline, load_pipeline, load_image_folder)
"""

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

if importlib.util.find_spec("diffusers") is None:
    raise ImportError("the unlearning package needs diffusers and peft, the project's "
                      "'unlearning' extra: pip install -e '.[unlearning]' (or "
                      "bash scripts/setup.sh dev,unlearning)")

#: Where each public name lives. Loaded on first use (PEP 562), so ``import unlearning``
#: and the CLI's argument parsing do not pull in torch and diffusers.
_EXPORTS = {
    "ClassConditionalDDPMPipeline": "unlearning.pipeline",
    "ClassConditionalMLP": "unlearning.mlp",
    "EvalConfig": "unlearning.config",
    "ImageData": "unlearning.data",
    "Judge": "unlearning.judge",
    "PretrainConfig": "unlearning.config",
    "RelearnConfig": "unlearning.config",
    "RelearnCurve": "unlearning.relearn",
    "UnlearnConfig": "unlearning.config",
    "auxiliary_set": "unlearning.data",
    "build_model": "unlearning.model",
    "build_scheduler": "unlearning.model",
    "build_unet": "unlearning.model",
    "evaluate_pipeline": "unlearning.evaluate",
    "load_dataset": "unlearning.data",
    "load_image_folder": "unlearning.data",
    "load_judge": "unlearning.judge",
    "load_pipeline": "unlearning.checkpoint",
    "parameter_change_norms": "unlearning.evaluate",
    "pretrain": "unlearning.train",
    "run_relearning_attack": "unlearning.relearn",
    "save_judge": "unlearning.judge",
    "split_forget_retain": "unlearning.data",
    "train_judge": "unlearning.judge",
    "unlearn": "unlearning.unlearn",
    "unlearn_with_log": "unlearning.unlearn",
}

if TYPE_CHECKING:  # static analysers see the real imports
    from unlearning.checkpoint import load_pipeline
    from unlearning.config import (
        EvalConfig,
        PretrainConfig,
        RelearnConfig,
        UnlearnConfig,
    )
    from unlearning.data import (
        ImageData,
        auxiliary_set,
        load_dataset,
        load_image_folder,
        split_forget_retain,
    )
    from unlearning.evaluate import evaluate_pipeline, parameter_change_norms
    from unlearning.judge import Judge, load_judge, save_judge, train_judge
    from unlearning.mlp import ClassConditionalMLP
    from unlearning.model import (
        build_model,
        build_scheduler,
        build_unet,
    )
    from unlearning.pipeline import ClassConditionalDDPMPipeline
    from unlearning.relearn import RelearnCurve, run_relearning_attack
    from unlearning.train import pretrain
    from unlearning.unlearn import unlearn, unlearn_with_log


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'unlearning' has no attribute {name!r}")


__all__ = [
    "ClassConditionalDDPMPipeline",
    "ClassConditionalMLP",
    "EvalConfig",
    "ImageData",
    "Judge",
    "PretrainConfig",
    "RelearnConfig",
    "RelearnCurve",
    "UnlearnConfig",
    "auxiliary_set",
    "build_model",
    "build_scheduler",
    "build_unet",
    "evaluate_pipeline",
    "load_dataset",
    "load_image_folder",
    "load_judge",
    "load_pipeline",
    "parameter_change_norms",
    "pretrain",
    "run_relearning_attack",
    "save_judge",
    "split_forget_retain",
    "train_judge",
    "unlearn",
    "unlearn_with_log",
]
