"""The cross-party dependence report: every metric for real, model and control.

Reference models are fitted on ``real_train``; each metric is then evaluated on three
tables: ``real_holdout`` ("real", the value a perfect generator would reach up to
sampling noise), ``synthetic`` ("model") and ``synthetic_control`` ("control": the same
generator sampled with an independent latent per party, i.e. ``sample(n,
independent_latents=True)``), and ``verdicts.judge_metrics`` says whether the model
beats its control.

Metrics (keys of ``report["metrics"]``, in this order):
    agreement, agreement_all: only with labels; ``party_agreement`` pairwise rate and
        (only for K > 2 parties) all-parties rate.
    utility_trts, utility_tstr: only with targets; mean score over (source party,
        target) pairs of ``cross_party_utility``, each score clipped below at 0 (a
        negative R^2 predicts nothing; ``details["utility"]`` keeps the raw values);
        "real" is TRTR for both.
    corr_error_focused, corr_error_all: ``cross_party_correlation_error`` against
        real_train (focused = the top-decile |corr| real pairs; all = every cross pair).
    shuffle_auc: ``shuffle_two_sample_auc`` of each table on its own.
    shuffle_auc_real_critic: a critic fitted on real_train's joint vs shuffled rows,
        scored on each table's joint vs shuffled rows (does the table carry the *real*
        kind of dependence?).
    mutual_information: ``column_mutual_information`` on real_train's highest-variance
        columns.

The report is a JSON-serialisable dict::

    {
      "n_parties": K, "seed": seed, "max_rows": max_rows,
      "n_rows": {"real_train": ..., "real_holdout": ..., "synthetic": ...,
                 "synthetic_control": ...},          # after subsampling
      "metrics": {name: {"real": float, "model": float, "control": float,
                         "direction": "closer" | "lower", "description": str}},
      "verdicts": {name: {"beats_control": bool, "informative": bool,
                          "margin": float, "sentence": str}},
      "summary": str,                                  # one paragraph
      "details": {"agreement": {"real"|"model"|"control": party_agreement(),
                                "party_accuracy": [float] * K},
                  "utility": cross_party_utility() rows,
                  "correlation": {"n_pairs": int, "n_focused": int}},
    }
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from vflgan_app.eval.dependence.agreement import (
    fit_party_classifiers,
    party_agreement,
)
from vflgan_app.eval.dependence.correlation import cross_party_correlation_error
from vflgan_app.eval.dependence.inputs import (
    Target,
    subsample_rows,
    validate_labels,
    validate_party_slices,
    validate_table,
    validate_targets,
)
from vflgan_app.eval.dependence.mutual_information import (
    column_mutual_information,
    select_mi_columns,
)
from vflgan_app.eval.dependence.shuffle import (
    fit_shuffle_critic,
    shuffle_critic_auc,
    shuffle_two_sample_auc,
)
from vflgan_app.eval.dependence.utility import cross_party_utility
from vflgan_app.eval.dependence.verdicts import (
    VERDICT_MARGINS,
    judge_metrics,
    summarize_verdicts,
)

MAX_ROWS = 2000  # rows drawn (without replacement) from each input by dependence_report

Metrics = dict[str, dict[str, float]]  # metric name -> {"real"|"model"|"control": v}


@dataclass(frozen=True)
class _Tables:
    """The validated (then subsampled) inputs of one report."""

    real_train: np.ndarray  # (N, D), fits every reference model
    real_holdout: np.ndarray  # (M, D), the "real" column of the report
    synthetic: np.ndarray  # (S, D), "model"
    synthetic_control: np.ndarray  # (S', D), "control"
    slices: list[slice]
    labels_train: np.ndarray | None = None  # (N,)
    labels_holdout: np.ndarray | None = None  # (M,)

    @property
    def scored(self) -> dict[str, np.ndarray]:
        """The three tables each metric is evaluated on, in report order."""
        return {
            "real": self.real_holdout,
            "model": self.synthetic,
            "control": self.synthetic_control,
        }

    def row_counts(self) -> dict[str, int]:
        """Rows of each input table, keyed by its argument name."""
        return {
            "real_train": len(self.real_train),
            "real_holdout": len(self.real_holdout),
            "synthetic": len(self.synthetic),
            "synthetic_control": len(self.synthetic_control),
        }


def dependence_report(
    real_train: np.ndarray,
    real_holdout: np.ndarray,
    synthetic: np.ndarray,
    synthetic_control: np.ndarray,
    party_slices: Sequence[slice],
    labels_train: np.ndarray | None = None,
    labels_holdout: np.ndarray | None = None,
    targets: Sequence[Target] | None = None,
    seed: int = 0,
    max_rows: int = MAX_ROWS,
    margins: Mapping[str, float] | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Every cross-party dependence metric for real, model and independent control.

    Each input is first subsampled to ``max_rows`` rows (seeded, without replacement);
    pass tables of equal size so the two-sample AUCs have equal power. The module
    docstring lists the metrics and the layout of the result.

    Args:
        real_train: Real encoded rows used to fit reference models, shape (N, D).
        real_holdout: Real encoded rows not used for fitting, shape (M, D).
        synthetic: The model's samples, shape (S, D).
        synthetic_control: The model's independent-latent samples, shape (S', D).
        party_slices: Each party's contiguous columns, party 0 first, K >= 2.
        labels_train: Optional shared label of ``real_train`` rows, shape (N,).
        labels_holdout: Label of ``real_holdout`` rows, shape (M,); required with
            ``labels_train``.
        targets: Optional cross-party utility targets.
        seed: Seed for subsampling, shuffles and all fitted models.
        max_rows: Row cap per input table.
        margins: Fixed verdict margins per metric, replacing the default
            ``max(VERDICT_MARGINS[name], NOISE_SCALES[name] / sqrt(n))`` where n is the
            smallest evaluated table's row count.
        on_stage: Called with each metric family's name (``"agreement"``,
            ``"utility"``, ``"correlation"``, ``"shuffle"``, ``"mutual information"``)
            as it starts, e.g. to move a progress bar.

    Returns:
        A JSON-serialisable dict: ``n_parties``, ``seed``, ``max_rows``, ``n_rows``,
        ``metrics``, ``verdicts``, ``summary`` and ``details`` (see module docstring).

    Raises:
        TypeError: If a table is not a numpy array.
        ValueError: On empty tables, NaN/inf, column counts that differ from
            real_train's, bad ``party_slices``, labels of the wrong length or given for
            only one real table, targets outside their party, or ``max_rows`` < 4.
    """
    # 1. validate everything at the boundary
    tables = _validate_inputs(
        real_train, real_holdout, synthetic, synthetic_control, party_slices,
        labels_train, labels_holdout, targets, max_rows, margins,
    )  # fmt: skip
    # 2. subsample each table
    tables = _subsample_tables(tables, max_rows, np.random.default_rng(seed))
    # 3. every metric family, fitted on real_train, on real / model / control
    metrics, details = _compute_metrics(tables, targets, seed, on_stage or _no_stage)
    # 4. verdicts
    n_rows = min(len(x) for x in tables.scored.values())
    report_metrics, verdicts = judge_metrics(metrics, dict(margins or {}), n_rows)
    return {
        "n_parties": len(tables.slices),
        "seed": seed,
        "max_rows": max_rows,
        "n_rows": tables.row_counts(),
        "metrics": report_metrics,
        "verdicts": verdicts,
        "summary": summarize_verdicts(verdicts),
        "details": details,
    }


