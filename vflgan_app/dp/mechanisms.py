"""Differential-privacy mechanisms for DP-VFLGAN: clipping, noise, sampling.

This module holds the *mechanisms* (what is clipped, how noise is drawn, how a
batch is sampled). The *accounting* (what epsilon those mechanisms cost) lives
in :mod:`vflgan_app.dp.accountant`. Both are pure building blocks: no Flower, no
training loop, no global state. Party and Coordinator call them.

Two modes are provided.

Paper mode (``dp.mode = paper``), the published mechanism
---------------------------------------------------------
At each party, after the backward pass of the critic loss, the *batch* gradient
``g`` of the first linear layer's weight of the party's bottom critic ``D_Ck``
is clipped and noised before the optimizer step (:func:`clip_and_noise_`)::

    C = 1.5 / B                                   # paper_clip_bound(B)
    g <- g * min(1, C / (||g||_2 + 1e-10))
    g <- g + N(0, (2 * C * sigma)^2 I)            # full-shape noise

Argument (the paper's). After clipping, the released gradient has norm at most
``C`` for *any* batch, so two batches that differ in one record (replace-one
adjacency) give gradients at distance at most ``2C``: the L2 sensitivity is
``2C`` and the Gaussian mechanism with std ``2 C sigma`` has noise multiplier
``sigma``. Batches are fixed-size, drawn without replacement, independently at
every step (:func:`vflgan_app.core.sampling.batch_indices` with ``"wor"``), which is exactly the
event the accountant composes:
``SampledWithoutReplacementDpEvent(N, B, GaussianDpEvent(sigma))`` under
``REPLACE_ONE``.

Caveat (important, see research/vflgan.md section 4.6). Only the sequence of
noised first-layer weights is covered by this argument. The layers above the
first (rest of ``D_Ck``, ``D_pk``, the server's ``D_S``) are updated with exact
gradients computed on real records, and the generators are trained through
them, so calling the rest "post-processing" is not justified. The intermediate
features that parties send to the server are not noised either. Paper mode
reproduces the published method and its budget table; it is not an
end-to-end DP guarantee for the released generator.

Strict mode (``dp.mode = strict``), beyond the paper
----------------------------------------------------
DP-SGD on *every* critic parameter that touches real data, at the parties and
at the server. For each block (a party's bottom critic, the server's top
critic) the per-sample gradients are computed with ``torch.func``
(:func:`per_sample_grads`; the WGAN-GP penalty needs double backward, which
``torch.func.grad`` inside ``vmap`` supports), each sample's gradient over the
block is clipped jointly (flat clipping) to ``C``, summed, noised with std
``2 C sigma`` and divided by ``B`` (:func:`clip_per_sample_and_noise`).

Adjacency choice. Batches keep the paper's sampler (fixed size ``B``, without
replacement, independent per step), so the matching neighbouring relation is
replace-one: replacing one record changes one summand, each of norm at most
``C``, so the L2 sensitivity of the clipped sum is ``2C`` (not ``C``, which is
the add/remove-one sensitivity used with Poisson sampling; mixing the two would
understate epsilon by about a factor of two in sensitivity). Hence
``sensitivity_factor=2``.

Argument. Every critic parameter that sees real data is updated only through
a noised, clipped sum, so the sequence of critic parameters is DP by the
subsampled Gaussian mechanism and composition; the generators see real data
only through the critics, so the generators (and anything sampled from them)
are DP by post-processing. When ``K`` blocks are each clipped and noised with
the same ``sigma`` on the same batch, the step is one subsampled Gaussian
mechanism with noise multiplier ``sigma / sqrt(K)`` (see
:func:`vflgan_app.dp.accountant.effective_noise_multiplier`); the accountant must
be given that effective value.

What strict mode does *not* cover.

* The server sees each party's intermediate features (and the parties see the
  server's per-row gradients) in the clear. The guarantee is about the
  released models and samples, not about what the participants learn from
  each other during training.
* Model selection on private data (e.g. picking the epoch by FD against the
  training table, as the paper does on tabular data) is not accounted.
* The per-row gradients the server sends back, and the cross-party terms of
  the gradient penalty, must be computed per sample (no batch-coupled terms
  such as BatchNorm in the critics); the building blocks here assume the loss
  of one sample depends only on that sample's inputs.

Errors name the field, the value and the expectation, e.g.
``"dp.noise-multiplier: got -1, expected >= 0"``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping

import torch
from torch.func import functional_call, grad, vmap

from vflgan_app.checks import (
    check_int,
    check_non_negative,
    check_positive,
)

__all__ = [
    "NORM_EPS",
    "clip_and_noise_",
    "clip_per_sample_and_noise",
    "gradient_penalty",
    "paper_clip_bound",
    "per_sample_grads",
    "per_sample_norms",
]

#: Added to norms before dividing, as in the paper's code.
NORM_EPS = 1e-10

# ---------------------------------------------------------------------------
# Paper mode


def paper_clip_bound(batch_size: int) -> float:
    """The paper's clip bound on the first-layer batch gradient: ``1.5 / B``."""
    b = check_int("batch_size", batch_size, minimum=1)
    return 1.5 / b


