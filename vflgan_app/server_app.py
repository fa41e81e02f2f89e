"""ServerApp: run config -> federation over the grid -> the one loop -> publish.

The ServerApp holds the top critic D_S and the training loop; it never sees rows. It
writes the synthetic data, an image grid or table preview and ``report.json`` into
``<output-dir>/<flower.run-name>`` on the SuperLink host and logs that folder.

Flower-specific run-config keys live in the ``[tool.flwr.app.config.flower]`` table
(flattened to ``flower.<key>``); see :class:`~vflgan_app.config.FlowerSettings`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from pathlib import Path

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from vflgan_app import federation
from vflgan_app.config import FlowerSettings, VFLGANConfig, parse_run_config
from vflgan_app.core import loop
from vflgan_app.core.checkpoint import config_fingerprint
from vflgan_app.data.schema import TableSchema
from vflgan_app.errors import PrivacyBudgetExceeded
from vflgan_app.flower.transport import FlowerTransport, shorten_object_backoff

logger = logging.getLogger(__name__)

app = ServerApp()

__all__ = ["FlowerSettings", "app", "main", "run_federated"]


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Train VFLGAN over the grid, publish, report."""
    from trainkit import set_cpu_threads

    cfg, settings = parse_run_config(context.run_config)
    stream_logs()
    set_cpu_threads(cfg.threads)
    shorten_object_backoff()  # no 1 s wait when a reply's objects trail its listing
    transport = FlowerTransport(grid, cfg.num_parties, round_timeout=settings.round_timeout,
                                connect_timeout=settings.connect_timeout)
    run_dir = run_federated(cfg, settings, transport)
    logger.warning("VFLGAN outputs written to %s", run_dir)
    print(f"VFLGAN outputs: {run_dir}", flush=True)


