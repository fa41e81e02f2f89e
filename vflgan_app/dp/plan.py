"""DP-VFLGAN wired into the training loop: config, party hooks, strict mode, accounting.

The mechanisms live in :mod:`vflgan_app.dp.mechanisms` and the accounting maths in
:mod:`vflgan_app.dp.accountant`; this module puts them into the federation:

* :class:`DPConfig` (``dp.mode``, ``dp.target-epsilon``, ``dp.delta``,
  ``dp.noise-multiplier``, ``dp.clip``, ``dp.noise-seed``) and :func:`resolve_plan`,
  which turns it into a :class:`DPPlan` (calibrated sigma, clip, q, blocks) that both
  sides of the federation use;
* paper mode: :class:`PaperDPHook`, installed as ``Party.critic_grad_hook``;
* strict mode: :class:`StrictDPParty` and :class:`StrictDPCoordinator`;
* :class:`DPAccounting`, a ``Coordinator.before_step`` hook that spends the budget
  before every step, logs epsilon per epoch, and stops before a step that would
  exceed the target (:class:`~vflgan_app.dp.accountant.PrivacyBudgetExceeded`).

Both DP modes force the ``"wor"`` sampler (fixed-size batches drawn without
replacement, independently at every step: the sampler the accountant describes;
a config asking for another sampler is switched to ``"wor"`` with a log line) and
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

import dataclasses
import logging
import math
import secrets
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from trainkit import derive_seed, make_generator
from vflgan_app.dp.accountant import (
    PrivacyAccountant,
    PrivacyBudgetExceeded,
    calibrate_noise_multiplier,
    effective_noise_multiplier,
)
from vflgan_app.core.coordinator import CRITIC_FEATURES, Coordinator
from vflgan_app.core.losses import interpolate
from vflgan_app.core.party import Party, ProtocolError
from vflgan_app.dp.mechanisms import (
    check_delta,
    clip_and_noise_,
    clip_per_sample_and_noise,
    gradient_penalty,
    paper_clip_bound,
    per_sample_grads,
)
from vflgan_app.core.sampling import gp_alpha, gumbel_generator, shared_latent

logger = logging.getLogger(__name__)

__all__ = [
    "DP_MODES",
    "DPAccounting",
    "DPConfig",
    "DPPlan",
    "PaperDPHook",
    "PrivacyBudgetExceeded",
    "StrictDPCoordinator",
    "StrictDPParty",
    "install_dp",
    "make_party",
    "noise_generator_seed",
    "resolve_plan",
]

DP_MODES = ("none", "paper", "strict")

#: Default per-sample clip bound in strict mode.
STRICT_DEFAULT_CLIP = 1.0


@dataclass(frozen=True)
class DPConfig:
    """Differential privacy of a VFLGAN run (run-config keys ``dp.*``).

    Attributes:
        mode: ``"none"``, ``"paper"`` (the published first-layer mechanism) or
            ``"strict"`` (per-sample DP-SGD on every critic block; see the module doc).
        target_epsilon: the budget; training stops before a step that would exceed it,
            and sigma is calibrated to reach it after ``steps`` when not given.
        delta: the delta of (epsilon, delta)-DP; warned about when >= 1/N.
        noise_multiplier: sigma (noise std / replace-one sensitivity), per noised block;
            None = calibrate from ``target_epsilon``, ``delta`` and the run's steps.
        clip: the clip bound C; None = the paper's ``1.5 / B`` (paper mode, on the batch
            gradient of the first-layer weight) or 1.0 (strict mode, per sample and block).
        noise_seed: fixed seed of the parties' and server's noise generators. For tests
            only: None (default) seeds them from ``secrets``.
    """

    mode: str = "none"
    target_epsilon: float = 10.0
    delta: float = 1e-5
    noise_multiplier: float | None = None
    clip: float | None = None
    noise_seed: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in DP_MODES:
            raise ValueError(
                f"dp.mode: got {self.mode!r}, expected one of {list(DP_MODES)}"
            )
        _need_number("target-epsilon", self.target_epsilon, "> 0", lambda v: v > 0)
        _need_number("delta", self.delta, "0 < delta < 1", lambda v: 0 < v < 1)
        if self.noise_multiplier is not None:
            _need_number(
                "noise-multiplier",
                self.noise_multiplier,
                "> 0 (or none to calibrate from dp.target-epsilon)",
                lambda v: v > 0,
            )
        if self.clip is not None:
            _need_number("clip", self.clip, "> 0", lambda v: v > 0)
        if self.noise_seed is not None and (
            isinstance(self.noise_seed, bool) or not isinstance(self.noise_seed, int)
        ):
            raise TypeError(
                f"dp.noise-seed: got {self.noise_seed!r}, expected an integer or none"
            )

    @property
    def enabled(self) -> bool:
        """Whether any DP mechanism is on."""
        return self.mode != "none"

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> DPConfig:
        """Build from ``{field: value}`` with snake or kebab keys, with or without ``dp.``.

        Strings from TOML or the command line are converted ("none" -> None).

        Raises:
            ValueError: unknown key or unparsable value.
        """
        fields = {f.name for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in values.items():
            name = key.removeprefix("dp.").removeprefix("dp_").replace("-", "_")
            if name not in fields:
                raise ValueError(
                    f"config: unknown key {key!r}; expected one of "
                    f"{sorted('dp.' + f.replace('_', '-') for f in fields)}"
                )
            kwargs[name] = _coerce_dp(name, value)
        return cls(**kwargs)

    @classmethod
    def from_run_config(cls, run_config: Mapping[str, Any]) -> DPConfig:
        """Read the flattened ``dp.*`` keys of a Flower run config (others ignored)."""
        return cls.from_dict(
            {k: v for k, v in run_config.items() if k.startswith("dp.")}
        )


def _need_number(key: str, value: Any, expected: str, ok) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(
            f"dp.{key}: got {value!r} of type {type(value).__name__}, expected "
            f"a number {expected}"
        )
    if not math.isfinite(value) or not ok(value):
        raise ValueError(f"dp.{key}: got {value!r}, expected {expected}")


def _coerce_dp(name: str, value: Any) -> Any:
    if isinstance(value, str) and value.strip().lower() in ("", "none", "null"):
        return None if name != "mode" else "none"
    if name == "mode":
        return str(value).strip().lower() if isinstance(value, str) else value
    try:
        if name == "noise_seed":
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value) if isinstance(value, str | float) else value
        if isinstance(value, str):
            return float(value)
    except ValueError:
        raise ValueError(
            f"config: dp.{name.replace('_', '-')} got {value!r}, expected "
            f"{'an integer' if name == 'noise_seed' else 'a number'}"
        ) from None
    return value


# ---------------------------------------------------------------------------------
# the resolved plan


@dataclass(frozen=True)
class DPPlan:
    """What every participant of a DP run needs to know (all public).

    Attributes:
        mode: ``"paper"`` or ``"strict"``.
        target_epsilon, delta: the budget.
        noise_multiplier: sigma of each noised block (std ``2 * clip * sigma``).
        accounted_noise_multiplier: the sigma the accountant composes (paper mode: the
            same; strict mode: ``noise_multiplier / sqrt(blocks)``).
        clip: C.
        blocks: noised blocks per step in the accounting. Paper mode: 1, as the paper
            (each party's first-layer weight sequence is accounted on its own; the joint
            release of all K parties' first layers would be a mechanism with
            ``sigma / sqrt(K)``). Strict mode: parties + server.
        sample_size, population_size: B and N (q = B / N).
        planned_steps: the critic steps sigma was calibrated for.
        calibrated: whether sigma was calibrated from the target.
        noise_seed: the test-only fixed noise seed, or None (secure seeding).
    """

    mode: str
    target_epsilon: float
    delta: float
    noise_multiplier: float
    accounted_noise_multiplier: float
    clip: float
    blocks: int
    sample_size: int
    population_size: int
    planned_steps: int
    calibrated: bool
    noise_seed: int | None = None

    @property
    def sample_rate(self) -> float:
        """Q = B / N."""
        return self.sample_size / self.population_size

    @property
    def noise_std(self) -> float:
        """Std of the Gaussian noise added to each noised (summed or batch) gradient."""
        return 2.0 * self.clip * self.noise_multiplier

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON) of the fields plus q and the noise std."""
        return {
            **dataclasses.asdict(self),
            "sample_rate": self.sample_rate,
            "noise_std": self.noise_std,
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> DPPlan:
        """Inverse of :meth:`to_dict` (derived keys are ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})


def resolve_plan(
    dp: DPConfig, *, n_rows: int, batch_size: int, steps: int, num_parties: int
) -> DPPlan | None:
    """Calibrate sigma (if needed) and fix the clip bound; None when DP is off.

    Args:
        dp: the DP config.
        n_rows: N, the rows every party holds (the protected records).
        batch_size: B.
        steps: the critic steps the budget must last (sigma is calibrated for them).
        num_parties: K parties (strict mode noises K + 1 blocks).

    Raises:
        ValueError: steps < 1 with a calibrated sigma, or a bad delta.

    Warns:
        UserWarning: delta >= 1/N; a fixed ``noise_seed``.
    """
    if not dp.enabled:
        return None
    check_delta(dp.delta, n_rows)
    if dp.noise_seed is not None:
        warnings.warn(
            f"dp.noise-seed: got {dp.noise_seed}; the DP noise is reproducible by anyone who "
            "knows this seed, which voids the guarantee. Use it in tests only.",
            UserWarning,
            stacklevel=2,
        )
    blocks = num_parties + 1 if dp.mode == "strict" else 1
    if dp.noise_multiplier is None:
        if steps < 1:
            raise ValueError(
                f"steps: got {steps}, expected >= 1 to calibrate "
                "dp.noise-multiplier from dp.target-epsilon"
            )
        accounted = calibrate_noise_multiplier(
            target_epsilon=dp.target_epsilon,
            delta=dp.delta,
            sample_size=batch_size,
            population_size=n_rows,
            steps=steps,
        )
        sigma = accounted * math.sqrt(blocks)
        calibrated = True
    else:
        sigma = float(dp.noise_multiplier)
        accounted = effective_noise_multiplier([sigma] * blocks)
        calibrated = False
    if dp.clip is not None:
        clip = float(dp.clip)
    else:
        clip = (
            paper_clip_bound(batch_size) if dp.mode == "paper" else STRICT_DEFAULT_CLIP
        )
    return DPPlan(
        mode=dp.mode,
        target_epsilon=float(dp.target_epsilon),
        delta=float(dp.delta),
        noise_multiplier=float(sigma),
        accounted_noise_multiplier=float(accounted),
        clip=clip,
        blocks=blocks,
        sample_size=int(batch_size),
        population_size=int(n_rows),
        planned_steps=int(steps),
        calibrated=calibrated,
        noise_seed=dp.noise_seed,
    )


# ---------------------------------------------------------------------------------
# noise generators


def noise_generator_seed(noise_seed: int | None, *keys: object) -> int:
    """Seed of a participant's DP noise generator.

    ``noise_seed=None`` (the default): 63 bits from ``secrets`` (the OS's CSPRNG), never
    derived from the run seed. Otherwise ``derive_seed(noise_seed, "dp-noise", *keys)``
    (tests only).
    """
    if noise_seed is None:
        return secrets.randbits(63)
    return derive_seed(noise_seed, "dp-noise", *keys)


class _NoiseSource:
    """One generator per step from a private base seed (resume-stable with a test seed)."""

    def __init__(self, noise_seed: int | None, *keys: object) -> None:
        self._base = noise_generator_seed(noise_seed, *keys)
        self.secure = noise_seed is None

    def __call__(self, step: int) -> torch.Generator:
        return make_generator(self._base, step)

    def __repr__(self) -> str:  # never show the seed
        return f"_NoiseSource(secure={self.secure})"


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


class PaperDPHook:
    """``Party.critic_grad_hook`` applying the paper's mechanism at one party.

    After the critic backward: clip the batch gradient of ``D_Ck``'s first-layer weight
    to ``clip`` and add ``N(0, (2 clip sigma)^2)`` noise, before the optimizer step.

    Args:
        plan: the DP plan (clip and sigma).
        party_id: this party (keys the test-only noise seed).
    """

    def __init__(self, plan: DPPlan, party_id: int) -> None:
        self.clip = plan.clip
        self.noise_multiplier = plan.noise_multiplier
        self.noise = _NoiseSource(plan.noise_seed, "party", party_id)
        self.last_norm: float | None = None

    def __call__(self, party: Party, step: int) -> None:
        """Clip and noise ``party``'s first-layer weight gradient of step ``step``."""
        weight = first_linear(party.D_C).weight
        if weight.grad is None:
            raise RuntimeError(
                f"party {party.party_id}: no gradient on D_C's first layer"
            )
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


def party_sample_loss(lambda_p: float, lambda_gp: float, batch_size: int):
    """Per-row critic loss at a party (see the module doc), for :func:`per_sample_grads`.

    ``(call, x_real, x_fake, x_hat, g_real, g_fake, g_hat) -> scalar``, one row each;
    ``g_*`` are the server's gradients of L_D w.r.t. the row's IFs (they carry the
    1/B of the batch mean, hence the factor ``batch_size``).
    """

    def loss(call, x_real, x_fake, x_hat, g_real, g_fake, g_hat):
        def C(x):
            return call(x.unsqueeze(0))[0]

        def p(h):
            return call(h.unsqueeze(0), head=True)[0]

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


class StrictDPParty(Party):
    """A party doing per-sample DP-SGD on ``(D_Ck, D_pk)`` (strict mode).

    ``critic_forward`` sends the same IFs as :class:`Party`; ``critic_backward`` replaces
    the batch backward with per-sample gradients of :func:`party_sample_loss`, flat
    clipping of the block per row, one noise draw and ``/B``, then the optimizer steps.

    Args:
        data, arch, settings, device: as :class:`Party`.
        plan: the strict-mode DP plan.
        chunk_size: passed to ``vmap`` (bounds memory on large models).
    """

    def __init__(
        self,
        data,
        arch,
        settings,
        device="cpu",
        *,
        plan: DPPlan,
        chunk_size: int | None = None,
    ) -> None:
        super().__init__(data, arch, settings, device)
        if plan.mode != "strict":
            raise ValueError(f"plan.mode: got {plan.mode!r}, expected 'strict'")
        self.plan = plan
        self.chunk_size = chunk_size
        self.block = _PartyCritic(self.D_C, self.D_p)
        self.noise = _NoiseSource(plan.noise_seed, "party", self.party_id)
        self._inputs: tuple[int, tuple[torch.Tensor, ...]] | None = None
        self.last_norms: torch.Tensor | None = None

    def critic_inputs(self, step: int, idx: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Real, fake and interpolated rows of ``step`` (as :meth:`Party.critic_forward`)."""
        s = self.settings
        idx = torch.as_tensor(idx, dtype=torch.long)
        B = int(idx.shape[0])
        z = shared_latent(s.seed, step, B, self.arch.latent_dim).to(self.x)
        with torch.no_grad():
            x_fake = self.G(z, gumbel_generator(s.seed, self.party_id, step, "critic"))
        x_real = self.x[idx.to(self.device)]
        x_hat = interpolate(
            x_real, x_fake, gp_alpha(s.seed, step, B).to(self.x)
        ).detach()
        return x_real, x_fake.detach(), x_hat

    def critic_forward(self, step: int, idx: torch.Tensor) -> dict:
        """IFs of real, fake and interpolated rows, and this party's part of L_D."""
        s = self.settings
        x_real, x_fake, x_hat = self.critic_inputs(step, idx)
        with torch.no_grad():
            h_real, h_fake, h_hat = self.D_C(x_real), self.D_C(x_fake), self.D_C(x_hat)
        zeros = torch.zeros_like(h_real)
        loss_fn = party_sample_loss(s.lambda_p, s.lambda_gp, 1)
        params = {k: v.detach() for k, v in self.block.named_parameters()}

        def one(xr, xf, xh):
            return loss_fn(
                lambda *a, **k: torch.func.functional_call(self.block, params, a, k),
                xr,
                xf,
                xh,
                zeros[0],
                zeros[0],
                zeros[0],
            )

        local = torch.vmap(one)(x_real, x_fake, x_hat).mean()
        self._inputs = (step, (x_real, x_fake, x_hat))
        self._critic_args = (int(step), torch.as_tensor(idx, dtype=torch.long).clone())
        return {
            "step": int(step),
            "h_real": h_real,
            "h_fake": h_fake,
            "h_hat": h_hat,
            "loss": float(local),
        }

    def per_sample_critic_grads(
        self, step: int, grads: dict
    ) -> dict[str, torch.Tensor]:
        """``{block parameter: (B, *shape)}`` per-row gradients for the pending step."""
        if self._inputs is None or self._inputs[0] != step:
            raise ProtocolError(
                f"party {self.party_id}: critic gradients for step {step} but the pending "
                f"forward is {self._inputs[0] if self._inputs else None}"
            )
        x_real, x_fake, x_hat = self._inputs[1]
        up = [torch.as_tensor(grads[k]).to(x_real) for k in CRITIC_FEATURES]
        B = int(x_real.shape[0])
        s = self.settings
        return per_sample_grads(
            self.block,
            party_sample_loss(s.lambda_p, s.lambda_gp, B),
            x_real,
            x_fake,
            x_hat,
            *up,
            chunk_size=self.chunk_size,
        )

    def critic_backward(self, step: int, grads: dict) -> dict:
        """Per-sample gradients, per-row clip, noise, ``/B``; step D_Ck and D_pk."""
        per = self.per_sample_critic_grads(step, grads)
        out, self.last_norms = clip_and_noise_block(per, self.plan, self.noise(step))
        self.opt_D_C.zero_grad(set_to_none=True)
        self.opt_D_p.zero_grad(set_to_none=True)
        for name, p in self.block.named_parameters():
            p.grad = out[name].to(p)
        if self.critic_grad_hook is not None:
            self.critic_grad_hook(self, step)
        self.opt_D_C.step()
        self.opt_D_p.step()
        self._inputs = self._critic_args = None
        return {}


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


class StrictDPCoordinator(Coordinator):
    """A coordinator whose D_S step is per-sample DP-SGD (strict mode).

    The per-row gradients returned to the parties are the exact ones (they are used
    inside each party's clipped per-row summand); D_S's parameter gradient is replaced
    by the clipped, noised per-sample aggregate.

    Args:
        *args, **kwargs: as :class:`Coordinator`.
        plan: the strict-mode DP plan.
        chunk_size: passed to ``vmap``.
    """

    def __init__(
        self, *args, plan: DPPlan, chunk_size: int | None = None, **kwargs
    ) -> None:
        super().__init__(*args, **kwargs)
        if plan.mode != "strict":
            raise ValueError(f"plan.mode: got {plan.mode!r}, expected 'strict'")
        self.plan = plan
        self.chunk_size = chunk_size
        # keyed by the index of the critic step in the history (= the step, also within
        # train_chunk, where self.step moves only at the chunk's end)
        self.noise = _NoiseSource(plan.noise_seed, "server")
        self.last_norms: torch.Tensor | None = None

    def server_critic_step(
        self, feats: dict[int, dict]
    ) -> tuple[dict[int, dict], float]:
        """D_S's part of L_D; per-row gradients to the parties; DP-SGD step of D_S."""
        from vflgan_app.core.losses import head_penalty, wasserstein_critic_loss

        pids = self.party_ids
        leaves = {
            name: [
                torch.as_tensor(feats[p][name])
                .to(self.device)
                .detach()
                .requires_grad_(True)
                for p in pids
            ]
            for name in CRITIC_FEATURES
        }
        cat = {name: torch.cat(leaves[name], dim=1) for name in CRITIC_FEATURES}
        loss = wasserstein_critic_loss(
            self.D_S(cat["h_real"]), self.D_S(cat["h_fake"])
        ) + self.lambda_gp * head_penalty(self.D_S(cat["h_hat"]), cat["h_hat"])
        flat = [leaf for name in CRITIC_FEATURES for leaf in leaves[name]]
        leaf_grads = torch.autograd.grad(loss, flat)
        k = len(pids)
        grads = {
            p: {
                name: leaf_grads[j * k + i].detach()
                for j, name in enumerate(CRITIC_FEATURES)
            }
            for i, p in enumerate(pids)
        }
        rows = [cat[name].detach() for name in CRITIC_FEATURES]
        per = per_sample_grads(
            self.D_S,
            server_sample_loss(self.lambda_gp),
            *rows,
            chunk_size=self.chunk_size,
        )
        out, self.last_norms = clip_and_noise_block(
            per, self.plan, self.noise(len(self.history.d_loss))
        )
        self.opt_S.zero_grad(set_to_none=True)
        for name, p in self.D_S.named_parameters():
            p.grad = out[name].to(p)
        self.opt_S.step()
        return grads, float(loss.detach())


# ---------------------------------------------------------------------------------
# accounting at the coordinator


class DPAccounting:
    """``Coordinator.before_step`` hook: spend the budget before every critic step.

    Every coordinator step is a critic step on a fresh batch (generator steps touch no
    real data and cost nothing), so one event is spent per step, before anything of
    that step happens; a step that would exceed ``target_epsilon`` raises
    :class:`PrivacyBudgetExceeded` instead. Epsilon is logged at every epoch
    (``N // B`` steps) and offered to the progress bar.

    Args:
        plan: the DP plan.
    """

    def __init__(self, plan: DPPlan) -> None:
        self.plan = plan
        self.accountant = PrivacyAccountant(mode=plan.mode)
        self.epsilon = 0.0
        self.steps_per_epoch = max(1, plan.population_size // plan.sample_size)

    def __call__(self, step: int) -> None:
        """Spend one step of budget, or raise PrivacyBudgetExceeded before step ``step``.

        A step is paid for once: a step already paid (``step < steps spent``, e.g. the
        rest of a chunk that ``Coordinator.train_chunk`` paid for before the budget
        stopped it) is not charged again when it is finally run.
        """
        if step < self.accountant.steps:
            return
        p = self.plan
        self.epsilon = self.accountant.spend_or_raise(
            target_epsilon=p.target_epsilon,
            delta=p.delta,
            noise_multiplier=p.accounted_noise_multiplier,
            sample_size=p.sample_size,
            population_size=p.population_size,
        )
        done = self.accountant.steps
        if done % self.steps_per_epoch == 0:
            logger.info(
                "epoch %d (step %d): epsilon = %.4f (delta = %g, target %g)",
                done // self.steps_per_epoch,
                done,
                self.epsilon,
                p.delta,
                p.target_epsilon,
            )

    def postfix(self) -> dict[str, str]:
        """Progress-bar fields."""
        return {"eps": f"{self.epsilon:.2f}"}

    def state_dict(self) -> dict[str, Any]:
        """The accountant's state (JSON); resume continues the budget."""
        return {"accountant": self.accountant.state_dict(), "plan": self.plan.to_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` (refuses a change of mode or relation)."""
        self.accountant.load_state_dict(dict(state["accountant"]))
        self.epsilon = (
            self.accountant.get_epsilon(self.plan.delta)
            if self.accountant.steps
            else 0.0
        )

    def metadata(self) -> dict[str, Any]:
        """Everything an output records: mode, epsilon, delta, sigma, q, steps, accountant."""
        meta = self.accountant.metadata(self.plan.delta)
        return {
            **meta,
            "target_epsilon": self.plan.target_epsilon,
            "sigma": self.plan.noise_multiplier,
            "sigma_accounted": self.plan.accounted_noise_multiplier,
            "q": self.plan.sample_rate,
            "clip": self.plan.clip,
            "noise_std": self.plan.noise_std,
            "noised_blocks": self.plan.blocks,
            "noise_seeding": "secrets (OS CSPRNG)"
            if self.plan.noise_seed is None
            else "fixed dp.noise-seed (test only; not private)",
            "plan": self.plan.to_dict(),
        }


# ---------------------------------------------------------------------------------
# assembly


def make_party(data, arch, settings, device="cpu", *, plan: DPPlan | None) -> Party:
    """A party for ``plan``: plain, with the paper hook, or :class:`StrictDPParty`."""
    if plan is None:
        return Party(data, arch, settings, device)
    if plan.mode == "strict":
        return StrictDPParty(data, arch, settings, device, plan=plan)
    party = Party(data, arch, settings, device)
    party.critic_grad_hook = PaperDPHook(plan, party.party_id)
    return party


def make_coordinator(transport, arch, *, plan: DPPlan | None, **kwargs) -> Coordinator:
    """A coordinator for ``plan`` (strict mode: :class:`StrictDPCoordinator`)."""
    if plan is not None and plan.mode == "strict":
        return StrictDPCoordinator(transport, arch, plan=plan, **kwargs)
    return Coordinator(transport, arch, **kwargs)


def install_dp(coordinator: Coordinator, plan: DPPlan | None) -> DPAccounting | None:
    """Attach accounting to ``coordinator`` (before-step hook, progress, checkpoints)."""
    if plan is None:
        return None
    if coordinator.sampler != "wor":
        raise ValueError(
            f"sampler: got {coordinator.sampler!r}, expected 'wor' with "
            f"dp.mode={plan.mode} (the accountant describes that sampler)"
        )
    acc = DPAccounting(plan)
    coordinator.before_step.append(acc)
    coordinator.postfix_providers.append(acc.postfix)
    coordinator.extra_state["dp"] = acc
    logger.info(
        "DP %s: target (epsilon, delta) = (%g, %g), sigma = %.4f per block (%s), accounted "
        "sigma = %.4f, clip = %.4g, noise std = %.4g, q = %d/%d, planned steps = %d",
        plan.mode,
        plan.target_epsilon,
        plan.delta,
        plan.noise_multiplier,
        "calibrated" if plan.calibrated else "given",
        plan.accounted_noise_multiplier,
        plan.clip,
        plan.noise_std,
        plan.sample_size,
        plan.population_size,
        plan.planned_steps,
    )
    return acc
