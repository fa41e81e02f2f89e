"""DP mechanisms as critic rules: paper mode and strict mode plug into the same slots.

A party forms its critic gradients through a :class:`~vflgan_app.core.party.CriticGradients`
rule and the server its D_S update through a
:class:`~vflgan_app.core.coordinator.ServerCriticGradients` rule; the exact rules are the
paper's Algorithm box. A DP mode is a pair of rules for those two slots
(:func:`party_rule`, :func:`server_rule`), built from the resolved
:class:`~vflgan_app.dp.plan.DPPlan`:

* paper mode: :class:`PaperPartyDP` (the exact rule, then the first-layer clip and
  noise) at each party; the exact rule at the server;
* strict mode: :class:`StrictPartyDP` at each party and :class:`StrictServerDP` at
  the server (per-sample DP-SGD on every critic block).

The noise arithmetic lives in :mod:`vflgan_app.dp.mechanisms`, the budget in
:mod:`vflgan_app.dp.accountant` (:class:`~vflgan_app.dp.accountant.DPAccounting`).

Both DP modes force the ``"wor"`` sampler (fixed-size batches drawn without
replacement, independently at every step: the sampler the accountant describes;
a config asking for another sampler is refused) and
bias-free linear layers in every module (as the paper's DP models).

Paper mode (``dp.mode = paper``): the published mechanism
---------------------------------------------------------
Each party, after the critic backward and before its optimizer step, clips the
*batch* gradient of its bottom critic's first-layer weight to ``C = 1.5 / B``
(``dp.clip`` overrides) and adds ``N(0, (2 C sigma)^2)`` noise of the full shape.
Nothing else is noised. The server only receives intermediate features and never
sees that gradient. Accounting: one
``SampledWithoutReplacementDpEvent(N, B, Gaussian(sigma))`` per critic step,
replace-one adjacency. As research/vflgan.md section 4.6 explains, this covers the
sequence of noised first-layer weights only: the layers above it, the heads, D_S
and (through them) the generators are trained on exact gradients of real rows, so
paper mode is **not** an end-to-end guarantee for the published generator. It is
provided to reproduce the paper.

Strict mode (``dp.mode = strict``): DP-SGD on every critic block, beyond the paper
----------------------------------------------------------------------------------
Every parameter that touches real data is updated only through a clipped,
noised sum of per-sample gradients:

* at party k, the block ``(D_Ck, D_pk)``. The per-sample loss of row i is
  ``l_i = lambda_p (D_pk(h~_i) - D_pk(h_i)) + lambda_gp (pen_C(x^_i) + pen_p(h^_i))
  + B <g_i, (h_i, h~_i, h^_i)>``, where ``g_i`` is the server's gradient of L_D
  w.r.t. row i's intermediate features (it depends only on row i's features at all
  parties and on D_S). The batch gradient is ``(1/B) sum_i grad l_i``, so the per-row
  decomposition is exact (``tests/vflgan_app/dp/test_dp.py`` checks it against the
  base party's batch gradient and a loop over single rows, GP included);
* at the server, D_S, whose per-sample loss is ``D_S(h~_i) - D_S(h_i) + lambda_gp
  pen_S(h^_i)``.

With the joint objective (:class:`StrictJointPartyDP`, :class:`StrictJointServerDP`) the
joint penalty of row i depends only on row i's interpolates and D_S, so it sits in row
i's summands too (:func:`joint_party_sample_loss`, :func:`joint_server_sample_loss`).

Per-sample gradients come from ``torch.func`` (``vmap`` of ``grad``, with the GP's
input gradient taken by an inner ``torch.func.grad``: double backward). Each
block's per-sample gradient is clipped jointly to ``C`` (``dp.clip``, default 1.0),
summed, noised with std ``2 C sigma`` and divided by ``B``
(:func:`~vflgan_app.dp.mechanisms.clip_per_sample_and_noise`).

Argument. Fix a batch (fixed size B, drawn without replacement) and replace one
real row. In each of the ``K = parties + 1`` blocks exactly one summand changes
(row i's, including its ``g_i`` and the GP interpolate of row i with its fake row),
and each summand has norm at most ``C``, so each block moves by at most ``2C`` and
the concatenation of the K clipped sums by at most ``2C sqrt(K)``. With noise std
``2 C sigma`` on every block, the step is one Gaussian mechanism with noise
multiplier ``sigma / sqrt(K)``
(:func:`~vflgan_app.dp.accountant.effective_noise_multiplier`), and the accountant
composes ``SampledWithoutReplacementDpEvent(N, B, Gaussian(sigma / sqrt(K)))`` once
per critic step (replace-one adjacency, the sampler actually used). ``dp.noise-
multiplier`` is the per-block sigma; calibration from ``dp.target-epsilon`` solves
for the effective one and multiplies by ``sqrt(K)``. Fake rows are functions of
the public seed and of the (already private) generator, so they cost nothing;
the GP interpolates mix a real and a fake row, which is why they sit in row i's
summand. Generator steps see only fakes and the critics' parameters, and Adam is
a function of the noised gradients, so the critics, the generators and every
sample drawn from them are DP by post-processing, provided every participant
adds its noise (the server's D_S noise is added by the server).

What strict mode does *not* cover:

* what participants see of each other during training: the server receives
  every party's intermediate features of real rows in the clear, and parties
  receive the server's per-row gradients ``g_i``. The guarantee is about the
  released models and samples, not about an honest-but-curious server;
* the training log: the loss history (``Coordinator.history``, saved in the
  server's checkpoint) is computed from real rows without noise; do not publish it;
* model selection or evaluation on the private table (e.g. picking the epoch by FD
  against the training data, as the paper does; our report's metrics are also
  computed on the training table): not accounted;
* the GP's per-sample structure is relied on: the loss of row i depends only on
  row i's inputs (the critics have no BatchNorm; the GP is a mean of per-row
  penalties). A critic with batch-coupled layers would break the decomposition.

Noise seeds. Each party's (and, in strict mode, the server's) noise generator is
seeded from ``secrets`` by default and never from the run seed, which every
participant knows: otherwise the server could regenerate and subtract the noise.
``dp.noise-seed`` makes the noise reproducible, for tests only (it warns), and
the noise generators' state is never written to checkpoints (MT19937's state
reveals its past outputs).
"""

