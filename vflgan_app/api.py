"""Python API: ``fit(tables_by_party, config) -> VFLGANModel``; ``model.sample(n)``.

Runs the federated protocol with the in-process transport, so it works in a notebook::

    from vflgan_app import api
    model = api.fit({"bank": bank_table, "shop": shop_table}, api.VFLGANConfig(steps=2000),
                    id_column="customer_id", categorical=["segment"])
    synthetic = model.sample(1000)          # DataFrame with the original column names
    # or one joined table and a party map (the index as the record id)
    model = api.fit(joined, parties={"bank": ["age", "balance"], "shop": ["spend"]},
                    id_column=None)
    model.save("runs/m")                    # runs/m/bank/, runs/m/shop/, runs/m/server/
"""

from __future__ import annotations

import dataclasses
import json
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
from vflgan_app.core.protocol import InProcessTransport, PayloadObserver
from vflgan_app.data.partition import (
    PartyData,
    decode_parts,
    default_party_names,
    index_as_column,
    prepare_parties,
    split_joined,
    unused_name,
    validate_party_names,
)
from vflgan_app.data.schema import TableSchema
from vflgan_app.dp.accountant import DPAccounting
from vflgan_app.errors import PrivacyBudgetExceeded

logger = logging.getLogger(__name__)

__all__ = ["VFLGANConfig", "VFLGANModel", "BaselineModel", "PrivacyBudgetExceeded", "fit",
           "fit_parties", "fit_baseline"]


class _hybridmethod:
    """A method that receives the class when called on the class, else the instance."""

    def __init__(self, func) -> None:
        self.func = func
        self.__doc__ = func.__doc__

    def __get__(self, obj, cls=None):
        import functools

        return functools.partial(self.func, obj if obj is not None else cls)


