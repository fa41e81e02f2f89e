"""The per-step losses of the fine-tuning-based unlearning methods.

One :class:`Objective` subclass per method of :data:`unlearning.config.METHODS` except
``retrain``; the loop that optimises them is :func:`unlearning.unlearn.unlearn_with_log`
and the method list with its formulas is in :mod:`unlearning.unlearn`.
"""

from __future__ import annotations

import abc
import math

import torch
from torch import nn

from trainkit import make_generator
from unlearning.config import UnlearnConfig
from unlearning.data import ImageData, check_forget_class, sample_batch
from unlearning.losses import (
    cfg_denoising_loss,
    denoising_loss,
    diffusion_inputs,
    ewc_penalty,
    fisher_diagonal,
    random_other_labels,
    swap_label_loss,
)


class Objective(abc.ABC):
    """Shared plumbing: batches, the retain term, and per-step loss of one method."""

    def __init__(
        self, pipe, forget, retain, cfg: UnlearnConfig, gen, alt_images=None
    ) -> None:
        self.pipe, self.cfg, self.gen = pipe, cfg, gen
        #: caller-given alternative images (DiMUM with ``dimum_alt="heldout"`` only)
        self.alt_images: torch.Tensor | None = alt_images
        self.model: nn.Module = pipe.unet
        self.sched = pipe.scheduler
        self.K = pipe.num_classes
        self.forget, self.retain = forget, retain
        self.mask: list[torch.Tensor] | None = None
        # The loop's optimizer, set by unlearn_with_log before the first step (a
        # method whose inner steps share it, EraseDiff, reads it).
        self.optimizer: torch.optim.Optimizer | None = None

    def inputs(
        self,
        data: ImageData,
        drop: float,
        labels: torch.Tensor | None = None,
        gen: torch.Generator | None = None,
    ):
        """(x_t, t, eps, y) for a batch of ``data`` (labels dropped with ``drop``)."""
        gen = gen or self.gen
        x0, y = sample_batch(data, self.cfg.batch_size, gen)
        if labels is not None:
            y = labels
        return diffusion_inputs(
            x0, y, self.sched, label_dropout=drop, null_label=self.K, generator=gen
        )

    def retain_loss(self, reduction: str = "mean") -> torch.Tensor:
        """L_r: the denoising loss on a D_r batch, with label dropout."""
        return denoising_loss(
            self.model,
            *self.inputs(self.retain, self.cfg.label_dropout),
            reduction=reduction,
        )

    def forget_labels(self) -> torch.Tensor:
        """A batch of c_f labels on the generator's device."""
        return torch.full(
            (self.cfg.batch_size,), self.cfg.forget_class, device=self.gen.device
        )

    def swap_loss(
        self,
        per_batch_label: bool = False,
        reduction: str = "mean",
        next_label: bool = False,
        gen: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Swap-label forget term on a D_f batch.

        Args:
            per_batch_label: one random c' per batch instead of one per image.
            reduction: pixel reduction of the squared error.
            next_label: c' = (c_f + 1) mod K for every image (SalUn's DDPM code).
            gen: generator of the batch (default: the objective's).
        """
        gen = gen or self.gen
        x_t, t, _, c_f = self.inputs(self.forget, 0.0, gen=gen)
        if next_label:
            c_prime = torch.full_like(c_f, (self.cfg.forget_class + 1) % self.K)
        else:
            n = 1 if per_batch_label else c_f.shape[0]
            c_prime = random_other_labels(self.cfg.forget_class, self.K, n, gen)
        return swap_label_loss(
            self.model, x_t, t, c_f, c_prime.expand(c_f.shape[0]), reduction
        )

    @abc.abstractmethod
    def loss(self, step: int) -> tuple[torch.Tensor, dict]:
        """Return this step's scalar loss and a dict of numbers for logging."""

    def should_stop(self, info: dict) -> bool:
        """The method's own stop guard (``info`` from ``loss``).

        The loop asks it every ``cfg.stop_every`` steps, after the external stop.
        """
        return False


class SwapLabel(Objective):
    """SalUn-RL without mask: swap-label forget term + retain_weight * L_r."""

    def loss(self, step):  # noqa: D102 - see Objective.loss
        forget = self.swap_loss(next_label=self.cfg.swap_label_target == "next")
        return forget + self.cfg.retain_weight * self.retain_loss(), {}


class SalUn(Objective):
    """SalUn: swap-label term + alpha * L_r, gradients masked by saliency.

    Follows ``saliency_unlearn`` of OPTML-Group/Unlearn-Saliency ``DDPM/runners/
    diffusion.py``: forget term ``MSELoss()(pseudo, output)`` (pixel mean) with
    c' = (c_f + 1) mod K, plus ``alpha * noise_estimation_loss_conditional`` (pixel
    sum, batch mean); the reductions and c' are switches of :class:`UnlearnConfig`.
    """

    def __init__(self, *args) -> None:  # noqa: D107
        super().__init__(*args)
        self.mask = self.saliency_mask()

    def saliency_mask(self) -> list[torch.Tensor]:
        """M = 1 where |grad of the CFG forget loss at theta_o| is in the top ratio.

        As SalUn's ``generate_mask``: per forget batch the gradient of the pixel-sum
        loss on the CFG output is clipped to norm ``grad_clip`` and summed (signed);
        the saliency is the absolute value of that sum, with the model in eval mode.
        """
        cfg = self.cfg
        params = list(self.model.parameters())
        grads = [torch.zeros_like(p) for p in params]
        n_batches = cfg.mask_batches or math.ceil(len(self.forget) / cfg.batch_size)
        self.model.eval()
        for _ in range(n_batches):
            x_t, t, eps, c_f = self.inputs(self.forget, 0.0)
            loss = cfg_denoising_loss(
                self.model, x_t, t, eps, c_f, self.K, cfg.guidance_scale, "sum"
            )
            g_batch = torch.autograd.grad(loss, params)
            norm = torch.linalg.vector_norm(
                torch.stack([torch.linalg.vector_norm(g) for g in g_batch])
            )
            clip = min(1.0, cfg.grad_clip / (float(norm) + 1e-6))
            for g, gp in zip(grads, g_batch, strict=True):
                g += gp * clip
        self.model.train()
        flat = torch.cat([g.abs().flatten() for g in grads])
        k = max(1, int(round(cfg.mask_ratio * flat.numel())))
        threshold = torch.topk(flat, k, sorted=True).values[-1]
        return [(g.abs() >= threshold).float() for g in grads]

    def loss(self, step):  # noqa: D102 - see Objective.loss
        cfg = self.cfg
        loss_f = self.swap_loss(
            reduction=cfg.salun_forget_reduction,
            next_label=cfg.salun_pseudo_label == "next",
        )
        loss_r = self.retain_loss(cfg.salun_retain_reduction)
        return loss_f + cfg.salun_alpha * loss_r, {}


class EraseDiff(Objective):
    """EraseDiff, first-order bi-level as in its released code (RL forget term).

    Follows ``train_ours`` of JingWu321/EraseDiff ``ddpm/runners/diffusion.py``. A
    cycle: save theta_i; K passes over D_f, each batch one step of the *loop's* Adam
    on the forget objective f (BOME line 1); restore theta_i, keeping the optimizer's
    moments; then outer steps on L_r + lambda (f(theta) - f(theta^K)) (lines 2-3),
    ``min(ceil(|D_f| / B), rem_num // B + 1)`` of them, before the next cycle.
    """

    def __init__(self, *args) -> None:  # noqa: D107
        super().__init__(*args)
        cfg = self.cfg
        # The inner steps draw their own batches, so that the outer batches do not
        # depend on K (what they change is the weights and the optimizer only).
        self.inner_gen = make_generator(
            cfg.seed, "erasediff-inner", device=self.gen.device
        )
        self.inner_batches = math.ceil(len(self.forget) / cfg.batch_size)
        self.outer_per_cycle = min(
            self.inner_batches, cfg.erasediff_rem_num // cfg.batch_size + 1
        )
        self.outer_left = 0
        self.f_k = 0.0
        self.inner_steps_run = 0

    def inner_loop(self) -> None:
        """K passes over D_f from theta_i, then restore theta_i; sets ``f_k``."""
        cfg = self.cfg
        params = list(self.model.parameters())
        theta_i = [p.detach().clone() for p in params]
        if cfg.erasediff_optimizer == "shared":
            if self.optimizer is None:
                raise RuntimeError("EraseDiff: the loop's optimizer was not attached")
            opt = self.optimizer
        else:
            opt = torch.optim.Adam(params, lr=cfg.lr)
        last_pass: list[float] = []
        for _ in range(cfg.erasediff_k):
            last_pass = []  # f(theta^K) = mean loss of the last pass (AverageMeter)
            for _ in range(self.inner_batches):
                f = self.swap_loss(
                    per_batch_label=True,
                    reduction=cfg.erasediff_reduction,
                    gen=self.inner_gen,
                )
                opt.zero_grad(set_to_none=True)
                f.backward()  # no clipping in the inner loop (as released)
                opt.step()
                last_pass.append(f.item())
                self.inner_steps_run += 1
        with torch.no_grad():
            for p, p0 in zip(params, theta_i, strict=True):
                p.copy_(p0)
        self.model.zero_grad(set_to_none=True)
        self.f_k = sum(last_pass) / len(last_pass)

    def loss(self, step):  # noqa: D102 - see Objective.loss
        cfg = self.cfg
        if self.outer_left == 0:
            self.inner_loop()
            self.outer_left = self.outer_per_cycle
        self.outer_left -= 1
        params = list(self.model.parameters())
        # q(theta) = f(theta) - f(theta^K) (line 2); outer objective F + lambda q
        loss_r = self.retain_loss(cfg.erasediff_reduction)
        loss_q = (
            self.swap_loss(per_batch_label=True, reduction=cfg.erasediff_reduction)
            - self.f_k
        )
        lam = cfg.erasediff_lambda
        if lam < 0:  # adaptive: lambda = max(eta - cos(grad F, grad q), 0)
            g_r = torch.autograd.grad(loss_r, params, retain_graph=True)
            g_q = torch.autograd.grad(loss_q, params, retain_graph=True)
            v_r = torch.cat([g.flatten() for g in g_r])
            v_q = torch.cat([g.flatten() for g in g_q])
            cos = torch.nn.functional.cosine_similarity(v_r, v_q, dim=0)
            lam = max(cfg.erasediff_eta - cos.item(), 0.0)
        return loss_r + lam * loss_q, {"lambda": lam, "f_k": self.f_k}


class SelectiveAmnesia(Objective):
    """Selective Amnesia: noise surrogate for c_f, generative replay, EWC anchor.

    Follows ``train_forget`` and ``save_fim`` of clear-nus/selective-amnesia
    ``ddpm/runners/diffusion.py``: L(uniform noise | c_f) + gamma L(replay) with
    pixel-sum losses, + lambda sum F (theta - theta_o)^2, F from samples of every class.
    """

    def __init__(self, *args) -> None:  # noqa: D107
        super().__init__(*args)
        cfg = self.cfg
        self.theta_o = [p.detach().clone() for p in self.model.parameters()]
        self.samples = self.class_samples()
        keep = self.samples.labels != cfg.forget_class
        self.replay = ImageData(self.samples.images[keep], self.samples.labels[keep])
        self.fisher = self.fisher_diagonal(self.samples)
        # 'sum' is SA's objective; 'mean' divides all of it by D = C*H*W (each loss
        # term by pixel averaging, the EWC term by its weight), keeping the balance.
        c, h, w = self.forget.image_shape
        d = 1 if cfg.sa_reduction == "sum" else c * h * w
        self.lam = cfg.sa_lambda / d

    def class_samples(self) -> ImageData:
        """Samples of the original model for every class (SA's ``sample_classes``)."""
        labels = torch.arange(self.K).repeat_interleave(self.cfg.sa_samples_per_class)
        gen = make_generator(self.cfg.seed, "sa-replay", device=self.gen.device)
        images = self.pipe(
            labels,
            generator=gen,
            num_inference_steps=self.cfg.sample_steps,
            guidance_scale=self.cfg.guidance_scale,
        ).images
        self.model.train()
        return ImageData(images.to(self.gen.device), labels.to(self.gen.device))

    def fisher_diagonal(self, samples: ImageData, n_t: int | None = None) -> list:
        """F of :func:`unlearning.losses.fisher_diagonal`, pixel-sum loss, eval mode."""
        self.model.eval()
        fisher = fisher_diagonal(
            self.model,
            samples.images,
            samples.labels,
            self.sched,
            n_timesteps=n_t or self.cfg.sa_fisher_timesteps,
            generator=self.gen,
            reduction="sum",
        )
        self.model.train()
        return fisher

    def loss(self, step):  # noqa: D102 - see Objective.loss
        red = self.cfg.sa_reduction
        # 1. forget label -> surrogate q = uniform noise in [-1, 1]
        x0 = (
            torch.rand(
                (self.cfg.batch_size, *self.forget.image_shape),
                generator=self.gen,
                device=self.gen.device,
            )
            * 2
            - 1
        )
        x_t, t, eps, y = diffusion_inputs(
            x0,
            self.forget_labels(),
            self.sched,
            label_dropout=0.0,
            null_label=self.K,
            generator=self.gen,
        )
        loss_f = denoising_loss(self.model, x_t, t, eps, y, red)
        # 2. generative replay of the remembered classes
        loss_replay = denoising_loss(
            self.model, *self.inputs(self.replay, 0.0), reduction=red
        )
        # 3. EWC anchor to theta_o
        loss_ewc = ewc_penalty(self.model, self.fisher, self.theta_o)
        total = loss_f + self.cfg.sa_gamma * loss_replay + self.lam * loss_ewc
        return total, {"ewc": loss_ewc.item()}


class GradientAscent(Objective):
    """-L(D_f) + retain_weight * L_r with a loss-threshold early stop."""

    def __init__(self, *args) -> None:  # noqa: D107
        super().__init__(*args)
        self.recent: list[float] = []

    def loss(self, step):  # noqa: D102 - see Objective.loss
        loss_f = denoising_loss(self.model, *self.inputs(self.forget, 0.0))
        total = -loss_f + self.cfg.retain_weight * self.retain_loss()
        self.recent.append(loss_f.item())
        return total, {"forget_loss": sum(self.recent[-20:]) / len(self.recent[-20:])}

    def should_stop(self, info):  # noqa: D102
        # A single batch's loss swings with t; the 20-step mean is a steadier signal.
        return info["forget_loss"] > self.cfg.ga_stop_loss


class FineTune(Objective):
    """Fine-tune on D_r only (catastrophic forgetting baseline)."""

    def loss(self, step):  # noqa: D102 - see Objective.loss
        return self.retain_loss(), {}


def dimum_alt_class(cfg: UnlearnConfig, num_classes: int) -> int:
    """DiMUM's alternative class: ``cfg.dimum_alt_class``, default (c_f + 1) mod K."""
    if cfg.dimum_alt_class is not None:
        return cfg.dimum_alt_class
    return (cfg.forget_class + 1) % num_classes


class DiMUM(Objective):
    """DiMUM: L_r + lambda * L_mem, L_mem = L_simple(D_alt under label c_f)."""

    def __init__(self, *args) -> None:  # noqa: D107
        super().__init__(*args)
        cfg = self.cfg
        self.alt_class = dimum_alt_class(cfg, self.K)
        check_forget_class(self.alt_class, self.K)
        self.alt = self.alternative_data()

    def alternative_data(self) -> ImageData:
        """D_alt: images the forgotten label is taught to produce instead."""
        cfg, a = self.cfg, self.alt_class
        if cfg.dimum_alt == "generated":
            labels = torch.full((cfg.dimum_alt_size,), a, dtype=torch.long)
            gen = make_generator(cfg.seed, "dimum-alt", device=self.gen.device)
            images = self.pipe(
                labels,
                generator=gen,
                num_inference_steps=cfg.sample_steps,
                guidance_scale=cfg.guidance_scale,
            ).images.to(self.gen.device)
            self.model.train()
        elif cfg.dimum_alt == "heldout":
            images = self.alt_images  # checked by unlearn_with_log: given, outside D_r
        else:
            images = self.retain.images[self.retain.labels == a]
            if len(images) == 0:
                raise ValueError(f"dimum_alt_class: class {a} has no retain images")
            if cfg.dimum_alt == "fixed":
                gen = make_generator(cfg.seed, "dimum-fixed", device=self.gen.device)
                keep = torch.randperm(len(images), generator=gen, device=gen.device)
                images = images[keep[: cfg.dimum_alt_size]]
        # Stored under the forgotten label: L_mem trains eps(. | c_f) on D_alt.
        labels = torch.full((len(images),), cfg.forget_class, device=images.device)
        return ImageData(images, labels)

    def loss(self, step):  # noqa: D102 - see Objective.loss
        # One forward pass over [retain batch ; alternative batch].
        x_r, t_r, e_r, y_r = self.inputs(self.retain, self.cfg.label_dropout)
        x_a, t_a, e_a, y_a = self.inputs(self.alt, 0.0)
        b = x_r.shape[0]
        pred = self.model(
            torch.cat([x_r, x_a]),
            torch.cat([t_r, t_a]),
            class_labels=torch.cat([y_r, y_a]),
        ).sample
        sq = (torch.cat([e_r, e_a]) - pred).pow(2)
        loss_retain, loss_mem = sq[:b].mean(), sq[b:].mean()
        total = self.cfg.retain_weight * loss_retain + self.cfg.dimum_lambda * loss_mem
        return total, {"mem": loss_mem.item()}


OBJECTIVES: dict[str, type[Objective]] = {
    "swap_label": SwapLabel,
    "salun": SalUn,
    "erasediff": EraseDiff,
    "sa": SelectiveAmnesia,
    "ga": GradientAscent,
    "finetune": FineTune,
    "dimum": DiMUM,
}