def _no_stage(name: str) -> None:
    """The default ``on_stage``: nothing."""


def _compute_metrics(
    tables: _Tables,
    targets: Sequence[Target] | None,
    seed: int,
    on_stage: Callable[[str], None] = _no_stage,
) -> tuple[Metrics, dict[str, Any]]:
    """Run each metric family in report order; return the metrics and the details."""
    metrics: Metrics = {}
    details: dict[str, Any] = {}
    # a. per-party classifier agreement
    if tables.labels_train is not None:
        on_stage("agreement")
        agreement, details["agreement"] = _agreement_metrics(tables, seed)
        metrics.update(agreement)
    # b. cross-party predictive utility
    if targets:
        on_stage("utility")
        utility, details["utility"] = _utility_metrics(tables, targets, seed)
        metrics.update(utility)
    # c. correlation errors against real_train
    on_stage("correlation")
    correlation, details["correlation"] = _correlation_metrics(tables)
    metrics.update(correlation)
    # d. party-shuffle two-sample tests
    on_stage("shuffle")
    metrics.update(_shuffle_metrics(tables, seed))
    # e. mutual information between cross-party column pairs
    on_stage("mutual information")
    metrics.update(_mutual_information_metrics(tables, seed))
    return metrics, details


def _validate_inputs(
    real_train: Any,
    real_holdout: Any,
    synthetic: Any,
    synthetic_control: Any,
    party_slices: Sequence[slice],
    labels_train: Any,
    labels_holdout: Any,
    targets: Sequence[Target] | None,
    max_rows: Any,
    margins: Mapping[str, float] | None,
) -> _Tables:
    """Check every argument of ``dependence_report``; return the tables as float64."""
    real_train = validate_table("real_train", real_train)
    d = real_train.shape[1]
    real_holdout = validate_table("real_holdout", real_holdout, d)
    synthetic = validate_table("synthetic", synthetic, d)
    synthetic_control = validate_table("synthetic_control", synthetic_control, d)
    slices = validate_party_slices(party_slices, d)
    if not isinstance(max_rows, int) or max_rows < 4:
        raise ValueError(f"max_rows={max_rows!r}, expected an integer >= 4")
    if (labels_train is None) != (labels_holdout is None):
        raise ValueError(
            "labels_train and labels_holdout must be given together; got "
            f"labels_train={'set' if labels_train is not None else None}, "
            f"labels_holdout={'set' if labels_holdout is not None else None}"
        )
    if labels_train is not None:
        labels_train = validate_labels("labels_train", labels_train, len(real_train))
        labels_holdout = validate_labels(
            "labels_holdout", labels_holdout, len(real_holdout)
        )
    validate_targets(targets or (), slices)
    unknown = sorted(set(margins or {}) - set(VERDICT_MARGINS))
    if unknown:
        raise ValueError(
            f"margins has unknown metric(s) {unknown}, expected a subset "
            f"of {sorted(VERDICT_MARGINS)}"
        )
    return _Tables(
        real_train, real_holdout, synthetic, synthetic_control, slices,
        labels_train, labels_holdout,
    )  # fmt: skip


