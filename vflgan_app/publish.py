"""Publishing: write the synthetic data and a report next to it.

Tables become ``synthetic.csv`` with the original column names and decoded categories;
images become ``synthetic.npz`` (uint8-range values, shape (N, H, W)) plus a PNG grid.
``report.json`` carries the metrics, the resolved config, the seed and the git commit.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trainkit import (
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    run_metadata,
)


def image_grid_png(
    images: np.ndarray, path: str | Path, nrow: int = 10, title: str | None = None
) -> Path:
    """Save images ``(N, H, W)`` (values in [0, 1]) as one PNG grid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(images)
    ncol = nrow
    rows = int(np.ceil(n / ncol))
    fig, axes = plt.subplots(
        rows, ncol, figsize=(ncol * 0.8, rows * 0.8 + (0.4 if title else 0))
    )
    for ax, i in zip(np.atleast_1d(axes).ravel(), range(rows * ncol)):
        ax.axis("off")
        if i < n:
            ax.imshow(images[i], cmap="gray", vmin=0, vmax=1)
    if title:
        fig.suptitle(title, fontsize=9)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def write_synthetic(
    out_dir: str | Path,
    table: pd.DataFrame,
    image_shape: tuple[int, int] | None = None,
    bounds: tuple[float, float] = (0.0, 1.0),
    preview_rows: int = 10,
) -> dict[str, str]:
    """Write the synthetic data; return ``{kind: relative file name}``.

    Args:
        out_dir: output folder (created).
        table: decoded synthetic table (pixel columns for images).
        image_shape: ``(H, W)`` for image data.
        bounds: pixel value range of the decoded table (for the PNG scale).
        preview_rows: rows printed into ``preview.md`` for tables.
    """
    if image_shape is not None and table.shape[1] != int(np.prod(image_shape)):
        raise ValueError(f"image_shape: got {tuple(image_shape)} for a table of "
                         f"{table.shape[1]} columns; expected H * W = {table.shape[1]}")
    numeric = table.select_dtypes(include="number")
    bad = [c for c in numeric.columns if not np.isfinite(numeric[c].to_numpy(float)).all()]
    if bad:
        raise ValueError(f"synthetic table: columns {bad[:10]} hold NaN or inf values; "
                         "expected finite values (nothing was written)")
    if table.isna().any().any():
        missing = [c for c in table.columns if table[c].isna().any()]
        raise ValueError(f"synthetic table: columns {missing[:10]} have missing cells; "
                         "expected every cell decoded (nothing was written)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {}
    if image_shape is not None:
        low, high = bounds
        images = table.to_numpy(np.float32).reshape(len(table), *image_shape)
        buf = io.BytesIO()
        np.savez_compressed(buf, images=images)
        atomic_write_bytes(out / "synthetic.npz", buf.getvalue())
        image_grid_png(
            (images[:100] - low) / (high - low),
            out / "samples.png",
            title="synthetic samples (pixel rows split between the parties, party 0 on top)",
        )
        files.update(data="synthetic.npz", grid="samples.png")
    else:
        atomic_write_bytes(out / "synthetic.csv", table.to_csv(index=False).encode())
        preview = (
            table.head(preview_rows).to_markdown(index=False)
            if _has_tabulate()
            else table.head(preview_rows).to_string(index=False)
        )
        atomic_write_bytes(out / "preview.md", (preview + "\n").encode())
        files.update(data="synthetic.csv", preview="preview.md")
    return files


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


def write_report(
    out_dir: str | Path,
    metrics: dict[str, Any],
    config: dict[str, Any],
    seed: int,
    files: dict[str, str],
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write the plots, ``report.json`` and ``summary.md``.

    The report holds the metrics, config, seed, git commit and file list, the plots
    (``plots``: files and notes, :func:`vflgan_app.eval.plots.write_plots`) and, where
    the package is importable and the run has no DP, SDMetrics' scores (``sdmetrics``);
    the summary is :func:`summary_markdown` of it. The evaluation's arrays come with
    ``metrics`` (an :class:`~vflgan_app.eval.evaluator.EvaluationReport`'s
    ``plot_inputs``); without them (no evaluation) only the synthetic side is drawn.
    """
    from vflgan_app.eval.plots import write_plots

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = {
        **run_metadata(config, seed),
        "metrics": metrics,
        "files": files,
        **(extra or {}),
    }
    dp = _dp_enabled(config, report.get("dp"))
    inputs = getattr(metrics, "plot_inputs", None)
    synthetic = _published_table(out, files)
    if synthetic is None and inputs is not None and not inputs.is_image:
        synthetic = inputs.decoded("synthetic")
    report["plots"] = write_plots(out, report, inputs, synthetic, dp)
    sdm = _sdmetrics(inputs, synthetic, dp, bool(config.get("progress")))
    if sdm is not None:
        report["sdmetrics"] = sdm
    path = atomic_write_json(out / "report.json", report)
    atomic_write_text(out / "summary.md", summary_markdown(json.loads(path.read_text())))
    return path


def _dp_enabled(config: dict[str, Any], dp: dict[str, Any] | None) -> bool:
    """The run trained under DP (its config's or its report's ``dp`` block says so)."""
    modes = [(config.get("dp") or {}).get("mode", "none"), (dp or {}).get("mode", "none")]
    return any(m not in (None, "none") for m in modes)


def _published_table(out: Path, files: dict[str, str]) -> pd.DataFrame | None:
    """The synthetic table as published (``synthetic.csv``); None for image data."""
    name = files.get("data", "")
    if not name.endswith(".csv") or not (out / name).is_file():
        return None
    return pd.read_csv(out / name)


def _sdmetrics(inputs, synthetic: pd.DataFrame | None, dp: bool,
               verbose: bool) -> dict[str, Any] | None:
    """SDMetrics' scores, ``{"skipped": reason}``, or None (no table to score).

    Skipped under DP and where the package is missing; None where no table was
    evaluated against real data.
    """
    from vflgan_app.eval import sdmetrics_report as sdm

    if dp:
        return {"skipped": sdm.UNDER_DP}
    if inputs is None or inputs.is_image or synthetic is None:
        return None
    if not sdm.sdmetrics_available():
        return {"skipped": sdm.NOT_INSTALLED}
    return sdm.sdmetrics_scores(inputs.decoded("real"), synthetic, inputs.categorical(),
                                verbose=verbose)


def party_column_order(schemas: Sequence) -> list[str]:
    """Original column names in published order (party 0's columns first)."""
    return [n for s in schemas for n in s.names]


#: Quality metrics that are another metric's real reference: ``{metric: reference}``.
REAL_REFERENCES = {"tstr_accuracy": "trtr_accuracy",
                   "inception_score": "inception_score_real_holdout"}


def headline_metrics(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Each headline metric of the report beside its control and its real reference.

    Returns:
        ``[{"name", "model", "control", "real"}]`` (``control`` / ``real`` None where
        there is none): the quality metrics first (a reference such as
        ``trtr_accuracy`` appears as the ``real`` of its metric, not on its own), then
        every dependence metric under its description.
    """
    metrics = report.get("metrics") or {}
    model, control = metrics.get("model") or {}, metrics.get("control") or {}
    reals = {"cross_party_corr_error":
             (metrics.get("real") or {}).get("cross_party_corr_error_holdout_vs_all")}
    reals.update({k: model.get(ref) for k, ref in REAL_REFERENCES.items()})
    refs = set(REAL_REFERENCES.values())
    rows = [{"name": k, "model": v, "control": _number(control.get(k)),
             "real": _number(reals.get(k))}
            for k, v in model.items() if _number(v) is not None and k not in refs]
    for k, v in ((metrics.get("dependence") or {}).get("metrics") or {}).items():
        rows.append({"name": v.get("description", k), "model": v.get("model"),
                     "control": _number(v.get("control")), "real": _number(v.get("real"))})
    return rows


def _number(v: Any) -> float | None:
    return v if isinstance(v, int | float) and not isinstance(v, bool) else None


def _fmt(v: float | None, digits: int = 4) -> str:
    return "-" if v is None else f"{v:.{digits}g}"


def summary_markdown(report: dict[str, Any]) -> str:
    """The report's headline numbers next to their controls, the verdicts, the plots.

    What a reader needs first: each metric of the model beside its independent-latent
    control (parties sampled from independent latents: cross-party dependence
    destroyed) and the real data's reference where there is one, then the dependence
    report's plain sentences, then the plots (linked PNGs, and why any is missing).
    Written as ``summary.md``; the CLI prints :func:`console_summary`.
    """
    metrics = report.get("metrics") or {}
    lines = [f"# {report.get('model', 'vflgan')} on {report.get('dataset', '?')}", ""]
    lines += _preamble(report)
    rows = headline_metrics(report)
    n_quality = len(rows) - len((metrics.get("dependence") or {}).get("metrics") or {})
    if rows[:n_quality]:
        lines += ["| metric | model | independent-latent control | real |",
                  "| --- | --- | --- | --- |"]
        lines += [f"| {r['name']} | {_fmt(r['model'])} | {_fmt(r['control'])} | "
                  f"{_fmt(r['real'])} |" for r in rows[:n_quality]]
        lines.append("")
    dep = metrics.get("dependence") or {}
    if dep.get("summary"):
        lines += ["## Cross-party dependence", "", str(dep["summary"]), ""]
        if rows[n_quality:]:
            lines += ["| metric | model | independent-latent control | real |",
                      "| --- | --- | --- | --- |"]
            lines += [f"| {r['name']} | {_fmt(r['model'], 3)} | {_fmt(r['control'], 3)} | "
                      f"{_fmt(r['real'], 3)} |" for r in rows[n_quality:]]
            lines.append("")
        for v in (dep.get("verdicts") or {}).values():
            if isinstance(v, dict) and v.get("sentence"):
                lines.append(f"* {v['sentence']}")
        lines.append("")
    if not rows and not dep:
        lines += ["No metrics (evaluation was off, or the data are custom tables).", ""]
    sdm = report.get("sdmetrics") or {}
    if "quality_score" in sdm:
        lines += ["## SDMetrics", "", f"QualityReport overall score {sdm['quality_score']:.3f}, "
                  f"DiagnosticReport {sdm.get('diagnostic_score', float('nan')):.3f} "
                  "(0 worst, 1 best)."]
        for key in ("quality", "diagnostic"):
            lines += [f"* {p}: {v:.3f}" for p, v in (sdm.get(f"{key}_properties") or {}).items()]
            lines += [f"* {p}: not scored by SDMetrics (it returned no number)"
                      for p in sdm.get(f"{key}_not_scored") or []]
        lines.append("")
    elif sdm.get("skipped"):
        lines += [f"SDMetrics: {sdm['skipped']}.", ""]
    plots = report.get("plots") or {}
    if plots.get("files") or plots.get("notes"):
        lines += ["## Plots", ""]
        lines += [f"![{f['title']}]({f['file']})" for f in plots.get("files", [])]
        lines += [""] if plots.get("files") else []
        lines += [f"* {note}" for note in plots.get("notes", [])]
        lines.append("")
    return "\n".join(lines)


def _preamble(report: dict[str, Any]) -> list[str]:
    lines = []
    if report.get("stopped_early"):
        lines += [f"Stopped early: {report['stopped_early']}", ""]
    dp = report.get("dp") or {}
    if dp.get("mode", "none") != "none":
        lines += [f"DP {dp.get('mode')}: epsilon {dp.get('epsilon', float('nan')):.3g} "
                  f"at delta {dp.get('delta')}, {dp.get('steps')} steps", ""]
    return lines


def console_summary(report: dict[str, Any]) -> str:
    """What the CLI prints after training: one line per headline metric, the verdicts.

    Each line reads ``<metric> <model> (control <c>, real <r>)``, e.g.
    ``cross-party correlation error, all cross pairs 0.395 (control 0.368, real
    0.088)``; then the dependence summary and its sentences, and where the plots are.
    """
    lines = [f"{report.get('model', 'vflgan')} on {report.get('dataset', '?')}"]
    lines += [line for line in _preamble(report) if line]
    for r in headline_metrics(report):
        ref = [f"control {_fmt(r['control'], 3)}"]
        ref += [f"real {_fmt(r['real'], 3)}"] if r["real"] is not None else []
        lines.append(f"  {r['name']} {_fmt(r['model'], 3)} ({', '.join(ref)})")
    dep = (report.get("metrics") or {}).get("dependence") or {}
    if dep.get("summary"):
        lines.append(str(dep["summary"]))
        lines += [f"  * {v['sentence']}" for v in (dep.get("verdicts") or {}).values()
                  if isinstance(v, dict) and v.get("sentence")]
    if not report.get("metrics"):
        lines.append("  no metrics (evaluation was off, or the data are custom tables)")
    plots = [f["file"] for f in (report.get("plots") or {}).get("files", [])]
    if plots:
        lines.append(f"plots (linked from summary.md): {', '.join(plots)}")
    return "\n".join(lines)
