"""DiMRA, the relearning attack (dimum.md section 2), and its stronger variants.

Plain conditional fine-tuning of the unlearned model on the attacker's data, which
never contains the forgotten class.

theta_0 = theta_u;  minimise E || eps - eps_theta(x_t, t, c) ||^2 over (x0, c) ~ D_att,
D_att = D_r or D_au. The attack itself does not use the forgotten class; only the
disjointness check and the measurement (relearning accuracy of c_f samples) do.

Variants (issue 15, item 3), all options of :class:`RelearnConfig`:

* ``schedule="cosine"``: cosine decay of the lr to 0 over the steps;
* ``trainable_last=N``: only the last N parameterised modules move (a last-layers-only
  fine-tune);
* ``lora_rank=r``: only rank-r LoRA adapters (peft) on every ``nn.Linear`` and
  ``nn.Conv2d`` of the model move, W + (alpha / r) B A with B = 0 at the start; the
  adapters are merged into the weights at the end, so the attacked model is a plain
  model again (same classes, same state-dict keys, saves and reloads as before);
* ``untie_class=a`` (an adaptive attacker who knows DiMUM's alternative class a): adds
  || eps(x_t | c_f) - sg eps(x_t | null) ||^2 on images of class a, pulling the c_f
  pathway off the memorised replacement. This one does use c_f (the attacker is told
  what was unlearned).
* few-shot relearning: ``run_relearning_attack(..., allow_forget_class=True)`` with a
  handful of c_f images in the data (a different threat model than DiMRA).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field

import torch
from torch import nn

from trainkit import select_device
from unlearning.config import RelearnConfig
from unlearning.data import (
    ImageData,
    assert_no_class,
    check_forget_class,
    sample_batch,
    to_device,
)
from unlearning.losses import diffusion_inputs
from unlearning.model import num_classes_of
from unlearning.pipeline import ClassConditionalDDPMPipeline
from unlearning.train import fit_denoiser
from unlearning.unlearn import copy_pipeline

logger = logging.getLogger(__name__)

# probe(pipe) -> {"forget_rate": ..., "p_forget": ..., any other numeric series}
Probe = Callable[[ClassConditionalDDPMPipeline], dict]


@dataclass
class RelearnCurve:
    """Relearning accuracy over attack steps (step 0 = the unlearned model).

    ``forget_rate`` and ``p_forget`` are the probe's two required keys; whatever else
    the probe returns (numbers or dicts, e.g. a class histogram) is kept per key in
    ``series``.
    """

    steps: list[int] = field(default_factory=list)
    forget_rate: list[float] = field(default_factory=list)
    p_forget: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    series: dict[str, list] = field(default_factory=dict)

    def add(self, step: int, metrics: dict) -> None:
        """Append one measurement."""
        self.steps.append(step)
        self.forget_rate.append(float(metrics["forget_rate"]))
        self.p_forget.append(float(metrics["p_forget"]))
        for k, v in metrics.items():
            if k not in ("forget_rate", "p_forget"):
                self.series.setdefault(k, []).append(v)

    def as_dict(self) -> dict[str, list]:
        """JSON-ready form (losses left out)."""
        return {
            "steps": self.steps,
            "forget_rate": self.forget_rate,
            "p_forget": self.p_forget,
            **self.series,
        }


def trainable_parameters(model: nn.Module, last: int) -> list[nn.Parameter]:
    """All parameters (``last`` = 0), or those of the last ``last`` modules.

    Only modules holding parameters of their own count, in ``named_modules`` order.

    Raises:
        ValueError: ``last`` exceeds the number of such modules.
    """
    if last == 0:
        return list(model.parameters())
    mods = [m for _, m in model.named_modules() if list(m.parameters(recurse=False))]
    if last > len(mods):
        raise ValueError(
            f"trainable_last: got {last}, expected <= {len(mods)} (modules with "
            f"parameters in {type(model).__name__})"
        )
    return [p for m in mods[-last:] for p in m.parameters(recurse=False)]


def lora_target_modules(model: nn.Module) -> list[str]:
    """Names of the modules the LoRA attack adapts: every ``nn.Linear`` and ``nn.Conv2d``.

    ``UNet2DModel``: the attention projections (to_q, to_k, to_v, to_out.0), the resnet
    convs, shortcuts and time projections, the time embedding, the down/upsampler
    convs, conv_in and conv_out. ``ClassConditionalMLP``: its Linear layers. Class
    embedding tables and norm layers are left out (they do not move).

    Raises:
        ValueError: the model has no such module.
    """
    names = [
        n for n, m in model.named_modules() if isinstance(m, nn.Linear | nn.Conv2d)
    ]
    if not names:
        raise ValueError(
            f"lora_rank: {type(model).__name__} has no Linear or Conv2d layer, "
            "expected at least one to adapt"
        )
    return names


def has_lora_adapters(model: nn.Module) -> bool:
    """Whether peft adapter layers are injected in ``model``."""
    return any(type(m).__module__.startswith("peft.") for m in model.modules())


@contextmanager
def lora_adapters(
    model: nn.Module, rank: int, alpha: float = 0.0, seed: int = 0
) -> Iterator[list[nn.Parameter]]:
    """Inject LoRA adapters into ``model`` in place; merge and remove them on exit.

    Inside the block ``model`` computes W x + (alpha / rank) B A x on every layer of
    :func:`lora_target_modules` (A random, B = 0, so it starts as the plain model),
    only the adapter parameters (yielded) require gradients. On exit (also on an
    error) B A is added into each W and the original layer objects are put back, and
    every parameter gets its ``requires_grad`` flag from before.

    Args:
        model: the noise predictor, on its device.
        rank: r >= 1.
        alpha: the LoRA scale numerator; 0 means ``rank`` (scale 1).
        seed: seeds the A matrices' initialisation (peft draws it from torch's global
            generator, which is forked here and left as it was).
    """
    # peft (and the transformers it imports) loads in seconds: only when LoRA is used
    from peft import LoraConfig
    from peft.tuners.lora import LoraModel

    if rank < 1:
        raise ValueError(f"lora_rank: got {rank}, expected an integer >= 1")
    if has_lora_adapters(model):
        raise ValueError(
            f"{type(model).__name__}: already carries peft adapters, expected a plain "
            "model"
        )
    targets = lora_target_modules(model)
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    lora_cfg = LoraConfig(
        r=rank,
        lora_alpha=alpha or rank,
        lora_dropout=0.0,
        bias="none",
        # exact names (a regex over the full module name), not suffixes
        target_modules="|".join(re.escape(n) for n in targets),
        init_lora_weights=True,  # A: Kaiming uniform, B: zeros
    )
    device = next(model.parameters()).device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        tuner = LoraModel(model, lora_cfg, "default")
    try:
        adapted = sorted(tuner.targeted_module_names)
        if adapted != sorted(targets):
            raise RuntimeError(
                f"LoRA: adapted {adapted}, expected exactly {sorted(targets)}"
            )
        params = [p for n, p in model.named_parameters() if ".lora_" in n]
        for n, p in model.named_parameters():
            p.requires_grad_(".lora_" in n)
        yield params
    finally:
        tuner.merge_and_unload()
        for n, p in model.named_parameters():
            p.requires_grad_(flags[n])


def lr_factor(schedule: str, step: int, steps: int) -> float:
    """Multiplier of the base lr for optimizer step ``step`` (0-based) of ``steps``."""
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * step / steps))
    raise ValueError(f"schedule: got {schedule!r}, expected constant or cosine")


def attack_fit(
    model: nn.Module,
    scheduler,
    data: ImageData,
    config: RelearnConfig,
    *,
    stream: str,
    forget_class: int | None = None,
    untie_data: ImageData | None = None,
    callback: Callable[[int, nn.Module], None] | None = None,
) -> list[float]:
    """The attack: :func:`unlearning.train.fit_denoiser` with the attack's own options.

    L_simple with label dropout, Adam and clipping, plus: only the last
    ``trainable_last`` modules trained, a cosine schedule, the adaptive untie term.

    With ``config.lora_rank`` > 0 only LoRA adapters are trained: injected here and
    merged into ``model`` at the end (:func:`lora_adapters`), or, when the caller has
    injected them already (``run_relearning_attack`` does, to measure step 0 on the
    adapted model), those adapters, left for the caller to merge.

    With ``schedule="constant"``, ``trainable_last=0``, no LoRA and no untie term it
    is the plain fine-tune, step for step; a test pins that.
    """
    if config.lora_rank and not has_lora_adapters(model):
        with lora_adapters(model, config.lora_rank, config.lora_alpha, config.seed):
            return attack_fit(
                model,
                scheduler,
                data,
                config,
                stream=stream,
                forget_class=forget_class,
                untie_data=untie_data,
                callback=callback,
            )
    if config.lora_rank:
        params = [p for n, p in model.named_parameters() if ".lora_" in n]
    elif has_lora_adapters(model):
        raise ValueError(
            "lora_rank: got 0 for a model carrying LoRA adapters, expected the rank "
            "they were injected with"
        )
    else:
        params = trainable_parameters(model, config.trainable_last)
    chosen = {id(p) for p in params}
    frozen = [p for p in model.parameters() if id(p) not in chosen]
    flags = [p.requires_grad for p in frozen]
    extra = None
    if untie_data is not None:
        if forget_class is None:
            raise ValueError("untie_data: given without forget_class, expected both")
        device = next(model.parameters()).device
        untie = to_device(untie_data, device)
        null = num_classes_of(model)

        def extra(gen: torch.Generator) -> torch.Tensor:
            return config.untie_weight * _untie_loss(
                model, scheduler, untie, config.batch_size, forget_class, null, gen)
    for p in frozen:
        p.requires_grad_(False)
    try:
        return fit_denoiser(
            model, scheduler, data, steps=config.steps, lr=config.lr,
            batch_size=config.batch_size, grad_clip=config.grad_clip,
            label_dropout=config.label_dropout, seed=config.seed, stream=stream,
            progress=config.progress, desc=f"DiMRA {stream}", callback=callback,
            callback_every=config.eval_every if callback is not None else 0,
            params=params, extra_loss=extra,
            lr_lambda=None if config.schedule == "constant"
            else lambda k: lr_factor(config.schedule, k, config.steps))
    finally:
        for p, f in zip(frozen, flags, strict=True):
            p.requires_grad_(f)


def _untie_loss(model, scheduler, data, batch, c_f, null, gen) -> torch.Tensor:
    """|| eps(x_t | c_f) - sg eps(x_t | null) ||^2 on a batch of ``data`` images."""
    x0, _ = sample_batch(data, batch, gen)
    x_t, t, _, _ = diffusion_inputs(
        x0,
        torch.zeros(len(x0), dtype=torch.long, device=x0.device),
        scheduler,
        label_dropout=0.0,
        null_label=null,
        generator=gen,
    )
    with torch.no_grad():
        target = model(x_t, t, class_labels=torch.full_like(t, null)).sample
    pred = model(x_t, t, class_labels=torch.full_like(t, c_f)).sample
    return (pred - target).pow(2).mean()


def run_relearning_attack(
    pipeline: ClassConditionalDDPMPipeline,
    attack_data: ImageData,
    forget_class: int,
    config: RelearnConfig,
    probe: Probe | None = None,
    *,
    untie_data: ImageData | None = None,
    allow_forget_class: bool = False,
) -> tuple[ClassConditionalDDPMPipeline, RelearnCurve]:
    """Fine-tune a copy of ``pipeline`` on ``attack_data`` and trace relearning.

    Args:
        pipeline: the unlearned model (left unchanged).
        attack_data: D_r or D_au; must hold no sample of ``forget_class`` unless
            ``allow_forget_class``.
        forget_class: c_f, used only for the check and by ``probe`` (and by the untie
            term when ``config.untie_class`` is set).
        config: the attack budget (steps, lr, schedule, batch, ...). Use the same for
            every method in a comparison.
        probe: measures the forgotten class on a pipeline; called at step 0, every
            ``config.eval_every`` steps and at the end. ``None``: no curve.
        untie_data: images of ``config.untie_class`` for the adaptive untie term
            (default: those rows of ``attack_data``).
        allow_forget_class: few-shot relearning, where the attacker holds a handful of
            c_f images: skip the disjointness check.

    Returns:
        (attacked pipeline, curve).

    Raises:
        ValueError: ``attack_data`` contains the forgotten class (and
            ``allow_forget_class`` is false), is empty, or does not fit the model; the
            untie class has no images.
    """
    check_forget_class(forget_class, pipeline.num_classes)
    if not allow_forget_class:
        # The threat model: the attacker's data never holds the forgotten class.
        assert_no_class(attack_data, forget_class, f"DiMRA {config.attack_data} data")
    if config.untie_class is not None:
        check_forget_class(config.untie_class, pipeline.num_classes)
        if untie_data is None:
            untie_data = attack_data.subset(attack_data.labels == config.untie_class)
        if len(untie_data) == 0:
            raise ValueError(
                f"untie_class: got {config.untie_class}, which has no images in the "
                "attack data, expected a class present there (or pass untie_data)"
            )
    else:
        untie_data = None
    setup = select_device(config.device, mixed_precision=False)
    pipe = copy_pipeline(pipeline)
    pipe.to(setup.device)
    curve = RelearnCurve()

    def measure(step: int, model) -> None:
        if probe is not None and step < config.steps:
            curve.add(step, probe(pipe))

    logger.info(
        "DiMRA on %s: %d images, %d steps x batch %d, lr %g (%s), trainable_last %d, "
        "lora_rank %d",
        config.attack_data,
        len(attack_data),
        config.steps,
        config.batch_size,
        config.lr,
        config.schedule,
        config.trainable_last,
        config.lora_rank,
    )
    # With LoRA, step 0 is measured on the adapted model (B = 0: the unlearned one)
    # and the last point after merging, on the model that is returned.
    with (
        lora_adapters(pipe.unet, config.lora_rank, config.lora_alpha, config.seed)
        if config.lora_rank
        else nullcontext()
    ):
        if probe is not None:
            curve.add(0, probe(pipe))
        curve.losses = attack_fit(
            pipe.unet,
            pipe.scheduler,
            attack_data,
            config,
            stream=f"dimra-{config.attack_data}",
            forget_class=forget_class,
            untie_data=untie_data,
            callback=measure,
        )
    if probe is not None:
        curve.add(config.steps, probe(pipe))
    return pipe, curve
