"""Pure loss functions of the unlearning methods (dimum.md sections 3 and 4).

Each takes the noise predictor and tensors and returns a scalar; none steps an
optimizer.
Notation: x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, eps_theta(x_t | c) the
conditional noise prediction, L_simple the DDPM loss.

Every squared error takes ``reduction``: ``"mean"`` averages over pixels and batch
(``F.mse_loss``), ``"sum"`` sums over the C*H*W pixels of each image and averages over
the batch (the ``noise_estimation_loss`` of the SA/SalUn/EraseDiff DDPM code). The two
differ by the factor C*H*W, which decides how terms of different reductions weigh
against each other (SalUn's alpha, SA's lambda).
"""

from __future__ import annotations

import torch
from diffusers import DDPMScheduler
from torch import nn

from unlearning.config import REDUCTIONS
from unlearning.pipeline import guided_noise


def reduce_pixels(sq: torch.Tensor, reduction: str) -> torch.Tensor:
    """Reduce a (B, C, H, W) squared error to a scalar.

    Args:
        sq: per-pixel squared errors.
        reduction: ``"mean"`` (over everything) or ``"sum"`` (over C, H, W, then mean
            over the batch).

    Raises:
        ValueError: ``reduction`` is neither.
    """
    if reduction == "mean":
        return sq.mean()
    if reduction == "sum":
        return sq.flatten(1).sum(1).mean()
    raise ValueError(f"reduction: got {reduction!r}, expected one of {REDUCTIONS}")


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
    reduction: str = "mean",
) -> torch.Tensor:
    """L_simple = E || eps - eps_theta(x_t, t, c) ||^2 (Ho et al. 2020, eq. 14)."""
    sq = (eps - model(x_t, t, class_labels=labels).sample).pow(2)
    return reduce_pixels(sq, reduction)


def swap_label_loss(
    model: nn.Module,
    x_t: torch.Tensor,
    t: torch.Tensor,
    c_f: torch.Tensor,
    c_prime: torch.Tensor,
    reduction: str = "mean",
) -> torch.Tensor:
    """SalUn-RL forget term || eps_theta(x_t | c_f) - sg[eps_theta(x_t | c')] ||^2.

    (Fan et al. 2024, random-label loss; the target is detached as in their code,
    whose ``torch.nn.MSELoss()`` is the ``"mean"`` reduction.)
    """
    with torch.no_grad():
        target = model(x_t, t, class_labels=c_prime).sample
    sq = (model(x_t, t, class_labels=c_f).sample - target).pow(2)
    return reduce_pixels(sq, reduction)


def cfg_denoising_loss(
    model: nn.Module,
    x_t: torch.Tensor,
    t: torch.Tensor,
    eps: torch.Tensor,
    labels: torch.Tensor,
    null_label: int,
    w: float,
    reduction: str = "mean",
) -> torch.Tensor:
    """|| eps - [(1+w) eps_theta(x_t|c) - w eps_theta(x_t|null)] ||^2.

    The loss whose gradient at theta_o defines SalUn's saliency mask (their
    ``generate_mask`` uses the CFG-combined output with cond_scale 2 and a pixel sum).
    """
    sq = (eps - guided_noise(model, x_t, t, labels, null_label, w)).pow(2)
    return reduce_pixels(sq, reduction)


def ewc_penalty(
    model: nn.Module, fisher: list[torch.Tensor], theta_o: list[torch.Tensor]
) -> torch.Tensor:
    """Sum_i F_i (theta_i - theta_o,i)^2 (Selective Amnesia's EWC term)."""
    terms = [
        (f * (p - p0).pow(2)).sum()
        for p, f, p0 in zip(model.parameters(), fisher, theta_o, strict=True)
    ]
    return torch.stack(terms).sum()


def fisher_diagonal(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    scheduler: DDPMScheduler,
    *,
    n_timesteps: int,
    generator: torch.Generator,
    reduction: str = "sum",
) -> list[torch.Tensor]:
    """Diagonal Fisher F = mean_i (sum_t grad_theta l(x_i, t, eps_it))^2 (SA's save_fim).

    l is the squared denoising error of one image at one timestep, summed over pixels
    by default as in SA. Per image the gradients of all timesteps are summed first and
    only then squared; the squares are averaged over the images.

    Args:
        model: noise predictor; its parameters receive no ``.grad``.
        images: (N, C, H, W) images in [-1, 1] (SA: samples of the original model,
            every class).
        labels: (N,) their labels (no label dropout).
        scheduler: gives T and the noising.
        n_timesteps: ``>= T``: every t in 0..T-1 once (SA); smaller: that many t drawn
            uniformly per image, the summed gradient scaled by T / n_timesteps (an
            unbiased estimate of the sum; its square is biased upwards by the
            sampling variance).
        generator: draws, per image in order, the timesteps (when subsampled) and
            then the (n_t, C, H, W) noise.
        reduction: pixel reduction of l, ``"sum"`` (SA) or ``"mean"``.

    Returns:
        One tensor per parameter, shaped like it.
    """
    T = scheduler.config.num_train_timesteps
    dev = generator.device
    params = list(model.parameters())
    fisher = [torch.zeros_like(p) for p in params]
    all_t = n_timesteps >= T
    n_t = T if all_t else n_timesteps
    scale = 1.0 if all_t else T / n_t
    for i in range(len(images)):
        if all_t:
            t = torch.arange(T, device=dev)
        else:
            t = torch.randint(T, (n_t,), generator=generator, device=dev)
        eps = torch.randn((n_t, *images.shape[1:]), generator=generator, device=dev)
        x_t = scheduler.add_noise(images[i : i + 1].expand(n_t, -1, -1, -1), eps, t)
        y = labels[i : i + 1].expand(n_t)
        sq = (eps - model(x_t, t, class_labels=y).sample).pow(2)
        # sum over timesteps of the per-timestep losses = reduce_pixels(...) * n_t
        loss = reduce_pixels(sq, reduction) * n_t * scale
        for f, g in zip(fisher, torch.autograd.grad(loss, params), strict=True):
            f += g.pow(2) / len(images)
    return fisher


def random_other_labels(
    c_f: int, num_classes: int, n: int, generator: torch.Generator
) -> torch.Tensor:
    """(n,) labels uniform over the classes other than c_f."""
    r = torch.randint(
        num_classes - 1, (n,), generator=generator, device=generator.device
    )
    return r + (r >= c_f).long()
