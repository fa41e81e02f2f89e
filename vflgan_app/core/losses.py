"""Pure loss functions of VFLGAN's WGAN-GP with the 5-term split gradient penalty.

Paper's code (``compute_gradient_penalty_2`` and the training loop of
``MNIST/WGAN_GP_real_VFL_v2.py``; research/vflgan.md section 3)::

    L_D = -E[D_S(h_real)] + E[D_S(h_fake)]
          + lambda_p * sum_k ( -E[D_pk(h_k,real)] + E[D_pk(h_k,fake)] )
          + lambda_gp * GP
    L_G = -E[D_S(h_fake)] - lambda_p * sum_k E[D_pk(h_k,fake)]
    GP  = sum_k pen(d sum_j D_Ck(x^_k)_j / d x^_k)         (terms 1..K)
        + sum_k pen(d D_pk(h^_k) / d h^_k)                  (terms K+1..2K)
        + pen(d D_S([h^_1; ...; h^_K]) / d [h^_1; ...])     (last term)
    pen(g) = mean_b (||g_b||_2 - 1)^2,   x^_k = alpha x_k + (1 - alpha) x~_k

The functions take tensors and return scalars; they never call backward or step.
"""

from __future__ import annotations

import torch


def wasserstein_critic_loss(
    score_real: torch.Tensor, score_fake: torch.Tensor
) -> torch.Tensor:
    """``-E[score_real] + E[score_fake]`` (a critic minimises this)."""
    return score_fake.mean() - score_real.mean()


def wasserstein_generator_loss(score_fake: torch.Tensor) -> torch.Tensor:
    """``-E[score_fake]`` (a generator minimises this)."""
    return -score_fake.mean()


def gradient_norm_penalty(grad: torch.Tensor) -> torch.Tensor:
    """``mean_b (||grad_b||_2 - 1)^2`` over the batch (one GP term)."""
    return ((grad.reshape(grad.shape[0], -1).norm(2, dim=1) - 1.0) ** 2).mean()


def input_gradient(outputs: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """Gradient of ``outputs.sum()`` w.r.t. ``inputs``, kept in the graph.

    With vector outputs (the bottom critic's IF) this is the gradient of the sum of the
    IF units, as the paper's ``grad_outputs=ones`` does.
    """
    (grad,) = torch.autograd.grad(
        outputs=outputs,
        inputs=inputs,
        grad_outputs=torch.ones_like(outputs),
        create_graph=True,
        retain_graph=True,
    )
    return grad


def bottom_critic_penalty(if_hat: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """GP term for D_Ck: penalty on d(sum of IF units)/d x^ (x^ must require grad)."""
    return gradient_norm_penalty(input_gradient(if_hat, x_hat))


def head_penalty(score_hat: torch.Tensor, if_hat: torch.Tensor) -> torch.Tensor:
    """GP term for D_pk (or D_S): penalty on d score / d its input features."""
    return gradient_norm_penalty(input_gradient(score_hat, if_hat))


def interpolate(
    x_real: torch.Tensor, x_fake: torch.Tensor, alpha: torch.Tensor
) -> torch.Tensor:
    """``alpha * x_real + (1 - alpha) * x_fake`` as a fresh leaf that requires grad."""
    return (alpha * x_real + (1.0 - alpha) * x_fake).detach().requires_grad_(True)
