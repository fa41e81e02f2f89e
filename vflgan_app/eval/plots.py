"""Plots published next to ``summary.md``: loss curves, marginals, cross-party correlations.

Three kinds of PNG, written atomically by :func:`write_plots`:

* ``plot_losses.png``: the critic loss of every step and the generator loss of every
  generator step, from the report's loss history. Under DP the history is not
  published (``run.HISTORY_OMITTED``), so neither is its plot.
* ``plot_marginals_<k>.png``: each published column, real against synthetic
  (histograms for numeric columns, category shares for categorical ones), at most
  :data:`MAX_COLUMNS_PER_FIGURE` columns a figure.
* ``plot_correlations.png``: the Pearson correlation of every cross-party pair of
  encoded columns for real, model and the independent-latent control (the model's own
  samples with an independent latent per party), side by side; the within-party blocks
  are blank.

Under DP no plot shows real data. The real rows' metrics are not covered by the
accountant (docs/privacy.md, "What each mode covers"); the report still carries them,
with a warning, but a picture of the real marginals or correlations would publish the
private table itself. So DP runs publish only the synthetic side (synthetic marginals
with bins taken from the synthetic rows, model and control correlations), and
``summary.md`` says so. matplotlib is imported lazily, through its Agg canvas (no
global backend switch).
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trainkit import atomic_write_bytes
from vflgan_app.data.partition import decode_parts
from vflgan_app.data.schema import TableSchema

MAX_COLUMNS_PER_FIGURE = 12  # marginal panels per PNG (a 4 x 3 grid)
MAX_CATEGORIES = 20  # bars per categorical panel (the most frequent; the rest summed)
MAX_ROWS = 10_000  # rows per table used for a plot
MAX_TICK_LABELS = 40  # encoded columns named on the heatmap axes (more: unlabelled)
BINS = 30
DPI = 80

#: The note written in place of real-data plots under DP.
DP_NOTE = ("Under DP no plot shows real data: the real marginals and correlations are "
           "not covered by the accountant (docs/privacy.md), so only the synthetic side "
           "is drawn (synthetic marginals, model and control correlations).")


@dataclass(frozen=True)
class PlotInputs:
    """What the evaluation hands the publication step for its plots.

    Attributes:
        real: every real row, encoded, ``(N, D)``.
        synthetic: the model's samples, encoded, ``(S, D)``.
        control: the model's samples with an independent latent per party, ``(S, D)``.
        schemas: each party's column schema, party order.
        party_slices: each party's contiguous encoded columns.
        is_image: pixel columns (no per-column marginals).
    """

    real: np.ndarray
    synthetic: np.ndarray
    control: np.ndarray
    schemas: tuple[TableSchema, ...]
    party_slices: tuple[slice, ...]
    is_image: bool = False

    def decoded(self, which: str) -> pd.DataFrame:
        """``real`` or ``synthetic`` decoded to the original columns."""
        x = getattr(self, which)[:MAX_ROWS]
        return decode_parts(self.schemas, [x[:, s] for s in self.party_slices])

    def categorical(self) -> set[str]:
        """Names of the categorical columns."""
        return {c.name for s in self.schemas for c in s.columns if c.kind == "categorical"}

    def encoded_names(self) -> list[str]:
        """One name per encoded column: ``col`` or ``col=category`` (one-hot)."""
        names = []
        for s in self.schemas:
            for c in s.columns:
                if c.kind == "categorical":
                    names += [f"{c.name}={v}" for v in c.categories]
                else:
                    names.append(c.name)
        return names


def write_plots(
    out_dir: str | Path,
    report: Mapping[str, Any],
    inputs: PlotInputs | None = None,
    synthetic: pd.DataFrame | None = None,
    dp: bool = False,
) -> dict[str, Any]:
    """Draw every plot this run can publish into ``out_dir``; say why any is missing.

    Args:
        out_dir: the run folder (next to ``summary.md``).
        report: the report (its ``history`` or ``history_omitted``).
        inputs: the evaluation's arrays; None when the run was not evaluated.
        synthetic: the published synthetic table (decoded); None for image data.
        dp: the run is differentially private: no plot shows real data.

    Returns:
        ``{"files": [{"file", "title", "shows"}], "notes": [str], "real_data_shown":
        bool}``; ``shows`` lists the tables a plot draws (``losses``, ``real``,
        ``synthetic``, ``control``).
    """
    out = Path(out_dir)
    show_real = not dp  # the one place the DP rule is decided
    files: list[dict[str, Any]] = []
    notes: list[str] = [DP_NOTE] if dp else []
    # a. loss curves
    history = report.get("history")
    if history and history.get("d_loss"):
        _save(draw_losses(history), out / "plot_losses.png")
        files.append({"file": "plot_losses.png", "title": "loss curves", "shows": ["losses"]})
    elif report.get("history_omitted"):
        notes.append(f"Loss curves: not drawn; the loss history is {report['history_omitted']}.")
    else:
        notes.append("Loss curves: not drawn; this run keeps no loss history (baselines and "
                     "re-sampled runs record none).")
    # b. per-column marginals
    is_image = (inputs is not None and inputs.is_image) or synthetic is None
    if is_image:
        notes.append("Marginals: not drawn for image data (see samples.png).")
    else:
        real = inputs.decoded("real") if inputs is not None and show_real else None
        categorical = inputs.categorical() if inputs is not None else _guess_categorical(
            synthetic)
        columns = list(synthetic.columns)
        groups = [columns[i:i + MAX_COLUMNS_PER_FIGURE]
                  for i in range(0, len(columns), MAX_COLUMNS_PER_FIGURE)]
        for k, group in enumerate(groups, start=1):
            name = f"plot_marginals_{k}.png"
            fig = draw_marginals(synthetic[group].head(MAX_ROWS),
                                 None if real is None else real[group], categorical)
            _save(fig, out / name)
            files.append({"file": name, "title": f"marginals {k}/{len(groups)}",
                          "shows": ["synthetic"] if real is None else ["real", "synthetic"]})
        if inputs is None:
            notes.append("Marginals: synthetic only (the run was not evaluated against "
                         "real data).")
    # c. cross-party correlations
    if inputs is None:
        notes.append("Cross-party correlations: not drawn (the run was not evaluated; the "
                     "evaluation samples the independent-latent control).")
    else:
        panels = {"real": inputs.real} if show_real else {}
        panels.update(model=inputs.synthetic, control=inputs.control)
        matrices = {k: cross_party_correlation_matrix(x, inputs.party_slices)
                    for k, x in panels.items()}
        names = inputs.encoded_names()
        fig = draw_correlations(matrices, inputs.party_slices,
                                names if len(names) <= MAX_TICK_LABELS else None)
        _save(fig, out / "plot_correlations.png")
        files.append({"file": "plot_correlations.png", "title": "cross-party correlations",
                      "shows": list(panels)})
    return {"files": files, "notes": notes,
            "real_data_shown": any("real" in f["shows"] for f in files)}


# ---------------------------------------------------------------------------------
# figures (pure: data in, matplotlib Figure out)


def draw_losses(history: Mapping[str, Any]):
    """Critic loss per step and generator loss per generator step.

    Args:
        history: ``{"d_loss": [float] * steps, "g_loss": {step (str or int): float}}``.
    """
    fig = _figure(figsize=(7, 3.5))
    ax = fig.add_subplot()
    d = np.asarray(history["d_loss"], dtype=float)
    ax.plot(np.arange(len(d)), d, lw=0.8, label="critic (D) loss")
    g = history.get("g_loss") or {}
    if g:
        steps = sorted(g, key=int)
        ax.plot([int(t) for t in steps], [float(g[t]) for t in steps], lw=0.8,
                label="generator (G) loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title("training losses", fontsize=10)
    ax.legend(fontsize=8)
    return fig


def draw_marginals(synthetic: pd.DataFrame, real: pd.DataFrame | None,
                   categorical: set[str]):
    """One panel per column: histograms (numeric) or category shares (categorical).

    Bins and categories come from both tables, or from the synthetic one alone when
    ``real`` is None (under DP nothing about the real table shapes the picture).
    """
    cols = list(synthetic.columns)
    ncol = min(3, len(cols))
    nrow = math.ceil(len(cols) / ncol)
    fig = _figure(figsize=(4 * ncol, 2.8 * nrow))
    for i, name in enumerate(cols, start=1):
        ax = fig.add_subplot(nrow, ncol, i)
        s = synthetic[name]
        r = None if real is None else real[name]
        # few ticks: matplotlib spends most of a figure's drawing time on tick objects
        if name in categorical or not pd.api.types.is_numeric_dtype(s):
            _bars(ax, s, r)
            ax.locator_params(axis="y", nbins=3)
        else:
            _histogram(ax, s, r)
            ax.locator_params(axis="x", nbins=4)
            ax.set_yticks([])  # densities: the shapes matter, not the numbers
        ax.set_title(str(name), fontsize=9)
        ax.tick_params(labelsize=7)
        if i == 1:
            ax.legend(fontsize=7)
    fig.suptitle("real vs synthetic marginals" if real is not None
                 else "synthetic marginals (real data not shown)", fontsize=10)
    # fixed margins: tight_layout and bbox_inches="tight" each cost a full extra draw
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.1 / nrow, top=1 - 0.25 / nrow,
                        hspace=0.75, wspace=0.25)
    return fig


def _histogram(ax, s: pd.Series, r: pd.Series | None) -> None:
    values = [("synthetic", s.to_numpy(float))]
    if r is not None:
        values.insert(0, ("real", r.to_numpy(float)))
    both = np.concatenate([v for _, v in values])
    both = both[np.isfinite(both)]
    low, high = (float(both.min()), float(both.max())) if len(both) else (0.0, 1.0)
    bins = np.linspace(low, high if high > low else low + 1.0, BINS + 1)
    for label, v in values:
        ax.hist(v[np.isfinite(v)], bins=bins, density=True, histtype="stepfilled" if
                label == "real" else "step", alpha=0.35 if label == "real" else 1.0,
                label=label, lw=1.2)


def _bars(ax, s: pd.Series, r: pd.Series | None) -> None:
    shares = {"synthetic": s.astype(str).value_counts(normalize=True)}
    if r is not None:
        shares = {"real": r.astype(str).value_counts(normalize=True), **shares}
    order = pd.concat(shares.values(), axis=1).fillna(0).sum(axis=1)
    cats = list(order.sort_values(ascending=False).index[:MAX_CATEGORIES])
    x = np.arange(len(cats))
    width = 0.8 / len(shares)
    for j, (label, v) in enumerate(shares.items()):
        ax.bar(x + (j - (len(shares) - 1) / 2) * width, v.reindex(cats).fillna(0).to_numpy(),
               width, label=label, alpha=0.8)
    ax.set_xticks(x, [c[:12] for c in cats], rotation=45, ha="right")
    ax.set_ylabel("share", fontsize=7)


def cross_party_correlation_matrix(x: np.ndarray, party_slices: Sequence[slice]) -> np.ndarray:
    """Pearson correlations ``(D, D)`` of the encoded columns, within-party blocks NaN.

    A constant column counts as uncorrelated (0.0), as in
    ``dependence.cross_party_correlations``.
    """
    x = np.asarray(x[:MAX_ROWS], dtype=np.float64)
    xc = x - x.mean(axis=0)
    std = np.sqrt((xc**2).mean(axis=0))  # (D,)
    with np.errstate(divide="ignore", invalid="ignore"):
        c = (xc.T @ xc / len(x)) / np.outer(std, std)
    c[~np.isfinite(c)] = 0.0
    for s in party_slices:
        c[s, s] = np.nan
    return c


def draw_correlations(matrices: Mapping[str, np.ndarray], party_slices: Sequence[slice],
                      names: Sequence[str] | None = None):
    """Heatmaps side by side (one per table), party boundaries drawn, shared colour scale."""
    import matplotlib

    cmap = matplotlib.colormaps["RdBu_r"].with_extremes(bad="0.9")
    n = len(matrices)
    fig = _figure(figsize=(4.6 * n + 0.8, 4.6))
    axes = [fig.add_subplot(1, n, i + 1) for i in range(n)]
    titles = {"real": "real", "model": "synthetic (model)",
              "control": "independent-latent control"}
    im = None
    for i, (ax, (key, m)) in enumerate(zip(axes, matrices.items())):
        im = ax.imshow(m, cmap=cmap, vmin=-1, vmax=1, interpolation="nearest")
        for s in party_slices[1:]:
            ax.axhline(s.start - 0.5, color="k", lw=0.6)
            ax.axvline(s.start - 0.5, color="k", lw=0.6)
        ax.set_title(titles.get(key, key), fontsize=10)
        if names is not None:  # the rows are named once, on the first panel
            ax.set_xticks(range(len(names)), names, rotation=90, fontsize=5)
            ax.set_yticks(range(len(names)), names if i == 0 else [], fontsize=5)
        else:
            ax.set_xlabel("encoded column")
    fig.colorbar(im, ax=axes, shrink=0.8, label="Pearson correlation")
    fig.suptitle("cross-party correlations (within-party blocks blank)", fontsize=10)
    return fig


# ---------------------------------------------------------------------------------


def _figure(figsize: tuple[float, float]):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)  # the Agg canvas; pyplot's global backend is left alone
    return fig


def _save(fig, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return atomic_write_bytes(path, buf.getvalue())


def _guess_categorical(table: pd.DataFrame) -> set[str]:
    """Without a schema: non-numeric and boolean columns are categorical."""
    return {c for c in table.columns if not pd.api.types.is_numeric_dtype(table[c])
            or pd.api.types.is_bool_dtype(table[c])}