from __future__ import annotations

import torch
from torch import nn

from vflgan_app.core.coordinator import ServerCriticGradients, feature_leaves
from vflgan_app.core.joint import (
    JointCriticGradients,
    JointServerCritic,
    input_jacobian,
)
from vflgan_app.core.losses import head_penalty, wasserstein_critic_loss
from vflgan_app.core.party import CriticGradients
from vflgan_app.core.protocol import CRITIC_FEATURES
from vflgan_app.dp.mechanisms import (
    clip_and_noise_,
    clip_per_sample_and_noise,
    gradient_penalty,
    per_sample_grads,
)
from vflgan_app.dp.plan import DPPlan, NoiseSource
from vflgan_app.errors import ProtocolError, ReplyError

__all__ = [
    "PaperPartyDP",
    "StrictJointPartyDP",
    "StrictJointServerDP",
    "StrictPartyDP",
    "StrictServerDP",
    "first_linear",
    "joint_party_sample_loss",
    "joint_server_sample_loss",
    "party_rule",
    "party_sample_loss",
    "server_rule",
    "server_sample_loss",
]


def party_rule(plan: DPPlan | None, party_id: int, objective: str = "paper",
               gram: bool = False) -> CriticGradients:
    """The critic rule of party ``party_id`` for ``objective`` under ``plan``.

    ``gram``: the joint objective sends its Jacobian Gram matrices with every critic
    forward (config ``joint_exchange = "gram"``).
    """
    joint = objective == "joint"
    if plan is None:
        return JointCriticGradients(gram) if joint else CriticGradients()
    if plan.mode == "paper":
        return PaperPartyDP(plan, party_id, JointCriticGradients(gram) if joint else None)
    if joint:
        return StrictJointPartyDP(plan, party_id, gram=gram)
    return StrictPartyDP(plan, party_id)


