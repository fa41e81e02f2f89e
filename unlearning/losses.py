"""Pure loss functions of the unlearning methods (dimum.md sections 3 and 4).

Each takes the noise predictor and tensors and returns a scalar; none steps an
optimizer.
Notation: x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, eps_theta(x_t | c) the
conditional noise prediction, L_simple the DDPM loss (mean over pixels and batch).
"""

from __future__ import annotations

import torch
from diffusers import DDPMScheduler
from torch import nn

from unlearning.pipeline import guided_noise


def diffusion_inputs(
    x0: torch.Tensor,
    labels: torch.Tensor,
    scheduler: DDPMScheduler,
    *,
    label_dropout: float,
    null_label: int,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Draw (t, eps) and form x_t; drop labels to the null label with prob. p.

    Returns:
        (x_t, t, eps, labels) with shapes (B,C,H,W), (B,), (B,C,H,W), (B,).
    """
    dev = generator.device
    b = x0.shape[0]
    t = torch.randint(
        scheduler.config.num_train_timesteps, (b,), generator=generator, device=dev
    )
    eps = torch.randn(x0.shape, generator=generator, device=dev)
    if label_dropout > 0:
        drop = torch.rand(b, generator=generator, device=dev) < label_dropout
        labels = torch.where(drop, torch.full_like(labels, null_label), labels)
    x_t = scheduler.add_noise(x0, eps, t)
    return x_t, t, eps, labels


def denoising_loss(
    model: nn.Module,
    x_t: torch.Tensor,
    t: torch.Tensor,
    eps: torch.Tensor,
    labels: torch.Tensor,
) -> torch.Tensor:
    """L_simple = E || eps - eps_theta(x_t, t, c) ||^2 (Ho et al. 2020, eq. 14)."""
    return (eps - model(x_t, t, class_labels=labels).sample).pow(2).mean()


def swap_label_loss(
    model: nn.Module,
    x_t: torch.Tensor,
    t: torch.Tensor,
    c_f: torch.Tensor,
    c_prime: torch.Tensor,
) -> torch.Tensor:
    """SalUn-RL forget term || eps_theta(x_t | c_f) - sg[eps_theta(x_t | c')] ||^2.

    (Fan et al. 2024, random-label loss; the target is detached as in their code.)
    """
    with torch.no_grad():
        target = model(x_t, t, class_labels=c_prime).sample
    return (model(x_t, t, class_labels=c_f).sample - target).pow(2).mean()


def cfg_denoising_loss(
    model: nn.Module,
    x_t: torch.Tensor,
    t: torch.Tensor,
    eps: torch.Tensor,
    labels: torch.Tensor,
    null_label: int,
    w: float,
) -> torch.Tensor:
    """|| eps - [(1+w) eps_theta(x_t|c) - w eps_theta(x_t|null)] ||^2.

    The loss whose gradient at theta_o defines SalUn's saliency mask (their
    ``generate_mask`` uses the CFG-combined output with cond_scale 2).
    """
    return (eps - guided_noise(model, x_t, t, labels, null_label, w)).pow(2).mean()


def ewc_penalty(
    model: nn.Module, fisher: list[torch.Tensor], theta_o: list[torch.Tensor]
) -> torch.Tensor:
    """Sum_i F_i (theta_i - theta_o,i)^2 (Selective Amnesia's EWC term)."""
    terms = [
        (f * (p - p0).pow(2)).sum()
        for p, f, p0 in zip(model.parameters(), fisher, theta_o, strict=True)
    ]
    return torch.stack(terms).sum()


def random_other_labels(
    c_f: int, num_classes: int, n: int, generator: torch.Generator
) -> torch.Tensor:
    """(n,) labels uniform over the classes other than c_f."""
    r = torch.randint(
        num_classes - 1, (n,), generator=generator, device=generator.device
    )
    return r + (r >= c_f).long()
