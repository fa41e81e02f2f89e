"""Unlearning for class-conditional diffusion models: baselines, DiMRA attack, DiMUM.

Python API::

    from unlearning import (load_dataset, split_forget_retain, auxiliary_set,
                            pretrain, unlearn, run_relearning_attack, train_judge,
                            evaluate_pipeline)
"""

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
    split_forget_retain,
)
from unlearning.evaluate import evaluate_pipeline, parameter_change_norms
from unlearning.judge import Judge, load_judge, save_judge, train_judge
from unlearning.model import (
    ClassConditionalMLP,
    build_model,
    build_scheduler,
    build_unet,
)
from unlearning.pipeline import ClassConditionalDDPMPipeline
from unlearning.relearn import RelearnCurve, run_relearning_attack
from unlearning.train import pretrain
from unlearning.unlearn import unlearn, unlearn_with_log

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
    "load_judge",
    "parameter_change_norms",
    "pretrain",
    "run_relearning_attack",
    "save_judge",
    "split_forget_retain",
    "train_judge",
    "unlearn",
    "unlearn_with_log",
]
