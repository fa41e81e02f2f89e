"""Python API: ``fit(tables_by_party, config) -> VFLGANModel``; ``model.sample(n)``.

Runs the federated protocol with the in-process transport, so it works in a notebook::

    from vflgan_app import api
    model = api.fit([bank_table, shop_table], api.VFLGANConfig(steps=2000),
                    id_column="customer_id", categorical=["segment"])
    synthetic = model.sample(1000)          # DataFrame with the original column names
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from trainkit import (
    atomic_write_json,
    atomic_write_text,
    set_cpu_threads,
)
from vflgan_app import federation
from vflgan_app.architectures import Architecture
from vflgan_app.config import VFLGANConfig
from vflgan_app.core.baselines import CentralizedWGANGP, VertiGAN
from vflgan_app.core.checkpoint import read_state, write_state
from vflgan_app.core.coordinator import Coordinator
from vflgan_app.core.party import Party
from vflgan_app.core.protocol import PayloadObserver
from vflgan_app.data.partition import PartyData, decode_parts, prepare_parties
from vflgan_app.data.schema import TableSchema
from vflgan_app.dp.accountant import DPAccounting
from vflgan_app.errors import PrivacyBudgetExceeded

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

    def fit(self, steps: int | None = None, *, checkpoint_dir: str | Path | None = None,
            checkpoint_every: int = 0, resume: bool = False,
            overwrite: bool = False) -> VFLGANModel:
        """Train (or continue training) up to ``steps`` (default ``config.steps``).

        Args:
            steps: the step to train to.
            checkpoint_dir: where resumable checkpoints go (the server's and, unless a
                party has its own ``checkpoint_dir``, every party's, side by side);
                None = no checkpoints.
            checkpoint_every: steps between checkpoints (0 = only at the end).
            resume: continue from the newest checkpoint in ``checkpoint_dir`` (same
                settings, :data:`vflgan_app.core.checkpoint.RESUME_MAY_CHANGE` aside).
            overwrite: a fresh run deletes the checkpoints it finds there (without it,
                a fresh run refuses a folder holding checkpoints).

        Raises:
            PrivacyBudgetExceeded: with DP, before a step that would exceed
                ``dp.target-epsilon``; the model stays usable (the parties are brought
                up to date first) and holds every step taken within the budget.
            FileExistsError: a fresh run finds checkpoints and not ``overwrite``.
            FileNotFoundError, ValueError: ``resume`` cannot resume (no checkpoint, a
                missing party folder, a differing setting: the message names it).
        """
        from vflgan_app.core import loop
        from vflgan_app.core.checkpoint import config_fingerprint

        steps = steps if steps is not None else self.config.steps
        if checkpoint_dir is None and (checkpoint_every or resume or overwrite):
            raise ValueError("fit: checkpoint_every, resume and overwrite need a "
                             "checkpoint_dir; got none")
        if resume and overwrite:
            raise ValueError("fit: got both resume and overwrite; expected one")
        fingerprint = None
        if checkpoint_dir is not None:
            fingerprint = config_fingerprint(self.config, self.coordinator.arch)
            for p in self.parties:
                if p.checkpoint_dir is None:
                    p.checkpoint_dir = str(checkpoint_dir)
            if resume:
                loop.resume(self.coordinator, checkpoint_dir, fingerprint=fingerprint)
        try:
            loop.fit(self.coordinator, steps, checkpoint_root=checkpoint_dir,
                     checkpoint_every=checkpoint_every, fingerprint=fingerprint,
                     overwrite=overwrite, progress=self.config.progress,
                     log_every=self.config.log_every)
        except PrivacyBudgetExceeded as e:
            self.coordinator.flush()
            logger.error("%s", e)
            raise
        return self

    def sample_parts(self, n: int, seed: int = 0, independent: bool = False) -> list[np.ndarray]:
        """Encoded synthetic columns per party (``independent``: the control)."""
        check_sample_args(n, seed)
        return self.coordinator.sample(n, seed, independent)

    def sample(self, n: int, seed: int = 0, independent: bool = False) -> pd.DataFrame:
        """``n`` synthetic rows with original column names and decoded values."""
        return decode_parts(self.schemas, self.sample_parts(n, seed, independent))

    def save(self, path: str | Path) -> Path:
        """Write each party's state to ``party-<k>/`` and the server's to ``server/``.

        The checkpoint format (safetensors + a JSON skeleton, nothing pickled). No
        party's weights go into another party's folder.
        """
        path = Path(path)
        for p in self.parties:
            d = path / f"party-{p.party_id}"
            write_state(d, p.state_dict())
            atomic_write_text(d / "schema.json", p.data.schema.to_json())
        write_state(path / "server", self.coordinator.state_dict())
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
            p.load_state_dict(read_state(path / f"party-{p.party_id}"))
        self.coordinator.load_state_dict(read_state(path / "server"))
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
        check_sample_args(n, seed)
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


def build_federation(
    parties_data: Sequence[PartyData],
    config: VFLGANConfig,
    arch: Architecture | None = None,
    observer: PayloadObserver | None = None,
) -> VFLGANModel:
    """Create parties, an in-process transport and a coordinator, and shake hands.

    The assembly is :func:`vflgan_app.federation.in_process` (the one the Flower apps
    share): with ``config.dp.mode`` paper or strict, sigma is calibrated (unless given)
    for ``config.steps`` critic steps on the parties' N rows, each party gets its DP
    critic rule, the coordinator its D_S rule and the accountant.
    """
    fed = federation.in_process(parties_data, config, arch=arch, observer=observer)
    return VFLGANModel(fed.coordinator, fed.parties, config, dp=fed.accounting)


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


def check_sample_args(n: object, seed: object) -> None:
    """Refuse a bad ``sample`` request before anything runs.

    Raises:
        ValueError: ``n`` is not an integer >= 1 or ``seed`` not an integer >= 0.
    """
    for name, value, low in (("n", n, 1), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
            raise ValueError(f"sample: {name} got {value!r}, expected an integer >= {low}")