def server_rule(plan: DPPlan | None, objective: str = "paper") -> ServerCriticGradients:
    """The server's D_S rule for ``objective`` under ``plan`` (DP only in strict mode)."""
    joint = objective == "joint"
    if plan is not None and plan.mode == "strict":
        return StrictJointServerDP(plan) if joint else StrictServerDP(plan)
    return JointServerCritic() if joint else ServerCriticGradients()


# ---------------------------------------------------------------------------------
# paper mode


def first_linear(module: nn.Module) -> nn.Linear:
    """The first ``nn.Linear`` of ``module`` (the layer the paper noises)."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            return m
    raise ValueError(
        f"{type(module).__name__} has no nn.Linear layer; expected a critic"
    )


class PaperPartyDP(CriticGradients):
    """The paper's mechanism at one party: the objective's exact rule, then clip and noise.

    After the exact backward (of the paper or the joint objective): clip the batch
    gradient of ``D_Ck``'s first-layer weight to ``clip`` and add
    ``N(0, (2 clip sigma)^2)`` noise, before the optimizer step. The sensitivity
    argument is about the clipped gradient, so it holds for either objective.

    Args:
        plan: the DP plan (clip and sigma).
        party_id: this party (keys the test-only noise seed).
        base: the objective's exact rule (default: the paper objective's).
    """

    def __init__(self, plan: DPPlan, party_id: int,
                 base: CriticGradients | None = None) -> None:
        if plan.mode != "paper":
            raise ValueError(f"plan.mode: got {plan.mode!r}, expected 'paper'")
        self.base = base or CriticGradients()
        self.clip = plan.clip
        self.noise_multiplier = plan.noise_multiplier
        self.noise = NoiseSource(plan.noise_seed, "party", party_id)
        self.last_norm: float | None = None

    def forward(self, party, x_real, x_fake, x_hat):
        """The base rule's forward."""
        return self.base.forward(party, x_real, x_fake, x_hat)

    def penalty(self, party, pending, u):
        """The base rule's mid-step exchange (joint objective)."""
        return self.base.penalty(party, pending, u)

    def chunk_features(self, party, x_hat):
        """The base rule's chunked-mode extras (joint objective: Gram matrices)."""
        return self.base.chunk_features(party, x_hat)

    def backward(self, party, step, pending, upstream, grads=None) -> None:
        """Exact gradients of the base rule, then :meth:`privatize` them."""
        self.base.backward(party, step, pending, upstream, grads)
        self.privatize(party, step)

    def privatize(self, party, step: int) -> None:
        """Clip and noise ``party``'s first-layer weight gradient of step ``step``."""
        weight = first_linear(party.D_C).weight
        if weight.grad is None:
            raise RuntimeError(f"party {party.party_id}: no gradient on D_C's first layer")
        self.last_norm = clip_and_noise_(
            weight.grad,
            clip=self.clip,
            noise_multiplier=self.noise_multiplier,
            generator=self.noise(step),
        )


# ---------------------------------------------------------------------------------
# strict mode: parties


class _PartyCritic(nn.Module):
    """``(D_Ck, D_pk)`` as one block for ``torch.func``: ``forward(x, head)``."""

    def __init__(self, D_C: nn.Module, D_p: nn.Module) -> None:
        super().__init__()
        self.C = D_C
        self.p = D_p

    def forward(self, x: torch.Tensor, head: bool = False) -> torch.Tensor:
        return self.p(x) if head else self.C(x)


def _row_calls(call):
    """``(D_Ck, D_pk)`` of one row (no batch dimension) through ``call`` (the block)."""

    def C(x):
        return call(x.unsqueeze(0))[0]

    def p(h):
        return call(h.unsqueeze(0), head=True)[0]

    return C, p


