"""The single assembly of a VFLGAN federation: architecture, DP parts, parties, coordinator.

Every entry point builds through here: the Python API (:func:`in_process`: all
parties and the coordinator in one process), the ServerApp (:func:`connect` over a
Flower transport) and the ClientApp (:func:`build_party` for its own party). The same
run config therefore gives the same modules, DP mechanisms and accountant everywhere.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from trainkit import set_cpu_threads
from vflgan_app.architectures import Architecture
from vflgan_app.config import VFLGANConfig
from vflgan_app.core.coordinator import Coordinator
from vflgan_app.core.party import Party, PartySettings
from vflgan_app.core.protocol import (
    Call,
    InProcessTransport,
    PayloadObserver,
    Transport,
)
from vflgan_app.data.partition import PartyData
from vflgan_app.dp.plan import DPPlan, resolve_plan
from vflgan_app.dp.processors import party_rule, server_rule

if TYPE_CHECKING:  # the accountant (and dp-accounting) load only in a DP run
    from vflgan_app.dp.accountant import DPAccounting

logger = logging.getLogger(__name__)


@dataclass
class Federation:
    """A built federation: the coordinator, the parties in this process, the DP parts.

    Attributes:
        coordinator: the server side, after its handshake.
        parties: the parties living in this process (empty on a Flower server).
        plan: the resolved DP plan (None without DP).
        accounting: the accountant installed on the coordinator (None without DP).
    """

    coordinator: Coordinator
    parties: list[Party]
    plan: DPPlan | None
    accounting: DPAccounting | None


def architecture(config: VFLGANConfig, arch: Architecture | None = None) -> Architecture:
    """The run's architecture (an override, else the preset); bias-free under DP."""
    arch = arch or config.resolve_architecture()
    if config.dp.enabled and arch.bias:
        logger.info("dp.mode=%s: linear layers without biases (the paper's DP models)",
                    config.dp.mode)
        arch = dataclasses.replace(arch, bias=False)
    return arch


def dp_plan(config: VFLGANConfig, arch: Architecture, n_rows: int,
            num_parties: int) -> DPPlan | None:
    """The DP plan (sigma calibrated for ``config.steps`` on N rows), None without DP."""
    if not config.dp.enabled:
        return None
    return resolve_plan(config.dp, n_rows=n_rows, batch_size=arch.batch_size,
                        steps=config.steps, num_parties=num_parties)


def build_party(data: PartyData, config: VFLGANConfig, arch: Architecture,
                plan: DPPlan | None) -> Party:
    """One party with its DP critic rule (paper, strict or exact)."""
    settings = PartySettings(seed=config.seed, lambda_gp=arch.lambda_gp,
                             lambda_p=config.lambda_p, lr=arch.lr)
    return Party(data, arch, settings, device=config.device,
                 critic_rule=party_rule(plan, data.party_id, config.objective))


def build_coordinator(transport: Transport, config: VFLGANConfig, arch: Architecture,
                      plan: DPPlan | None, expected_parties: int
                      ) -> tuple[Coordinator, DPAccounting | None]:
    """The coordinator with its D_S rule, after the handshake, with the accountant.

    Raises:
        HandshakeError: the parties cannot train together.
    """
    coordinator = Coordinator(
        transport, arch, seed=config.seed, n_critic=config.n_critic,
        sampler=config.sampler, device=config.device,
        expected_parties=expected_parties,
        critic_rule=server_rule(plan, config.objective),
        shuffle_negatives=config.shuffle_negatives,
    )
    coordinator.handshake()
    return coordinator, install_dp(coordinator, plan)


def in_process(parties_data: Sequence[PartyData], config: VFLGANConfig,
               arch: Architecture | None = None,
               observer: PayloadObserver | None = None) -> Federation:
    """Parties, an in-process transport and a coordinator (the Python API's federation)."""
    arch = architecture(config, arch)
    set_cpu_threads(config.threads)
    plan = dp_plan(config, arch, n_rows=len(parties_data[0].ids),
                   num_parties=len(parties_data))
    parties = [build_party(d, config, arch, plan) for d in parties_data]
    transport = InProcessTransport(parties, observer=observer)
    coordinator, accounting = build_coordinator(transport, config, arch, plan,
                                                expected_parties=len(parties))
    return Federation(coordinator, parties, plan, accounting)


def connect(transport: Transport, config: VFLGANConfig) -> Federation:
    """The server side over a remote transport: plan from the parties' row count.

    Every party resolves the same plan from the same run config and its own row count
    (:mod:`vflgan_app.flower.node`); the server asks for the row count with one
    ``hello`` first.
    """
    arch = architecture(config)
    plan = None
    if config.dp.enabled:
        hellos = transport.exchange({p: [Call("hello")] for p in transport.party_ids()})
        n_rows = int(next(iter(hellos.values()))[-1]["n_rows"])
        plan = dp_plan(config, arch, n_rows, config.num_parties)
    coordinator, accounting = build_coordinator(transport, config, arch, plan,
                                                expected_parties=config.num_parties)
    return Federation(coordinator, [], plan, accounting)


def install_dp(coordinator: Coordinator, plan: DPPlan | None) -> DPAccounting | None:
    """Attach accounting to ``coordinator`` (before-step hook, progress, checkpoints)."""
    if plan is None:
        return None
    from vflgan_app.dp.accountant import DPAccounting

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
        plan.mode, plan.target_epsilon, plan.delta, plan.noise_multiplier,
        "calibrated" if plan.calibrated else "given", plan.accounted_noise_multiplier,
        plan.clip, plan.noise_std, plan.sample_size, plan.population_size,
        plan.planned_steps,
    )
    return acc
