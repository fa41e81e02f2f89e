"""Denoiser fitting: pre-training, the retrain control and the loop DiMRA uses.

``fit_denoiser`` minimises the plain conditional denoising loss with label dropout, as
in the baselines' pre-training (Adam, gradient clip 1.0, label dropout 0.1 for CFG).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from torch import nn

from trainkit import EMA, make_generator, progress_bar, select_device
from unlearning.config import PretrainConfig, RelearnConfig
from unlearning.data import ImageData, assert_no_class, sample_batch, to_device
from unlearning.losses import denoising_loss, diffusion_inputs
from unlearning.model import (
    build_model,
    build_scheduler,
    image_shape_of,
    num_classes_of,
)
from unlearning.pipeline import ClassConditionalDDPMPipeline

logger = logging.getLogger(__name__)


def check_data_matches(model: nn.Module, data: ImageData, what: str) -> None:
    """Raise ``ValueError`` if ``data`` is empty or its images do not fit ``model``."""
    if len(data) == 0:
        raise ValueError(f"{what}: got an empty data set, expected at least one image")
    expected = image_shape_of(model)
    if data.image_shape != expected:
        raise ValueError(
            f"{what}: images have shape (C, H, W) = {data.image_shape}, the model "
            f"expects {expected}"
        )
    k = num_classes_of(model)
    lo, hi = int(data.labels.min()), int(data.labels.max())
    if lo < 0 or hi >= k:
        raise ValueError(f"{what}: labels in [{lo}, {hi}], expected [0, {k - 1}]")


def fit_denoiser(
    model: nn.Module,
    scheduler,
    data: ImageData,
    *,
    steps: int,
    lr: float,
    batch_size: int,
    grad_clip: float = 1.0,
    label_dropout: float = 0.1,
    seed: int = 0,
    stream: str = "fit",
    ema_decay: float = 0.0,
    progress: bool = True,
    desc: str = "fit",
    callback: Callable[[int, nn.Module], None] | None = None,
    callback_every: int = 0,
    params: list[nn.Parameter] | None = None,
    lr_lambda: Callable[[int], float] | None = None,
    extra_loss: Callable[[torch.Generator], torch.Tensor] | None = None,
) -> list[float]:
    """Minimise L_simple on ``data`` in place. Returns the per-step losses.

    Args:
        model: noise predictor, already on its device.
        scheduler: the ``DDPMScheduler`` (for add_noise).
        data: the training images (moved to the model's device here).
        steps: optimizer steps.
        lr: Adam learning rate.
        batch_size: images per step.
        grad_clip: global gradient-norm clip.
        label_dropout: probability of the null label (CFG).
        seed: seed of the batch/noise generator.
        stream: key mixed into that seed (so streams differ).
        ema_decay: if > 0 the EMA weights are copied into ``model`` at the end.
        progress: show a tqdm bar.
        desc: bar label.
        callback: called as ``callback(step, model)`` after steps ``callback_every``,
            ``2 * callback_every``, ... (and never inside the autograd graph).
        callback_every: 0 disables the callback.
        params: the parameters to train (default all); the others are left as they
            are (the DiMRA last-layers attack).
        lr_lambda: multiplier of ``lr`` for optimizer step k (0-based); None = constant.
        extra_loss: added to each step's loss, called with the batch/noise generator
            (the adaptive attack's untie term).
    """
    check_data_matches(model, data, "training data")
    device = next(model.parameters()).device
    data = to_device(data, device)
    gen = make_generator(seed, stream, device=device)
    null = num_classes_of(model)
    params = list(model.parameters()) if params is None else params
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda) if lr_lambda else None
    ema = EMA(model, ema_decay) if ema_decay > 0 else None
    losses: list[float] = []
    model.train()
    bar = progress_bar(range(1, steps + 1), desc=desc, disable=not progress)
    for step in bar:
        x0, y = sample_batch(data, batch_size, gen)
        x_t, t, eps, y = diffusion_inputs(
            x0,
            y,
            scheduler,
            label_dropout=label_dropout,
            null_label=null,
            generator=gen,
        )
        loss = denoising_loss(model, x_t, t, eps, y)
        if extra_loss is not None:
            loss = loss + extra_loss(gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
        opt.step()
        if sched is not None:
            sched.step()
        if ema is not None:
            ema.update(model)
        losses.append(loss.item())
        if step % 50 == 0:
            bar.set_postfix(loss=f"{sum(losses[-50:]) / 50:.4f}")
        if callback is not None and callback_every and step % callback_every == 0:
            callback(step, model)
            model.train()
    if ema is not None:
        ema.copy_to(model)
    model.eval()
    return losses


def fit_with_config(
    model: nn.Module,
    scheduler,
    data: ImageData,
    config: PretrainConfig | RelearnConfig,
    *,
    stream: str,
    desc: str,
    **kwargs,
) -> list[float]:
    """:func:`fit_denoiser` with the budget fields of a pretrain or DiMRA config.

    ``kwargs`` (``ema_decay``, ``callback``, ...) go to :func:`fit_denoiser` as is.
    """
    return fit_denoiser(
        model,
        scheduler,
        data,
        steps=config.steps,
        lr=config.lr,
        batch_size=config.batch_size,
        grad_clip=config.grad_clip,
        label_dropout=config.label_dropout,
        seed=config.seed,
        stream=stream,
        progress=config.progress,
        desc=desc,
        **kwargs,
    )


def pretrain(
    train: ImageData, config: PretrainConfig, num_classes: int = 10
) -> ClassConditionalDDPMPipeline:
    """Pre-train the class-conditional DDPM on ``train`` and return its pipeline."""
    setup = select_device(config.device)
    torch.manual_seed(config.seed)  # model init
    model = build_model(config.arch, config.dataset, num_classes).to(setup.device)
    scheduler = build_scheduler()
    logger.info(
        "pretrain: %s %s, %d params, %d images, %d steps x batch %d, lr %g, device %s",
        config.dataset,
        config.arch,
        sum(p.numel() for p in model.parameters()),
        len(train),
        config.steps,
        config.batch_size,
        config.lr,
        setup.device,
    )
    fit_with_config(
        model,
        scheduler,
        train,
        config,
        stream="pretrain",
        desc="pretrain",
        ema_decay=config.ema_decay,
    )
    return ClassConditionalDDPMPipeline(unet=model, scheduler=scheduler)


def retrain_from_scratch(
    like: nn.Module,
    scheduler,
    retain: ImageData,
    forget_class: int,
    *,
    steps: int,
    lr: float,
    batch_size: int,
    seed: int,
    progress: bool = True,
) -> nn.Module:
    """The retrain control: same architecture, fresh init, trained on D_r only."""
    assert_no_class(retain, forget_class, "retrain data")
    torch.manual_seed(seed)
    model = type(like).from_config(like.config).to(next(like.parameters()).device)
    fit_denoiser(
        model,
        scheduler,
        retain,
        steps=steps,
        lr=lr,
        batch_size=batch_size,
        seed=seed,
        stream="retrain",
        progress=progress,
        desc="retrain",
    )
    return model
