"""One experiment end to end: data -> parties -> training -> publication -> report.

The one train -> publish -> evaluate -> report path: the CLI (``python -m vflgan_app
train``) and the simulation drivers call :func:`run_experiment`; the Flower ServerApp
trains over its grid and then calls :func:`publish`, the same publication step, so
every entry point writes the same outputs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

from trainkit import StageTimer
from vflgan_app.api import build_federation, fit_baseline
from vflgan_app.architectures import Architecture
from vflgan_app.config import VFLGANConfig
from vflgan_app.data.partition import PartyData, decode_parts, prepare_parties
from vflgan_app.data.schema import TableSchema
from vflgan_app.data.sources import ID_COLUMN, Dataset, load_dataset
from vflgan_app.errors import PrivacyBudgetExceeded
from vflgan_app.publish import write_report, write_synthetic

logger = logging.getLogger(__name__)


def prepare_dataset(cfg: VFLGANConfig) -> tuple[Dataset, list[PartyData]]:
    """Load the configured dataset and prepare (encode, align) its parties."""
    ds = load_dataset(cfg.dataset, cfg.data_root, max_rows=cfg.max_rows,
                      num_parties=cfg.num_parties)
    return ds, prepare_real_parties(ds)


def prepare_real_parties(ds: Dataset) -> list[PartyData]:
    """The dataset's party tables, encoded and aligned."""
    return prepare_parties(ds.party_tables(), ID_COLUMN, ds.categorical, ds.bounded)


def train_model(cfg: VFLGANConfig, kind: str, parties: list[PartyData],
                arch: Architecture | None = None, checkpoints: dict | None = None,
                party_names: Sequence[str] | None = None):
    """Train ``kind`` (vflgan, vertigan, centralized) on prepared parties.

    With DP, a run that reaches ``dp.target-epsilon`` before ``steps`` stops before the
    step that would exceed it; the model is returned with ``model.stopped_early`` set
    to the reason (the steps taken are within the budget); one that cannot take a
    single step raises ``ValueError`` (nothing to publish). ``arch`` overrides the
    config's architecture (vflgan only; e.g. a bias-free no-DP control).
    ``checkpoints`` are the checkpoint arguments of :meth:`VFLGANModel.fit`
    (``checkpoint_dir``, ``checkpoint_every``, ``resume``, ``overwrite``; vflgan only).
    ``party_names`` name the saved model's party folders (vflgan; default party-<k>).

    Raises:
        ValueError: checkpoints asked of a baseline.
    """
    if kind == "vflgan":
        model = build_federation(parties, cfg, arch=arch, party_names=party_names)
        model.stopped_early = None
        try:
            model.fit(**(checkpoints or {}))
        except PrivacyBudgetExceeded as e:
            if model.coordinator.step == 0:  # nothing trained: nothing worth publishing
                raise ValueError(f"dp.target-epsilon: {e}; not one step fits the budget, so "
                                 "no model was trained and nothing is published (raise "
                                 "dp.target-epsilon or dp.noise-multiplier)") from e
            model.stopped_early = str(e)
        return model
    if checkpoints:
        raise ValueError(f"checkpoints: got {sorted(checkpoints)} for the {kind!r} "
                         "baseline; expected none (resumable checkpoints are for vflgan)")
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
                    cfg.dp.mode, cfg.dp.target_epsilon, cfg.dp.delta, cfg.sampler, arch.bias)


def publish(run_dir: Path, cfg: VFLGANConfig, model, schemas: Sequence[TableSchema],
            n: int, *, ds: Dataset | None = None, real: list[PartyData] | None = None,
            evaluate: bool = True, seed: int | None = None, extra: dict | None = None,
            timer: StageTimer | None = None) -> dict:
    """Sample, write the synthetic data (+ grid/preview), evaluate, write ``report.json``.

    Args:
        run_dir: the output folder.
        cfg: the run's config (recorded in the report).
        model: anything with ``sample_parts(n, seed, independent)``.
        schemas: each party's column schema, party order.
        n: rows to publish.
        ds: the built-in dataset (image shape, pixel bounds, evaluation); None for
            custom tables, which are published without evaluation.
        real: the prepared real parties for the evaluation (default: from ``ds``).
        evaluate: score the synthetic data against the real table.
        seed: publication seed (default ``cfg.seed``).
        extra: more report fields.
        timer: stage timer (records "publication" and "evaluation").

    Returns:
        The report as written.
    """
    timer = timer or StageTimer(logger)
    seed = cfg.seed if seed is None else seed
    image_shape = ds.image_shape if ds is not None else None
    bounds = next(iter(ds.bounded.values())) if ds is not None and ds.bounded else (0.0, 1.0)
    with timer("publication"):
        synth = decode_parts(schemas, model.sample_parts(n, seed))
        files = write_synthetic(run_dir, synth, image_shape, bounds)
    metrics: dict = {}
    if evaluate and ds is not None:
        from vflgan_app.eval.evaluator import Evaluator

        with timer("evaluation"):
            real = real if real is not None else prepare_real_parties(ds)
            metrics = Evaluator(ds, real, seed=cfg.seed).evaluate(model, n=n, seed=seed)
    extra = dict(extra or {})
    timings = {**extra.pop("timings_s", {}), **timer.timings}  # the caller's, then ours
    write_report(run_dir, metrics, cfg.to_dict(), seed, files,
                 {"timings_s": timings, **extra})
    return json.loads((Path(run_dir) / "report.json").read_text())


