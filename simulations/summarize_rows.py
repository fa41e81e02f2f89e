"""Gather per-seed row files (JSON lists of flat dicts, e.g. ``run_dp.py --table``'s
``.json``) into one markdown table of mean ± std over seeds, and a CSV of every row.

    python simulations/summarize_rows.py --key setting --out dp.md --csv dp.csv \
        simulations/results/dp-settings-5000-seed*.json

Numeric columns become ``mean ± std`` (one value where there is one seed); a column
that is empty in every row is left out; rows keep the order of their first appearance.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
from collections import defaultdict
from pathlib import Path


def _cell(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4g}"
    return f"{statistics.mean(values):.4g} ± {statistics.stdev(values):.2g}"


def _groups(rows: list[dict], key: str) -> dict[str, list[dict]]:
    """Rows by their ``key`` value, in order of first appearance."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        groups[str(r[key])].append(r)
    return groups


def summarize(rows: list[dict], key: str, columns: list[str] | None = None) -> str:
    groups = _groups(rows, key)
    cols = [c for c in dict.fromkeys(c for r in rows for c in r)
            if c not in (key, "seed") and any(isinstance(r.get(c), (int, float))
                                              and not isinstance(r.get(c), bool)
                                              for r in rows)]
    if columns:
        unknown = [c for c in columns if c not in cols]
        if unknown:
            raise SystemExit(f"--columns: {unknown} are not numeric columns of the rows "
                             f"(they have {cols})")
        cols = columns
    lines = [f"| {key} | seeds | " + " | ".join(cols) + " |",
             "| --- " * (len(cols) + 2) + "|"]
    for name, group in groups.items():
        seeds = sorted(r.get("seed") for r in group if r.get("seed") is not None)
        cells = []
        for c in cols:
            vals = [float(r[c]) for r in group if isinstance(r.get(c), (int, float))]
            cells.append(_cell(vals) if vals else "-")
        lines.append(f"| {name} | {seeds} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], key: str, ys: list[str], path: Path) -> None:
    """One panel per column of ``ys``: its mean over seeds per row name, with the sample
    std as an error bar (row names on the x axis, in order of first appearance)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    unknown = [y for y in ys if not any(y in r for r in rows)]
    if unknown:
        raise SystemExit(f"--plot-y: no rows have column(s) {unknown}")
    groups = _groups(rows, key)
    names = list(groups)
    fig, axes = plt.subplots(1, len(ys), figsize=(3.2 * len(ys), 2.8), squeeze=False)
    for ax, y in zip(axes[0], ys):
        vals = [[float(r[y]) for r in groups[n] if isinstance(r.get(y), (int, float))]
                for n in names]
        means = [statistics.mean(v) if v else float("nan") for v in vals]
        sds = [statistics.stdev(v) if len(v) > 1 else 0.0 for v in vals]
        ax.errorbar(range(len(names)), means, yerr=sds, marker="o", capsize=3)
        ax.set_xticks(range(len(names)), names)
        ax.set_xlabel(key)
        ax.set_title(y, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("paths", nargs="+", type=Path)
    ap.add_argument("--key", required=True, help="the column that names a row")
    ap.add_argument("--out", type=Path, help="write the markdown table here")
    ap.add_argument("--csv", type=Path, help="write every row here")
    ap.add_argument("--columns", default="",
                    help="comma-separated numeric columns to show, in this order "
                         "(default: every numeric column)")
    ap.add_argument("--plot", type=Path, help="write a PNG of --plot-y per row name here")
    ap.add_argument("--plot-y", default="", help="comma-separated columns to plot")
    args = ap.parse_args()
    rows = [r for p in args.paths for r in json.loads(p.read_text())]
    missing = [i for i, r in enumerate(rows) if args.key not in r]
    if missing:
        raise SystemExit(f"--key {args.key!r}: rows {missing[:5]} have no such column")
    ys = [y for y in args.plot_y.split(",") if y]
    if args.plot and not ys:
        raise SystemExit("--plot needs --plot-y (comma-separated columns)")
    table = summarize(rows, args.key, [c for c in args.columns.split(",") if c] or None)
    if args.plot:
        plot(rows, args.key, ys, args.plot)
    if args.out:
        args.out.write_text(table)
    if args.csv:
        names = list(dict.fromkeys(c for r in rows for c in r))
        with args.csv.open("w", newline="") as fh:
            w = csv.DictWriter(fh, names)
            w.writeheader()
            w.writerows(rows)
    print(table)


if __name__ == "__main__":
    main()
