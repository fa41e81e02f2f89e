"""One experiment end to end: data -> parties -> training -> publication -> report.

Shared by the CLI (``python -m vflgan_app train``), the Flower ServerApp and the
simulation drivers, so every entry point writes the same outputs.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from trainkit import StageTimer
from vflgan_app.api import build_federation, decode_parts, fit_baseline
from vflgan_app.config import VFLGANConfig
from vflgan_app.data.sources import ID_COLUMN, Dataset, load_dataset
from vflgan_app.data.schema import PartyData, prepare_parties
from vflgan_app.dp.plan import PrivacyBudgetExceeded
from vflgan_app.core.model import Architecture
from vflgan_app.publish import write_report, write_synthetic

logger = logging.getLogger(__name__)


def prepare_dataset(cfg: VFLGANConfig) -> tuple[Dataset, list[PartyData]]:
    """Load the configured dataset and prepare (encode, align) its parties."""
    ds = load_dataset(cfg.dataset, cfg.data_root, max_rows=cfg.max_rows,
                      num_parties=cfg.num_parties)
    parties = prepare_parties(ds.party_tables(), ID_COLUMN, ds.categorical, ds.bounded)
    return ds, parties


def train_model(cfg: VFLGANConfig, kind: str, parties: list[PartyData],
                arch: Architecture | None = None):
    """Train ``kind`` (vflgan, vertigan, centralized) on prepared parties.

    With DP, a run that reaches ``dp.target-epsilon`` before ``steps`` stops before the
    step that would exceed it; the model is returned with ``model.stopped_early`` set
    to the reason (the steps taken are within the budget). ``arch`` overrides the
    config's architecture (vflgan only; e.g. a bias-free no-DP control).
    """
    if kind == "vflgan":
        model = build_federation(parties, cfg, arch=arch)
        model.stopped_early = None
        try:
            model.fit()
        except PrivacyBudgetExceeded as e:
            model.stopped_early = str(e)
        return model
    return fit_baseline(kind, parties, cfg)


def log_header(cfg: VFLGANConfig, kind: str, ds: Dataset, parties: list[PartyData]) -> None:
    """The diffusers-style header before training."""
    arch = cfg.resolve_architecture()
    logger.info("***** %s on %s *****", kind, ds.name)
    logger.info("  rows = %d, parties = %d, widths = %s", len(parties[0].ids), len(parties),
                [p.schema.width for p in parties])
    logger.info("  steps = %d, batch = %d, lr = %g, latent = %d, lambda_gp = %g, n_critic = %d",
                cfg.steps, arch.batch_size, arch.lr, arch.latent_dim, arch.lambda_gp, cfg.n_critic)
    if cfg.dp.enabled:
        logger.info("  dp = %s, target (epsilon, delta) = (%g, %g), sampler = %s, bias = %s",
                    cfg.dp.mode, cfg.dp.target_epsilon, cfg.dp.delta, cfg.sampler,
                    arch.bias and not cfg.dp.enabled)


def run_experiment(cfg: VFLGANConfig, kind: str, run_dir: Path, evaluate: bool = True,
                   timer: StageTimer | None = None, arch: Architecture | None = None) -> dict:
    """Train, publish and evaluate; return the report written to ``report.json``."""
    timer = timer or StageTimer(logger)
    with timer("data"):
        ds, parties = prepare_dataset(cfg)
    log_header(cfg, kind, ds, parties)
    with timer("training"):
        model = train_model(cfg, kind, parties, arch=arch)
    if kind == "vflgan":
        model.save(run_dir / "model")
    n = cfg.n_samples or len(parties[0].ids)
    with timer("publication"):
        synth = decode_parts([p.schema for p in parties], model.sample_parts(n, cfg.seed))
        bounds = next(iter(ds.bounded.values())) if ds.bounded else (0.0, 1.0)
        files = write_synthetic(run_dir, synth, ds.image_shape, bounds)
    metrics: dict = {}
    if evaluate:
        from vflgan_app.eval.evaluator import Evaluator

        with timer("evaluation"):
            metrics = Evaluator(ds, parties, seed=cfg.seed).evaluate(model, n=n, seed=cfg.seed)
    extra = {"model": kind, "dataset": ds.name, "timings_s": dict(timer.timings),
             "dp": model.dp_metadata() if kind == "vflgan" else None,
             "stopped_early": getattr(model, "stopped_early", None),
             "party_columns": ds.party_columns if not ds.is_image else
             [f"{len(c)} pixel columns" for c in ds.party_columns]}
    write_report(run_dir, metrics, cfg.to_dict(), cfg.seed, files, extra)
    return json.loads((run_dir / "report.json").read_text())


def regenerate(run_dir: Path, n: int, seed: int, out: str | None = None) -> Path:
    """Rebuild a saved VFLGAN run from its data and states and sample it again."""
    meta = json.loads((run_dir / "config.json").read_text())
    config = dict(meta["config"])
    if config.pop("model", "vflgan") != "vflgan":
        raise ValueError(f"{run_dir}: only vflgan runs can be regenerated")
    cfg = VFLGANConfig.from_dict(config)
    ds, parties = prepare_dataset(cfg)
    model = build_federation(parties, cfg).load(run_dir / "model")
    synth = decode_parts([p.schema for p in parties], model.sample_parts(n, seed))
    out_dir = Path(out) if out else run_dir / f"generated-{seed}"
    bounds = next(iter(ds.bounded.values())) if ds.bounded else (0.0, 1.0)
    files = write_synthetic(out_dir, synth, ds.image_shape, bounds)
    write_report(out_dir, {}, cfg.to_dict(), seed, files, {"source_run": run_dir.name})
    return out_dir
