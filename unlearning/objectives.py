"""The per-step losses of the fine-tuning-based unlearning methods.

One :class:`Objective` subclass per method of :data:`unlearning.config.METHODS` except
``retrain``; the loop that optimises them is :func:`unlearning.unlearn.unlearn_with_log`
and the method list with its formulas is in :mod:`unlearning.unlearn`.
"""

from __future__ import annotations

import abc

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
    random_other_labels,
    swap_label_loss,
)


class Objective(abc.ABC):
    """Shared plumbing: batches, the retain term, and per-step loss of one method."""

    def __init__(self, pipe, forget, retain, cfg: UnlearnConfig, gen) -> None:
        self.pipe, self.cfg, self.gen = pipe, cfg, gen
        self.model: nn.Module = pipe.unet
        self.sched = pipe.scheduler
        self.K = pipe.num_classes
        self.forget, self.retain = forget, retain
        self.mask: list[torch.Tensor] | None = None

    def inputs(self, data: ImageData, drop: float, labels: torch.Tensor | None = None):
        """(x_t, t, eps, y) for a batch of ``data`` (labels dropped with ``drop``)."""
        x0, y = sample_batch(data, self.cfg.batch_size, self.gen)
        if labels is not None:
            y = labels
        return diffusion_inputs(
            x0, y, self.sched, label_dropout=drop, null_label=self.K, generator=self.gen
        )

    def retain_loss(self) -> torch.Tensor:
        """L_r: the denoising loss on a D_r batch, with label dropout."""
        return denoising_loss(
            self.model, *self.inputs(self.retain, self.cfg.label_dropout)
        )

    def forget_labels(self) -> torch.Tensor:
        """A batch of c_f labels on the generator's device."""
        return torch.full(
            (self.cfg.batch_size,), self.cfg.forget_class, device=self.gen.device
        )

    def swap_loss(self, per_batch_label: bool = False) -> torch.Tensor:
        """Swap-label forget term on a D_f batch (one c' per image, or per batch)."""
        x_t, t, _, c_f = self.inputs(self.forget, 0.0)
        n = 1 if per_batch_label else c_f.shape[0]
        c_prime = random_other_labels(self.cfg.forget_class, self.K, n, self.gen)
        return swap_label_loss(self.model, x_t, t, c_f, c_prime.expand(c_f.shape[0]))

    @abc.abstractmethod
    def loss(self, step: int) -> tuple[torch.Tensor, dict]:
        """Return this step's scalar loss and a dict of numbers for logging."""

    def should_stop(self, info: dict) -> bool:
        """Whether the loop should stop after this step (``info`` from ``loss``)."""
        return False


class SwapLabel(Objective):
    """SalUn-RL without mask: swap-label forget term + retain_weight * L_r."""

    def loss(self, step):  # noqa: D102 - see Objective.loss
        return self.swap_loss() + self.cfg.retain_weight * self.retain_loss(), {}


class SalUn(Objective):
    """SalUn: swap-label term + alpha * L_r, gradients masked by saliency."""

    def __init__(self, *args) -> None:  # noqa: D107
        super().__init__(*args)
        self.mask = self.saliency_mask()

    def saliency_mask(self) -> list[torch.Tensor]:
        """M = 1 where |grad of the CFG forget loss at theta_o| is in the top ratio."""
        params = list(self.model.parameters())
        grads = [torch.zeros_like(p) for p in params]
        for _ in range(self.cfg.mask_batches):
            x_t, t, eps, c_f = self.inputs(self.forget, 0.0)
            loss = cfg_denoising_loss(
                self.model, x_t, t, eps, c_f, self.K, self.cfg.guidance_scale
            )
            for g, gp in zip(grads, torch.autograd.grad(loss, params), strict=True):
                g += gp.abs()
        flat = torch.cat([g.flatten() for g in grads])
        k = max(1, int(round(self.cfg.mask_ratio * flat.numel())))
        threshold = torch.topk(flat, k, sorted=True).values[-1]
        return [(g >= threshold).float() for g in grads]

    def loss(self, step):  # noqa: D102 - see Objective.loss
        return self.swap_loss() + self.cfg.salun_alpha * self.retain_loss(), {}