class VFLGANModel:
    """A trained VFLGAN federation (parties + coordinator) with decoding.

    Attributes:
        coordinator: the server side (top critic, loop state).
        parties: the parties (each holds its own modules and data).
        config: the run configuration.
        dp: the DP accounting installed on the coordinator (None without DP).
        party_names: each party's name, party order (a dict's keys or a party map's;
            ``"party-<k>"`` by default): the folders :meth:`save` writes.
        column_order: the order :meth:`sample` returns the columns in (a joined
            table's); None = party order.
    """

    def __init__(self, coordinator: Coordinator, parties: Sequence[Party],
                 config: VFLGANConfig, dp: DPAccounting | None = None,
                 party_names: Sequence[str] | None = None) -> None:
        self.coordinator = coordinator
        self.parties = list(parties)
        self.config = config
        self.dp = dp
        names = default_party_names(len(self.parties)) if party_names is None else party_names
        self.party_names = validate_party_names(names, "party_names")
        if len(self.party_names) != len(self.parties):
            raise ValueError(f"party_names: got {len(self.party_names)} names for "
                             f"{len(self.parties)} parties; expected one per party")
        self.column_order: list[str] | None = None
        #: None for a trainable model; for one rebuilt by ``VFLGANModel.load(path)``,
        #: the saved folder (it samples but cannot train) and its saved DP metadata
        self.loaded_from: Path | None = None
        self._saved_dp: dict | None = None

    def dp_metadata(self) -> dict | None:
        """DP metadata: mode, epsilon, delta, sigma, q, steps, accountant; or no-DP mode."""
        if self.dp is not None:
            return self.dp.metadata()
        return dict(self._saved_dp) if self._saved_dp is not None else {"mode": "none"}

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

        if self.loaded_from is not None:
            raise RuntimeError(
                f"fit: this model was loaded from {self.loaded_from} without its training "
                "data; it can sample but not train (to train further, build it on the "
                "data with api.build_federation(...) and call model.load(path) on it, or "
                "resume from a checkpoint folder)")
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

    def sample_parts(self, n: int, seed: int | None = None,
                     independent: bool = False) -> list[np.ndarray]:
        """Encoded synthetic columns per party (``independent``: the control).

        ``seed`` None draws fresh randomness (see :meth:`sample`).
        """
        seed = resolve_seed(seed)
        check_sample_args(n, seed)
        return self.coordinator.sample(n, seed, independent)

    def sample(self, num_rows: int | None = None, seed: int | None = None,
               independent: bool = False, *, n: int | None = None) -> pd.DataFrame:
        """``num_rows`` synthetic rows with original column names and decoded values.

        Args:
            num_rows: rows to generate (the positional first argument).
            seed: None (default) = fresh randomness, so two calls differ; an integer
                >= 0 = reproducible rows (the same seed gives the same rows).
            independent: draw every party from its own latent (the control).
            n: the same as ``num_rows`` (give one of them).

        Raises:
            ValueError: no row count or both forms, or a bad count or seed.
        """
        df = decode_parts(self.schemas, self.sample_parts(
            _rows(num_rows, n), seed, independent))
        return df[self.column_order] if self.column_order is not None else df

    def save(self, path: str | Path) -> Path:
        """Write each party's state to a folder named after it, the server's to ``server/``.

        The checkpoint format (safetensors + a JSON skeleton, nothing pickled). No
        party's weights go into another party's folder: ``<party name>/`` (e.g.
        ``bank/``, or ``party-<k>/`` for unnamed parties) holds that party's modules,
        optimizers and ``schema.json`` only. ``config.json`` holds the run config, the
        architecture, the party names (``party_folders``: name -> party index), the
        column order of :meth:`sample` and (with DP) the DP metadata, so that
        :meth:`VFLGANModel.load` rebuilds the model from the folder alone.
        """
        path = Path(path)
        for name, p in zip(self.party_names, self.parties, strict=True):
            d = path / name
            write_state(d, p.state_dict())
            atomic_write_text(d / "schema.json", p.data.schema.to_json())
        write_state(path / "server", self.coordinator.state_dict())
        meta = self.config.to_dict()
        meta["architecture_resolved"] = dataclasses.asdict(self.coordinator.arch)
        meta["party_folders"] = {name: int(p.party_id)
                                 for name, p in zip(self.party_names, self.parties)}
        if self.column_order is not None:
            meta["column_order"] = list(self.column_order)
        dp_meta = self.dp_metadata()
        if dp_meta.get("mode", "none") != "none":
            meta["dp_metadata"] = dp_meta
            atomic_write_json(path / "server" / "dp.json", dp_meta)
        atomic_write_json(path / "config.json", meta)
        return path

    @_hybridmethod
    def load(cls_or_self, path: str | Path):  # noqa: N805 (a class- and instance method)
        """Load a model saved by :meth:`save`.

        ``VFLGANModel.load(path)`` (on the class) rebuilds the model from the folder
        alone (its config, architecture, each party's ``schema.json`` and weights), no
        training data needed: the result samples and decodes like the saved model, but
        cannot train (:meth:`fit` raises). ``model.load(path)`` (on an instance built
        on the same data and config) restores the saved states into it, and takes the
        saved party names. Each party's folder is found by the ``party_folders`` map
        of ``config.json``; a folder saved before parties had names holds
        ``party-0``, ``party-1``, ... and loads too.

        Raises:
            FileNotFoundError: no ``config.json``, or a party folder it names (or,
                in an older folder, ``party-<k>``) missing.
            ValueError: a state that does not fit the model, a bad ``party_folders``.
        """
        if isinstance(cls_or_self, type):
            return _load_standalone(cls_or_self, Path(path))
        self = cls_or_self
        path = Path(path)
        meta = _read_meta(path) if (path / "config.json").is_file() else {}
        names = saved_party_folders(path, meta)
        if len(names) != len(self.parties):
            raise ValueError(f"{path}: {len(names)} saved parties {names}; expected "
                             f"{len(self.parties)} (this model's parties)")
        for name, p in zip(names, self.parties, strict=True):
            p.load_state_dict(read_state(path / name))
        self.coordinator.load_state_dict(read_state(path / "server"))
        self.party_names = names
        if meta.get("column_order") is not None:
            self.column_order = list(meta["column_order"])
        return self


