"""What a SuperNode knows about its own party: its data, its DP plan, its live Party.

Node facts come from ``context.node_config`` (STYLE rule 7):

* ``partition-id``: this party's id (set by the simulation; ``--node-config`` in
  deployment);
* ``data-path`` (deployment): a CSV with the party's own columns plus the id column;
  optional ``id-column`` (default ``record_id``), ``categorical`` (comma-separated names)
  and ``bounds`` (``"low:high"``, for every numeric column, e.g. ``"0:16"`` for pixels).
  Without ``data-path`` the party slices the built-in ``dataset`` of the run config;
* ``checkpoint-dir`` (optional): where this party keeps its own resumable checkpoints
  (:func:`checkpoint_dir`; the server never chooses a party's paths);
* ``max-sample-rows`` (optional): the most rows one ``sample`` request may ask for
  (default :data:`vflgan_app.core.party.MAX_SAMPLE_ROWS`);
* ``delivery-dir`` (optional): where this party receives the published synthetic data
  (:func:`delivery_dir`), and ``max-delivery-mb`` (default 1024) the largest file it
  accepts.

Per-process caches: the run config is parsed once per run, data is loaded once per
process, and the live Party is reused only if ``context.state`` still holds the
version it stored (simulation actors live across messages; a deployment SuperNode
starts a fresh process and restores from state).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from flwr.app import ConfigRecord, Context

from vflgan_app import federation
from vflgan_app.config import FlowerSettings, VFLGANConfig, parse_run_config
from vflgan_app.core.party import Party
from vflgan_app.data.partition import PartyData, prepare_party
from vflgan_app.dp.plan import DPPlan
from vflgan_app.flower import codec

logger = logging.getLogger(__name__)

_CONFIG: dict[tuple, tuple[VFLGANConfig, FlowerSettings]] = {}
_DATA: dict[tuple, PartyData] = {}
_LIVE: dict[tuple[int, int], tuple[str, Party]] = {}


def run_configs(context: Context) -> tuple[VFLGANConfig, FlowerSettings]:
    """The run's configs, parsed once per run (keyed by run id and the config's items)."""
    key = (context.run_id, tuple(sorted(context.run_config.items())))
    if key not in _CONFIG:
        _CONFIG[key] = parse_run_config(context.run_config)
    return _CONFIG[key]


def live_party(context: Context) -> Party:
    """The party as stored in ``context.state`` (or freshly initialised)."""
    key = (context.run_id, context.node_id)
    version = codec.stored_version(context.state) or "initial"
    cfg, settings = run_configs(context)
    live = _LIVE.pop(key, None)  # a failing call must not leave a half-updated party behind
    if live is not None and version != "initial" and live[0] == version \
            and settings.cache_party:
        return live[1]
    from trainkit import set_cpu_threads

    set_cpu_threads(cfg.threads or 1)
    arch = federation.architecture(cfg)
    data = load_party_data(context.node_config, cfg)
    plan = dp_plan(context, cfg, data)
    if plan is not None:
        # the DP schema is released once per run: a fresh process (a deployment SuperNode
        # runs one per message) reuses the release kept in context.state, never spending
        # the budget again nor drawing another encoding
        stored = context.state.get("dp-schema") if hasattr(context.state, "get") else None
        data = federation.private_party_data(
            data, cfg, plan, released=None if stored is None else str(stored["json"]))
        context.state["dp-schema"] = ConfigRecord({"json": data.schema.to_json()})
    party = federation.build_party(data, cfg, arch, plan,
                                   max_sample_rows=sample_cap(context.node_config))
    party.checkpoint_dir = checkpoint_dir(context, cfg, settings)
    if version != "initial":
        codec.restore_party_state(context.state, party)
    return party


def keep_party(context: Context, party: Party, changed: bool) -> None:
    """Store ``party`` in ``context.state`` (after a training message) and cache it."""
    if changed:
        version = codec.new_version()
        codec.store_party_state(context.state, party, version)
    else:  # queries do not change the party
        version = codec.stored_version(context.state) or "initial"
    _LIVE[(context.run_id, context.node_id)] = (version, party)


def dp_plan(context: Context, cfg: VFLGANConfig, data: PartyData) -> DPPlan | None:
    """This party's DP plan: resolved once from the run config and its own row count.

    The server resolves the same plan from the same inputs
    (:func:`vflgan_app.federation.connect`). The plan (sigma, clip) is kept in
    ``context.state`` so a fresh process does not calibrate again. The noise generator
    itself is seeded from OS randomness in every process (``dp.noise-seed`` only in
    tests), so the server cannot reproduce the noise.
    """
    if not cfg.dp.enabled:
        return None
    stored = context.state.get("dp-plan") if hasattr(context.state, "get") else None
    if stored is not None:
        return DPPlan.from_dict(json.loads(str(stored["json"])))
    plan = federation.dp_plan(cfg, federation.architecture(cfg), len(data.ids),
                              cfg.num_parties)
    context.state["dp-plan"] = ConfigRecord({"json": json.dumps(plan.to_dict())})
    return plan


def checkpoint_dir(context: Context, cfg: VFLGANConfig, settings: FlowerSettings) -> str:
    """This party's checkpoint folder, chosen by the party, never by the server.

    * ``<checkpoint-dir>/<run-name>`` with ``checkpoint-dir`` from the node config (one
      folder per run, so two runs on one node never share or prune each other's);
    * a party with its own data (``data-path``): ``vflgan-checkpoints/<run-name>``
      under the SuperNode's working directory (the run config's ``output-dir`` is the
      server's choice and is not used);
    * a party of a built-in dataset (simulation / demo, where the run config already
      decides the data): ``<output-dir>/<run-name>/checkpoints``.

    ``run-name`` is a plain folder name (:data:`vflgan_app.config.RUN_NAME`, checked
    when the run config is parsed), so the folder cannot climb out of its parent.
    """
    if "checkpoint-dir" in context.node_config:
        return str(Path(str(context.node_config["checkpoint-dir"])) / settings.run_name)
    if "data-path" in context.node_config:
        return str(Path("vflgan-checkpoints") / settings.run_name)
    return str(Path(cfg.output_dir) / settings.run_name / "checkpoints")


def load_party_data(node_config, cfg: VFLGANConfig) -> PartyData:
    """This party's prepared columns (cached per process).

    Raises:
        ValueError: no ``partition-id`` in the node config.
        FileNotFoundError: ``data-path`` does not exist.
    """
    if "partition-id" not in node_config:
        raise ValueError("node config has no 'partition-id'; start the SuperNode with "
                         "--node-config 'partition-id=<k> ...'")
    pid = int(node_config["partition-id"])
    path = node_config.get("data-path")
    stamp = Path(str(path)).stat().st_mtime_ns if path and Path(str(path)).exists() else None
    key = (pid, str(path), stamp, cfg.dataset, cfg.max_rows, cfg.num_parties, cfg.data_root)
    if key not in _DATA:
        _DATA[key] = _read_csv(pid, node_config) if path else _builtin(pid, cfg)
    return _DATA[key]


def _read_csv(pid: int, node_config) -> PartyData:
    import pandas as pd

    from vflgan_app.data.sources import read_csv_any

    path = Path(str(node_config["data-path"]))
    if not path.exists():
        raise FileNotFoundError(f"party {pid}: data-path {path} does not exist")
    table = read_csv_any(path)  # any dialect pandas can read (e.g. the ;-separated wine)
    id_col = str(node_config.get("id-column", "record_id"))
    cats = [c for c in str(node_config.get("categorical", "")).split(",") if c]
    bounded = None
    if "bounds" in node_config:
        low, high = parse_bounds(node_config["bounds"], pid)
        numeric = [c for c in table.columns if c != id_col and c not in cats
                   and pd.api.types.is_numeric_dtype(table[c])]
        bounded = {c: (low, high) for c in numeric}
    return prepare_party(pid, table, id_col, cats, bounded)


def parse_bounds(text: object, pid: int) -> tuple[float, float]:
    """The node config's ``bounds = "low:high"`` (finite, low < high)."""
    import math

    parts = str(text).split(":")
    try:
        low, high = (float(v) for v in parts)
    except ValueError:
        low = high = math.nan
    if len(parts) != 2 or not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValueError(f"party {pid}: node config bounds={text!r}; expected \"low:high\" "
                         "with finite numbers and low < high, e.g. \"0:16\"")
    return low, high


def sample_cap(node_config) -> int | None:
    """The node config's ``max-sample-rows`` (None: the party's default cap)."""
    cap = node_config.get("max-sample-rows")
    if cap is None:
        return None
    if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
        raise ValueError(f"node config max-sample-rows={cap!r}; expected an integer >= 1")
    return cap


def _builtin(pid: int, cfg: VFLGANConfig) -> PartyData:
    from vflgan_app.data.sources import ID_COLUMN, load_dataset

    ds = load_dataset(cfg.dataset, cfg.data_root, max_rows=cfg.max_rows,
                      num_parties=cfg.num_parties)
    tables = ds.party_tables()
    if not 0 <= pid < len(tables):
        raise ValueError(f"partition-id {pid}: expected 0..{len(tables) - 1} for "
                         f"{cfg.dataset} with {len(tables)} parties")
    table = tables[pid]
    cats = [c for c in ds.categorical if c in table.columns]
    bounded = {c: b for c, b in ds.bounded.items() if c in table.columns}
    return prepare_party(pid, table, ID_COLUMN, cats, bounded)


# -- delivery of the published data ----------------------------------------------------
DELIVERABLE = frozenset({"synthetic.csv", "synthetic.npz"})  # the only names written
MAX_DELIVERY_MB = 1024


def delivery_dir(context: Context, cfg: VFLGANConfig, settings: FlowerSettings) -> Path:
    """Where this party keeps the synthetic data it receives, chosen by the party.

    ``<delivery-dir>/<run-name>`` with ``delivery-dir`` from the node config; a party
    with its own data: ``vflgan-delivery/<run-name>`` under the SuperNode's working
    directory; a party of a built-in dataset (simulation / demo):
    ``<output-dir>/<run-name>/delivered/party-<k>``.
    """
    nc = context.node_config
    if "delivery-dir" in nc:
        return Path(str(nc["delivery-dir"])) / settings.run_name
    if "data-path" in nc:
        return Path("vflgan-delivery") / settings.run_name
    return Path(cfg.output_dir) / settings.run_name / "delivered" / \
        f"party-{int(nc.get('partition-id', 0))}"


def receive_delivery(context: Context, name: str, data, sha256: str, manifest: str) -> dict:
    """Check and store one delivered file and its manifest (atomically; 0644 under umask).

    Raises:
        ValueError: a file name other than :data:`DELIVERABLE`, a file larger than
            ``max-delivery-mb``, bytes that do not match ``sha256``, or a manifest that
            is not a JSON object. Nothing is written then.
    """
    import hashlib

    import numpy as np

    from trainkit.checkpoint import atomic_write_bytes, atomic_write_json

    if name not in DELIVERABLE:
        raise ValueError(f"delivery: file name {name!r}; expected one of {sorted(DELIVERABLE)}")
    limit = context.node_config.get("max-delivery-mb", MAX_DELIVERY_MB)
    if isinstance(limit, bool) or not isinstance(limit, int | float) or limit <= 0:
        raise ValueError(f"node config max-delivery-mb={limit!r}; expected a number > 0")
    arr = data.numpy() if hasattr(data, "numpy") else np.asarray(data)
    if arr.dtype != np.uint8 or arr.ndim != 1:
        raise ValueError(f"delivery: {name} as {arr.dtype} of shape {arr.shape}; expected "
                         "1-D uint8 bytes")
    if arr.size > limit * 2**20:
        raise ValueError(f"delivery: {name} has {arr.size} bytes; this party accepts at most "
                         f"max-delivery-mb={limit}")
    payload = arr.tobytes()
    if hashlib.sha256(payload).hexdigest() != sha256:
        raise ValueError(f"delivery: {name} does not match its sha256; nothing written")
    meta = json.loads(manifest)
    if not isinstance(meta, dict):
        raise ValueError("delivery: the manifest is not a JSON object")
    cfg, settings = run_configs(context)
    folder = delivery_dir(context, cfg, settings)
    path = atomic_write_bytes(folder / name, payload)
    atomic_write_json(folder / "manifest.json", {**meta, "file": name, "sha256": sha256,
                                                 "bytes": len(payload)})
    logger.info("delivery: %s (%d bytes) stored in %s", name, len(payload), path.parent)
    return {"bytes": len(payload), "sha256": sha256}