def _gaussian_like(
    shape: torch.Size,
    *,
    std: float,
    generator: torch.Generator,
    like: torch.Tensor,
) -> torch.Tensor:
    """Full-shape N(0, std^2) noise from ``generator``, on ``like``'s device."""
    noise = torch.randn(
        shape, generator=generator, device=generator.device, dtype=like.dtype
    )
    return noise.mul_(std).to(like.device)


def _check_generator(generator: object) -> torch.Generator:
    if not isinstance(generator, torch.Generator):
        raise TypeError(
            f"generator: got {type(generator).__name__}, expected a torch.Generator "
            "(a dedicated, seeded one; use secure seeding for real releases)"
        )
    return generator


def clip_and_noise_(
    grad: torch.Tensor,
    *,
    clip: float,
    noise_multiplier: float,
    generator: torch.Generator,
    sensitivity_factor: float = 2.0,
) -> float:
    """Clip a gradient tensor to L2 norm ``clip`` and add Gaussian noise, in place.

    This is the paper's mechanism (research/vflgan.md section 4.2), applied to
    the whole batch gradient of one tensor (the first-layer weight of a
    party's bottom critic)::

        g <- g * min(1, clip / (||g||_2 + 1e-10))
        g <- g + N(0, (sensitivity_factor * clip * noise_multiplier)^2 I)

    The noise has the full shape of ``g`` (the paper's red-wine scripts add one
    scalar to every coordinate; that bug is deliberately not reproduced).

    Args:
        grad: The gradient tensor, modified in place (e.g. ``weight.grad``).
        clip: The clip bound ``C`` (> 0); the paper uses ``paper_clip_bound(B)``.
        noise_multiplier: ``sigma`` (>= 0; 0 only clips, for tests). The noise
            std is ``sensitivity_factor * clip * noise_multiplier``.
        generator: The torch.Generator that draws the noise. Noise is drawn on
            the generator's device and moved to ``grad``'s device.
        sensitivity_factor: Sensitivity in units of ``clip``: 2 for replace-one
            adjacency (the paper's choice, matching the accountant's
            ``REPLACE_ONE``), 1 for add/remove-one.

    Returns:
        The L2 norm of ``grad`` before clipping (for logging).

    Raises:
        ValueError: On a bad parameter or a non-finite gradient norm.
    """
    c = check_positive("clip", clip)
    sigma = check_non_negative("noise_multiplier", noise_multiplier)
    factor = check_positive("sensitivity_factor", sensitivity_factor)
    _check_generator(generator)
    if not isinstance(grad, torch.Tensor):
        raise TypeError(f"grad: got {type(grad).__name__}, expected a torch.Tensor")
    if not grad.is_floating_point():
        raise TypeError(f"grad: got dtype {grad.dtype}, expected a floating dtype")

    with torch.no_grad():
        norm = float(torch.linalg.vector_norm(grad))
        if not math.isfinite(norm):
            raise ValueError(
                f"grad: got a gradient of norm {norm}, expected a finite gradient"
            )
        grad.mul_(min(1.0, c / (norm + NORM_EPS)))
        if sigma > 0:
            grad.add_(
                _gaussian_like(
                    grad.shape, std=factor * c * sigma, generator=generator, like=grad
                )
            )
    return norm


