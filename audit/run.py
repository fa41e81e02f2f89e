"""run_audit: the membership-inference audit of a generator, from real table to report.

Stages (each timed): validate the inputs (before anything is written), pick targets and
plan the IN/OUT worlds, fit or load the shadows and extract their features, run the
attacks, compute the metrics, write the report.
"""

from __future__ import annotations

import datetime as _dt
import logging
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from audit.attacks import ForestSettings, run_attack
from audit.config import AuditConfig
from audit.features import FeatureExtractor, attack_max_features
from audit.game import (
    IN,
    OUT,
    build_trials,
    resolve_world_size,
    seed_folds,
    seed_splits,
    select_targets,
)
from audit.report import AuditReport, describe_resolution, summarize_attack
from audit.schema import TableSchema
from audit.shadow import FitAndFeatures, FitAndSample, ShadowCache, run_shadows
from trainkit import StageTimer, atomic_write_json, git_commit, run_metadata

logger = logging.getLogger(__name__)


def run_audit(
    real: pd.DataFrame,
    fit_and_sample: FitAndSample,
    config: AuditConfig | None = None,
    fit_and_features: FitAndFeatures | None = None,
    out_dir: str | Path | None = None,
) -> AuditReport:
    """Audit a generator with the membership game on each target record.

    Args:
        real: the real table, one record per row; its index labels are the record ids
            that ``config.targets`` refers to. No missing values.
        fit_and_sample: ``(rows, seed) -> synthetic``: trains the generator on ``rows``
            (a subset of ``real``, index kept) with ``seed`` and returns a synthetic
            table with the same columns. It may instead return ``(synthetic,
            features)`` with the ASIF features below, so that one training serves both.
        config: audit settings; ``None`` = ``AuditConfig()`` (paper scale).
        fit_and_features: ``(rows, seed) -> [f_0, ..., f_{K-1}]``: per party, the
            bottom critic's intermediate features of a fixed table of that party's
            preprocessed real columns (the paper feeds the whole real table), shape
            (n_rows, d_k). Enables the ASIF attacks.
        out_dir: folder for the shadow cache (``shadows/``), ``config.json`` and the
            report files; ``None`` keeps everything in memory (no cache, no resume).

    Returns:
        The report (also written to ``out_dir``).

    Raises:
        TypeError: ``real`` is not a DataFrame or a callable is not callable.
        ValueError: bad input (unknown targets, a world larger than the table, missing
            values, ...), raised before anything is written; or a shadow's output that
            does not match the real table (raised before that shadow is cached).
    """
    config = AuditConfig() if config is None else config
    timer = StageTimer(logger)
    with timer("setup"):
        schema, real_norm, encoded = _check_inputs(
            real, fit_and_sample, fit_and_features, config, out_dir
        )
        targets = select_targets(real, encoded, config)
        world_size = resolve_world_size(len(real), config)
        trials = [
            t
            for tg in targets
            for t in build_trials(len(real), tg.position, world_size, config)
        ]
    _log_plan(targets, world_size, len(trials), config, fit_and_features is not None)

    out_dir = Path(out_dir) if out_dir is not None else None
    cache = ShadowCache(
        out_dir / "shadows" if out_dir else None, schema, schema.fingerprint(real_norm)
    )
    shadows = run_shadows(
        trials,
        real,
        fit_and_sample,
        fit_and_features,
        schema,
        cache,
        workers=config.workers,
        progress=config.progress,
    )
    with timer("shadows"):
        features, n_cached = _collect_features(
            shadows,
            _make_extractors(schema, encoded, targets, config),
            config.n_shadows,
        )
    with timer("attacks"):
        results = _attack_all(targets, features, config)
    report = _build_report(config, targets, results, len(trials), n_cached, world_size)
    report.timings = dict(timer.timings)
    if report.resolution["resolvable"] is False:
        logger.warning(report.resolution["message"])
    if out_dir is not None:
        atomic_write_json(
            out_dir / "config.json", run_metadata(config.to_dict(), config.seed)
        )
        report.save(out_dir)
        logger.info("audit report written to %s", out_dir)
    return report


def _log_plan(targets, world_size: int, n_trials: int, config, with_if: bool) -> None:
    sets = list(config.feature_sets)
    sets += [f"asif/{s}" for s in config.if_feature_sets] if with_if else []
    logger.info(
        "audit: %d target(s) %s, world size %d, %d IN + %d OUT shadows each (%d fits), "
        "feature sets %s, workers %d",
        len(targets),
        [t.to_dict()["label"] for t in targets],
        world_size,
        config.n_shadows,
        config.n_shadows,
        n_trials,
        sets,
        config.workers,
    )