def _subsample_tables(
    tables: _Tables, max_rows: int, rng: np.random.Generator
) -> _Tables:
    """Cap every table at ``max_rows`` rows; the draws are made in argument order."""
    real_train, labels_train = subsample_rows(
        tables.real_train, tables.labels_train, max_rows, rng
    )
    real_holdout, labels_holdout = subsample_rows(
        tables.real_holdout, tables.labels_holdout, max_rows, rng
    )
    synthetic, _ = subsample_rows(tables.synthetic, None, max_rows, rng)
    synthetic_control, _ = subsample_rows(tables.synthetic_control, None, max_rows, rng)
    return _Tables(
        real_train, real_holdout, synthetic, synthetic_control, tables.slices,
        labels_train, labels_holdout,
    )  # fmt: skip


def _agreement_metrics(tables: _Tables, seed: int) -> tuple[Metrics, dict[str, Any]]:
    """Per-party classifiers fitted on real_train, scored on each table."""
    slices = tables.slices
    classifiers = fit_party_classifiers(
        tables.real_train, tables.labels_train, slices, seed
    )
    agree = {
        k: party_agreement(classifiers, x, slices) for k, x in tables.scored.items()
    }
    metrics = {"agreement": {k: v["pairwise"] for k, v in agree.items()}}
    if len(slices) > 2:  # with two parties it equals the pairwise rate
        metrics["agreement_all"] = {k: v["all_agree"] for k, v in agree.items()}
    details = {
        **agree,
        "party_accuracy": [
            float(c.score(tables.real_holdout[:, s], tables.labels_holdout))
            for c, s in zip(classifiers, slices)
        ],
    }
    return metrics, details


