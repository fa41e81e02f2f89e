"""Privacy accounting maths for DP-VFLGAN: pure functions on Google's ``dp-accounting`` (RDP).

No RDP formula is written here: every per-step Renyi-DP curve comes from
``dp_accounting.rdp.RdpAccountant`` and every RDP -> (epsilon, delta) conversion from
``dp_accounting.rdp.compute_epsilon``. :class:`vflgan_app.dp.accountant.PrivacyAccountant`
keeps the history and calls these (opacus' split of ``accountants/rdp.py`` and
``accountants/analysis/rdp.py``). The sampler and neighbouring relation are described
in :mod:`vflgan_app.dp.accountant`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import dp_accounting
import numpy as np
from dp_accounting import dp_event
from dp_accounting.mechanism_calibration import LowerEndpointAndGuess
from dp_accounting.rdp import RdpAccountant, compute_epsilon

from vflgan_app.checks import (
    check_delta,
    check_int,
    check_positive,
    check_sample_size,
)

__all__ = [
    "MODES",
    "RELATIONS",
    "calibrate_gaussian_noise_multiplier",
    "calibrate_noise_multiplier",
    "effective_noise_multiplier",
    "epsilon_for",
    "make_event",
    "release_events",
]

MODES = ("paper", "strict")

#: relation -> (dp-accounting relation, sampler description)
RELATIONS = {
    "replace_one": (
        dp_accounting.NeighboringRelation.REPLACE_ONE,
        "fixed-size batches without replacement, drawn independently per step",
    ),
    "add_or_remove_one": (
        dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE,
        "Poisson sampling with rate q = sample_size / population_size",
    ),
}

def _check_relation(relation: str) -> str:
    if relation not in RELATIONS:
        raise ValueError(
            f"relation: got {relation!r}, expected one of {sorted(RELATIONS)}"
        )
    return relation


def make_event(
    *,
    noise_multiplier: float,
    sample_size: int,
    population_size: int,
    steps: int = 1,
    relation: str = "replace_one",
) -> dp_event.DpEvent:
    """The dp-accounting event of ``steps`` noised steps with one setting.

    ``replace_one``: ``SampledWithoutReplacementDpEvent(N, B, Gaussian(sigma))``;
    ``add_or_remove_one``: ``PoissonSampledDpEvent(B / N, Gaussian(sigma))``;
    wrapped in ``SelfComposedDpEvent(., steps)`` when ``steps != 1``.
    """
    sigma = check_positive("noise_multiplier", noise_multiplier)
    b, n = check_sample_size(sample_size, population_size)
    t = check_int("steps", steps, minimum=0)
    _check_relation(relation)
    gaussian = dp_event.GaussianDpEvent(sigma)
    if relation == "replace_one":
        step = dp_event.SampledWithoutReplacementDpEvent(n, b, gaussian)
    else:
        step = dp_event.PoissonSampledDpEvent(b / n, gaussian)
    return step if t == 1 else dp_event.SelfComposedDpEvent(step, t)


def release_events(releases: Sequence[tuple[float, int]]) -> list[dp_event.DpEvent]:
    """The dp-accounting events of ``(sigma, count)`` releases without subsampling.

    A release is a Gaussian mechanism on the whole table (the DP schema of
    :mod:`vflgan_app.dp.domain`): ``GaussianDpEvent(sigma)`` composed ``count`` times.
    Its RDP does not depend on the neighbouring relation once sigma is the noise std
    over the L2 sensitivity under that relation.
    """
    out = []
    for sigma, count in releases:
        gaussian = dp_event.GaussianDpEvent(check_positive("noise_multiplier", sigma))
        c = check_int("count", count, minimum=1)
        out.append(gaussian if c == 1 else dp_event.SelfComposedDpEvent(gaussian, c))
    return out


def _fresh_accountant(relation: str) -> RdpAccountant:
    return RdpAccountant(neighboring_relation=RELATIONS[relation][0])


@functools.lru_cache(maxsize=512)
def _step_rdp(sigma: float, b: int, n: int, relation: str) -> tuple[tuple, tuple]:
    """(orders, rdp) of ONE step, from dp-accounting (cached; immutable)."""
    acc = _fresh_accountant(relation)
    acc.compose(
        make_event(
            noise_multiplier=sigma, sample_size=b, population_size=n, relation=relation
        )
    )
    return tuple(acc.orders.tolist()), tuple(acc.rdp.tolist())


@functools.lru_cache(maxsize=64)
def _release_rdp(sigma: float) -> tuple[tuple, tuple]:
    """(orders, rdp) of ONE Gaussian release without subsampling, from dp-accounting."""
    acc = _fresh_accountant("replace_one")  # a plain Gaussian: the relation is moot
    acc.compose(dp_event.GaussianDpEvent(sigma))
    return tuple(acc.orders.tolist()), tuple(acc.rdp.tolist())


def _history_epsilon(
    history: Sequence[tuple[float, int, int, int]],
    delta: float,
    relation: str,
    releases: Sequence[tuple[float, int]] = (),
) -> tuple[float, float]:
    """(epsilon, optimal order) of a history of (sigma, B, N, steps) entries.

    ``releases`` are ``(sigma, count)`` Gaussian releases without subsampling (the DP
    schema), composed with the history under RDP.
    """
    orders: tuple | None = None
    total = None
    for sigma, b, n, steps in history:
        o, r = _step_rdp(float(sigma), int(b), int(n), relation)
        orders = o
        term = steps * np.asarray(r)
        total = term if total is None else total + term
    for sigma, count in releases:
        o, r = _release_rdp(float(sigma))
        orders = o
        term = count * np.asarray(r)
        total = term if total is None else total + term
    if total is None:
        return 0.0, float("nan")
    eps, order = compute_epsilon(np.asarray(orders), total, delta)
    return float(eps), float(order)


def epsilon_for(
    *,
    noise_multiplier: float,
    sample_size: int,
    population_size: int,
    steps: int,
    delta: float,
    relation: str = "replace_one",
    releases: Sequence[tuple[float, int]] = (),
) -> float:
    """Epsilon at ``delta`` after ``steps`` identical noised steps (pure).

    ``releases``: ``(sigma, count)`` Gaussian releases without subsampling composed
    with the steps (:func:`release_events`).
    """
    sigma = check_positive("noise_multiplier", noise_multiplier)
    b, n = check_sample_size(sample_size, population_size)
    t = check_int("steps", steps, minimum=0)
    d = check_delta(delta)
    _check_relation(relation)
    release_events(releases)  # validates
    return _history_epsilon([(sigma, b, n, t)], d, relation, releases)[0]


def effective_noise_multiplier(noise_multipliers: Sequence[float]) -> float:
    """One Gaussian equivalent to K Gaussians released on the same batch.

    Strict mode clips and noises K blocks (each party's bottom critic, the
    server's critic) on the same batch, block k with noise multiplier
    ``sigma_k`` w.r.t. its own sensitivity. Their joint release is a Gaussian
    mechanism with noise multiplier ``(sum_k sigma_k^-2)^-1/2``, e.g.
    ``sigma / sqrt(K)`` for equal ``sigma``: pass that to the accountant.
    """
    values = [check_positive("noise_multiplier", s) for s in noise_multipliers]
    if not values:
        raise ValueError("noise_multipliers: got none, expected at least one")
    return 1.0 / math.sqrt(sum(1.0 / (s * s) for s in values))


def calibrate_noise_multiplier(
    *,
    target_epsilon: float,
    delta: float,
    sample_size: int,
    population_size: int,
    steps: int,
    relation: str = "replace_one",
    tol: float = 1e-4,
    releases: Sequence[tuple[float, int]] = (),
) -> float:
    """Smallest sigma (within ``tol``) whose epsilon after ``steps`` is <= target.

    Uses ``dp_accounting.calibrate_dp_mechanism`` (Brent's method) with the
    same events as :func:`epsilon_for`, then checks the result. ``releases`` (the DP
    schema, :func:`release_events`) are composed with the steps: sigma is calibrated
    for what the budget leaves after them. The result is a pure function of the
    arguments and is memoised: the server and every party of one process (the Python
    API, a simulation) calibrate once, not once each (seconds per calibration).
    """
    return _calibrate(target_epsilon, delta, sample_size, population_size, steps, relation,
                      tol, tuple(tuple(r) for r in releases))


@functools.lru_cache(maxsize=64)
def _calibrate(target_epsilon, delta, sample_size, population_size, steps, relation, tol,
               releases) -> float:
    target = check_positive("target_epsilon", target_epsilon)
    d = check_delta(delta)
    b, n = check_sample_size(sample_size, population_size)
    t = check_int("steps", steps, minimum=1)
    _check_relation(relation)
    tol = check_positive("tol", tol)

    prior = release_events(releases)

    def eps(sigma: float) -> float:
        return epsilon_for(
            noise_multiplier=sigma,
            sample_size=b,
            population_size=n,
            steps=t,
            delta=d,
            relation=relation,
            releases=releases,
        )

    if prior and _history_epsilon([], d, relation, releases)[0] >= target:
        raise ValueError(
            f"dp.target-epsilon: got {target}, but the schema release alone spends "
            f"{_history_epsilon([], d, relation, releases)[0]:.4g}; expected a target "
            "that leaves budget for training (lower dp.schema-epsilon-fraction)"
        )
    lower = 0.05
    if eps(lower) <= target:
        raise ValueError(
            f"dp.target-epsilon: got {target}, expected a target that needs "
            f"noise_multiplier > {lower} (epsilon at sigma={lower} is already "
            f"{eps(lower):.4g}); such a weak target is not supported"
        )
    sigma = float(
        dp_accounting.calibrate_dp_mechanism(
            lambda: _fresh_accountant(relation),
            lambda s: dp_event.ComposedDpEvent([
                *prior,
                make_event(
                    noise_multiplier=s,
                    sample_size=b,
                    population_size=n,
                    steps=t,
                    relation=relation,
                ),
            ]) if prior else make_event(
                noise_multiplier=s,
                sample_size=b,
                population_size=n,
                steps=t,
                relation=relation,
            ),
            target,
            d,
            bracket_interval=LowerEndpointAndGuess(lower, 1.0),
            tol=tol,
        )
    )
    return _verified(eps, sigma, target, tol)


def calibrate_gaussian_noise_multiplier(
    *, target_epsilon: float, delta: float, count: int = 1, tol: float = 1e-4
) -> float:
    """Smallest sigma (within ``tol``) of ``count`` unsampled Gaussian releases.

    The releases' epsilon at ``delta`` is <= target (RDP, dp-accounting): the noise of
    the DP schema (:mod:`vflgan_app.dp.domain`).
    """
    target = check_positive("target_epsilon", target_epsilon)
    d = check_delta(delta)
    c = check_int("count", count, minimum=1)
    tol = check_positive("tol", tol)

    def eps(sigma: float) -> float:
        return _history_epsilon([], d, "replace_one", [(sigma, c)])[0]

    sigma = float(
        dp_accounting.calibrate_dp_mechanism(
            lambda: _fresh_accountant("replace_one"),
            lambda s: release_events([(s, c)])[0],
            target,
            d,
            bracket_interval=LowerEndpointAndGuess(1e-3, 1.0),
            tol=tol,
        )
    )
    return _verified(eps, sigma, target, tol)


def _verified(eps, sigma: float, target: float, tol: float) -> float:
    """Brent returns the feasible end of its bracket; make sure, never trust.

    The smallest ``sigma + k * tol`` (k < 100) whose epsilon is within ``target``.
    """
    for _ in range(100):
        if eps(sigma) <= target:
            return sigma
        sigma += tol
    raise RuntimeError(  # pragma: no cover - would be a dp-accounting bug
        f"calibration did not reach epsilon <= {target} (sigma={sigma})"
    )
