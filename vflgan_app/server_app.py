"""ServerApp: run config -> VFLGANConfig -> Coordinator(FlowerTransport) -> publish.

The ServerApp holds the top critic D_S and the training loop; it never sees rows. It
writes the synthetic data, an image grid or table preview and ``report.json`` into
``<output-dir>/<flower.run-name>`` on the SuperLink host and logs that folder.

Flower-specific run-config keys live in the ``[tool.flwr.app.config.flower]`` table
(flattened to ``flower.<key>``); see :class:`FlowerSettings`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from vflgan_app.core.checkpoint import RunInterrupted, fit_with_checkpoints, resume
from vflgan_app.config import VFLGANConfig
from vflgan_app.core.coordinator import Coordinator
from vflgan_app.dp.plan import (
    DPPlan,
    PrivacyBudgetExceeded,
    install_dp,
    make_coordinator,
    resolve_plan,
)
from vflgan_app.flower.transport import FlowerTransport
from vflgan_app.core.protocol import Call

logger = logging.getLogger(__name__)

app = ServerApp()


@dataclass(frozen=True)
class FlowerSettings:
    """The ``flower.*`` run-config keys.

    Attributes:
        steps_per_round: K; 1 = exact mode (one round trip per step, plus one on
            generator steps), K > 1 = chunked mode (one round trip per K steps).
        round_timeout: seconds a round trip may take before the run stops.
        connect_timeout: seconds to wait for all SuperNodes.
        checkpoint_every: steps between resumable checkpoints (0 = only at the end).
        resume: continue from the newest complete checkpoint of ``run_name``.
        run_name: output folder name under ``output-dir``.
        evaluate: score the synthetic data (needs the built-in dataset on the server:
            simulation / demo only; a real server holds no rows).
        cache_party: reuse the live party object between messages in one process
            (only ever when ``context.state`` still holds the state it stored).
    """

    steps_per_round: int = 1
    round_timeout: float = 120.0
    connect_timeout: float = 120.0
    checkpoint_every: int = 0
    resume: bool = False
    run_name: str = "flower"
    evaluate: bool = True
    cache_party: bool = True

    def __post_init__(self) -> None:
        if self.steps_per_round < 1:
            raise ValueError(f"flower.steps-per-round: got {self.steps_per_round}, expected >= 1")
        if self.round_timeout <= 0:
            raise ValueError(f"flower.round-timeout: got {self.round_timeout}, expected > 0")
        if self.checkpoint_every < 0:
            raise ValueError(f"flower.checkpoint-every: got {self.checkpoint_every}, "
                             "expected >= 0")

    @classmethod
    def from_run_config(cls, run_config: Mapping[str, Any]) -> FlowerSettings:
        """Read the ``flower.*`` keys; reject unknown ones."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in run_config.items():
            if not key.startswith("flower."):
                continue
            name = key[len("flower."):].replace("-", "_")
            if name not in fields:
                raise ValueError(f"config: unknown key {key!r}; expected one of "
                                 f"{sorted('flower.' + k.replace('_', '-') for k in fields)}")
            default = getattr(cls, name)
            if isinstance(default, bool):
                value = value if isinstance(value, bool) else str(value).lower() in ("1", "true")
            kwargs[name] = type(default)(value)
        return cls(**kwargs)


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Train VFLGAN over the grid, publish, report."""
    from trainkit import set_cpu_threads

    cfg = VFLGANConfig.from_run_config(context.run_config)
    settings = FlowerSettings.from_run_config(context.run_config)
    set_cpu_threads(cfg.threads)
    transport = FlowerTransport(grid, cfg.num_parties, round_timeout=settings.round_timeout,
                                connect_timeout=settings.connect_timeout)
    run_dir = run_federated(cfg, settings, transport)
    logger.warning("VFLGAN outputs written to %s", run_dir)
    print(f"VFLGAN outputs: {run_dir}", flush=True)


def run_federated(cfg: VFLGANConfig, settings: FlowerSettings, transport) -> Path:
    """Handshake, (resume,) train with checkpoints, publish and report.

    Raises:
        RunInterrupted: a fault stopped training; a resumable checkpoint is named.
    """
    run_dir = Path(cfg.output_dir).absolute() / settings.run_name
    ckpt = run_dir / "checkpoints"
    t0 = time.monotonic()
    transport.party_ids()  # connect
    arch = cfg.resolve_architecture()
    plan = resolve_dp_plan(cfg, transport, arch)
    coord = make_coordinator(transport, arch, plan=plan, seed=cfg.seed,
                             n_critic=cfg.n_critic, sampler=cfg.sampler, device=cfg.device,
                             expected_parties=cfg.num_parties)
    coord.handshake()
    accounting = install_dp(coord, plan)
    if settings.resume:
        resume(coord, ckpt)
    logger.info("VFLGAN on Flower: %d parties, %d rows, steps %d -> %d, K=%d",
                len(coord.party_ids), coord.n_rows, coord.step, cfg.steps,
                settings.steps_per_round)
    t_train = time.monotonic()
    stopped_early = None
    try:
        fit_with_checkpoints(coord, cfg.steps, ckpt, every=settings.checkpoint_every,
                             steps_per_round=settings.steps_per_round)
    except RunInterrupted as e:
        if not isinstance(e.__cause__, PrivacyBudgetExceeded):
            logger.error("%s", e)
            raise
        # the budget, not a fault, stopped training: publish what it paid for
        logger.warning("%s", e.__cause__)
        coord.flush()
        stopped_early = str(e.__cause__)
    train_s = time.monotonic() - t_train
    publish_run(cfg, coord, run_dir, settings, {
        "train_s": train_s, "total_s": time.monotonic() - t0,
        "round_trips": transport.round_trips,
    }, dp=accounting.metadata() if accounting is not None else {"mode": "none"},
        stopped_early=stopped_early)
    return run_dir


def resolve_dp_plan(cfg: VFLGANConfig, transport, arch) -> DPPlan | None:
    """The DP plan (sigma calibrated for ``cfg.steps``), or None without DP.

    Every party resolves the same plan from the same run config and its own row count
    (``client_app``); the server asks for the row count with one ``hello`` first.
    """
    if not cfg.dp.enabled:
        return None
    hellos = transport.exchange({p: [Call("hello")] for p in transport.party_ids()})
    n_rows = int(next(iter(hellos.values()))[-1]["n_rows"])
    return resolve_plan(cfg.dp, n_rows=n_rows, batch_size=arch.batch_size, steps=cfg.steps,
                        num_parties=cfg.num_parties)


class _Sampler:
    """``sample_parts`` over the coordinator (what Evaluator expects of a model)."""

    def __init__(self, coord: Coordinator) -> None:
        self.coord = coord

    def sample_parts(self, n: int, seed: int = 0, independent: bool = False):
        return self.coord.sample(n, seed, independent)


def publish_run(cfg: VFLGANConfig, coord: Coordinator, run_dir: Path,
                settings: FlowerSettings, timings: dict, dp: dict | None = None,
                stopped_early: str | None = None) -> None:
    """Sample from every party, write the synthetic data, grid/preview and report.json.

    In a real federation each party would publish its own columns to the data
    recipient; here the ServerApp plays the recipient so the demo has one output folder.
    """
    from vflgan_app.api import decode_parts
    from vflgan_app.data.schema import TableSchema
    from vflgan_app.publish import write_report, write_synthetic

    schemas = [TableSchema.from_json(coord.hellos[p]["schema"]) for p in coord.party_ids]
    ds = None
    if cfg.dataset != "custom":
        from vflgan_app.data.sources import load_dataset

        try:  # metadata only (image shape, bounds); rows are used only to evaluate
            ds = load_dataset(cfg.dataset, cfg.data_root, max_rows=cfg.max_rows,
                              num_parties=cfg.num_parties)
        except FileNotFoundError:
            ds = None
    n = cfg.n_samples or coord.n_rows
    parts = coord.sample(n, cfg.seed)
    image_shape = ds.image_shape if ds is not None else None
    bounds = next(iter(ds.bounded.values())) if ds is not None and ds.bounded else (0.0, 1.0)
    files = write_synthetic(run_dir, decode_parts(schemas, parts), image_shape, bounds)
    metrics: dict = {}
    if settings.evaluate and ds is not None:
        from vflgan_app.data.sources import ID_COLUMN
        from vflgan_app.data.schema import prepare_parties
        from vflgan_app.eval.evaluator import Evaluator

        real = prepare_parties(ds.party_tables(), ID_COLUMN, ds.categorical, ds.bounded)
        metrics = Evaluator(ds, real, seed=cfg.seed).evaluate(_Sampler(coord), n=n,
                                                              seed=cfg.seed)
    extra = {
        "model": "vflgan", "runtime": "flower", "dataset": cfg.dataset,
        "dp": dp or {"mode": "none"}, "stopped_early": stopped_early,
        "flower": dataclasses.asdict(settings), "timings_s": timings,
        "history": {"d_loss": coord.history.d_loss,
                    "g_loss": {str(k): v for k, v in coord.history.g_loss.items()}},
    }
    write_report(run_dir, metrics, cfg.to_dict(), cfg.seed, files, extra)
    logger.info("report: %s", json.dumps({k: timings[k] for k in sorted(timings)}))