def _utility_metrics(
    tables: _Tables, targets: Sequence[Target], seed: int
) -> tuple[Metrics, list[dict[str, Any]]]:
    """Mean TRTS/TSTR utility over (source party, target) pairs, and the raw rows."""
    rows = cross_party_utility(
        tables.real_train,
        tables.real_holdout,
        {"model": tables.synthetic, "control": tables.synthetic_control},
        tables.slices,
        targets,
        seed,
    )
    # Negative R^2 (worse than predicting the mean) counts as no utility (0) in the
    # means; the per-pair rows keep the raw value.
    metrics = {}
    for mode in ("trts", "tstr"):
        metrics[f"utility_{mode}"] = {
            "real": float(np.mean([max(r["trtr"], 0.0) for r in rows])),
            **{
                k: float(np.mean([max(r["synthetic"][k][mode], 0.0) for r in rows]))
                for k in ("model", "control")
            },
        }
    return metrics, rows


def _correlation_metrics(tables: _Tables) -> tuple[Metrics, dict[str, int]]:
    """Focused and all-pairs cross-party correlation errors against real_train."""
    corr = {
        k: cross_party_correlation_error(tables.real_train, x, tables.slices)
        for k, x in tables.scored.items()
    }
    metrics = {
        "corr_error_focused": {k: v["focused"] for k, v in corr.items()},
        "corr_error_all": {k: v["all"] for k, v in corr.items()},
    }
    details = {
        "n_pairs": corr["real"]["n_pairs"],
        "n_focused": corr["real"]["n_focused"],
    }
    return metrics, details


def _shuffle_metrics(tables: _Tables, seed: int) -> Metrics:
    """Own-critic and real-trained-critic party-shuffle AUCs of each table."""
    slices = tables.slices
    own = {k: shuffle_two_sample_auc(x, slices, seed) for k, x in tables.scored.items()}
    critic = fit_shuffle_critic(tables.real_train, slices, seed)
    real_critic = {
        k: shuffle_critic_auc(critic, x, slices, seed + 1)
        for k, x in tables.scored.items()
    }
    return {"shuffle_auc": own, "shuffle_auc_real_critic": real_critic}


def _mutual_information_metrics(tables: _Tables, seed: int) -> Metrics:
    """Max cross-party column MI on real_train's highest-variance columns."""
    mi_columns = select_mi_columns(tables.real_train, tables.slices)
    return {
        "mutual_information": {
            k: column_mutual_information(mi_columns, x, seed)
            for k, x in tables.scored.items()
        }
    }


def format_dependence_table(report: Mapping[str, Any]) -> str:
    """Render a ``dependence_report`` as a markdown table plus its verdict sentences.

    Args:
        report: The dict returned by ``dependence_report`` (or loaded from JSON).

    Returns:
        Markdown: one row per metric (real, model, control, better direction, verdict),
        followed by the summary and one bullet per verdict sentence.
    """
    lines = [
        "| metric | better | real | model | control | model beats control? |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for name, m in report["metrics"].items():
        v = report["verdicts"][name]
        better = "closer to real" if m["direction"] == "closer" else "lower"
        verdict = (
            "yes"
            if v["beats_control"]
            else ("no" if v["informative"] else "n/a (control ~ real)")
        )
        lines.append(
            f"| {m['description']} | {better} | {m['real']:.3f} | {m['model']:.3f} "
            f"| {m['control']:.3f} | {verdict} |"
        )
    lines += ["", report["summary"], ""]
    lines += [f"- {v['sentence']}" for v in report["verdicts"].values()]
    return "\n".join(lines) + "\n"
