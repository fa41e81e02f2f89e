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
import os
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

__all__ = ["SCHEMA_DELTA_FRACTION", "STRICT_DEFAULT_CLIP", "DPPlan", "NoiseSource",
           "noise_generator_seed", "resolve_plan"]

#: Default per-sample clip bound in strict mode.
STRICT_DEFAULT_CLIP = 1.0

#: Share of ``dp.delta`` given to the thresholds of the DP schema release (the chance
#: that a value held by one row is released, summed over every released column of
#: every party); the rest is the delta of the RDP -> (epsilon, delta) conversion.
SCHEMA_DELTA_FRACTION = 0.1


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
        schema_epsilon_fraction: share of the target spent on the DP schema release.
        schema_noise_multiplier: sigma of each party's schema release (all its released
            columns together: count noise std ``sigma * sqrt(2 m)`` for m columns),
            None = no DP schema release (every column declared).
        schema_accounted_noise_multiplier: what the accountant composes once (paper
            mode: the same, per party as for training; strict: ``/ sqrt(K)``).
        schema_delta: the delta of the release thresholds (all parties together).
        num_parties: K (the thresholds split ``schema_delta`` between the parties).
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
    schema_epsilon_fraction: float = 0.0
    schema_noise_multiplier: float | None = None
    schema_accounted_noise_multiplier: float | None = None
    schema_delta: float = 0.0
    num_parties: int = 0

    @property
    def schema_releases(self) -> tuple[tuple[float, int], ...]:
        """The schema's Gaussian releases the accountant composes: ``((sigma, 1),)``."""
        s = self.schema_accounted_noise_multiplier
        return ((float(s), 1),) if s is not None else ()

    @property
    def conversion_delta(self) -> float:
        """The delta left for the RDP conversion after the schema's thresholds."""
        return self.delta - self.schema_delta

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


#: The environment variable that lets a test suite fix ``dp.noise-seed`` (refused else).
ALLOW_FIXED_NOISE_SEED = "VFLGAN_ALLOW_FIXED_NOISE_SEED"


def resolve_plan(
    dp: DPConfig, *, n_rows: int, batch_size: int, steps: int, num_parties: int
) -> DPPlan | None:
    """Calibrate sigma (if needed) and fix the clip bound; None when DP is off.

    The decoding schema's DP release (when ``dp.schema_fraction > 0``) is calibrated
    first, on its own, to ``fraction * target_epsilon``; sigma of training is then
    calibrated so that schema and training compose (RDP) to the target.

    Args:
        dp: the DP config.
        n_rows: N, the rows every party holds (the protected records).
        batch_size: B.
        steps: the critic steps the budget must last (sigma is calibrated for them).
        num_parties: K parties (strict mode noises K + 1 blocks).

    Raises:
        ValueError: steps < 1 with a calibrated sigma, a bad delta, or a bad
            ``dp.public-domain`` declaration (checked here, before any party starts),
            or a fixed ``dp.noise-seed`` outside a test suite.

    Warns:
        UserWarning: delta >= 1/N; a fixed ``noise_seed`` (allowed in tests only).
    """
    if not dp.enabled:
        return None
    # dp-accounting is imported only by a DP run (a plain party never loads it)
    from vflgan_app.data.schema import load_public_domain
    from vflgan_app.dp.analysis import (
        calibrate_gaussian_noise_multiplier,
        calibrate_noise_multiplier,
        effective_noise_multiplier,
    )

    check_delta(dp.delta, n_rows)
    load_public_domain(dp.public_domain)  # a bad declaration fails before training
    if dp.noise_seed is not None:
        if os.environ.get(ALLOW_FIXED_NOISE_SEED) != "1":
            raise ValueError(
                f"dp.noise-seed: got {dp.noise_seed}; expected none (OS randomness). A fixed "
                "seed makes the DP noise reproducible by anyone who knows it, which voids "
                f"the guarantee; test suites may set {ALLOW_FIXED_NOISE_SEED}=1 to use one")
        warnings.warn(
            f"dp.noise-seed: got {dp.noise_seed}; the DP noise is reproducible by anyone who "
            "knows this seed, which voids the guarantee. Use it in tests only.",
            UserWarning,
            stacklevel=2,
        )
    blocks = num_parties + 1 if dp.mode == "strict" else 1
    fraction = dp.schema_fraction
    schema_sigma = schema_accounted = None
    schema_delta = 0.0
    if fraction > 0:
        schema_delta = SCHEMA_DELTA_FRACTION * dp.delta
        schema_accounted = calibrate_gaussian_noise_multiplier(
            target_epsilon=fraction * dp.target_epsilon, delta=dp.delta - schema_delta
        )
        # strict: one row moves all K parties' releases (one Gaussian, sigma / sqrt(K));
        # paper: each party is accounted on its own, as for its first layer
        schema_sigma = schema_accounted * (
            math.sqrt(num_parties) if dp.mode == "strict" else 1.0
        )
    releases = ((schema_accounted, 1),) if schema_accounted is not None else ()
    if dp.noise_multiplier is None:
        if steps < 1:
            raise ValueError(
                f"steps: got {steps}, expected >= 1 to calibrate "
                "dp.noise-multiplier from dp.target-epsilon"
            )
        accounted = calibrate_noise_multiplier(
            target_epsilon=dp.target_epsilon + math.log1p(-schema_delta),
            delta=dp.delta - schema_delta,
            sample_size=batch_size,
            population_size=n_rows,
            steps=steps,
            releases=releases,
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
        schema_epsilon_fraction=float(fraction),
        schema_noise_multiplier=schema_sigma,
        schema_accounted_noise_multiplier=schema_accounted,
        schema_delta=schema_delta,
        num_parties=int(num_parties),
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