#: Why a DP report carries no loss history (docs/privacy.md, "What is published").
HISTORY_OMITTED = ("omitted under DP: the per-step losses are computed from the private rows "
                   "without noise and are not covered by the accountant")


def loss_history(cfg: VFLGANConfig, history) -> dict:
    """The report's loss history: the losses without DP, a note of their absence under DP."""
    if cfg.dp.enabled:
        return {"history_omitted": HISTORY_OMITTED}
    return {"history": {"d_loss": history.d_loss,
                        "g_loss": {str(k): v for k, v in history.g_loss.items()}}}


def prepare_party_csvs(specs: Sequence[str], id_column: str,
                       categorical: Sequence[str] = ()) -> list[PartyData]:
    """Each party's own CSV (``NAME=PATH``, any dialect pandas sniffs), prepared and aligned.

    Raises: as :func:`party_csv_dataset`.
    """
    return party_csv_dataset(specs, id_column, categorical)[1]


def party_csv_dataset(specs: Sequence[str], id_column: str,
                      categorical: Sequence[str] = ()) -> tuple[Dataset, list[PartyData]]:
    """The parties' own CSVs as a ``custom`` :class:`Dataset`, and the prepared parties.

    The dataset is for the evaluation: the CLI's user holds every table.

    Raises:
        ValueError: a spec without ``=``, a repeated name, fewer than two parties, a
            missing id column (named), or the checks of :func:`prepare_parties`.
        FileNotFoundError: a CSV that does not exist.
    """
    from vflgan_app.data.sources import read_csv_any

    names, tables = [], []
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--party-csv: got {spec!r}, expected NAME=PATH")
        if name in names:
            raise ValueError(f"--party-csv: party name {name!r} given twice")
        if not Path(path).exists():
            raise FileNotFoundError(f"--party-csv {name}: {path} does not exist")
        table = read_csv_any(path)
        if id_column not in table.columns:
            raise ValueError(f"--party-csv {name}: no id column {id_column!r} in {path}; "
                             f"expected one of {list(table.columns)[:10]} (--id-column)")
        names.append(name)
        tables.append(table)
    if len(tables) < 2:
        raise ValueError(f"--party-csv: got {len(tables)} party, expected at least 2")
    from vflgan_app.data.partition import validate_party_names

    validate_party_names(names, "--party-csv NAME")  # they name the saved model's folders
    held = [c for t in tables for c in t.columns if c != id_column]
    cats = [c for c in categorical if c in held]
    unknown = sorted(set(categorical) - set(held))
    if unknown:
        raise ValueError(f"--categorical: {unknown} are in no party's CSV")
    parties = prepare_parties(tables, id_column, cats)
    joined = tables[0]
    for t in tables[1:]:
        joined = joined.merge(t, on=id_column, how="inner")  # ids are aligned (checked)
    joined = joined.rename(columns={id_column: ID_COLUMN}).sort_values(ID_COLUMN)
    ds = Dataset(name="custom", table=joined.reset_index(drop=True),
                 party_columns=[[c for c in t.columns if c != id_column] for t in tables],
                 categorical=cats)
    return ds, parties


def preflight(cfg: VFLGANConfig, parties: Sequence[PartyData],
              arch: Architecture | None = None) -> None:
    """Refuse a run that cannot train on these tables, before anything is written.

    Raises:
        ValueError: the batch is larger than the table, the parties disagree on rows,
            or under DP not one step fits the budget.
    """
    arch = arch or cfg.resolve_architecture()
    rows = {len(p.ids) for p in parties}
    if len(rows) != 1:
        raise ValueError(f"tables: the parties hold {sorted(rows)} rows; expected the same "
                         "records at every party")
    (n,) = rows
    if arch.batch_size > n:
        raise ValueError(f"batch_size: got {arch.batch_size}, expected at most the {n} rows "
                         "of the table (pass --batch-size, or use more rows)")
    if cfg.dp.enabled and cfg.steps > 0:
        from vflgan_app import federation
        from vflgan_app.dp.accountant import DPAccounting

        dp_arch = federation.architecture(cfg, arch)
        plan = federation.dp_plan(cfg, dp_arch, n, len(parties))
        try:
            DPAccounting(plan)(0)  # a throwaway accountant: can step 0 be paid for?
        except PrivacyBudgetExceeded as e:
            raise ValueError(f"dp.target-epsilon: {e}; not one step fits the budget, so "
                             "nothing would be trained (raise dp.target-epsilon or "
                             "dp.noise-multiplier)") from None


