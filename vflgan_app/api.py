"""Python API: ``fit(tables_by_party, config) -> VFLGANModel``; ``model.sample(n)``.

Runs the federated protocol with the in-process transport, so it works in a notebook::

    from vflgan_app import api
    model = api.fit([bank_table, shop_table], api.VFLGANConfig(steps=2000),
                    id_column="customer_id", categorical=["segment"])
    synthetic = model.sample(1000)          # DataFrame with the original column names
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from trainkit import (
    atomic_write_json,
    atomic_write_text,
    load_checkpoint,
    save_checkpoint,
    set_cpu_threads,
)
from vflgan_app.core.baselines import CentralizedWGANGP, VertiGAN
from vflgan_app.config import VFLGANConfig
from vflgan_app.core.coordinator import Coordinator
from vflgan_app.data.schema import PartyData, TableSchema, prepare_parties
from vflgan_app.dp.plan import (
    DPAccounting,
    PrivacyBudgetExceeded,
    install_dp,
    make_coordinator,
    make_party,
    resolve_plan,
)
from vflgan_app.core.model import Architecture
from vflgan_app.core.party import Party, PartySettings
from vflgan_app.core.protocol import InProcessTransport, PayloadObserver

logger = logging.getLogger(__name__)

__all__ = ["VFLGANConfig", "VFLGANModel", "BaselineModel", "PrivacyBudgetExceeded", "fit",
           "fit_parties", "fit_baseline"]


class VFLGANModel:
    """A trained VFLGAN federation (parties + coordinator) with decoding.

    Attributes:
        coordinator: the server side (top critic, loop state).
        parties: the parties (each holds its own modules and data).
        config: the run configuration.
        dp: the DP accounting installed on the coordinator (None without DP).
    """

    def __init__(self, coordinator: Coordinator, parties: Sequence[Party],
                 config: VFLGANConfig, dp: DPAccounting | None = None) -> None:
        self.coordinator = coordinator
        self.parties = list(parties)
        self.config = config
        self.dp = dp

    def dp_metadata(self) -> dict | None:
        """DP metadata: mode, epsilon, delta, sigma, q, steps, accountant; or no-DP mode."""
        return self.dp.metadata() if self.dp is not None else {"mode": "none"}

    @property
    def schemas(self) -> list[TableSchema]:
        """Each party's column encoding, party order."""
        return [p.data.schema for p in self.parties]

    @property
    def party_slices(self) -> list[slice]:
        """Each party's columns in the joined encoded table."""
        return _slices([s.width for s in self.schemas])

    def fit(self, steps: int | None = None) -> VFLGANModel:
        """Train (or continue training) up to ``steps`` (default ``config.steps``).

        Raises:
            PrivacyBudgetExceeded: with DP, before a step that would exceed
                ``dp.target-epsilon``; the model stays usable (the parties are brought
                up to date first) and holds every step taken within the budget.
        """
        try:
            self.coordinator.fit(steps if steps is not None else self.config.steps,
                                 progress=self.config.progress,
                                 log_every=self.config.log_every)
        except PrivacyBudgetExceeded as e:
            self.coordinator.flush()
            logger.error("%s", e)
            raise
        return self

    def sample_parts(self, n: int, seed: int = 0, independent: bool = False) -> list[np.ndarray]:
        """Encoded synthetic columns per party (``independent``: the control)."""
        return self.coordinator.sample(n, seed, independent)

    def sample(self, n: int, seed: int = 0, independent: bool = False) -> pd.DataFrame:
        """``n`` synthetic rows with original column names and decoded values."""
        return decode_parts(self.schemas, self.sample_parts(n, seed, independent))

    def save(self, path: str | Path) -> Path:
        """Write each party's state to ``party-<k>/`` and the server's to ``server/``.

        No party's weights go into another party's folder.
        """
        path = Path(path)
        for p in self.parties:
            d = path / f"party-{p.party_id}"
            save_checkpoint(p.state_dict(), d / "state.pt")
            atomic_write_text(d / "schema.json", p.data.schema.to_json())
        save_checkpoint(self.coordinator.state_dict(), path / "server" / "state.pt")
        meta = self.config.to_dict()
        if self.dp is not None:
            meta["dp_metadata"] = self.dp.metadata()
            atomic_write_json(path / "server" / "dp.json", self.dp.metadata())
        atomic_write_json(path / "config.json", meta)
        return path

    def load(self, path: str | Path) -> VFLGANModel:
        """Restore states written by :meth:`save` (same data and config)."""
        path = Path(path)
        for p in self.parties:
            p.load_state_dict(load_checkpoint(path / f"party-{p.party_id}" / "state.pt"))
        self.coordinator.load_state_dict(load_checkpoint(path / "server" / "state.pt"))
        return self


class BaselineModel:
    """A trained baseline (``vertigan`` or ``centralized``) with the same sampling API."""

    def __init__(self, impl, schemas: Sequence[TableSchema], config: VFLGANConfig) -> None:
        self.impl, self.schemas, self.config = impl, list(schemas), config

    @property
    def party_slices(self) -> list[slice]:
        """Each party's columns in the joined encoded table."""
        return _slices([s.width for s in self.schemas])

    def fit(self, steps: int | None = None) -> BaselineModel:
        """Train up to ``steps`` (default ``config.steps``)."""
        self.impl.fit(steps if steps is not None else self.config.steps, self.config.progress)
        return self

    def sample_parts(self, n: int, seed: int = 0, independent: bool = False) -> list[np.ndarray]:
        """Encoded synthetic columns per party."""
        return self.impl.sample(n, seed, independent)

    def sample(self, n: int, seed: int = 0, independent: bool = False) -> pd.DataFrame:
        """Decoded synthetic rows."""
        return decode_parts(self.schemas, self.sample_parts(n, seed, independent))