class EraseDiff(Objective):
    """EraseDiff, first-order bi-level as in its released code (RL forget term)."""

    def loss(self, step):  # noqa: D102 - see Objective.loss
        params = list(self.model.parameters())
        theta_i = [p.detach().clone() for p in params]
        # 1. K inner steps on the forget objective give f(theta_i^K) (BOME line 1)
        inner = torch.optim.Adam(params, lr=self.cfg.lr)
        inner_losses = []
        for _ in range(self.cfg.erasediff_k):
            f = self.swap_loss(per_batch_label=True)
            inner.zero_grad(set_to_none=True)
            f.backward()
            inner.step()
            inner_losses.append(f.item())
        with torch.no_grad():
            for p, p0 in zip(params, theta_i, strict=True):
                p.copy_(p0)
        self.model.zero_grad(set_to_none=True)
        # 2. q(theta) = f(theta) - f(theta^K) (line 2); outer objective F + lambda q
        f_k = sum(inner_losses) / len(inner_losses)
        loss_r = self.retain_loss()
        loss_q = self.swap_loss(per_batch_label=True) - f_k
        lam = self.cfg.erasediff_lambda
        if lam < 0:  # adaptive: lambda = max(eta - cos(grad F, grad q), 0)
            g_r = torch.autograd.grad(loss_r, params, retain_graph=True)
            g_q = torch.autograd.grad(loss_q, params, retain_graph=True)
            v_r = torch.cat([g.flatten() for g in g_r])
            v_q = torch.cat([g.flatten() for g in g_q])
            cos = torch.nn.functional.cosine_similarity(v_r, v_q, dim=0)
            lam = max(self.cfg.erasediff_eta - cos.item(), 0.0)
        return loss_r + lam * loss_q, {"lambda": lam}


class SelectiveAmnesia(Objective):
    """Selective Amnesia: noise surrogate for c_f, generative replay, EWC anchor."""

    def __init__(self, *args) -> None:  # noqa: D107
        super().__init__(*args)
        self.theta_o = [p.detach().clone() for p in self.model.parameters()]
        self.replay = self.replay_set()
        self.fisher = self.fisher_diagonal(self.replay)
        # SA sums the loss over pixels; ours is a pixel mean. Scaling lambda by the
        # pixel count D keeps SA's balance between the loss and the EWC term.
        c, h, w = self.forget.image_shape
        self.lam = self.cfg.sa_lambda * c * h * w

    def replay_set(self) -> ImageData:
        """Samples of the original model for every remembered class (SA's replay)."""
        classes = [c for c in range(self.K) if c != self.cfg.forget_class]
        labels = torch.tensor(classes).repeat_interleave(self.cfg.sa_samples_per_class)
        gen = make_generator(self.cfg.seed, "sa-replay", device=self.gen.device)
        images = self.pipe(
            labels,
            generator=gen,
            num_inference_steps=self.cfg.sample_steps,
            guidance_scale=self.cfg.guidance_scale,
        ).images
        self.model.train()
        return ImageData(images.to(self.gen.device), labels.to(self.gen.device))

    def fisher_diagonal(self, replay: ImageData, n_t: int | None = None) -> list:
        """F = mean over samples of (sum over timesteps of grad L)^2 (SA's save_fim).

        SA sums over all T timesteps; we sum over ``n_t`` random ones and rescale by
        T / n_t, an unbiased estimate of that sum.
        """
        n_t = n_t or self.cfg.sa_fisher_timesteps
        T = self.sched.config.num_train_timesteps
        params = list(self.model.parameters())
        fisher = [torch.zeros_like(p) for p in params]
        for i in range(len(replay)):
            x0 = replay.images[i : i + 1].expand(n_t, -1, -1, -1)
            y = replay.labels[i : i + 1].expand(n_t)
            x_t, t, eps, y = diffusion_inputs(
                x0,
                y,
                self.sched,
                label_dropout=0.0,
                null_label=self.K,
                generator=self.gen,
            )
            loss = (eps - self.model(x_t, t, class_labels=y).sample).pow(2).mean(
                dim=(1, 2, 3)
            ).sum() * (T / n_t)
            for f, g in zip(fisher, torch.autograd.grad(loss, params), strict=True):
                f += g.pow(2) / len(replay)
        return fisher

    def loss(self, step):  # noqa: D102 - see Objective.loss
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
        loss_f = denoising_loss(self.model, x_t, t, eps, y)
        # 2. generative replay of the remembered classes
        loss_replay = denoising_loss(self.model, *self.inputs(self.replay, 0.0))
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


class DiMUM(Objective):
    """DiMUM: L_r + lambda * L_mem, L_mem = L_simple(D_alt under label c_f)."""

    def __init__(self, *args) -> None:  # noqa: D107
        super().__init__(*args)
        cfg = self.cfg
        self.alt_class = (
            cfg.dimum_alt_class
            if cfg.dimum_alt_class is not None
            else (cfg.forget_class + 1) % self.K
        )
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