def stream_logs(level: int = logging.INFO) -> None:
    """Send this app's log lines (progress, checkpoints, resume) to stderr.

    ``flwr run --stream`` shows stderr; without a handler only warnings would reach it.
    """
    log = logging.getLogger("vflgan_app")
    if not any(getattr(h, "_vflgan_stream", False) for h in log.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s VFLGAN %(message)s", "%H:%M:%S"))
        handler._vflgan_stream = True
        log.addHandler(handler)
        log.propagate = False  # not twice through flwr's root handlers
    log.setLevel(level)


class StreamProgress:
    """A progress line every ``every_s`` seconds or 5 % of the run, and at the end.

    ``step 300/1000 (30%)  d_loss 1.234  g_loss 0.567  4.1 steps/s  ETA 2 min 51 s``,
    plus the privacy spent so far under DP (the accountant's postfix). Under DP the
    losses are left out, as from the report (:func:`vflgan_app.run.loss_history`): the
    stream is kept by the SuperLink and readable with ``flwr log``.
    """

    def __init__(self, coord, steps: int, every_s: float = 15.0, losses: bool = True,
                 clock=time.monotonic) -> None:
        self.coord, self.steps, self.every_s, self.clock = coord, steps, every_s, clock
        self.losses = losses
        self.start_step, self.t0 = coord.step, clock()
        self.last_step, self.last_t = coord.step, self.t0
        self.lines = 0

    def __call__(self, step: int) -> None:
        now = self.clock()
        due = (step - self.last_step >= max(1, self.steps // 20)
               or now - self.last_t >= self.every_s or step >= self.steps)
        if not due:
            return
        self.last_step, self.last_t = step, now
        self.lines += 1
        logger.info("%s", self.line(step, now))

    def line(self, step: int, now: float) -> str:
        h = self.coord.history
        done, elapsed = step - self.start_step, now - self.t0
        rate = done / elapsed if elapsed > 0 else float("nan")
        parts = [f"step {step}/{self.steps} ({100 * step / self.steps:.0f}%)"]
        # chunked mode completes a step's d_loss one chunk later (NaN until then)
        d_loss = next((d for d in reversed(h.d_loss[-4096:]) if math.isfinite(d)), None)
        if self.losses and d_loss is not None:
            parts.append(f"d_loss {d_loss:.3f}")
        if self.losses and h.g_loss:
            parts.append(f"g_loss {h.g_loss[max(h.g_loss)]:.3f}")
        if done > 0 and elapsed > 0:
            eta = (self.steps - step) / rate
            parts += [f"{rate:.2f} steps/s", f"ETA {_duration(eta)}"]
        for f in self.coord.postfix_providers:
            parts += [f"{k} {v}" for k, v in f().items()]
        return "  ".join(parts)


def _duration(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h} h {m} min" if h else f"{m} min {s} s" if m else f"{s} s"


def run_federated(cfg: VFLGANConfig, settings: FlowerSettings, transport) -> Path:
    """Handshake, (resume,) train with checkpoints, publish and report.

    A fresh run refuses checkpoint folders (the server's, every party's) that hold
    checkpoints, unless ``flower.overwrite``; ``flower.resume`` continues the newest
    checkpoint after checking its settings and that every party holds it.

    Raises:
        RunInterrupted: a fault stopped training; a resumable checkpoint is named.
        FileExistsError: a fresh run found checkpoints and not ``flower.overwrite``.
        ValueError: a resume with other settings than the checkpoint's (named).
    """
    run_dir = Path(cfg.output_dir).absolute() / settings.run_name
    ckpt = run_dir / "checkpoints"
    t0 = time.monotonic()
    recipients = settings.delivery_parties(transport.party_ids())  # connect; names checked
    fed = federation.connect(transport, cfg)
    coord = fed.coordinator
    if settings.resume and settings.overwrite:
        raise ValueError("flower.resume and flower.overwrite: got both; expected one "
                         "(continue the run, or start it over)")
    # checked against every checkpoint on resume (core/checkpoint.RESUME_MAY_CHANGE)
    fingerprint = config_fingerprint(cfg, coord.arch, settings.steps_per_round)
    if settings.resume:
        loop.resume(coord, ckpt, fingerprint=fingerprint)
    logger.info("VFLGAN on Flower: %d parties, %d rows, steps %d -> %d, K=%d",
                len(coord.party_ids), coord.n_rows, coord.step, cfg.steps,
                settings.steps_per_round)
    t_train = time.monotonic()
    stopped_early = None
    try:
        loop.fit(coord, cfg.steps, steps_per_round=settings.steps_per_round,
                 checkpoint_root=ckpt, checkpoint_every=settings.checkpoint_every,
                 fingerprint=fingerprint, overwrite=settings.overwrite,
                 on_step=StreamProgress(coord, cfg.steps, losses=not cfg.dp.enabled))
    except PrivacyBudgetExceeded as e:  # the budget, not a fault: publish what it paid for
        logger.warning("%s", e)
        stopped_early = str(e)
    timings = {"train_s": time.monotonic() - t_train, "total_s": time.monotonic() - t0,
               "round_trips": transport.round_trips}
    trips = sorted(getattr(transport, "round_s", [])[2:])  # after connect + handshake
    if trips:
        timings["round_trip_median_s"] = trips[len(trips) // 2]
    publish_run(cfg, coord, run_dir, settings, timings,
                dp=fed.accounting.metadata() if fed.accounting is not None else None,
                stopped_early=stopped_early)
    if recipients:
        deliver(transport, run_dir, settings, recipients)
    return run_dir


def deliver(transport, run_dir: Path, settings: FlowerSettings, parties: list[int]) -> dict:
    """Send the published synthetic data file to ``parties``; note it in report.json.

    Each party checks the bytes against their sha256 and stores them in its own
    ``delivery-dir`` (:func:`vflgan_app.flower.node.receive_delivery`): the server names
    neither the folder nor any path. The manifest beside the file holds the run name,
    the report's DP metadata and the file's checksum.
    """
    import hashlib
    import json

    import numpy as np

    from trainkit.checkpoint import atomic_write_json
    from vflgan_app.core.protocol import Call

    report = json.loads((run_dir / "report.json").read_text())
    name = report["files"]["data"]
    payload = (run_dir / name).read_bytes()
    digest = hashlib.sha256(payload).hexdigest()
    manifest = json.dumps({"run": settings.run_name, "dp": report.get("dp"),
                           "created": report.get("created")})
    args = {"name": name, "data": np.frombuffer(payload, np.uint8), "sha256": digest,
            "manifest": manifest}
    replies = transport.exchange({p: [Call("deliver", args)] for p in parties})
    for p, r in replies.items():
        if r[-1].get("sha256") != digest or r[-1].get("bytes") != len(payload):
            raise RuntimeError(f"delivery: party {p} acknowledged {r[-1]}; expected "
                               f"{len(payload)} bytes with sha256 {digest}")
    delivered = {"file": name, "sha256": digest, "bytes": len(payload),
                 "parties": sorted(replies)}
    atomic_write_json(run_dir / "report.json", {**report, "delivered": delivered})
    logger.warning("delivered %s (%d bytes) to parties %s", name, len(payload),
                   sorted(replies))
    return delivered


def schemas_match(ds, schemas: list[TableSchema]) -> bool:
    """Whether each party's columns are, in order, the built-in dataset's for that party."""
    return len(schemas) == len(ds.party_columns) and all(
        [c.name for c in s.columns] == list(cols)
        for s, cols in zip(schemas, ds.party_columns, strict=True))


class _CoordinatorSampler:
    """``sample_parts`` over the coordinator (what the publication step samples from)."""

    def __init__(self, coord) -> None:
        self.coord = coord

    def sample_parts(self, n: int, seed: int = 0, independent: bool = False):
        return self.coord.sample(n, seed, independent)


def publish_run(cfg: VFLGANConfig, coord, run_dir: Path, settings: FlowerSettings,
                timings: dict, dp: dict | None = None,
                stopped_early: str | None = None) -> None:
    """Publish through :func:`vflgan_app.run.publish` (the CLI's publication step).

    In a real federation each party would publish its own columns to the data
    recipient; here the ServerApp plays the recipient so the demo has one output folder.
    The built-in dataset (image shape, pixel bounds) is read only for its metadata, and
    its rows only to evaluate, when ``flower.evaluate`` is on (simulation / demo).
    """
    from vflgan_app.run import loss_history, publish

    schemas = [TableSchema.from_json(coord.hellos[p]["schema"]) for p in coord.party_ids]
    ds = None
    if cfg.dataset != "custom":
        from vflgan_app.data.sources import load_dataset

        try:
            ds = load_dataset(cfg.dataset, cfg.data_root, max_rows=cfg.max_rows,
                              num_parties=cfg.num_parties)
        except FileNotFoundError:
            ds = None
    if ds is not None and not schemas_match(ds, schemas):
        # the parties hold their own tables (data-path): the run config's dataset names
        # nothing they trained on, so publish them as custom tables
        logger.warning("the parties' columns are not those of the built-in %r; "
                       "publishing them as custom tables", cfg.dataset)
        ds = None
        cfg = dataclasses.replace(cfg, dataset="custom")  # what the report and summary say
    extra = {
        "model": "vflgan", "runtime": "flower", "dataset": cfg.dataset,
        "dp": dp or {"mode": "none"}, "stopped_early": stopped_early,
        "flower": dataclasses.asdict(settings), "timings_s": timings,
        **loss_history(cfg, coord.history),
    }
    publish(run_dir, cfg, _CoordinatorSampler(coord), schemas, cfg.n_samples or coord.n_rows,
            ds=ds, evaluate=settings.evaluate, extra=extra)
    logger.info("report: %s", {k: timings[k] for k in sorted(timings)})