def _read_meta(path: Path) -> dict:
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}: no config.json; expected a folder written by "
                                "VFLGANModel.save")
    return dict(json.loads((path / "config.json").read_text()))


def saved_party_folders(path: Path, meta: Mapping) -> list[str]:
    """The party folders of a saved model, party order.

    From ``meta["party_folders"]`` (``{name: party index}``, written by
    :meth:`VFLGANModel.save`); without it (a folder saved before parties had names)
    the ``party-<k>`` folders found in ``path``.

    Raises:
        FileNotFoundError: a folder that is not there, or fewer than two.
        ValueError: a ``party_folders`` map that is no permutation of the parties, or
            names a folder that is not a party name (never a path outside ``path``).
    """
    folders = meta.get("party_folders")
    if folders is None:
        ids = sorted(int(d.name.removeprefix("party-")) for d in path.glob("party-*")
                     if d.is_dir() and d.name.removeprefix("party-").isdigit())
        if len(ids) < 2 or ids != list(range(len(ids))):
            raise FileNotFoundError(f"{path}: party folders {[f'party-{k}' for k in ids]}; "
                                    "expected party-0, party-1, ... (at least two)")
        return default_party_names(len(ids))
    field = f"{path / 'config.json'}: party_folders"
    if not isinstance(folders, Mapping):
        raise ValueError(f"{field}: got {folders!r}; expected {{party name: index}}")
    names = validate_party_names(list(folders), field)
    index = [folders[n] for n in names]
    if sorted(index) != list(range(len(names))) or len(names) < 2:
        raise ValueError(f"{field}: got indices {index}; expected 0, 1, ... (one per "
                         "party, at least two)")
    names = sorted(names, key=lambda n: folders[n])
    for name in names:
        if not (path / name).is_dir():
            raise FileNotFoundError(f"{path / name}: no such party folder; expected the "
                                    f"folder of party {name!r} (named in config.json)")
    return names


def _load_standalone(cls: type[VFLGANModel], path: Path) -> VFLGANModel:
    """A sampling-only model rebuilt from a folder written by :meth:`VFLGANModel.save`.

    Each party is built from its saved schema with zero rows (it generates; it holds no
    data), the coordinator without DP mechanisms (nothing trains); then the saved
    weights are loaded. Under DP the saved schemas are the private ones.
    """
    from vflgan_app.architectures import Architecture as Arch

    meta = _read_meta(path)
    names = saved_party_folders(path, meta)
    meta.pop("party_folders", None)
    column_order = meta.pop("column_order", None)
    saved_dp = meta.pop("dp_metadata", None)
    arch_fields = meta.pop("architecture_resolved", None)
    config = VFLGANConfig.from_dict(meta)
    if arch_fields is not None:
        arch = Arch(**{k: tuple(v) if isinstance(v, list) else v
                       for k, v in arch_fields.items()})
    else:  # a folder saved before the architecture was recorded
        arch = federation.architecture(config)
    parties = []
    for k, name in enumerate(names):
        schema = load_schema(path / name / "schema.json")
        data = PartyData(k, schema, np.empty(0, dtype=np.int64),
                         np.zeros((0, schema.width), dtype=np.float32))
        party = federation.build_party(data, config, arch, None, max_sample_rows=2**62)
        party.load_state_dict(read_state(path / name))
        parties.append(party)
    transport = InProcessTransport(parties)
    coordinator, _ = federation.build_coordinator(transport, config, arch, None,
                                                  expected_parties=len(parties))
    server = read_state(path / "server")
    server["extra"] = {}  # DP mechanisms' state: nothing trains here
    coordinator.load_state_dict(server)
    model = cls(coordinator, parties, config, party_names=names)
    model.loaded_from = path
    model._saved_dp = saved_dp
    model.column_order = list(column_order) if column_order is not None else None
    return model


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

    def sample_parts(self, n: int, seed: int | None = None,
                     independent: bool = False) -> list[np.ndarray]:
        """Encoded synthetic columns per party (``seed`` None: fresh randomness)."""
        seed = resolve_seed(seed)
        check_sample_args(n, seed)
        return self.impl.sample(n, seed, independent)

    def sample(self, num_rows: int | None = None, seed: int | None = None,
               independent: bool = False, *, n: int | None = None) -> pd.DataFrame:
        """Decoded synthetic rows (arguments as :meth:`VFLGANModel.sample`)."""
        return decode_parts(self.schemas, self.sample_parts(
            _rows(num_rows, n), seed, independent))


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
    party_names: Sequence[str] | None = None,
) -> VFLGANModel:
    """Create parties, an in-process transport and a coordinator, and shake hands.

    The assembly is :func:`vflgan_app.federation.in_process` (the one the Flower apps
    share): with ``config.dp.mode`` paper or strict, sigma is calibrated (unless given)
    for ``config.steps`` critic steps on the parties' N rows, each party gets its DP
    critic rule, the coordinator its D_S rule and the accountant. ``party_names``:
    see :attr:`VFLGANModel.party_names` (checked before anything is built).
    """
    if party_names is not None:
        validate_party_names(party_names, "party_names")
    fed = federation.in_process(parties_data, config, arch=arch, observer=observer)
    return VFLGANModel(fed.coordinator, fed.parties, config, dp=fed.accounting,
                       party_names=party_names)


