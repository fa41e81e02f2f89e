"""The single assembly of a VFLGAN federation: architecture, DP parts, parties, coordinator.

Every entry point builds through here: the Python API (:func:`in_process`: all
parties and the coordinator in one process), the ServerApp (:func:`connect` over a
Flower transport) and the ClientApp (:func:`build_party` for its own party). The same
run config therefore gives the same modules, DP mechanisms and accountant everywhere.
Under DP a party's decoding schema is replaced by its private one (declared public
domains and a DP release, :func:`private_party_data`) before the party is built, so
its handshake and every decoded row use only that.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

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

#: Built-in datasets whose every column is a bounded pixel (a declared public domain).
IMAGE_DATASETS = ("digits", "mnist")


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
    """The DP plan (sigma calibrated for ``config.steps`` on N rows), None without DP.

    On an image dataset every column is bounded (a public domain), so an unset
    ``dp.schema-epsilon-fraction`` spends nothing on the schema there.
    """
    if not config.dp.enabled:
        return None
    dp = config.dp
    if config.dataset in IMAGE_DATASETS and dp.schema_epsilon_fraction is None:
        dp = dataclasses.replace(dp, schema_epsilon_fraction=0.0)
    return resolve_plan(dp, n_rows=n_rows, batch_size=arch.batch_size,
                        steps=config.steps, num_parties=num_parties)


def private_party_data(data: PartyData, config: VFLGANConfig, plan: DPPlan | None,
                       released: str | None = None) -> PartyData:
    """Under DP, ``data`` with its exact schema replaced by its private one.

    Every column's domain comes from ``dp.public-domain`` (or its declared bounds) or
    is released with DP (:func:`vflgan_app.dp.domain.private_schema`); the rows are
    re-encoded with it (values outside it clipped / mapped to the fallback category).
    The result is a new PartyData without the real values the release read; ``data``
    is not changed. Without DP, or when ``data``'s schema is already private, ``data``
    itself is returned.

    Each call releases again (and spends the schema budget again): call it once per
    run, or pass ``released``. :func:`in_process` and :func:`build_party` do that.

    Args:
        data: the party's prepared data (:func:`vflgan_app.data.partition.prepare_party`).
        config: the run config (``dp.public-domain``).
        plan: the DP plan; None without DP.
        released: the JSON of a schema this party released before (a resumed run or a
            fresh process of the same run): reused instead of releasing again.

    Raises:
        ValueError: see :func:`~vflgan_app.dp.domain.private_schema`; a ``released``
            schema with other columns or not private.
    """
    if plan is None or data.schema.private:
        return data
    from vflgan_app.data.schema import TableSchema, load_public_domain
    from vflgan_app.dp.domain import private_schema

    if released is not None:
        schema = TableSchema.from_json(released)
        if schema.names != data.schema.names or not schema.private:
            raise ValueError(
                f"party {data.party_id}: the released schema has columns "
                f"{schema.names[:10]} (private: {schema.private}); expected a private "
                f"schema of {data.schema.names[:10]}"
            )
    else:
        schema = private_schema(data.schema, data.table,
                                public_domain=load_public_domain(config.dp.public_domain),
                                plan=plan, party_id=data.party_id)
    blocks = []
    old = data.schema.column_slices()
    for new, before in zip(schema.columns, data.schema.columns, strict=True):
        block = data.x[:, old[new.name]]
        if new.kind == before.kind == "bounded" and (new.low, new.high) == (
                before.low, before.high):
            blocks.append(block)  # the declared bounds: the same encoding
            continue
        if data.table is not None and new.name in data.table.columns:
            values = data.table[[new.name]]
        else:  # bounded with other declared bounds: the values the old bounds give
            values = TableSchema((before,)).decode(block)
        blocks.append(TableSchema((new,)).encode(values))
    mapped = schema.out_of_domain(data.table) if data.table is not None else {}
    if mapped:  # the party's own log: never sent
        logger.warning("party %d: real values outside the DP schema's domain were "
                       "clipped / encoded as the fallback category (rows per column: %s)",
                       data.party_id, mapped)
    x = np.concatenate(blocks, axis=1).astype(np.float32, copy=False)
    return PartyData(data.party_id, schema, data.ids, x)


def released_party_data(data: PartyData, config: VFLGANConfig,
                        plan: DPPlan | None) -> PartyData:
    """:func:`private_party_data`, released once per PartyData object and DP setting.

    The private copy is kept on ``data`` (keyed by the plan's schema settings, the
    noise seed and ``dp.public-domain``), so building the same party again in this
    process (every ``hello`` of a ClientApp before training, a second run on the same
    cached table) reuses the release instead of spending the budget again; ``data``
    itself keeps its exact schema for runs without DP.
    """
    if plan is None or data.schema.private:
        return data
    key = (plan.mode, plan.schema_noise_multiplier, plan.schema_delta, plan.num_parties,
           plan.noise_seed, config.dp.public_domain)
    cache = data.__dict__.setdefault("_dp_released", {})
    if key not in cache:
        cache[key] = private_party_data(data, config, plan)
    return cache[key]


def check_public_domain_columns(config: VFLGANConfig,
                                names: Sequence[Sequence[str]]) -> None:
    """Refuse a ``dp.public-domain`` that names a column no party holds.

    Args:
        config: the run config.
        names: each party's column names.

    Raises:
        ValueError: naming the unknown column and the known ones.
    """
    if not config.dp.enabled:
        return
    from vflgan_app.data.schema import DOMAIN_SETTING, load_public_domain

    known = [n for party in names for n in party]
    for name in load_public_domain(config.dp.public_domain):
        if name not in known:
            raise ValueError(
                f"{DOMAIN_SETTING}: column {name!r} is not a column of any party; "
                f"expected one of {known[:20]}"
            )


def build_party(data: PartyData, config: VFLGANConfig, arch: Architecture,
                plan: DPPlan | None, max_sample_rows: int | None = None) -> Party:
    """One party with its DP critic rule (paper, strict or exact).

    The party checks every request against the run's own batches (``batch_size`` and
    ``sampler``) and caps ``sample`` at ``max_sample_rows`` (None: the default cap).
    Under DP the party holds its data with the private schema
    (:func:`released_party_data`: released once per PartyData and DP setting).
    """
    data = released_party_data(data, config, plan)
    settings = PartySettings(seed=config.seed, lambda_gp=arch.lambda_gp,
                             lambda_p=config.lambda_p, lr=arch.lr,
                             batch_size=arch.batch_size, sampler=config.sampler,
                             trunk=config.generator_trunk,
                             **({} if max_sample_rows is None
                                else {"max_sample_rows": max_sample_rows}))
    return Party(data, arch, settings, device=config.device,
                 critic_rule=party_rule(plan, data.party_id, config.objective,
                                         gram=config.joint_exchange == "gram"))


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
        generator_trunk=config.generator_trunk,
    )
    coordinator.handshake()
    return coordinator, install_dp(coordinator, plan)


def in_process(parties_data: Sequence[PartyData], config: VFLGANConfig,
               arch: Architecture | None = None,
               observer: PayloadObserver | None = None) -> Federation:
    """Parties, an in-process transport and a coordinator (the Python API's federation).

    Under DP each of ``parties_data`` gets its private schema in place (its exact
    schema, encoding and real values are dropped), so everything the caller does later
    with the same objects (publication, evaluation) decodes with the private schema.
    """
    arch = architecture(config, arch)
    set_cpu_threads(config.threads)
    plan = dp_plan(config, arch, n_rows=len(parties_data[0].ids),
                   num_parties=len(parties_data))
    if plan is not None:
        check_public_domain_columns(config, [d.schema.names for d in parties_data])
        for d in parties_data:  # in place: the caller publishes with these schemas
            private = released_party_data(d, config, plan)
            d.schema, d.x, d.table = private.schema, private.x, None
    # the parties are the caller's own here: no cap on what it may ask them to publish
    parties = [build_party(d, config, arch, plan, max_sample_rows=2**62)
               for d in parties_data]
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
        from vflgan_app.data.schema import TableSchema

        schemas = {p: TableSchema.from_json(r[-1]["schema"]) for p, r in hellos.items()}
        for p, schema in schemas.items():
            if not schema.private:
                raise ValueError(
                    f"party {p}: its schema was not released for DP (columns "
                    f"{[c.name for c in schema.columns if not c.domain][:10]} are fitted "
                    f"from the real table); expected every party to build with "
                    f"federation.build_party under dp.mode={config.dp.mode}"
                )
        check_public_domain_columns(config, [s.names for s in schemas.values()])
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
