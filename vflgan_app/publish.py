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
    """Write ``report.json`` and ``summary.md``.

    The report holds the metrics, config, seed, git commit and file list; the summary
    is :func:`summary_markdown` of it.
    """
    report = {
        **run_metadata(config, seed),
        "metrics": metrics,
        "files": files,
        **(extra or {}),
    }
    path = atomic_write_json(Path(out_dir) / "report.json", report)
    atomic_write_text(Path(out_dir) / "summary.md", summary_markdown(
        json.loads(path.read_text())))
    return path


def party_column_order(schemas: Sequence) -> list[str]:
    """Original column names in published order (party 0's columns first)."""
    return [n for s in schemas for n in s.names]


def summary_markdown(report: dict[str, Any]) -> str:
    """The report's headline numbers next to their controls, and the verdict sentences.

    What a reader needs first: each metric of the model beside its independent-latent
    control (parties sampled from independent latents: cross-party dependence
    destroyed) and the real data's reference where there is one, then the dependence
    report's plain sentences. Written as ``summary.md`` and printed by the CLI.
    """
    metrics = report.get("metrics") or {}
    model, control = metrics.get("model", {}), metrics.get("control", {})
    lines = [f"# {report.get('model', 'vflgan')} on {report.get('dataset', '?')}", ""]
    if report.get("stopped_early"):
        lines += [f"Stopped early: {report['stopped_early']}", ""]
    if report.get("dp"):
        dp = report["dp"]
        if dp.get("mode", "none") != "none":
            lines += [f"DP {dp.get('mode')}: epsilon {dp.get('epsilon', float('nan')):.3g} "
                      f"at delta {dp.get('delta')}, {dp.get('steps')} steps", ""]
    keys = [k for k, v in model.items() if isinstance(v, int | float) and not
            isinstance(v, bool)]
    if keys:
        lines += ["| metric | model | independent-latent control |", "| --- | --- | --- |"]
        for k in keys:
            c = control.get(k)
            c_txt = f"{c:.4g}" if isinstance(c, int | float) else "-"
            lines.append(f"| {k} | {model[k]:.4g} | {c_txt} |")
        lines.append("")
    dep = metrics.get("dependence") or {}
    if dep.get("summary"):
        lines += ["## Cross-party dependence", "", str(dep["summary"]), ""]
        for v in (dep.get("verdicts") or {}).values():
            if isinstance(v, dict) and v.get("sentence"):
                lines.append(f"* {v['sentence']}")
        lines.append("")
    if not keys and not dep:
        lines += ["No metrics (evaluation was off, or the data are custom tables).", ""]
    return "\n".join(lines)