def fit_parties(parties_data: Sequence[PartyData], config: VFLGANConfig,
                observer: PayloadObserver | None = None,
                party_names: Sequence[str] | None = None,
                column_order: Sequence[str] | None = None) -> VFLGANModel:
    """Build the federation on prepared party data and train it."""
    model = build_federation(parties_data, config, observer=observer,
                             party_names=party_names)
    model.column_order = list(column_order) if column_order is not None else None
    return model.fit()


def fit(
    tables_by_party: Sequence[pd.DataFrame] | Mapping[str, pd.DataFrame] | pd.DataFrame,
    config: VFLGANConfig | None = None,
    id_column: str | None = "record_id",
    categorical: Sequence[str] = (),
    bounded: Mapping[str, tuple[float, float]] | None = None,
    *,
    parties: Mapping[str, Sequence[str]] | None = None,
    enforce_min_max_values: bool = True,
    enforce_rounding: bool = True,
    keep_dtypes: bool = True,
) -> VFLGANModel:
    """Train VFLGAN on per-party tables (or one joined table) and return the model.

    Args:
        tables_by_party: the data, in one of three forms:

            * a dict ``{party name: table}``: its keys name the parties (safe folder
              names, see :data:`~vflgan_app.data.partition.PARTY_NAME`), its order is
              the party order;
            * a list of tables: the parties are ``party-0``, ``party-1``, ...;
            * one joined DataFrame with every party's columns, with ``parties``.

            Each per-party table holds the id column plus that party's columns.
        config: run configuration (default: :class:`VFLGANConfig` defaults).
        id_column: the record-id column; rows are aligned by it (it is not
            generated). None: each table's index is the record id (it must be unique;
            a joined table read without an id column has its row numbers there), as
            it is when ``id_column`` names the index rather than a column (a table
            after ``set_index("customer_id")``).
        categorical: names of categorical columns (string columns are categorical anyway).
        bounded: ``{column: (low, high)}`` for columns to generate in a fixed range.
        parties: with one joined DataFrame, the party map ``{party name: [its
            columns]}``: every column but the id in exactly one party; the map's
            order is the party order. :meth:`VFLGANModel.sample` then returns the
            joined table's column order. Not given with per-party tables.
        enforce_min_max_values: decoded numeric values stay within the real column's
            min and max (SDV's default; without DP).
        enforce_rounding: decoded numeric values keep the real column's precision
            (decimal digits; integer columns stay integers).
        keep_dtypes: decoded columns keep their dtype (float32, int16, bool,
            category, string, ...).

    Under DP none of these is read from the real table: numeric columns are clipped
    to their private domain (declared or released with DP) and rounded only to a
    declared ``decimals`` (docs/privacy.md, "The decoding schema").

    Date/time columns (tz-naive ``datetime64``) are numeric, in seconds since
    1970-01-01, and decode to their own ``datetime64`` resolution (within the real
    min/max, rounded to the coarsest step of the real values, e.g. whole days). Under
    DP each needs its range in ``dp.public-domain``
    (``{"t": {"low": "2020-01-01", "high": "2030-01-01"}}``); it is not released
    with DP.

    Everything is checked before anything trains or is written.

    Raises:
        TypeError: a table that is no DataFrame, a party name that is no string, a
            party map that is no dict of lists.
        ValueError: misaligned ids, a column in two parties (or in none, or unknown
            in ``parties``: with the close matches), a bad party name, NaNs, empty
            tables, a name in ``categorical`` / ``bounded`` that is no column (with
            the close matches), ...
    """
    config = config or VFLGANConfig(dataset="custom")
    column_order = None
    if isinstance(tables_by_party, pd.DataFrame):
        if parties is None:
            raise ValueError("parties: got one joined DataFrame and no party map; "
                             "expected parties={party name: [its columns], ...} (or one "
                             "table per party)")
        tables, id_column = split_joined(tables_by_party, parties, id_column)
        names = list(parties)
        assigned = {c for cols in parties.values() for c in cols}
        column_order = [c for c in tables_by_party.columns if c in assigned]
    else:
        if parties is not None:
            raise ValueError("parties: got a party map with per-party tables; expected "
                             "it only with one joined DataFrame (a dict's keys name the "
                             "parties)")
        if isinstance(tables_by_party, Mapping):
            names = validate_party_names(list(tables_by_party), "tables_by_party")
            tables = list(tables_by_party.values())
        else:
            tables = list(tables_by_party)
            names = default_party_names(len(tables))
        for name, t in zip(names, tables, strict=True):
            if not isinstance(t, pd.DataFrame):
                raise TypeError(f"tables_by_party: party {name!r} got a "
                                f"{type(t).__name__}; expected a pandas DataFrame")
        if id_column is None:  # one id column name for every party's index
            id_column = unused_name("index", [c for t in tables for c in t.columns])
            tables = [index_as_column(t, f"party {name!r} table", name=id_column)[0]
                      for name, t in zip(names, tables, strict=True)]
        else:  # an id column, or an index of that name (after set_index)
            tables = [index_as_column(t, f"party {name!r} table", name=id_column)[0]
                      if id_column not in t.columns and t.index.name == id_column else t
                      for name, t in zip(names, tables, strict=True)]
    parties_data = prepare_parties(tables, id_column, categorical, bounded,
                                   enforce_min_max_values=enforce_min_max_values,
                                   enforce_rounding=enforce_rounding,
                                   keep_dtypes=keep_dtypes)
    return fit_parties(parties_data, config, party_names=names, column_order=column_order)


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


def resolve_seed(seed: int | None) -> object:
    """``seed`` itself, or for None a fresh random seed (from the OS's entropy)."""
    if seed is None:
        return int(np.random.SeedSequence().generate_state(1, np.uint64)[0] >> np.uint64(1))
    return seed


def _rows(num_rows: object, n: object) -> object:
    if num_rows is not None and n is not None:
        raise ValueError(f"sample: got num_rows={num_rows!r} and n={n!r}; expected one")
    rows = num_rows if num_rows is not None else n
    if rows is None:
        raise ValueError("sample: no num_rows; expected the number of rows to generate")
    return rows


def check_sample_args(n: object, seed: object) -> None:
    """Refuse a bad ``sample`` request before anything runs.

    Raises:
        ValueError: ``n`` is not an integer >= 1 or ``seed`` not an integer >= 0.
    """
    for name, value, low in (("n", n, 1), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
            raise ValueError(f"sample: {name} got {value!r}, expected an integer >= {low}")
