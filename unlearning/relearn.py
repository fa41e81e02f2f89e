"""DiMRA, the relearning attack (dimum.md section 2).

Plain conditional fine-tuning of the unlearned model on the attacker's data, which
never contains the forgotten class.

theta_0 = theta_u;  minimise E || eps - eps_theta(x_t, t, c) ||^2 over (x0, c) ~ D_att,
D_att = D_r or D_au. The attack itself does not use the forgotten class; only the
disjointness check and the measurement (relearning accuracy of c_f samples) do.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from trainkit import select_device
from unlearning.config import RelearnConfig
from unlearning.data import ImageData, assert_no_class, check_forget_class
from unlearning.pipeline import ClassConditionalDDPMPipeline
from unlearning.train import fit_with_config
from unlearning.unlearn import copy_pipeline

logger = logging.getLogger(__name__)

# probe(pipe) -> {"forget_rate": ..., "p_forget": ...}
Probe = Callable[[ClassConditionalDDPMPipeline], dict[str, float]]


@dataclass
class RelearnCurve:
    """Relearning accuracy over attack steps (step 0 = the unlearned model)."""

    steps: list[int] = field(default_factory=list)
    forget_rate: list[float] = field(default_factory=list)
    p_forget: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)

    def add(self, step: int, metrics: dict[str, float]) -> None:
        """Append one measurement."""
        self.steps.append(step)
        self.forget_rate.append(float(metrics["forget_rate"]))
        self.p_forget.append(float(metrics["p_forget"]))

    def as_dict(self) -> dict[str, list]:
        """JSON-ready form (losses left out)."""
        return {
            "steps": self.steps,
            "forget_rate": self.forget_rate,
            "p_forget": self.p_forget,
        }


def run_relearning_attack(
    pipeline: ClassConditionalDDPMPipeline,
    attack_data: ImageData,
    forget_class: int,
    config: RelearnConfig,
    probe: Probe | None = None,
) -> tuple[ClassConditionalDDPMPipeline, RelearnCurve]:
    """Fine-tune a copy of ``pipeline`` on ``attack_data`` and trace relearning.

    Args:
        pipeline: the unlearned model (left unchanged).
        attack_data: D_r or D_au; must hold no sample of ``forget_class``.
        forget_class: c_f, used only for the check and by ``probe``.
        config: the attack budget (steps, lr, batch, ...). Use the same for every
            method in a comparison.
        probe: measures the forgotten class on a pipeline; called at step 0, every
            ``config.eval_every`` steps and at the end. ``None``: no curve.

    Returns:
        (attacked pipeline, curve).

    Raises:
        ValueError: ``attack_data`` contains the forgotten class, is empty, or does not
            fit the model.
    """
    check_forget_class(forget_class, pipeline.num_classes)
    # The threat model: the attacker's data never holds the forgotten class.
    assert_no_class(attack_data, forget_class, f"DiMRA {config.attack_data} data")
    setup = select_device(config.device, mixed_precision=False)
    pipe = copy_pipeline(pipeline)
    pipe.to(setup.device)
    curve = RelearnCurve()
    if probe is not None:
        curve.add(0, probe(pipe))

    def measure(step: int, model) -> None:
        if probe is not None and step < config.steps:
            curve.add(step, probe(pipe))

    logger.info(
        "DiMRA on %s: %d images, %d steps x batch %d, lr %g",
        config.attack_data,
        len(attack_data),
        config.steps,
        config.batch_size,
        config.lr,
    )
    curve.losses = fit_with_config(
        pipe.unet,
        pipe.scheduler,
        attack_data,
        config,
        stream=f"dimra-{config.attack_data}",
        desc=f"DiMRA {config.attack_data}",
        callback=measure,
        callback_every=config.eval_every,
    )
    if probe is not None:
        curve.add(config.steps, probe(pipe))
    return pipe, curve