# ---------------------------------------------------------------------------
# Strict mode: per-sample gradients and DP-SGD aggregation


# why: 40 of its lines are the docstring (shapes, the loss contract, what is checked)
def per_sample_grads(
    module: torch.nn.Module,
    loss_fn: Callable[..., torch.Tensor],
    *per_sample_inputs: torch.Tensor,
    param_names: Iterable[str] | None = None,
    chunk_size: int | None = None,
    randomness: str = "error",
) -> dict[str, torch.Tensor]:
    """Per-sample gradients of a per-sample loss, with ``torch.func``.

    ``loss_fn(module_call, *sample_inputs)`` computes the scalar loss of ONE
    sample: each ``sample_inputs[j]`` is ``per_sample_inputs[j][i]`` (the batch
    dimension removed; use ``x.unsqueeze(0)`` if the module needs one), and
    ``module_call(*args, **kwargs)`` runs ``module`` with the parameters being
    differentiated. Any per-sample tensor can be passed, for example the
    server's upstream gradient ``g_i`` w.r.t. the row's intermediate features,
    so that a party's loss ``local_loss_i + <g_i, h_i>`` gives the party's
    per-sample gradient contribution.

    Double backward works: inside ``loss_fn`` take input gradients with
    ``torch.func.grad`` (see :func:`gradient_penalty`), not
    ``torch.autograd.grad``, which is not allowed under ``vmap``.

    The module must not couple samples (no BatchNorm in train mode; the
    critics have none) and must not draw random numbers unless
    ``randomness`` says how.

    Args:
        module: The block whose parameters get per-sample gradients.
        loss_fn: ``(module_call, *sample_inputs) -> scalar tensor``.
        *per_sample_inputs: Tensors with the batch as their first dimension.
        param_names: Which parameters to differentiate (default: all with
            ``requires_grad``); the others are held fixed.
        chunk_size: Passed to ``vmap`` to bound memory.
        randomness: Passed to ``vmap``.

    Returns:
        ``{name: tensor of shape (B, *param.shape)}``, detached.
    """
    if not per_sample_inputs:
        raise ValueError("per_sample_inputs: got none, expected at least one tensor")
    batch = per_sample_inputs[0].shape[0]
    for j, t in enumerate(per_sample_inputs):
        if t.dim() == 0 or t.shape[0] != batch:
            raise ValueError(
                f"per_sample_inputs[{j}]: got shape {tuple(t.shape)}, expected "
                f"batch size {batch} as the first dimension"
            )
    named = dict(module.named_parameters())
    if param_names is None:
        names = [k for k, p in named.items() if p.requires_grad]
    else:
        names = list(param_names)
        unknown = [k for k in names if k not in named]
        if unknown:
            raise ValueError(
                f"param_names: got unknown names {unknown}, expected some of "
                f"{sorted(named)}"
            )
    if not names:
        raise ValueError("param_names: got no parameters to differentiate")
    diff = {k: named[k].detach() for k in names}
    frozen = {k: v.detach() for k, v in named.items() if k not in diff}
    frozen.update({k: v.detach() for k, v in module.named_buffers()})

    def sample_loss(params, *sample):
        def module_call(*args, **kwargs):
            return functional_call(module, (params, frozen), args, kwargs)

        loss = loss_fn(module_call, *sample)
        if loss.dim() != 0:
            raise ValueError(
                f"loss_fn: got a loss of shape {tuple(loss.shape)}, expected a "
                "scalar for one sample"
            )
        return loss

    in_dims = (None,) + (0,) * len(per_sample_inputs)
    fn = vmap(
        grad(sample_loss), in_dims=in_dims, chunk_size=chunk_size, randomness=randomness
    )
    out = fn(diff, *per_sample_inputs)
    return {k: v.detach() for k, v in out.items()}