def _build_report(config, targets, results, n_trials, n_cached, world_size):
    resolution = describe_resolution(
        config.n_shadows,
        config.n_shadows,
        config.confidence,
        config.delta,
        config.accountant_epsilon,
    )
    return AuditReport(
        config=config.to_dict(),
        targets=[t.to_dict() for t in targets],
        results=results,
        resolution=resolution,
        counts={"trials": n_trials, "fitted": n_trials - n_cached, "cached": n_cached},
        meta={
            "git_commit": git_commit(),
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "world_size": world_size,
        },
    )


def _check_inputs(real, fit_and_sample, fit_and_features, config, out_dir):
    if not isinstance(real, pd.DataFrame):
        raise TypeError(f"real: expected a pandas DataFrame, got {type(real).__name__}")
    if not isinstance(config, AuditConfig):
        raise TypeError(f"config: expected an AuditConfig, got {type(config).__name__}")
    for name, fn in (
        ("fit_and_sample", fit_and_sample),
        ("fit_and_features", fit_and_features),
    ):
        if fn is not None and not callable(fn):
            raise TypeError(f"{name}={fn!r}; expected a callable (rows, seed) -> ...")
    if fit_and_sample is None:
        raise TypeError(
            "fit_and_sample=None; expected a callable (rows, seed) -> table"
        )
    if len(real) < 3:
        raise ValueError(f"the real table has {len(real)} rows; expected at least 3")
    if real.index.has_duplicates:
        dup = real.index[real.index.duplicated()][:5].tolist()
        raise ValueError(
            f"the real table's index has repeated labels {dup}; expected unique record "
            "ids (reset_index() or set_index(<id column>))"
        )
    if out_dir is not None and Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise ValueError(f"out_dir={str(out_dir)!r} is a file; expected a folder")
    schema = TableSchema.fit(real, config.categorical_columns)
    if "correlation" in config.feature_sets and schema.width < 2:
        raise ValueError(
            f"feature_sets={config.feature_sets}: the correlation features of a table "
            f"that encodes to {schema.width} column(s) are empty; expected at least 2 "
            "encoded columns, or drop 'correlation'"
        )
    real_norm = schema.normalize(real, "the real table")
    return schema, real_norm, schema.encode(real_norm)


def _make_extractors(schema, encoded, targets, config: AuditConfig) -> dict:
    return {
        t.position: FeatureExtractor(
            schema,
            encoded[t.position],
            t.nn_distance,
            config.feature_sets,
            config.if_feature_sets,
            config.knn_k,
        )
        for t in targets
    }


def _collect_features(shadows, extractors: dict, n_shadows: int):
    """Extract features as shadows arrive; {(target, set): {world: [vec per seed]}}."""
    features: dict[tuple[int, str], dict[str, list]] = {}
    n_cached = 0
    for trial, output, cached in shadows:
        n_cached += cached
        vectors = extractors[trial.target].extract(
            output.synthetic, output.intermediate, trial.describe()
        )
        for name, vec in vectors.items():
            slot = features.setdefault(
                (trial.target, name), {IN: [None] * n_shadows, OUT: [None] * n_shadows}
            )
            slot[trial.world][trial.shadow] = vec
    return features, n_cached


def _attack_all(targets, features, config: AuditConfig):
    splits = seed_splits(config.n_shadows, config.n_train, config.n_splits, config.seed)
    folds = seed_folds(config.n_shadows, config.n_folds, config.seed)
    results = []
    for target in targets:
        names = [name for (pos, name) in features if pos == target.position]
        for name in names:
            slot = features[(target.position, name)]
            x_in, x_out = np.stack(slot[IN]), np.stack(slot[OUT])
            forest = ForestSettings(
                n_estimators=config.n_estimators,
                max_depth=config.max_depth,
                max_features=attack_max_features(name, config.max_features),
                n_jobs=config.workers,
            )
            seed = [config.seed, target.position, zlib.crc32(name.encode())]
            scores = run_attack(x_in, x_out, splits, folds, forest, seed)
            results.append(
                summarize_attack(
                    target, name, scores, config.confidence, config.delta, config.seed
                )
            )
    return results
