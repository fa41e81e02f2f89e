"""The resolved DP plan every participant shares, and the participants' noise seeds.

:func:`resolve_plan` turns a :class:`~vflgan_app.config.DPConfig` into a :class:`DPPlan`
(calibrated sigma, clip, q, noised blocks): the server and every party resolve the same
plan from the same run config and row count. :class:`NoiseSource` seeds each
participant's noise from the OS (never from the run seed, which everyone knows). The
mechanisms are described in :mod:`vflgan_app.dp.processors`.
"""

from __future__ import annotations

import dataclasses
import math
import secrets
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from trainkit import derive_seed, make_generator
from vflgan_app.checks import check_delta
from vflgan_app.config import DPConfig
from vflgan_app.dp.mechanisms import paper_clip_bound

__all__ = ["STRICT_DEFAULT_CLIP", "DPPlan", "NoiseSource", "noise_generator_seed",
           "resolve_plan"]

#: Default per-sample clip bound in strict mode.
STRICT_DEFAULT_CLIP = 1.0


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
    # dp-accounting is imported only by a DP run (a plain party never loads it)
    from vflgan_app.dp.analysis import (
        calibrate_noise_multiplier,
        effective_noise_multiplier,
    )

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


class NoiseSource:
    """One generator per step from a private base seed (resume-stable with a test seed)."""

    def __init__(self, noise_seed: int | None, *keys: object) -> None:
        self._base = noise_generator_seed(noise_seed, *keys)
        self.secure = noise_seed is None

    def __call__(self, step: int) -> torch.Generator:
        """The noise generator of step ``step``."""
        return make_generator(self._base, step)

    def __repr__(self) -> str:  # never show the seed
        return f"NoiseSource(secure={self.secure})"