def gradient_penalty(
    module_call: Callable[[torch.Tensor], torch.Tensor],
    x_hat: torch.Tensor,
    *,
    weight: torch.Tensor | None = None,
    target: float = 1.0,
    eps: float = 1e-12,
) -> torch.Tensor:
    """WGAN-GP term ``(||d/dx <weight, D(x)>|_{x_hat}||_2 - target)^2`` for one sample.

    Written with ``torch.func.grad`` so it can be used inside
    :func:`per_sample_grads` (double backward under ``vmap``). ``weight`` is
    the cotangent for a vector output (e.g. the server's gradient w.r.t. the
    party's features); the default sums the output. ``eps`` keeps the norm
    differentiable at 0.
    """

    def scalar(x: torch.Tensor) -> torch.Tensor:
        out = module_call(x)
        return out.sum() if weight is None else (out * weight).sum()

    g = grad(scalar)(x_hat)
    return (torch.sqrt((g * g).sum() + eps) - target) ** 2


def per_sample_norms(per_sample: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Joint L2 norm over all tensors of each sample: shape ``(B,)``."""
    if not per_sample:
        raise ValueError("per_sample: got an empty mapping, expected gradients")
    sq = [t.reshape(t.shape[0], -1).pow(2).sum(dim=1) for t in per_sample.values()]
    return torch.stack(sq, dim=0).sum(dim=0).sqrt()


def clip_per_sample_and_noise(
    per_sample: Mapping[str, torch.Tensor],
    *,
    clip: float,
    noise_multiplier: float,
    generator: torch.Generator,
    batch_size: int,
    sensitivity_factor: float = 2.0,
) -> dict[str, torch.Tensor]:
    """DP-SGD aggregation: flat per-sample clip, sum, Gaussian noise, divide by B.

    For each sample ``i`` the gradients of all given parameters are clipped
    *jointly* to L2 norm ``clip``::

        s = sum_i g_i * min(1, C / (||g_i||_2 + 1e-10))
        out = (s + N(0, (sensitivity_factor * C * sigma)^2 I)) / B

    With fixed-size batches drawn without replacement and replace-one
    adjacency, the L2 sensitivity of ``s`` is ``2C``, so
    ``sensitivity_factor=2`` makes ``sigma`` the noise multiplier the
    accountant expects. ``B`` is public (the fixed batch size), so dividing by
    it is post-processing.

    Args:
        per_sample: ``{name: (B, *shape)}``, e.g. from :func:`per_sample_grads`.
        clip: The per-sample clip bound ``C`` (> 0).
        noise_multiplier: ``sigma`` (>= 0; 0 only clips, for tests).
        generator: Draws the noise (one full-shape draw per tensor, in the
            mapping's order).
        batch_size: ``B``; must equal the leading dimension of every tensor.
        sensitivity_factor: 2 for replace-one (default), 1 for add/remove-one.

    Returns:
        ``{name: tensor of shape param.shape}``, ready to be written to
        ``param.grad``.
    """
    c = check_positive("clip", clip)
    sigma = check_non_negative("noise_multiplier", noise_multiplier)
    factor = check_positive("sensitivity_factor", sensitivity_factor)
    b = check_int("batch_size", batch_size, minimum=1)
    _check_generator(generator)
    for k, t in per_sample.items():
        if t.dim() == 0 or t.shape[0] != b:
            raise ValueError(
                f"per_sample[{k!r}]: got shape {tuple(t.shape)}, expected "
                f"batch_size={b} as the first dimension"
            )
    with torch.no_grad():
        norms = per_sample_norms(per_sample)
        scale = (c / (norms + NORM_EPS)).clamp(max=1.0)
        out: dict[str, torch.Tensor] = {}
        for k, t in per_sample.items():
            s = torch.einsum("i,i...->...", scale.to(t.dtype), t)
            if sigma > 0:
                s = s + _gaussian_like(
                    s.shape, std=factor * c * sigma, generator=generator, like=s
                )
            out[k] = s / b
    return out
