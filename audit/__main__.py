"""CLI: ``python -m audit --data table.csv --generator copula --out-dir runs/audit``.

Audits one of the built-in generators (``copy``, ``independent``, ``copula``) on a CSV
table and writes the report (``report.json``, ``results.csv``, ``roc.png``,
``summary.md``) and the shadow cache into ``--out-dir``. Rerunning the same command
resumes from the cache.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import pandas as pd

from audit.config import TABLE_FEATURE_SETS, AuditConfig
from audit.generators import GENERATORS, make_generator
from audit.run import run_audit
from audit.schema import TableSchema

# AuditConfig fields that map one to one onto a flag: (field, type, help).
_GAME_FLAGS = [
    ("n_shadows", int, "shadows per world (IN and OUT) and target"),
    ("world_size", int, "rows per world; default: n - 1 (leave-one-out)"),
    ("n_targets", int, "outlier targets to pick (without --targets)"),
]
_ATTACK_FLAGS = [
    ("knn_k", int, "nearest synthetic records in the knn features"),
    ("n_estimators", int, "trees in the random forest"),
    ("n_splits", int, "random train/test splits of the seeds"),
    ("train_fraction", float, "fraction of seeds the attack trains on per split"),
    ("n_folds", int, "cross-fit folds (pooled scores, ROC, epsilon)"),
]
_METRIC_FLAGS = [
    ("confidence", float, "Clopper-Pearson confidence"),
    ("delta", float, "delta of the audited (epsilon, delta) guarantee"),
    ("accountant_epsilon", float, "the accountant's epsilon, shown next to the bound"),
]
_RUN_FLAGS = [
    ("seed", int, "base seed"),
    ("workers", int, "processes for shadow training (and forest fitting)"),
]


def _add_config_flags(group, defaults: AuditConfig, flags) -> None:
    for name, kind, text in flags:
        flag = "--" + name.replace("_", "-")
        group.add_argument(flag, type=kind, default=getattr(defaults, name), help=text)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (one help string per flag)."""
    d = AuditConfig()
    p = argparse.ArgumentParser(
        prog="python -m audit",
        description="Membership-inference audit (ASSD) of a built-in generator on a CSV.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    io = p.add_argument_group("data and output")
    io.add_argument(
        "--data", required=True, type=Path, help="CSV file with a header row"
    )
    io.add_argument(
        "--index-column",
        default=None,
        help="column holding record ids (used by --targets); default: row numbers",
    )
    io.add_argument(
        "--max-rows", type=int, default=None, help="audit only the first N rows"
    )
    io.add_argument(
        "--categorical",
        default=None,
        help="comma-separated categorical columns; default: non-numeric columns",
    )
    io.add_argument(
        "--out-dir", required=True, type=Path, help="folder for the report and cache"
    )
    gen = p.add_argument_group("generator")
    gen.add_argument(
        "--generator", choices=GENERATORS, default="copula", help="generator to audit"
    )
    gen.add_argument(
        "--n-samples",
        type=int,
        default=None,
        help="rows per synthetic table; default: the world size",
    )
    game = p.add_argument_group("membership game")
    _add_config_flags(game, d, _GAME_FLAGS)
    game.add_argument(
        "--targets", default=None, help="comma-separated target ids (index labels)"
    )
    game.add_argument(
        "--target-positions", default=None, help="comma-separated target row positions"
    )
    game.add_argument(
        "--no-share-seeds",
        action="store_true",
        help="give IN and OUT shadow s different fit seeds",
    )
    att = p.add_argument_group("attack")
    att.add_argument(
        "--feature-sets",
        default=",".join(d.feature_sets),
        help=f"comma-separated, from {','.join(TABLE_FEATURE_SETS)}",
    )
    att.add_argument(
        "--max-depth", type=int, default=d.max_depth, help="tree depth (0 = unlimited)"
    )
    att.add_argument(
        "--max-features",
        type=_max_features,
        default=d.max_features,
        help="features per split: sqrt, log2, none, an int or a fraction",
    )
    _add_config_flags(att, d, _ATTACK_FLAGS)
    _add_config_flags(p.add_argument_group("metrics"), d, _METRIC_FLAGS)
    run = p.add_argument_group("run")
    _add_config_flags(run, d, _RUN_FLAGS)
    run.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p


def config_from_args(ns: argparse.Namespace, index: pd.Index) -> AuditConfig:
    """Convert parsed flags to an ``AuditConfig`` (ids parsed like ``index``)."""
    plain = _GAME_FLAGS + _ATTACK_FLAGS + _METRIC_FLAGS + _RUN_FLAGS
    return AuditConfig(
        **{name: getattr(ns, name) for name, _, _ in plain},
        targets=tuple(_label(v, index) for v in _split(ns.targets)),
        target_positions=tuple(int(v) for v in _split(ns.target_positions)),
        share_seeds=not ns.no_share_seeds,
        feature_sets=tuple(_split(ns.feature_sets)),
        categorical_columns=tuple(_split(ns.categorical)) if ns.categorical else None,
        max_depth=ns.max_depth or None,
        max_features=ns.max_features,
        progress=not ns.no_progress,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    ns = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if not ns.data.is_file():
        raise FileNotFoundError(f"--data {ns.data}: no such file")
    real = pd.read_csv(ns.data)
    if ns.index_column is not None:
        if ns.index_column not in real.columns:
            raise ValueError(
                f"--index-column {ns.index_column!r} is not a column of {ns.data}; "
                f"expected one of {list(real.columns)}"
            )
        real = real.set_index(ns.index_column)
    if ns.max_rows is not None:
        real = real.iloc[: ns.max_rows]
    config = config_from_args(ns, real.index)
    schema = TableSchema.fit(real, config.categorical_columns)
    generator = make_generator(ns.generator, real, schema.categorical, ns.n_samples)
    report = run_audit(real, generator, config, out_dir=ns.out_dir)
    sys.stdout.write(report.summary_markdown())
    sys.stdout.write(f"\nreport written to {ns.out_dir}\n")
    return 0


def _split(text: str | None) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()] if text else []


def _max_features(text: str):
    if text.lower() in ("sqrt", "log2"):
        return text.lower()
    if text.lower() == "none":
        return None
    try:
        return int(text)
    except ValueError:
        return float(text)


def _label(text: str, index: pd.Index):
    if pd.api.types.is_integer_dtype(index):
        try:
            return int(text)
        except ValueError:
            return text
    return text


if __name__ == "__main__":
    raise SystemExit(main())
