"""Fine-tuning-based unlearning behind one interface: ``unlearn(pipe, D_f, D_r, cfg)``.

Methods (losses in :mod:`unlearning.losses`, defaults in dimum.md section 4):

* ``swap_label``  SalUn-RL without mask: || eps(x_t|c_f) - sg eps(x_t|c') ||^2 + L_r
* ``salun``       the same (mean over pixels, c' = c_f + 1), only top-``mask_ratio``
                  saliency weights move, + alpha (SalUn README: 1e-3) times a retain
                  loss summed over pixels, as in the official code
* ``erasediff``   first-order bi-level (BOME): K inner passes on the forget objective
                  with the loop's own Adam give f(theta^K); theta is restored (the
                  moments are not); outer loss L_r + lambda (f(theta) - f(theta^K))
* ``sa``          Selective Amnesia: L(uniform noise | c_f) + gamma L(replay)
                  + lambda EWC, pixel sums, Fisher over every class
* ``ga``          gradient ascent -L(D_f) + L_r; every stop_every steps the external
                  stop (judge) is asked first, then the guard L(D_f) > ga_stop_loss
* ``finetune``    L_r only
* ``retrain``     control: fresh model trained on D_r only
* ``dimum``       DiMUM: L_r + lambda L(D_alt | c_f), the memorisation loss teaching the
                  forgotten label alternative data (dimum.md section 3)
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from trainkit import make_generator, progress_bar, select_device
from unlearning.config import UnlearnConfig
from unlearning.data import (
    ImageData,
    assert_no_class,
    check_forget_class,
    to_device,
)
from unlearning.objectives import (  # noqa: F401 - re-exported (bench, tests)
    OBJECTIVES,
    DiMUM,
    EraseDiff,
    FineTune,
    GradientAscent,
    Objective,
    SalUn,
    SelectiveAmnesia,
    SwapLabel,
)
from unlearning.pipeline import ClassConditionalDDPMPipeline
from unlearning.train import check_data_matches, retrain_from_scratch

logger = logging.getLogger(__name__)


@dataclass
class UnlearnLog:
    """What an unlearning run did: losses per step and where it stopped."""

    method: str
    steps_run: int = 0
    losses: list[float] = field(default_factory=list)
    stopped_early: bool = False
    extra: dict = field(default_factory=dict)


def copy_pipeline(pipe: ClassConditionalDDPMPipeline) -> ClassConditionalDDPMPipeline:
    """Deep copy of the model, shared scheduler (the input is never mutated)."""
    new = ClassConditionalDDPMPipeline(
        unet=copy.deepcopy(pipe.unet), scheduler=pipe.scheduler
    )
    new.set_progress_bar_config(disable=True)
    return new


def validate_unlearning_data(
    pipe: ClassConditionalDDPMPipeline, forget: ImageData, retain: ImageData, c_f: int
) -> None:
    """Raise ``ValueError`` for a bad forget class, empty sets or mismatched images."""
    check_forget_class(c_f, pipe.num_classes)
    check_data_matches(pipe.unet, forget, "forget set")
    check_data_matches(pipe.unet, retain, "retain set")
    wrong = int((forget.labels != c_f).sum())
    if wrong:
        raise ValueError(
            f"forget set: {wrong} samples are not of forget_class {c_f}, expected none"
        )
    assert_no_class(retain, c_f, "retain set")


def check_alt_images(
    pipe: ClassConditionalDDPMPipeline,
    retain: ImageData,
    config: UnlearnConfig,
    alt_images: torch.Tensor | None,
) -> None:
    """``alt_images`` is given exactly for DiMUM's held-out variant, and is held out.

    Raises:
        ValueError: naming ``alt_images`` or ``dimum_alt``, the value and what was
            expected: missing or unexpected, empty, the wrong image shape, or holding a
            row of D_r (a held-out alternative that D_r contains is not held out).
    """
    heldout = config.method == "dimum" and config.dimum_alt == "heldout"
    if alt_images is None:
        if heldout:
            raise ValueError(
                "dimum_alt: got 'heldout' without alt_images, expected the held-out "
                "alternative images passed as alt_images"
            )
        return
    if not heldout:
        raise ValueError(
            f"alt_images: given for method {config.method!r} with dimum_alt "
            f"{config.dimum_alt!r}, expected only with method 'dimum' and "
            "dimum_alt 'heldout'"
        )
    check_data_matches(
        pipe.unet,
        ImageData(alt_images, torch.zeros(len(alt_images), dtype=torch.long)),
        "alt_images",
    )
    # exact row equality (a distance test would round); rows compared as bytes
    rows = {r.numpy().tobytes() for r in retain.images.detach().float().cpu()}
    shared = sum(a.numpy().tobytes() in rows for a in alt_images.detach().float().cpu())
    if shared:
        raise ValueError(
            f"alt_images: {shared} of {len(alt_images)} images are rows of the retain "
            "set, expected images held out of D_r"
        )


def _call_stop_fn(stop_fn, pipe) -> bool:
    stop = bool(stop_fn(pipe))
    pipe.unet.train()
    return stop


def _retrain_control(
    pipe: ClassConditionalDDPMPipeline,
    retain: ImageData,
    config: UnlearnConfig,
    log: UnlearnLog,
) -> None:
    """Method ``retrain``: replace ``pipe.unet`` by a fresh model trained on D_r."""
    pipe.unet = retrain_from_scratch(
        pipe.unet,
        pipe.scheduler,
        retain,
        config.forget_class,
        steps=config.retrain_steps,
        lr=config.retrain_lr,
        batch_size=config.retrain_batch_size,
        seed=config.seed,
        progress=config.progress,
    )
    pipe.register_modules(unet=pipe.unet)
    log.steps_run = config.retrain_steps


def _optimise(
    objective: Objective,
    pipe: ClassConditionalDDPMPipeline,
    config: UnlearnConfig,
    log: UnlearnLog,
    stop_fn: Callable[[ClassConditionalDDPMPipeline], bool] | None,
) -> None:
    """The unlearning loop: Adam on ``objective``'s loss until a stop, filling ``log``."""
    model = pipe.unet
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    objective.optimizer = opt
    bar = progress_bar(
        range(1, config.steps + 1),
        desc=f"unlearn {config.method}",
        disable=not config.progress,
    )
    for step in bar:
        loss, info = objective.loss(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if objective.mask is not None:
            for p, m in zip(model.parameters(), objective.mask, strict=True):
                if p.grad is not None:
                    p.grad.mul_(m)
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        opt.step()
        log.losses.append(loss.item())
        log.steps_run = step
        if step % 25 == 0:
            bar.set_postfix(loss=f"{loss.item():.4f}")
        # One stop rule: every stop_every steps, first the external check (the
        # judge), then the method's own guard, so a guard never pre-empts a check.
        if step % config.stop_every:
            continue
        reason = None
        if stop_fn is not None and _call_stop_fn(stop_fn, pipe):
            reason = "stop_fn"
        elif objective.should_stop(info):
            reason = "guard"
        if reason is not None:
            log.stopped_early = True
            log.extra["stop_reason"] = reason
            logger.info(
                "unlearn %s: early stop at step %d by %s (%s)",
                config.method,
                step,
                reason,
                info,
            )
            break


@torch.no_grad()
def _restore_frozen(model: nn.Module, mask: list[torch.Tensor], original: nn.Module):
    """Make masked-out weights exactly the original's: m * theta + (1 - m) * theta_o.

    Adam's update can move a masked weight only through zero gradients; this makes
    the frozen part exact.
    """
    orig = list(original.parameters())
    for p, m, p0 in zip(model.parameters(), mask, orig, strict=True):
        p.copy_(m * p + (1 - m) * p0.to(p.device))


def unlearn_with_log(
    pipeline: ClassConditionalDDPMPipeline,
    forget: ImageData,
    retain: ImageData,
    config: UnlearnConfig,
    stop_fn: Callable[[ClassConditionalDDPMPipeline], bool] | None = None,
    alt_images: torch.Tensor | None = None,
) -> tuple[ClassConditionalDDPMPipeline, UnlearnLog]:
    """Like :func:`unlearn`, and also return the run's :class:`UnlearnLog`.

    Args:
        pipeline: see :func:`unlearn`.
        forget: see :func:`unlearn`.
        retain: see :func:`unlearn`.
        config: see :func:`unlearn`.
        stop_fn: optional external early stop, called with the current pipeline every
            ``config.stop_every`` steps; ``True`` stops the run (e.g. "the judge no
            longer sees the forgotten class", the usual stop rule for gradient ascent).
            At the same steps, after it, the method's own guard is asked (gradient
            ascent's divergence guard); ``log.extra["stop_reason"]`` says which one
            stopped the run ("stop_fn" or "guard").
        alt_images: DiMUM's alternative images for ``dimum_alt="heldout"`` (and only
            then): real images of the alternative class that are not in ``retain``, so
            that an attacker fine-tuning on D_r never sees what the forgotten label was
            taught to produce.
    """
    validate_unlearning_data(pipeline, forget, retain, config.forget_class)
    check_alt_images(pipeline, retain, config, alt_images)
    setup = select_device(config.device, mixed_precision=False)
    pipe = copy_pipeline(pipeline)
    pipe.to(setup.device)
    log = UnlearnLog(config.method)
    gen = make_generator(config.seed, "unlearn", config.method, device=setup.device)
    forget, retain = to_device(forget, setup.device), to_device(retain, setup.device)
    logger.info(
        "unlearn: method %s, forget class %d, |D_f|=%d, |D_r|=%d, %d steps x batch %d,"
        " lr %g",
        config.method,
        config.forget_class,
        len(forget),
        len(retain),
        config.steps,
        config.batch_size,
        config.lr,
    )
    if config.method == "retrain":
        _retrain_control(pipe, retain, config, log)
        return pipe, log
    model = pipe.unet
    model.train()
    if alt_images is not None:
        alt_images = alt_images.to(setup.device)
    objective = OBJECTIVES[config.method](pipe, forget, retain, config, gen, alt_images)
    model.train()  # the objective's set-up may have sampled (eval mode)
    _optimise(objective, pipe, config, log, stop_fn)
    if isinstance(objective, EraseDiff):
        log.extra["inner_steps"] = objective.inner_steps_run
    if objective.mask is not None:
        _restore_frozen(model, objective.mask, pipeline.unet)
    model.eval()
    return pipe, log


def unlearn(
    pipeline: ClassConditionalDDPMPipeline,
    forget: ImageData,
    retain: ImageData,
    config: UnlearnConfig,
    alt_images: torch.Tensor | None = None,
) -> ClassConditionalDDPMPipeline:
    """Unlearn ``config.forget_class`` from a copy of ``pipeline``.

    Args:
        pipeline: the pre-trained pipeline (left unchanged).
        forget: D_f, images of ``config.forget_class`` only.
        retain: D_r, images of the other classes only.
        config: method and its hyperparameters.
        alt_images: see :func:`unlearn_with_log` (DiMUM, ``dimum_alt="heldout"``).

    Returns:
        A new pipeline holding the unlearned model.

    Raises:
        ValueError: forget class out of range, empty sets, labels in the wrong set,
            images whose shape does not match the model, or ``alt_images`` given when
            not expected, missing when expected, or not held out of D_r.
    """
    return unlearn_with_log(pipeline, forget, retain, config, alt_images=alt_images)[0]
