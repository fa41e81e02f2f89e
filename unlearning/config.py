"""Frozen config dataclasses for pretrain/unlearn/relearn/evaluate and argparse glue.

Every field carries its help string in ``metadata["help"]``.
:func:`add_config_arguments` turns a dataclass into argparse flags (``--forget-class``)
and :func:`config_from_args` turns the parsed namespace back into the dataclass, so
conversion happens once, at the edge. Defaults run a tiny CPU job on sklearn digits.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import Any, TypeVar, get_type_hints

DATASETS = ("digits", "mnist", "cifar10")
#: What the saved-model commands (unlearn, relearn, evaluate) read: the datasets plus an
#: ImageFolder-style ``folder``. Pre-training needs a UNet preset per dataset, so it
#: takes DATASETS only.
DATA_SOURCES = (*DATASETS, "folder")
ARCHS = ("unet", "mlp")
METHODS = (
    "swap_label",
    "salun",
    "erasediff",
    "sa",
    "ga",
    "finetune",
    "retrain",
    "dimum",
)
ALT_SOURCES = ("real", "generated", "fixed", "heldout")
REDUCTIONS = ("mean", "sum")
"""Pixel reductions of a squared error: mean over pixels, or sum over pixels (both then
averaged over the batch); see :func:`unlearning.losses.reduce_pixels`."""
PSEUDO_LABELS = ("next", "random")
INNER_OPTIMIZERS = ("shared", "fresh")
ATTACK_DATA = ("retain", "aux")
LR_SCHEDULES = ("constant", "cosine")


def _f(default: Any, help: str) -> Any:  # noqa: A002 - mirrors argparse's name
    return field(default=default, metadata={"help": help})


def _check(ok: bool, name: str, value: Any, expected: str) -> None:
    if not ok:
        raise ValueError(f"{name}: got {value!r}, expected {expected}")


def _check_common(cfg: Any) -> None:
    for name in ("steps", "batch_size"):
        if hasattr(cfg, name):
            v = getattr(cfg, name)
            _check(isinstance(v, int) and v >= 1, name, v, "an integer >= 1")
    if hasattr(cfg, "lr"):
        _check(cfg.lr > 0, "lr", cfg.lr, "a learning rate > 0")
    if hasattr(cfg, "grad_clip"):
        _check(cfg.grad_clip > 0, "grad_clip", cfg.grad_clip, "> 0")
    if hasattr(cfg, "label_dropout"):
        v = cfg.label_dropout
        _check(0.0 <= v < 1.0, "label_dropout", v, "a probability in [0, 1)")
    if hasattr(cfg, "dataset"):
        _check(cfg.dataset in DATASETS, "dataset", cfg.dataset, f"one of {DATASETS}")
    if hasattr(cfg, "device"):
        d = cfg.device
        _check(
            d in ("auto", "cpu") or d.startswith("cuda"),
            "device",
            d,
            "'auto', 'cpu', 'cuda' or 'cuda:N'",
        )


@dataclass(frozen=True)
class PretrainConfig:
    """Pre-training of the class-conditional DDPM that will later be unlearned."""

    dataset: str = _f("digits", f"dataset, one of {DATASETS}")
    data_root: str | None = _f(
        None, "folder holding MNIST IDX files or CIFAR-10 (not needed for digits)"
    )
    download: bool = _f(False, "allow torchvision to download CIFAR-10 into data_root")
    arch: str = _f(
        "unet",
        "noise predictor: 'unet' (diffusers UNet2DModel) or 'mlp' (fast CPU variant)",
    )
    steps: int = _f(3000, "optimizer steps")
    batch_size: int = _f(256, "images per step")
    lr: float = _f(1e-3, "Adam learning rate")
    grad_clip: float = _f(1.0, "global gradient-norm clip")
    label_dropout: float = _f(
        0.1, "probability of replacing the label by the null label"
    )
    ema_decay: float = _f(0.0, "EMA decay of the published weights; 0 disables EMA")
    seed: int = _f(0, "seed for init, batches, noise and the data split")
    device: str = _f("auto", "'auto', 'cpu', 'cuda' or 'cuda:N'")
    progress: bool = _f(True, "show tqdm progress bars")

    def __post_init__(self) -> None:
        _check_common(self)
        _check(self.arch in ARCHS, "arch", self.arch, f"one of {ARCHS}")
        _check(0.0 <= self.ema_decay < 1.0, "ema_decay", self.ema_decay, "in [0, 1)")


@dataclass(frozen=True)
class UnlearnConfig:
    """One fine-tuning-based unlearning run (defaults: dimum.md section 4, CPU)."""

    method: str = _f("dimum", f"unlearning method, one of {METHODS}")
    forget_class: int = _f(0, "class index to forget")
    steps: int = _f(600, "optimizer steps (SalUn: 1000 on CIFAR; 600 in the CPU pilot)")
    lr: float = _f(1e-4, "Adam learning rate (all baselines use 1e-4)")
    batch_size: int = _f(128, "retain images per step (and forget images per step)")
    grad_clip: float = _f(1.0, "global gradient-norm clip")
    label_dropout: float = _f(
        0.1, "label dropout on the retain term (keeps the CFG null path trained)"
    )
    retain_weight: float = _f(
        1.0, "weight of the retain loss (swap_label, ga, sa, dimum)"
    )
    swap_label_target: str = _f(
        "random",
        f"swap_label: target label c' of the forget term, one of {PSEUDO_LABELS}: uniform "
        "over the other classes per image (the default: SalUn-RL's paper form), or "
        "(c_f + 1) mod K for every image (a fixed target, as SalUn's DDPM code)",
    )
    salun_alpha: float = _f(
        1e-3,
        "SalUn retain weight alpha (README command: 1e-3), applied to a retain loss "
        "reduced by salun_retain_reduction",
    )
    salun_forget_reduction: str = _f(
        "mean",
        f"SalUn: pixel reduction {REDUCTIONS} of the swap-label forget loss "
        "(official: torch.nn.MSELoss, a mean)",
    )
    salun_retain_reduction: str = _f(
        "sum",
        f"SalUn: pixel reduction {REDUCTIONS} of the retain loss "
        "(official: noise_estimation_loss_conditional, a pixel sum)",
    )
    salun_pseudo_label: str = _f(
        "next",
        f"SalUn: target label c' of the forget term, one of {PSEUDO_LABELS}: "
        "(c_f + 1) mod K as in the DDPM code, or uniform over the other classes per "
        "image as in the paper",
    )
    mask_ratio: float = _f(
        0.5, "SalUn: fraction of weights (largest saliency) that move"
    )
    mask_batches: int | None = _f(
        None,
        "SalUn: forget batches summed for the saliency gradient; default "
        "ceil(|D_f| / batch_size), one pass as in generate_mask",
    )
    erasediff_k: int = _f(
        2, "EraseDiff: K, passes over D_f on the forget objective per cycle"
    )
    erasediff_lambda: float = _f(
        0.1, "EraseDiff: lambda_bome; a negative value selects adaptive lambda"
    )
    erasediff_eta: float = _f(0.1, "EraseDiff: eta_bome for adaptive lambda")
    erasediff_reduction: str = _f(
        "mean",
        f"EraseDiff: pixel reduction {REDUCTIONS} of its retain and forget losses "
        "(official: F.mse_loss and MSELoss, both means)",
    )
    erasediff_optimizer: str = _f(
        "shared",
        f"EraseDiff: optimizer of the inner steps, one of {INNER_OPTIMIZERS}: the "
        "outer loop's Adam, whose moments keep the inner forget gradients (official), "
        "or a new Adam per cycle (then the inner steps change nothing)",
    )
    erasediff_rem_num: int = _f(
        4500,
        "EraseDiff: rem_num, retain images per cycle; a cycle has "
        "min(ceil(|D_f| / batch_size), rem_num // batch_size + 1) outer steps",
    )
    sa_lambda: float = _f(10.0, "Selective Amnesia: EWC weight lambda")
    sa_gamma: float = _f(1.0, "Selective Amnesia: generative-replay weight gamma")
    sa_reduction: str = _f(
        "sum",
        f"Selective Amnesia: pixel reduction {REDUCTIONS} of its losses; 'sum' is "
        "SA's objective, 'mean' the same objective divided by C*H*W",
    )
    sa_samples_per_class: int = _f(
        32,
        "Selective Amnesia: samples per class (every class) for the Fisher; those of "
        "the remembered classes are the replay set (SA: 500)",
    )
    sa_fisher_timesteps: int = _f(
        1000,
        "Selective Amnesia: timesteps summed per Fisher sample; >= T (1000) uses every "
        "timestep as SA does, fewer draws them at random and rescales by T / n",
    )
    ga_stop_loss: float = _f(
        1.0,
        "gradient ascent divergence guard: stop once the forget loss (mean of the "
        "last 20 steps) exceeds this; 1.0 is the loss of predicting zero noise",
    )
    stop_every: int = _f(
        5,
        "steps between stop checks: first the external stop (unlearn_with_log "
        "stop_fn, e.g. the judge), then the method's own guard (gradient ascent)",
    )
    dimum_lambda: float = _f(1.0, "DiMUM: weight of the memorisation loss")
    dimum_alt: str = _f(
        "real",
        f"DiMUM alternative data, one of {ALT_SOURCES}: real images of alt class, "
        "samples of the original model for alt class, a fixed small real set, or real "
        "alt-class images outside D_r that the caller passes (unlearn(alt_images=...))",
    )
    dimum_alt_class: int | None = _f(
        None, "DiMUM alternative class; default (forget_class + 1) mod num_classes"
    )
    dimum_alt_size: int = _f(
        256, "DiMUM: images generated ('generated') or kept ('fixed') as D_alt"
    )
    retrain_steps: int = _f(3000, "retrain control: steps from scratch on D_r")
    retrain_lr: float = _f(1e-3, "retrain control: learning rate")
    retrain_batch_size: int = _f(256, "retrain control: batch size")
    sample_steps: int = _f(50, "DDIM steps when a method samples the original model")
    guidance_scale: float = _f(2.0, "CFG weight w when a method samples the model")
    seed: int = _f(0, "seed for batches, noise and masks")
    device: str = _f("auto", "'auto', 'cpu', 'cuda' or 'cuda:N'")
    progress: bool = _f(True, "show tqdm progress bars")

    def __post_init__(self) -> None:
        _check_common(self)
        _check(self.method in METHODS, "method", self.method, f"one of {METHODS}")
        _check(self.forget_class >= 0, "forget_class", self.forget_class, ">= 0")
        _check(0.0 < self.mask_ratio <= 1.0, "mask_ratio", self.mask_ratio, "in (0, 1]")
        _check(self.stop_every >= 1, "stop_every", self.stop_every, ">= 1")
        _check(self.erasediff_k >= 1, "erasediff_k", self.erasediff_k, ">= 1")
        for name in (
            "salun_forget_reduction",
            "salun_retain_reduction",
            "erasediff_reduction",
            "sa_reduction",
        ):
            v = getattr(self, name)
            _check(v in REDUCTIONS, name, v, f"one of {REDUCTIONS}")
        _check(
            self.swap_label_target in PSEUDO_LABELS,
            "swap_label_target",
            self.swap_label_target,
            f"one of {PSEUDO_LABELS}",
        )
        _check(
            self.salun_pseudo_label in PSEUDO_LABELS,
            "salun_pseudo_label",
            self.salun_pseudo_label,
            f"one of {PSEUDO_LABELS}",
        )
        _check(
            self.erasediff_optimizer in INNER_OPTIMIZERS,
            "erasediff_optimizer",
            self.erasediff_optimizer,
            f"one of {INNER_OPTIMIZERS}",
        )
        _check(
            self.erasediff_rem_num >= 0,
            "erasediff_rem_num",
            self.erasediff_rem_num,
            ">= 0",
        )
        if self.mask_batches is not None:
            _check(self.mask_batches >= 1, "mask_batches", self.mask_batches, ">= 1")
        _check(
            self.sa_fisher_timesteps >= 1,
            "sa_fisher_timesteps",
            self.sa_fisher_timesteps,
            ">= 1",
        )
        _check(
            self.dimum_alt in ALT_SOURCES,
            "dimum_alt",
            self.dimum_alt,
            f"one of {ALT_SOURCES}",
        )
        _check(self.dimum_alt_size >= 1, "dimum_alt_size", self.dimum_alt_size, ">= 1")
        _check(
            self.sa_samples_per_class >= 1,
            "sa_samples_per_class",
            self.sa_samples_per_class,
            ">= 1",
        )
        for name in (
            "retain_weight",
            "salun_alpha",
            "sa_lambda",
            "sa_gamma",
            "dimum_lambda",
        ):
            _check(getattr(self, name) >= 0, name, getattr(self, name), ">= 0")
        if self.dimum_alt_class is not None:
            _check(
                self.dimum_alt_class != self.forget_class,
                "dimum_alt_class",
                self.dimum_alt_class,
                "a class other than forget_class",
            )


@dataclass(frozen=True)
class RelearnConfig:
    """DiMRA budget: plain conditional fine-tuning of the unlearned model."""

    attack_data: str = _f("retain", f"attacker's data, one of {ATTACK_DATA}")
    steps: int = _f(1000, "optimizer steps")
    lr: float = _f(1e-3, "Adam learning rate (the pilot's effective attack used 1e-3)")
    batch_size: int = _f(128, "images per step")
    grad_clip: float = _f(1.0, "global gradient-norm clip")
    label_dropout: float = _f(0.1, "label dropout, as in pre-training")
    eval_every: int = _f(250, "measure relearning accuracy every N steps (0: only end)")
    eval_samples: int = _f(100, "forgotten-class samples per curve point")
    schedule: str = _f(
        "constant",
        f"learning-rate schedule, one of {LR_SCHEDULES}: constant, or cosine decay "
        "from lr to 0 over the steps",
    )
    trainable_last: int = _f(
        0,
        "0: fine-tune every parameter; N > 0: only the last N modules that hold "
        "parameters (module order; MLP: body's last Linear and out for N = 2)",
    )
    lora_rank: int = _f(
        0,
        "0: no LoRA; r > 0: fine-tune only rank-r LoRA adapters (peft) on every "
        "Linear and Conv2d layer, merged into the weights at the end",
    )
    lora_alpha: float = _f(
        0.0,
        "LoRA scale alpha (adapter update scaled by alpha / lora_rank); 0: alpha = "
        "lora_rank, i.e. scale 1",
    )
    untie_class: int | None = _f(
        None,
        "adaptive attack on DiMUM: also train eps(x_t | c_f) towards sg eps(x_t | null)"
        " on images of this class (DiMUM's alternative), weight untie_weight",
    )
    untie_weight: float = _f(1.0, "weight of the untie term (see untie_class)")
    seed: int = _f(0, "seed for batches and noise")
    device: str = _f("auto", "'auto', 'cpu', 'cuda' or 'cuda:N'")
    progress: bool = _f(True, "show tqdm progress bars")

    def __post_init__(self) -> None:
        _check_common(self)
        _check(
            self.attack_data in ATTACK_DATA,
            "attack_data",
            self.attack_data,
            f"one of {ATTACK_DATA}",
        )
        _check(self.eval_every >= 0, "eval_every", self.eval_every, ">= 0")
        _check(self.eval_samples >= 1, "eval_samples", self.eval_samples, ">= 1")
        _check(
            self.schedule in LR_SCHEDULES,
            "schedule",
            self.schedule,
            f"one of {LR_SCHEDULES}",
        )
        _check(
            isinstance(self.trainable_last, int) and self.trainable_last >= 0,
            "trainable_last",
            self.trainable_last,
            "an integer >= 0",
        )
        _check(
            isinstance(self.lora_rank, int) and self.lora_rank >= 0,
            "lora_rank",
            self.lora_rank,
            "an integer >= 0",
        )
        _check(self.lora_alpha >= 0, "lora_alpha", self.lora_alpha, ">= 0")
        if self.lora_rank == 0:
            _check(
                self.lora_alpha == 0,
                "lora_alpha",
                self.lora_alpha,
                "0 when lora_rank is 0 (LoRA off; set lora_rank > 0 to use it)",
            )
        else:
            _check(
                self.trainable_last == 0,
                "trainable_last",
                self.trainable_last,
                f"0 with lora_rank {self.lora_rank} (LoRA trains adapters on every "
                "layer; the last-layers attack trains base weights: pick one)",
            )
        if self.untie_class is not None:
            _check(self.untie_class >= 0, "untie_class", self.untie_class, ">= 0")
        _check(self.untie_weight >= 0, "untie_weight", self.untie_weight, ">= 0")


@dataclass(frozen=True)
class EvalConfig:
    """How samples are drawn and scored."""

    forget_samples: int = _f(300, "samples generated with the forgotten label")
    retain_samples_per_class: int = _f(30, "samples per retained class")
    num_inference_steps: int = _f(50, "DDIM steps")
    guidance_scale: float = _f(2.0, "CFG weight w in (1 + w) eps_c - w eps_null")
    eta: float = _f(0.0, "DDIM eta (0: deterministic given the initial noise)")
    seed: int = _f(0, "seed of the sampling noise")

    def __post_init__(self) -> None:
        for name in (
            "forget_samples",
            "retain_samples_per_class",
            "num_inference_steps",
        ):
            v = getattr(self, name)
            _check(isinstance(v, int) and v >= 1, name, v, "an integer >= 1")
        _check(self.guidance_scale >= 0, "guidance_scale", self.guidance_scale, ">= 0")
        _check(0.0 <= self.eta <= 1.0, "eta", self.eta, "in [0, 1]")


C = TypeVar("C")


def _parse_bool(text: str) -> bool:
    low = text.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"got {text!r}, expected true/false")


def _parse_optional_int(text: str) -> int | None:
    return None if text.lower() in ("none", "") else int(text)


def _parse_optional_str(text: str) -> str | None:
    return None if text.lower() in ("none", "") else text


def add_config_arguments(
    parser: argparse.ArgumentParser, cls: type, prefix: str = ""
) -> None:
    """Add one ``--kebab-case`` flag per field of dataclass ``cls`` to ``parser``."""
    hints = get_type_hints(cls)
    parsers = {
        int: int,
        float: float,
        str: str,
        bool: _parse_bool,
        int | None: _parse_optional_int,
        str | None: _parse_optional_str,
    }
    for f in dataclasses.fields(cls):
        flag = "--" + prefix + f.name.replace("_", "-")
        parser.add_argument(
            flag,
            dest=prefix.replace("-", "_") + f.name,
            type=parsers[hints[f.name]],
            default=f.default,
            help=f"{f.metadata.get('help', '')} (default: {f.default})",
        )


def config_from_args(cls: type[C], ns: argparse.Namespace, prefix: str = "") -> C:
    """Build ``cls`` from the namespace filled by :func:`add_config_arguments`."""
    p = prefix.replace("-", "_")
    return cls(**{f.name: getattr(ns, p + f.name) for f in dataclasses.fields(cls)})


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """Return the config as a JSON-serialisable dict."""
    return dataclasses.asdict(cfg)


def config_from_dict(cls: type[C], values: dict[str, Any]) -> C:
    """Build ``cls`` from a dict, rejecting unknown keys (nanoGPT's configurator)."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(
            f"{cls.__name__}: unknown keys {unknown}; known: {sorted(known)}"
        )
    return cls(**values)
