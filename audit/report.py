"""The audit report: per-attack metrics, what the trial count can resolve, and files.

``AuditReport.save(out_dir)`` writes ``report.json`` (everything), ``results.csv``
(one row per target and feature set), ``roc.png`` and ``summary.md``.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from audit import metrics
from audit.attacks import AttackScores
from audit.game import Target
from trainkit import atomic_write_bytes, atomic_write_json, atomic_write_text

LOW_FPRS = (0.01, 0.1)


@dataclass
class AttackResult:
    """Metrics of one attack (one target, one feature set).

    ``accuracy_*`` and ``auc_*`` are over the random splits (the paper reports accuracy
    as mean +/- 2 std); ``auc``, ``tpr_at_fpr``, the epsilons and the ROC curve use the
    cross-fitted scores of all ``n_in`` + ``n_out`` shadows. ``epsilon`` is the sound
    bound (threshold chosen on half the trials, bounded on the other half);
    ``epsilon_all_thresholds`` is the optimistic max over all thresholds of all trials,
    for comparison with audits that report it.
    """

    target_label: object
    target_position: int
    feature_set: str
    n_in: int
    n_out: int
    accuracy_mean: float
    accuracy_std: float
    auc_mean: float
    auc_std: float
    auc: float
    auc_null_interval: tuple[float, float]
    tpr_at_fpr: dict[str, float]
    epsilon: metrics.EpsilonBound
    epsilon_all_thresholds: metrics.EpsilonBound
    roc_fpr: list[float] = field(repr=False)
    roc_tpr: list[float] = field(repr=False)

    def row(self) -> dict:
        """One flat CSV row (no ROC curve)."""
        out = {
            "target_label": self.target_label,
            "target_position": self.target_position,
            "feature_set": self.feature_set,
            "n_in": self.n_in,
            "n_out": self.n_out,
            "accuracy_mean": self.accuracy_mean,
            "accuracy_2std": 2 * self.accuracy_std,
            "auc_mean": self.auc_mean,
            "auc_2std": 2 * self.auc_std,
            "auc": self.auc,
            "auc_null_low": self.auc_null_interval[0],
            "auc_null_high": self.auc_null_interval[1],
        }
        out.update({f"tpr_at_fpr_{k}": v for k, v in self.tpr_at_fpr.items()})
        out.update(
            eps_lb=self.epsilon.epsilon,
            eps_lb_threshold=self.epsilon.threshold,
            eps_lb_direction=self.epsilon.direction,
            eps_lb_tpr=self.epsilon.tpr,
            eps_lb_fpr=self.epsilon.fpr,
            eps_all_thresholds=self.epsilon_all_thresholds.epsilon,
        )
        return out

    def to_dict(self) -> dict:
        """Return a JSON-ready dict (with the ROC curve)."""
        out = asdict(self)
        out["epsilon"] = self.epsilon.to_dict()
        out["epsilon_all_thresholds"] = self.epsilon_all_thresholds.to_dict()
        out["auc_null_interval"] = list(self.auc_null_interval)
        return out


def summarize_attack(
    target: Target,
    feature_set: str,
    scores: AttackScores,
    confidence: float,
    delta: float,
    seed: int = 0,
) -> AttackResult:
    """Compute every metric of one attack from its held-out scores.

    ``seed`` seeds the halving of the trials in :func:`metrics.empirical_epsilon`.
    """
    accs = [metrics.accuracy(s_in, s_out) for s_in, s_out in scores.splits]
    aucs = [metrics.auc(s_in, s_out) for s_in, s_out in scores.splits]
    s_in, s_out = scores.pooled_in, scores.pooled_out
    fpr, tpr = metrics.roc(s_in, s_out)
    label = target.to_dict()["label"]
    return AttackResult(
        target_label=label,
        target_position=target.position,
        feature_set=feature_set,
        n_in=len(s_in),
        n_out=len(s_out),
        accuracy_mean=metrics.mean_and_std(accs)[0],
        accuracy_std=metrics.mean_and_std(accs)[1],
        auc_mean=metrics.mean_and_std(aucs)[0],
        auc_std=metrics.mean_and_std(aucs)[1],
        auc=metrics.auc(s_in, s_out),
        auc_null_interval=metrics.auc_null_interval(len(s_in), len(s_out), confidence),
        tpr_at_fpr={f"{f:g}": metrics.tpr_at_fpr(s_in, s_out, f) for f in LOW_FPRS},
        epsilon=metrics.empirical_epsilon(s_in, s_out, confidence, delta, seed),
        epsilon_all_thresholds=metrics.epsilon_over_thresholds(
            s_in, s_out, confidence, delta
        ),
        roc_fpr=fpr.tolist(),
        roc_tpr=tpr.tolist(),
    )


def describe_resolution(
    n_in: int,
    n_out: int,
    confidence: float,
    delta: float,
    accountant_epsilon: float | None,
) -> dict:
    """What these trial counts can show, compared with the accountant's epsilon.

    Returns:
        A dict with ``max_resolvable_epsilon``, ``accountant_epsilon``, ``resolvable``
        (``None`` without an accountant epsilon), ``shadows_needed`` (per world, for a
        perfect attack to show the accountant's epsilon) and a plain ``message``.
    """
    best = metrics.max_resolvable_epsilon(n_in, n_out, confidence, delta)
    msg = (
        f"With {n_in} IN and {n_out} OUT trials per attack (half choose the test, half "
        f"bound it), no attack can show an empirical epsilon above {best:.2f} at "
        f"{confidence:.0%} confidence (delta={delta:g}), however leaky the generator."
    )
    resolvable = needed = None
    if accountant_epsilon is not None:
        resolvable = best > accountant_epsilon
        try:
            needed = metrics.min_trials_for_epsilon(
                accountant_epsilon, confidence, delta
            )
        except ValueError:
            needed = None
        if resolvable:
            msg += f" The accountant's epsilon {accountant_epsilon:g} is within that range."
        else:
            need = f"at least {needed:,}" if needed else "more than 2**40"
            msg += (
                f" The accountant's epsilon {accountant_epsilon:g} is above it: this "
                f"audit CANNOT resolve the accountant's epsilon; showing it would need "
                f"{need} shadows per world even with a perfect attack."
            )
    return {
        "n_in": n_in,
        "n_out": n_out,
        "confidence": confidence,
        "delta": delta,
        "max_resolvable_epsilon": best,
        "accountant_epsilon": accountant_epsilon,
        "resolvable": resolvable,
        "shadows_needed": needed,
        "message": msg,
    }


@dataclass
class AuditReport:
    """Everything one audit found.

    Attributes:
        config: the resolved ``AuditConfig`` as a dict.
        targets: the target records (``Target.to_dict()``).
        results: one ``AttackResult`` per target and feature set.
        resolution: ``describe_resolution(...)`` for the audit's trial counts.
        counts: trials, shadows fitted now and shadows read from the cache.
        timings: seconds per stage.
        meta: git commit and creation time.
    """

    config: dict
    targets: list[dict]
    results: list[AttackResult]
    resolution: dict
    counts: dict
    timings: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    def results_frame(self) -> pd.DataFrame:
        """One row per target and feature set (the CSV)."""
        return pd.DataFrame([r.row() for r in self.results])

    def best(self) -> AttackResult:
        """The attack with the largest empirical epsilon (then the largest AUC)."""
        return max(self.results, key=lambda r: (r.epsilon.epsilon, r.auc))

    def to_dict(self) -> dict:
        """Return the whole report as a JSON-ready dict."""
        return {
            "config": self.config,
            "targets": self.targets,
            "results": [r.to_dict() for r in self.results],
            "resolution": self.resolution,
            "counts": self.counts,
            "timings": self.timings,
            "meta": self.meta,
        }

    def summary_markdown(self) -> str:
        """A short markdown summary: the table, what the trials resolve, the best bound."""
        cols = ["target", "feature set", "accuracy (mean +/- 2 std)", "AUC", "AUC null"]
        cols += [f"TPR@{k} FPR" for k in (f"{f:.0%}" for f in LOW_FPRS)] + ["eps_lb"]
        lines = [
            "# Membership-inference audit",
            "",
            f"{len(self.targets)} target(s), {self.config['n_shadows']} IN + "
            f"{self.config['n_shadows']} OUT shadows each; random forest with "
            f"{self.config['n_estimators']} trees of depth {self.config['max_depth']}.",
            "",
            "| " + " | ".join(cols) + " |",
            "|" + "---|" * len(cols),
        ]
        for r in self.results:
            lo, hi = r.auc_null_interval
            cells = [
                str(r.target_label),
                r.feature_set,
                f"{r.accuracy_mean:.3f} +/- {2 * r.accuracy_std:.3f}",
                f"{r.auc:.3f}",
                f"[{lo:.2f}, {hi:.2f}]",
                *(f"{v:.3f}" for v in r.tpr_at_fpr.values()),
                f"{r.epsilon.epsilon:.3f}",
            ]
            lines.append("| " + " | ".join(cells) + " |")
        best = self.best()
        lines += [
            "",
            self.resolution["message"],
            "",
            f"Largest empirical epsilon: {best.epsilon.epsilon:.3f} (target "
            f"{best.target_label}, {best.feature_set}; TPR {best.epsilon.tpr:.2f} at FPR "
            f"{best.epsilon.fpr:.2f}). It is a {self.resolution['confidence']:.0%}-"
            "confidence lower bound on the epsilon of any DP guarantee the generator "
            "could have: 0 means no evidence of leakage at this scale, not proof of "
            "privacy. An AUC outside the null interval is evidence of leakage.",
            "",
        ]
        return "\n".join(lines)

    def save(self, out_dir: str | Path) -> dict[str, Path]:
        """Write report.json, results.csv, roc.png and summary.md (atomically).

        Returns:
            The written paths by kind.
        """
        out_dir = Path(out_dir)
        paths = {
            "json": out_dir / "report.json",
            "csv": out_dir / "results.csv",
            "roc": out_dir / "roc.png",
            "summary": out_dir / "summary.md",
        }
        atomic_write_json(paths["json"], self.to_dict())
        atomic_write_text(paths["csv"], self.results_frame().to_csv(index=False))
        atomic_write_bytes(paths["roc"], self.roc_png())
        atomic_write_text(paths["summary"], self.summary_markdown())
        return paths

    def roc_png(self) -> bytes:
        """ROC curves, one row of panels per target (linear and log-log axes)."""
        from matplotlib.figure import Figure  # no pyplot: no global backend change

        labels = list(dict.fromkeys(r.target_label for r in self.results))
        fig = Figure(figsize=(10, 4.5 * len(labels)))
        axes = fig.subplots(len(labels), 2, squeeze=False)
        floor = 0.5 / max(r.n_out for r in self.results)
        for row, label in zip(axes, labels):
            for r in (r for r in self.results if r.target_label == label):
                name = (
                    f"{r.feature_set} (AUC {r.auc:.2f}, eps_lb {r.epsilon.epsilon:.2f})"
                )
                row[0].plot(r.roc_fpr, r.roc_tpr, label=name)
                row[1].plot(
                    np.maximum(r.roc_fpr, floor),
                    np.maximum(r.roc_tpr, floor),
                    label=name,
                )
            for ax, scale, low in zip(row, ("linear", "log"), (0.0, floor)):
                ax.plot([low, 1], [low, 1], "k:", lw=1)
                ax.set(xscale=scale, yscale=scale, xlabel="FPR", ylabel="TPR")
                ax.set_title(f"target {label} ({scale} axes)")
            row[0].legend(fontsize=7, loc="lower right")
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100)
        return buf.getvalue()