def _slices(widths: Sequence[int]) -> list[slice]:
    out, pos = [], 0
    for w in widths:
        out.append(slice(pos, pos + w))
        pos += w
    return out


def decode_parts(schemas: Sequence[TableSchema], parts: Sequence[np.ndarray]) -> pd.DataFrame:
    """Decode per-party encoded blocks and join them column-wise (party order)."""
    return pd.concat([s.decode(x) for s, x in zip(schemas, parts, strict=True)], axis=1)


def build_federation(
    parties_data: Sequence[PartyData],
    config: VFLGANConfig,
    arch: Architecture | None = None,
    observer: PayloadObserver | None = None,
) -> VFLGANModel:
    """Create parties, an in-process transport and a coordinator, and shake hands.

    With ``config.dp.mode`` paper or strict, sigma is calibrated (unless given) for
    ``config.steps`` critic steps on the parties' N rows, each party gets its DP
    mechanism (:func:`vflgan_app.dp.plan.make_party`), the coordinator the strict-mode D_S step
    if needed and the accountant as a before-step hook (:func:`vflgan_app.dp.plan.install_dp`).
    """
    arch = arch or config.resolve_architecture()
    set_cpu_threads(config.threads)
    plan = None
    if config.dp.enabled:
        if arch.bias:
            logger.info("dp.mode=%s: linear layers without biases (the paper's DP models)",
                        config.dp.mode)
            arch = dataclasses.replace(arch, bias=False)
        plan = resolve_plan(config.dp, n_rows=len(parties_data[0].ids),
                            batch_size=arch.batch_size, steps=config.steps,
                            num_parties=len(parties_data))
    settings = PartySettings(seed=config.seed, lambda_gp=arch.lambda_gp,
                             lambda_p=config.lambda_p, lr=arch.lr)
    parties = [make_party(d, arch, settings, device=config.device, plan=plan)
               for d in parties_data]
    coordinator = make_coordinator(
        InProcessTransport(parties, observer=observer), arch, plan=plan, seed=config.seed,
        n_critic=config.n_critic, sampler=config.sampler, device=config.device,
        expected_parties=len(parties),
    )
    coordinator.handshake()
    accounting = install_dp(coordinator, plan)
    return VFLGANModel(coordinator, parties, config, dp=accounting)


def fit_parties(parties_data: Sequence[PartyData], config: VFLGANConfig,
                observer: PayloadObserver | None = None) -> VFLGANModel:
    """Build the federation on prepared party data and train it."""
    return build_federation(parties_data, config, observer=observer).fit()


def fit(
    tables_by_party: Sequence[pd.DataFrame] | Mapping[str, pd.DataFrame],
    config: VFLGANConfig | None = None,
    id_column: str = "record_id",
    categorical: Sequence[str] = (),
    bounded: Mapping[str, tuple[float, float]] | None = None,
) -> VFLGANModel:
    """Train VFLGAN on per-party tables and return the model.

    Args:
        tables_by_party: one table per party (a list, or a dict whose insertion order is
            the party order). Each holds the id column plus that party's columns.
        config: run configuration (default: :class:`VFLGANConfig` defaults).
        id_column: the record-id column every table has; rows are aligned by it.
        categorical: names of categorical columns (string columns are categorical anyway).
        bounded: ``{column: (low, high)}`` for columns to generate in a fixed range.

    Raises:
        ValueError: misaligned ids, a column in two parties, NaNs, empty tables, ...
    """
    config = config or VFLGANConfig(dataset="custom")
    tables = list(tables_by_party.values()) if isinstance(tables_by_party, Mapping) else list(tables_by_party)
    parties_data = prepare_parties(tables, id_column, categorical, bounded)
    return fit_parties(parties_data, config)


def fit_baseline(kind: str, parties_data: Sequence[PartyData], config: VFLGANConfig) -> BaselineModel:
    """Train a baseline (``"vertigan"`` or ``"centralized"``) on the same data.

    Raises:
        ValueError: unknown baseline name.
    """
    if config.dp.enabled:
        raise ValueError(f"dp.mode: got {config.dp.mode!r} for the {kind!r} baseline; "
                         "expected 'none' (DP is implemented for vflgan only)")
    arch = config.resolve_architecture()
    classes = {"vertigan": VertiGAN, "centralized": CentralizedWGANGP}
    if kind not in classes:
        raise ValueError(f"baseline: got {kind!r}, expected one of {list(classes)}")
    set_cpu_threads(config.threads)
    impl = classes[kind]([d.x for d in parties_data], [d.schema.output_spans() for d in parties_data],
                         arch, seed=config.seed, n_critic=config.n_critic, sampler=config.sampler)
    return BaselineModel(impl, [d.schema for d in parties_data], config).fit()


def load_schema(path: str | Path) -> TableSchema:
    """Read a ``schema.json`` written by :meth:`VFLGANModel.save`."""
    return TableSchema.from_json(Path(path).read_text())
