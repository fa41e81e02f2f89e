"""Privacy accounting for DP-VFLGAN, on Google's ``dp-accounting`` (RDP).

No RDP formula is written here: every per-step Renyi-DP curve comes from
``dp_accounting.rdp.RdpAccountant`` and every RDP -> (epsilon, delta)
conversion from ``dp_accounting.rdp.compute_epsilon`` (the improved conversion
of Balle et al. 2020 / Canonne et al. 2020). For the paper's settings our
epsilons are 7-16 % below the paper's autodp numbers for the same sigma: mostly
the conversion, plus, at epsilon ~ 5, dp-accounting's use of Wang, Balle and
Kasiviswanathan's Theorem 27 where the paper's autodp call used Theorem 9. With
the classic conversion our RDP curve gives autodp's Theorem-27 epsilon to 1e-6
(see tests/vflgan_app/dp/test_accountant.py).

Sampler and neighbouring relation (they must match the code that draws the
batches):

* ``relation="replace_one"`` (default, paper and strict mode): fixed-size
  batches of ``B`` rows drawn without replacement, independently at every
  step (:func:`vflgan_app.core.sampling.batch_indices`, sampler ``"wor"``); one step
  is ``SampledWithoutReplacementDpEvent(N, B, GaussianDpEvent(sigma))``, where
  ``sigma`` = noise std / replace-one L2 sensitivity (std ``2 C sigma`` with
  sensitivity ``2C``). This is the only combination that describes the paper's
  sampler.
* ``relation="add_or_remove_one"``: Poisson sampling with rate ``q = B / N``,
  ``PoissonSampledDpEvent(q, GaussianDpEvent(sigma))`` with sensitivity ``C``.
  Provided for cross-checks (opacus uses it) and for a Poisson sampler should
  one be added; it is not comparable with replace-one numbers.

:class:`PrivacyAccountant` only keeps the history ``(sigma, B, N, steps)``;
epsilon is computed from it by pure functions, so ``state_dict()`` is a tiny
JSON-serialisable dict that goes into checkpoints. The per-step RDP curve of
each distinct ``(sigma, B, N, relation)`` is cached, so ``would_exceed`` can be
called before every step; composition is the same linear sum
``count * rdp`` that ``RdpAccountant.compose(event, count)`` performs.

The DP release of the decoding schema (:mod:`vflgan_app.dp.domain`) is part of the
total: its Gaussian releases (``releases``, no subsampling) are composed with the steps
under RDP, and the thresholding of its noisy counts adds ``threshold_delta`` to delta
and ``-log(1 - threshold_delta)`` to epsilon (docs/privacy.md, "The decoding schema").
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from importlib import metadata as _metadata
from typing import Any

from vflgan_app.checks import check_delta, check_int, check_positive, check_sample_size
from vflgan_app.dp.analysis import (
    MODES,
    RELATIONS,
    _check_relation,
    _history_epsilon,
    release_events,
)
from vflgan_app.errors import PrivacyBudgetExceeded

logger = logging.getLogger(__name__)

__all__ = ["DPAccounting", "PrivacyAccountant"]

STATE_FORMAT = "vflgan_app.accounting/1"


class PrivacyAccountant:
    """History of noised steps -> epsilon, with a prospective budget check.

    Keeps only ``history``: a list of ``(noise_multiplier, sample_size,
    population_size, steps)``; consecutive steps with the same setting are
    merged. All maths is delegated to dp-accounting (see the module doc).

    Args:
        mode: ``"paper"`` or ``"strict"`` (recorded in ``describe()``; in
            strict mode pass the effective noise multiplier of all noised
            blocks, :func:`effective_noise_multiplier`).
        relation: ``"replace_one"`` (default; matches the fixed-size
            without-replacement sampler) or ``"add_or_remove_one"`` (Poisson).
        releases: ``(noise_multiplier, count)`` Gaussian releases without
            subsampling made before training (the DP schema); part of every epsilon.
        threshold_delta: the delta spent by thresholding the schema's noisy counts
            (0 without a DP schema). Every epsilon is then the RDP epsilon at
            ``delta - threshold_delta`` plus ``-log(1 - threshold_delta)``, so the
            whole run is (epsilon, delta)-DP.
    """

    def __init__(self, *, mode: str = "paper", relation: str = "replace_one",
                 releases: Sequence[tuple[float, int]] = (),
                 threshold_delta: float = 0.0) -> None:
        if mode not in MODES:
            raise ValueError(f"dp.mode: got {mode!r}, expected one of {list(MODES)}")
        self.mode = mode
        self.relation = _check_relation(relation)
        self.history: list[tuple[float, int, int, int]] = []
        release_events(releases)  # validates
        self.releases = tuple((float(s), int(c)) for s, c in releases)
        if not (isinstance(threshold_delta, int | float) and 0 <= threshold_delta < 1):
            raise ValueError(f"threshold_delta: got {threshold_delta!r}, expected "
                             "0 <= threshold_delta < 1")
        self.threshold_delta = float(threshold_delta)

    def _epsilon(self, history, delta: float) -> tuple[float, float]:
        """(epsilon, order) of ``history`` plus the schema releases at total ``delta``."""
        d = check_delta(delta)
        if not history and not self.releases:
            return 0.0, float("nan")
        conv = d - self.threshold_delta
        if conv <= 0:
            raise ValueError(
                f"dp.delta: got {delta}, expected more than the {self.threshold_delta:g} "
                "spent by thresholding the schema's noisy counts"
            )
        eps, order = _history_epsilon(history, conv, self.relation, self.releases)
        return eps - math.log1p(-self.threshold_delta), order

    # -- recording --------------------------------------------------------

    @staticmethod
    def _entry(noise_multiplier, sample_size, population_size, count):
        sigma = check_positive("noise_multiplier", noise_multiplier)
        b, n = check_sample_size(sample_size, population_size)
        c = check_int("count", count, minimum=1)
        return sigma, b, n, c

    @staticmethod
    def _merged(history, entry):
        history = list(history)
        if history and history[-1][:3] == entry[:3]:
            s, b, n, t = history[-1]
            history[-1] = (s, b, n, t + entry[3])
        else:
            history.append(entry)
        return history

    def step(
        self,
        *,
        noise_multiplier: float,
        sample_size: int,
        population_size: int,
        count: int = 1,
    ) -> None:
        """Record ``count`` noised steps of ``sample_size`` rows out of N."""
        entry = self._entry(noise_multiplier, sample_size, population_size, count)
        self.history = self._merged(self.history, entry)

    @property
    def steps(self) -> int:
        """Total number of recorded noised steps."""
        return sum(e[3] for e in self.history)

    # -- querying ---------------------------------------------------------

    def get_epsilon_and_order(self, delta: float) -> tuple[float, float]:
        """(epsilon, optimal RDP order) spent so far at ``delta`` (schema included)."""
        return self._epsilon(self.history, delta)

    def get_epsilon(self, delta: float) -> float:
        """Epsilon spent so far at ``delta`` (before any step: the schema's, or 0.0)."""
        return self.get_epsilon_and_order(delta)[0]

    def epsilon_after(
        self,
        *,
        delta: float,
        noise_multiplier: float,
        sample_size: int,
        population_size: int,
        count: int = 1,
    ) -> float:
        """Epsilon if ``count`` more such steps were taken (does not mutate)."""
        entry = self._entry(noise_multiplier, sample_size, population_size, count)
        history = self._merged(self.history, entry)
        return self._epsilon(history, delta)[0]

    def would_exceed(
        self,
        *,
        target_epsilon: float,
        delta: float,
        noise_multiplier: float,
        sample_size: int,
        population_size: int,
        count: int = 1,
    ) -> bool:
        """Whether ``count`` more such steps would take epsilon above the target."""
        target = check_positive("target_epsilon", target_epsilon)
        nxt = self.epsilon_after(
            delta=delta,
            noise_multiplier=noise_multiplier,
            sample_size=sample_size,
            population_size=population_size,
            count=count,
        )
        return nxt > target

    def spend_or_raise(
        self,
        *,
        target_epsilon: float,
        delta: float,
        noise_multiplier: float,
        sample_size: int,
        population_size: int,
        count: int = 1,
    ) -> float:
        """Record the steps if they fit the budget, else raise; returns new epsilon.

        Call it *before* releasing the noised step: when it raises, nothing
        was recorded and the step must not be taken.

        Raises:
            PrivacyBudgetExceeded: If the steps would exceed ``target_epsilon``.
        """
        target = check_positive("target_epsilon", target_epsilon)
        nxt = self.epsilon_after(
            delta=delta,
            noise_multiplier=noise_multiplier,
            sample_size=sample_size,
            population_size=population_size,
            count=count,
        )
        if nxt > target:
            raise PrivacyBudgetExceeded(
                target_epsilon=target,
                current_epsilon=self.get_epsilon(delta),
                next_epsilon=nxt,
                delta=float(delta),
                steps_taken=self.steps,
            )
        self.step(
            noise_multiplier=noise_multiplier,
            sample_size=sample_size,
            population_size=population_size,
            count=count,
        )
        return nxt

    # -- persistence and reporting ----------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state (for checkpoints; resume keeps the budget)."""
        state = {
            "format": STATE_FORMAT,
            "mode": self.mode,
            "relation": self.relation,
            "history": [
                [float(s), int(b), int(n), int(t)] for s, b, n, t in self.history
            ],
        }
        if self.releases or self.threshold_delta:  # absent without a DP schema
            state["releases"] = [[s, c] for s, c in self.releases]
            state["threshold_delta"] = self.threshold_delta
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a ``state_dict()``; mode and relation must match this accountant."""
        if isinstance(state, str | bytes):
            state = json.loads(state)
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            got = state.get("format") if isinstance(state, dict) else type(state)
            raise ValueError(f"state.format: got {got!r}, expected {STATE_FORMAT!r}")
        mine = {"mode": self.mode, "relation": self.relation,
                "releases": [[s, c] for s, c in self.releases],
                "threshold_delta": self.threshold_delta}
        theirs = {"releases": [], "threshold_delta": 0.0, **state}
        theirs["releases"] = [[float(s), int(c)] for s, c in theirs["releases"]]
        for key, value in mine.items():
            if theirs.get(key) != value:
                raise ValueError(
                    f"state.{key}: got {theirs.get(key)!r}, expected "
                    f"{value!r} (this accountant's {key}; a budget "
                    "cannot be carried across a change of accounting)"
                )
        history: list[tuple[float, int, int, int]] = []
        for i, entry in enumerate(state.get("history", [])):
            if not isinstance(entry, list | tuple) or len(entry) != 4:
                raise ValueError(
                    f"state.history[{i}]: got {entry!r}, expected "
                    "[noise_multiplier, sample_size, population_size, steps]"
                )
            history = self._merged(history, self._entry(*entry))
        self.history = history

    def describe(self) -> dict[str, str]:
        """What is accounted, and how: for logs and output metadata."""
        if self.relation == "replace_one":
            event = "SampledWithoutReplacementDpEvent(N, B, GaussianDpEvent(sigma))"
        else:
            event = "PoissonSampledDpEvent(B/N, GaussianDpEvent(sigma))"
        return {
            "mode": self.mode,
            "accountant": (
                "dp_accounting.rdp.RdpAccountant "
                f"(dp-accounting {_package_version('dp-accounting')})"
            ),
            "sampler": RELATIONS[self.relation][1],
            "relation": self.relation,
            "event": event,
            "noise_multiplier": (
                "effective multiplier over all noised blocks of a step"
                if self.mode == "strict"
                else "noise std / (2 * clip) on the first-layer weight gradient"
            ),
            "schema": (
                "released with DP: GaussianDpEvent(sigma_schema) per release, composed "
                "with the steps (RDP); thresholding adds threshold_delta"
                if self.releases else "no DP release (public domains only, or DP off)"
            ),
        }

    def metadata(self, delta: float) -> dict[str, Any]:
        """``describe()`` plus epsilon, delta, sigma, q and steps (for outputs)."""
        eps, order = self.get_epsilon_and_order(delta)
        sigmas = sorted({e[0] for e in self.history})
        rates = sorted({e[1] / e[2] for e in self.history})
        return {
            **self.describe(),
            "epsilon": eps,
            "delta": float(delta),
            "rdp_order": order,
            "steps": self.steps,
            "noise_multiplier_values": sigmas,
            "sample_rate_values": rates,
            "history": self.state_dict()["history"],
            "schema_releases": [[s, c] for s, c in self.releases],
            "schema_threshold_delta": self.threshold_delta,
        }


def _package_version(name: str) -> str:
    try:
        return _metadata.version(name)
    except _metadata.PackageNotFoundError:  # pragma: no cover
        return "unknown"


# ---------------------------------------------------------------------------------
# the budget at the coordinator


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

    def __init__(self, plan) -> None:
        self.plan = plan
        self.accountant = PrivacyAccountant(
            mode=plan.mode, releases=plan.schema_releases,
            threshold_delta=plan.schema_delta,
        )
        self.epsilon = self.accountant.get_epsilon(plan.delta) if plan.schema_releases \
            else 0.0
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
            if self.accountant.steps or self.accountant.releases
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
            "schema_epsilon_fraction": self.plan.schema_epsilon_fraction,
            "sigma_schema": self.plan.schema_noise_multiplier,
            "sigma_schema_accounted": self.plan.schema_accounted_noise_multiplier,
            "noise_seeding": "secrets (OS CSPRNG)"
            if self.plan.noise_seed is None
            else "fixed dp.noise-seed (test only; not private)",
            "plan": self.plan.to_dict(),
        }
