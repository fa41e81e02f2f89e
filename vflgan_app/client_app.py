"""ClientApp: one party; restore from ``context.state``, run the calls, store, reply.

Each message restores the Party from ``context.state``, runs its calls, stores the state
and replies: a deployment SuperNode starts a fresh process per message.

Node facts come from ``context.node_config`` (STYLE rule 7):

* ``partition-id``: this party's id (set by the simulation; ``--node-config`` in
  deployment);
* ``data-path`` (deployment): a CSV with the party's own columns plus the id column;
  optional ``id-column`` (default ``record_id``), ``categorical`` (comma-separated names)
  and ``bounds`` (``"low:high"``, for every numeric column, e.g. ``"0:16"`` for pixels).
  Without ``data-path`` the party slices the built-in ``dataset`` of the run config;
* ``checkpoint-dir`` (optional): where this party keeps its own resumable checkpoints.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp

from vflgan_app.flower import codec
from vflgan_app.config import VFLGANConfig
from vflgan_app.data.schema import PartyData, prepare_party
from vflgan_app.dp.plan import DPPlan, make_party, resolve_plan
from vflgan_app.core.party import Party, PartySettings

app = ClientApp()

# Per-process caches. Data is loaded once per process. The live Party is reused only if
# context.state still holds the version it stored (simulation actors live across
# messages; a deployment SuperNode starts a fresh process and restores from state).
_DATA: dict[tuple, PartyData] = {}
_LIVE: dict[tuple[int, int], tuple[str, Party]] = {}


@app.query("hello")
def hello(msg: Message, context: Context) -> Message:
    """Handshake: party id, schema, id-list hash."""
    return _reply(msg, context)


@app.train("step")
def step(msg: Message, context: Context) -> Message:
    """Fused training calls: gradients of step t, then the forward of step t+1."""
    return _reply(msg, context)


@app.train("checkpoint")
def checkpoint(msg: Message, context: Context) -> Message:
    """Save or load this party's own resumable checkpoint."""
    return _reply(msg, context)


@app.query("generate")
def generate(msg: Message, context: Context) -> Message:
    """Publication: sample this party's columns from the shared seed."""
    return _reply(msg, context)


def _reply(msg: Message, context: Context) -> Message:
    return Message(serve(msg.content, context, msg.metadata.message_type), reply_to=msg)


def serve(content: RecordDict, context: Context, message_type: str) -> RecordDict:
    """Restore the party, run the message's calls in order, store the state, encode.

    Raises:
        ValueError: a call that ``message_type`` may not carry.
    """
    calls = codec.decode_calls(content)
    allowed = codec.ALLOWED_METHODS.get(message_type, frozenset())
    bad = [c.method for c in calls if c.method not in allowed]
    if bad:
        raise ValueError(f"message {message_type!r} may not run {bad}; expected {sorted(allowed)}")
    party = restore_party(context)
    key = (context.run_id, context.node_id)
    _LIVE.pop(key, None)  # a failing call must not leave a half-updated live party behind
    replies = [getattr(party, c.method)(**c.args) for c in calls]
    if message_type.startswith("train."):
        version = uuid.uuid4().hex
        codec.store_party_state(context.state, party, version)
    else:  # queries do not change the party
        version = codec.stored_version(context.state) or "initial"
    _LIVE[key] = (version, party)
    return codec.encode_replies(replies)


def restore_party(context: Context) -> Party:
    """The party as stored in ``context.state`` (or freshly initialised)."""
    key = (context.run_id, context.node_id)
    version = codec.stored_version(context.state) or "initial"
    live = _LIVE.get(key)
    if live is not None and version != "initial" and live[0] == version \
            and _cache_enabled(context):
        return live[1]
    cfg = VFLGANConfig.from_run_config(context.run_config)
    arch = cfg.resolve_architecture()
    from trainkit import set_cpu_threads

    set_cpu_threads(cfg.threads or 1)
    settings = PartySettings(seed=cfg.seed, lambda_gp=arch.lambda_gp, lambda_p=cfg.lambda_p,
                             lr=arch.lr)
    data = load_party_data(context.node_config, cfg)
    plan = dp_plan(context, cfg, arch, data)
    party = make_party(data, arch, settings, device=cfg.device, plan=plan)
    party.checkpoint_dir = checkpoint_dir(context, cfg)
    if version != "initial":
        codec.restore_party_state(context.state, party)
    return party


def dp_plan(context: Context, cfg: VFLGANConfig, arch, data: PartyData) -> DPPlan | None:
    """This party's DP plan: resolved once from the run config and its own row count.

    The server resolves the same plan from the same inputs (``server_app``). The plan
    (sigma, clip) is kept in ``context.state`` so a fresh process does not calibrate
    again. The noise generator itself is seeded from OS randomness in every process
    (``dp.noise-seed`` only in tests), so the server cannot reproduce the noise.
    """
    if not cfg.dp.enabled:
        return None
    stored = context.state.get("dp-plan") if hasattr(context.state, "get") else None
    if stored is not None:
        return DPPlan.from_dict(json.loads(str(stored["json"])))
    plan = resolve_plan(cfg.dp, n_rows=len(data.ids), batch_size=arch.batch_size,
                        steps=cfg.steps, num_parties=cfg.num_parties)
    context.state["dp-plan"] = ConfigRecord({"json": json.dumps(plan.to_dict())})
    return plan


def _cache_enabled(context: Context) -> bool:
    v = context.run_config.get("flower.cache-party", True)
    return str(v).lower() not in ("false", "0", "no")


def checkpoint_dir(context: Context, cfg: VFLGANConfig) -> str:
    """This party's checkpoint folder: node config, else ``<output-dir>/checkpoints``."""
    if "checkpoint-dir" in context.node_config:
        return str(context.node_config["checkpoint-dir"])
    run_name = str(context.run_config.get("flower.run-name", "flower"))
    return str(Path(cfg.output_dir) / run_name / "checkpoints")


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

    path = Path(str(node_config["data-path"]))
    if not path.exists():
        raise FileNotFoundError(f"party {pid}: data-path {path} does not exist")
    table = pd.read_csv(path)
    id_col = str(node_config.get("id-column", "record_id"))
    cats = [c for c in str(node_config.get("categorical", "")).split(",") if c]
    bounded = None
    if "bounds" in node_config:
        low, high = (float(v) for v in str(node_config["bounds"]).split(":"))
        numeric = [c for c in table.columns if c != id_col and c not in cats
                   and pd.api.types.is_numeric_dtype(table[c])]
        bounded = {c: (low, high) for c in numeric}
    return prepare_party(pid, table, id_col, cats, bounded)


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