def run_experiment(cfg: VFLGANConfig, kind: str, run_dir: Path, evaluate: bool = True,
                   timer: StageTimer | None = None, arch: Architecture | None = None,
                   prepared: tuple[Dataset, list[PartyData]] | None = None, *,
                   checkpoint_every: int = 0, resume: bool = False,
                   overwrite: bool = False, party_names: Sequence[str] | None = None) -> dict:
    """Train, publish and evaluate; return the report written to ``report.json``.

    ``prepared`` is the output of :func:`prepare_dataset` when the caller already has it
    (the CLI loads and checks the data before it creates the run folder); its dataset
    is None for the user's own tables (published without evaluation).

    With ``checkpoint_every``, ``resume`` or ``overwrite`` (vflgan only), resumable
    checkpoints go to ``<run_dir>/checkpoints`` (the server's and every party's, side by
    side): every ``checkpoint_every`` steps and at the end. ``resume`` continues from the
    newest; ``overwrite`` lets a fresh run delete the checkpoints it finds there. The
    report's ``history`` holds the losses of every step (vflgan).
    """
    timer = timer or StageTimer(logger)
    checkpoints = None
    if checkpoint_every or resume or overwrite:
        checkpoints = {"checkpoint_dir": Path(run_dir) / "checkpoints",
                       "checkpoint_every": checkpoint_every, "resume": resume,
                       "overwrite": overwrite}
    with timer("data"):
        ds, parties = prepared if prepared is not None else prepare_dataset(cfg)
    preflight(cfg, parties, arch)
    if ds is not None:
        log_header(cfg, kind, ds, parties)
    with timer("training"):
        model = train_model(cfg, kind, parties, arch=arch, checkpoints=checkpoints,
                            party_names=party_names if kind == "vflgan" else None)
    if kind == "vflgan":
        model.save(run_dir / "model")
    if ds is None:  # the user's own tables (``--party-csv``): their columns are theirs
        name, columns = "custom", [p.schema.names for p in parties]
    else:
        name, columns = ds.name, (ds.party_columns if not ds.is_image else
                                  [f"{len(c)} pixel columns" for c in ds.party_columns])
    extra = {"model": kind, "dataset": name,
             "dp": model.dp_metadata() if kind == "vflgan" else None,
             "stopped_early": getattr(model, "stopped_early", None),
             "party_columns": columns}
    if kind == "vflgan":
        extra.update(loss_history(cfg, model.coordinator.history))
    n = cfg.n_samples or len(parties[0].ids)
    return publish(run_dir, cfg, model, [p.schema for p in parties], n, ds=ds,
                   real=parties, evaluate=evaluate, extra=extra, timer=timer)


def regenerate(run_dir: Path, n: int, seed: int, out: str | None = None) -> Path:
    """Sample a saved VFLGAN run again, from the run folder alone (no training data).

    The model is rebuilt from ``<run_dir>/model`` (:meth:`VFLGANModel.load`); image
    runs get their grid from the pixel columns (a square image, the bounded range).
    """
    from vflgan_app.api import VFLGANModel

    meta = json.loads((run_dir / "config.json").read_text())
    if meta.get("config", {}).get("model", "vflgan") != "vflgan":
        raise ValueError(f"{run_dir}: only vflgan runs can be regenerated")
    model = VFLGANModel.load(run_dir / "model")
    schemas = model.schemas
    out_dir = Path(out) if out else run_dir / f"generated-{seed}"
    synth = decode_parts(schemas, model.sample_parts(n, seed))
    columns = [c for s in schemas for c in s.columns]
    image_shape, bounds = None, (0.0, 1.0)
    side = int(round(len(columns) ** 0.5))
    if columns and all(c.kind == "bounded" for c in columns) and side * side == len(columns):
        image_shape, bounds = (side, side), (columns[0].low, columns[0].high)
    files = write_synthetic(out_dir, synth, image_shape, bounds)
    write_report(out_dir, {}, model.config.to_dict(), seed, files,
                 {"source_run": run_dir.name, "dp": model.dp_metadata()})
    return out_dir