def party_sample_loss(lambda_p: float, lambda_gp: float, batch_size: int):
    """Per-row critic loss at a party (see the module doc), for :func:`per_sample_grads`.

    ``(call, x_real, x_fake, x_hat, g_real, g_fake, g_hat) -> scalar``, one row each;
    ``g_*`` are the server's gradients of L_D w.r.t. the row's IFs (they carry the
    1/B of the batch mean, hence the factor ``batch_size``).
    """

    def loss(call, x_real, x_fake, x_hat, g_real, g_fake, g_hat):
        C, p = _row_calls(call)
        h_real, h_fake, h_hat = C(x_real), C(x_fake), C(x_hat)
        local = lambda_p * (p(h_fake).sum() - p(h_real).sum())
        local = local + lambda_gp * (
            gradient_penalty(C, x_hat) + gradient_penalty(p, h_hat)
        )
        upstream = (
            (g_real * h_real).sum() + (g_fake * h_fake).sum() + (g_hat * h_hat).sum()
        )
        return local + batch_size * upstream

    return loss


def clip_and_noise_block(
    per: dict[str, torch.Tensor], plan: DPPlan, generator: torch.Generator
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Clip one block's per-row gradients jointly, sum, noise, ``/B``.

    Returns:
        ``(noised mean gradients by name, pre-clip per-row norms (B,))``.
    """
    B = next(iter(per.values())).shape[0]
    norms = torch.stack([t.reshape(B, -1).pow(2).sum(1) for t in per.values()]).sum(0).sqrt()
    out = clip_per_sample_and_noise(
        per,
        clip=plan.clip,
        noise_multiplier=plan.noise_multiplier,
        generator=generator,
        batch_size=B,
    )
    return out, norms


class StrictPartyDP(CriticGradients):
    """Per-sample DP-SGD on a party's ``(D_Ck, D_pk)`` (strict mode).

    ``forward`` sends the same IFs as the exact rule (computed without a graph) and
    keeps the batch's rows; ``backward`` takes per-sample gradients of
    :func:`party_sample_loss`, clips the block per row, adds one noise draw and
    divides by B.

    Args:
        plan: the strict-mode DP plan.
        party_id: this party (keys the test-only noise seed).
        chunk_size: passed to ``vmap`` (bounds memory on large models).
    """

    def __init__(self, plan: DPPlan, party_id: int, chunk_size: int | None = None) -> None:
        if plan.mode != "strict":
            raise ValueError(f"plan.mode: got {plan.mode!r}, expected 'strict'")
        self.plan = plan
        self.chunk_size = chunk_size
        self.noise = NoiseSource(plan.noise_seed, "party", party_id)
        self.last_norms: torch.Tensor | None = None

    @staticmethod
    def block(party) -> nn.Module:
        """``(D_Ck, D_pk)`` of ``party`` as one module for ``torch.func``."""
        return _PartyCritic(party.D_C, party.D_p)

    def forward(self, party, x_real, x_fake, x_hat) -> tuple[dict, object]:
        """IFs of real, fake and interpolated rows, and this party's part of L_D."""
        s = party.settings
        x_fake, x_hat = x_fake.detach(), x_hat.detach()
        with torch.no_grad():
            h_real, h_fake, h_hat = party.D_C(x_real), party.D_C(x_fake), party.D_C(x_hat)
        zeros = torch.zeros_like(h_real[0])
        loss_fn = party_sample_loss(s.lambda_p, s.lambda_gp, 1)
        block = self.block(party)
        params = {k: v.detach() for k, v in block.named_parameters()}

        def one(xr, xf, xh):
            def call(*a, **k):
                return torch.func.functional_call(block, params, a, k)

            return loss_fn(call, xr, xf, xh, zeros, zeros, zeros)

        local = torch.vmap(one)(x_real, x_fake, x_hat).mean()
        reply = {"h_real": h_real, "h_fake": h_fake, "h_hat": h_hat, "loss": float(local)}
        return reply, (x_real, x_fake, x_hat)

    def per_sample_grads(self, party, pending, upstream) -> dict[str, torch.Tensor]:
        """``{block parameter: (B, *shape)}`` per-row gradients of the pending step."""
        x_real, x_fake, x_hat = pending
        s = party.settings
        return per_sample_grads(
            self.block(party),
            party_sample_loss(s.lambda_p, s.lambda_gp, int(x_real.shape[0])),
            x_real, x_fake, x_hat, *upstream,
            chunk_size=self.chunk_size,
        )

    def backward(self, party, step, pending, upstream, grads=None) -> None:
        """Per-sample gradients, per-row clip, noise, ``/B`` into ``.grad``."""
        per = self.per_sample_grads(party, pending, upstream)
        out, self.last_norms = clip_and_noise_block(per, self.plan, self.noise(step))
        for name, p in self.block(party).named_parameters():
            p.grad = out[name].to(p)


# ---------------------------------------------------------------------------------
# strict mode: server


def server_sample_loss(lambda_gp: float):
    """Per-row loss of D_S: ``D_S(h~_i) - D_S(h_i) + lambda_gp pen_S(h^_i)``."""

    def loss(call, h_real, h_fake, h_hat):
        def S(h):
            return call(h.unsqueeze(0))[0]

        return (
            S(h_fake).sum() - S(h_real).sum() + lambda_gp * gradient_penalty(S, h_hat)
        )

    return loss


class StrictServerDP(ServerCriticGradients):
    """The server's D_S step as per-sample DP-SGD (strict mode).

    The per-row gradients returned to the parties are the exact ones (they are used
    inside each party's clipped per-row summand); D_S's parameter gradient is replaced
    by the clipped, noised per-sample aggregate.

    Args:
        plan: the strict-mode DP plan.
        chunk_size: passed to ``vmap``.
    """

    def __init__(self, plan: DPPlan, chunk_size: int | None = None) -> None:
        if plan.mode != "strict":
            raise ValueError(f"plan.mode: got {plan.mode!r}, expected 'strict'")
        self.plan = plan
        self.chunk_size = chunk_size
        # keyed by the index of the critic step in the history (= the step, also within
        # train_chunk, where coordinator.step moves only at the chunk's end)
        self.noise = NoiseSource(plan.noise_seed, "server")
        self.last_norms: torch.Tensor | None = None

    def step(self, coord, feats: dict[int, dict]) -> tuple[dict[int, dict], float]:
        """D_S's part of L_D; per-row gradients to the parties; DP-SGD step of D_S."""
        pids = coord.party_ids
        leaves = feature_leaves(coord, feats)
        cat = {name: torch.cat(leaves[name], dim=1) for name in CRITIC_FEATURES}
        loss = wasserstein_critic_loss(
            coord.D_S(cat["h_real"]), coord.D_S(cat["h_fake"])
        ) + coord.lambda_gp * head_penalty(coord.D_S(cat["h_hat"]), cat["h_hat"])
        flat = [leaf for name in CRITIC_FEATURES for leaf in leaves[name]]
        leaf_grads = torch.autograd.grad(loss, flat)
        k = len(pids)
        grads = {
            p: {name: leaf_grads[j * k + i].detach() for j, name in enumerate(CRITIC_FEATURES)}
            for i, p in enumerate(pids)
        }
        rows = [cat[name].detach() for name in CRITIC_FEATURES]
        per = per_sample_grads(coord.D_S, server_sample_loss(coord.lambda_gp), *rows,
                               chunk_size=self.chunk_size)
        out, self.last_norms = clip_and_noise_block(
            per, self.plan, self.noise(len(coord.history.d_loss)))
        coord.opt_S.zero_grad(set_to_none=True)
        for name, p in coord.D_S.named_parameters():
            p.grad = out[name].to(p)
        coord.opt_S.step()
        return grads, float(loss.detach())


# ---------------------------------------------------------------------------------
# strict mode with the joint objective


def joint_party_sample_loss(lambda_p: float, lambda_gp: float, batch_size: int):
    """Per-row critic loss at a party under the joint objective, for :func:`per_sample_grads`.

    ``(call, x_real, x_fake, x_hat, g_real, g_fake, g_hat, u, w) -> scalar``, one row
    each: the private head's Wasserstein terms and end-to-end penalty
    ``pen(D_pk o D_Ck)`` at ``x^_i``, the server's IF gradients (``g_hat`` carries the
    penalty's path through D_S), and ``w_i s_ki`` with ``s_ki = ||J_ki^T u_ki||^2``
    recomputed at the block's parameters (the penalty's path through this party's
    Jacobian). ``g_*`` and ``w`` carry the 1/B of the batch mean, hence the factor
    ``batch_size``.
    """

    def loss(call, x_real, x_fake, x_hat, g_real, g_fake, g_hat, u, w):
        C, p = _row_calls(call)
        h_real, h_fake, h_hat = C(x_real), C(x_fake), C(x_hat)
        local = lambda_p * (p(h_fake).sum() - p(h_real).sum())
        local = local + lambda_gp * gradient_penalty(lambda x: p(C(x)), x_hat)
        g = torch.func.grad(lambda x: (C(x) * u).sum())(x_hat)  # J^T u
        upstream = (
            (g_real * h_real).sum() + (g_fake * h_fake).sum() + (g_hat * h_hat).sum()
        )
        return local + batch_size * (upstream + w * (g * g).sum())

    return loss


class StrictJointPartyDP(StrictPartyDP):
    """Per-sample DP-SGD on a party's ``(D_Ck, D_pk)`` under the joint objective.

    The joint penalty of row i, ``(||g_i|| - 1)^2`` with ``||g_i||^2 = sum_k s_ki``,
    depends only on row i's interpolate at every party and on D_S, so it sits in row
    i's summand as the paper objective's GP terms do: :func:`joint_party_sample_loss`
    is that summand at this party, exact (``tests/vflgan_app/dp/test_dp_joint.py``
    checks per-row gradients against one-row batches of the single-process
    reference, and their mean against the exact joint rule). The messages are the
    exact mode's: IFs, then ``s_k, a_k`` for the server's ``u_k``
    (:meth:`penalty`), then the gradients with ``w``; in chunked mode the Gram
    matrices (:meth:`chunk_features`) and ``u`` with the gradients, as in exact mode with
    ``gram``.
    """

    def __init__(self, plan: DPPlan, party_id: int, chunk_size: int | None = None,
                 gram: bool = False) -> None:
        super().__init__(plan, party_id, chunk_size)
        self.gram = gram

    def forward(self, party, x_real, x_fake, x_hat) -> tuple[dict, object]:
        """IFs of real, fake and interpolated rows, and this party's part of L_D."""
        s = party.settings
        x_fake, x_hat = x_fake.detach(), x_hat.detach()
        with torch.no_grad():
            h_real, h_fake, h_hat = party.D_C(x_real), party.D_C(x_fake), party.D_C(x_hat)
        block = self.block(party)
        params = {k: v.detach() for k, v in block.named_parameters()}

        def one(xr, xf, xh):
            def call(*a, **k):
                return torch.func.functional_call(block, params, a, k)

            C, p = _row_calls(call)
            return s.lambda_p * (p(C(xf)).sum() - p(C(xr)).sum()) + s.lambda_gp * (
                gradient_penalty(lambda x: p(C(x)), xh))

        local = torch.vmap(one)(x_real, x_fake, x_hat).mean()
        reply = {"h_real": h_real, "h_fake": h_fake, "h_hat": h_hat, "loss": float(local)}
        if self.gram:
            reply.update(self.chunk_features(party, x_hat))
        return reply, {"rows": (x_real, x_fake, x_hat), "u": None}

    def chunk_features(self, party, x_hat: torch.Tensor) -> dict:
        """Chunked mode: the Gram matrices of the exact joint rule."""
        return JointCriticGradients().chunk_features(party, x_hat)

    def penalty(self, party, pending: dict, u: torch.Tensor) -> dict:
        """``s_k`` and ``a_k`` at the current weights (as the exact rule's); keeps ``u``."""
        J = input_jacobian(party.D_C, pending["rows"][2])  # (B, if_dim, width)
        u = torch.as_tensor(u).to(J).detach()
        g = torch.einsum("boi,bo->bi", J, u)  # J^T u
        pending["u"] = u
        return {"s": g.pow(2).sum(dim=1), "a": torch.einsum("boi,bi->bo", J, g)}

    def per_sample_grads(self, party, pending, upstream, w=None) -> dict[str, torch.Tensor]:
        """``{block parameter: (B, *shape)}`` per-row gradients of the pending step."""
        x_real, x_fake, x_hat = pending["rows"]
        s = party.settings
        return per_sample_grads(
            self.block(party),
            joint_party_sample_loss(s.lambda_p, s.lambda_gp, int(x_real.shape[0])),
            x_real, x_fake, x_hat, *upstream, pending["u"], w,
            chunk_size=self.chunk_size,
        )

    def backward(self, party, step, pending, upstream, grads=None) -> None:
        """Per-sample gradients (penalty included), per-row clip, noise, ``/B``."""
        if pending["u"] is None:
            raise ProtocolError(f"party {party.party_id}: critic gradients for step {step} "
                                "before its critic_penalty (objective 'joint')")
        B = int(pending["rows"][0].shape[0])
        w = torch.as_tensor((grads or {}).get("w", float("nan")))
        if tuple(w.shape) != (B,) or not w.is_floating_point() or not torch.isfinite(w).all():
            raise ReplyError(f"party {party.party_id}: w of step {step} has shape "
                             f"{tuple(w.shape)} and dtype {w.dtype}; expected {B} finite "
                             "floats (the joint penalty's row weights)")
        per = self.per_sample_grads(party, pending, upstream, w.to(pending["u"]))
        out, self.last_norms = clip_and_noise_block(per, self.plan, self.noise(step))
        for name, p in self.block(party).named_parameters():
            p.grad = out[name].to(p)


def joint_server_sample_loss():
    """Per-row loss of D_S under the joint objective, for :func:`per_sample_grads`.

    ``(call, h_real, h_fake, h_hat, v) -> D_S(h~_i) - D_S(h_i) + <dD_S/dh (h^_i), v_i>``
    with ``v_i = B d(lambda_gp P)/du_i`` held fixed: its parameter gradient is row i's
    Wasserstein and joint-penalty gradient (P depends on D_S only through ``u``).
    """

    def loss(call, h_real, h_fake, h_hat, v):
        def S(h):
            return call(h.unsqueeze(0))[0]

        u = torch.func.grad(lambda h: S(h).sum())(h_hat)
        return S(h_fake).sum() - S(h_real).sum() + (u * v).sum()

    return loss


class StrictJointServerDP(JointServerCritic, StrictServerDP):
    """The server's D_S step under the joint objective as per-sample DP-SGD (strict mode).

    The exchange and the gradients returned to the parties are the exact joint rule's
    (:class:`~vflgan_app.core.joint.JointServerCritic`); D_S's parameter gradient is
    replaced by the clipped, noised aggregate of :func:`joint_server_sample_loss`.
    """

    def update_server(self, coord, leaves, v: torch.Tensor) -> None:
        """Replace D_S's exact gradient with its clipped, noised per-sample aggregate."""
        rows = [torch.cat(leaves[name], dim=1).detach() for name in CRITIC_FEATURES]
        B = rows[0].shape[0]
        per = per_sample_grads(coord.D_S, joint_server_sample_loss(), *rows,
                               (B * v).detach(), chunk_size=self.chunk_size)
        out, self.last_norms = clip_and_noise_block(
            per, self.plan, self.noise(len(coord.history.d_loss)))
        for name, p in coord.D_S.named_parameters():
            p.grad = out[name].to(p)
