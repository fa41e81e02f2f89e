"""Gather run_compare JSONs over seeds into one markdown table (mean +- std).

    python simulations/summarize_compare.py simulations/results/compare-digits-5000-seed*-objectives.json

Columns: FD (model and its independent-latent control), per-party classifier agreement
(model / control / real), party-shuffle AUC, and how many of the dependence report's
informative metrics the model beats its control on, per seed. Runs made with
``run_compare.py --curve-every`` also give an agreement-vs-step table (mean over seeds)
and, with ``--plot``, a PNG of the curves with each model's control.

    python simulations/summarize_compare.py simulations/results/compare-digits-20000-seed*-trunk.json \
        --plot simulations/results/curves-digits-trunk.png
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path


def _ms(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def summarize(paths: list[Path]) -> str:
    return to_markdown(*gather(paths))


def gather(paths: list[Path]) -> tuple[dict[str, dict[str, list]], set, str]:
    """Per model, the per-seed values of every column; the (dataset, steps) pairs; the
    headline dependence metric's name."""
    rows: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    meta = set()
    headline = "agreement"  # images; tables have no agreement: cross-party TSTR utility
    for path in paths:
        r = json.loads(path.read_text())
        meta.add((r["dataset"], r["steps"]))
        for kind, m in r["models"].items():
            if "model" not in m:  # still training (a partial curve)
                continue
            row = rows[kind]
            row["seed"].append(r["seed"])
            row["fd"].append(m["model"]["fd"])
            row["fd_control"].append(m["control"]["fd"])
            dep = m["dependence"]
            met = dep["metrics"]
            headline = "agreement" if "agreement" in met else "utility_tstr"
            row["agreement"].append(met[headline]["model"])
            row["agreement_control"].append(met[headline]["control"])
            row["agreement_real"].append(met[headline]["real"])
            row["shuffle_auc"].append(met["shuffle_auc"]["model"])
            verdicts = [v for v in dep["verdicts"].values() if v.get("informative")]
            row["beats"].append(f"{sum(v['beats_control'] for v in verdicts)}/{len(verdicts)}")
            row["ms"].append(m["ms_per_step"])
    return rows, meta, headline


def to_markdown(rows: dict, meta: set, headline: str) -> str:
    lines = [
        f"{', '.join(f'{d} {s} steps' for d, s in sorted(meta))}; mean ± std over seeds.",
        "",
        f"| model | seeds | FD | FD (control) | {headline} | (control) | (real) "
        "| shuffle AUC | beats control (per seed) | ms/step |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for kind, row in rows.items():
        lines.append(
            f"| {kind} | {sorted(row['seed'])} | {_ms(row['fd'])} | {_ms(row['fd_control'])} "
            f"| {_ms(row['agreement'])} | {_ms(row['agreement_control'])} "
            f"| {_ms(row['agreement_real'])} | {_ms(row['shuffle_auc'])} "
            f"| {', '.join(row['beats'])} | {_ms(row['ms'])} |")
    return "\n".join(lines) + "\n"


COLUMNS = ("fd", "fd_control", "agreement", "agreement_control", "agreement_real",
           "shuffle_auc", "ms")


def to_csv(rows: dict, headline: str, path: Path) -> None:
    """One line per model and seed (the per-seed values behind the markdown table)."""
    import csv

    names = [c.replace("agreement", headline) for c in COLUMNS]
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["model", "seed", *names, "beats_control"])
        for kind, row in rows.items():
            for i, seed in enumerate(row["seed"]):
                w.writerow([kind, seed, *(row[c][i] for c in COLUMNS), row["beats"][i]])


def curves(paths: list[Path]) -> dict[str, dict[int, dict[str, list[float]]]]:
    """``{model: {step: {"agreement": [per seed], "control": [...]}}}``.

    A run stopped before its end (``"partial"``) gives the points it reached.
    """
    out: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for path in paths:
        for kind, m in json.loads(path.read_text())["models"].items():
            for c in m.get("curve", []):
                out[kind][c["step"]]["agreement"].append(c["agreement"])
                out[kind][c["step"]]["control"].append(c["agreement_control"])
    return out


def curve_table(data: dict) -> str:
    """Agreement (mean over seeds) by step, one column per model."""
    if not data:
        return ""
    kinds = list(data)
    steps = sorted({s for k in kinds for s in data[k]})
    lines = ["Agreement vs step (mean over seeds; control in brackets).", "",
             "| step | " + " | ".join(kinds) + " |", "| --- |" + " --- |" * len(kinds)]
    for s in steps:
        cells = []
        for k in kinds:
            d = data[k].get(s)
            cells.append("" if d is None else f"{statistics.mean(d['agreement']):.3f} "
                         f"({statistics.mean(d['control']):.3f}), n={len(d['agreement'])}")
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_curves(data: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for kind, by_step in data.items():
        steps = sorted(by_step)
        line, = ax.plot(steps, [statistics.mean(by_step[s]["agreement"]) for s in steps],
                        marker="o", label=kind)
        ax.plot(steps, [statistics.mean(by_step[s]["control"]) for s in steps],
                ls=":", color=line.get_color())
    ax.set_xlabel("step")
    ax.set_ylabel("per-party classifier agreement")
    ax.set_title("agreement vs step (dotted: independent-latent control)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def by_metric_table(paths: list[Path]) -> str:
    """The dependence report as rows: every metric, real and each model beside its own
    independent-latent control (mean ± std over the seeds of ``paths``)."""
    vals: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    desc: dict[str, str] = {}
    kinds: list[str] = []
    for path in paths:
        r = json.loads(path.read_text())
        for kind, m in r["models"].items():
            if "model" not in m:
                continue
            if kind not in kinds:
                kinds.append(kind)
            for name, met in m["dependence"]["metrics"].items():
                desc[name] = met["description"]
                vals[name][f"{kind}/model"].append(met["model"])
                vals[name][f"{kind}/control"].append(met["control"])
                if kinds[0] == kind:  # real data: the same for every model of a run
                    vals[name]["real"].append(met["real"])
    head = ["metric", "real"] + [c for k in kinds for c in (k, "ctrl")]
    lines = [
        "Dependence report per metric: real data, and each model beside its own "
        "independent-latent control.",
        "",
        "| " + " | ".join(head) + " |",
        "| " + " | ".join("---" for _ in head) + " |",
    ]
    for name in vals:
        cells = [desc[name], _ms(vals[name]["real"])]
        for k in kinds:
            cells += [_ms(vals[name][f"{k}/model"]), _ms(vals[name][f"{k}/control"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("paths", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, help="also write the table here")
    ap.add_argument("--csv", type=Path, help="also write the per-seed values here")
    ap.add_argument("--plot", type=Path, help="write the agreement-vs-step curves here (PNG)")
    ap.add_argument("--by-metric", action="store_true",
                    help="also the dependence report as rows, one column per model and "
                         "control")
    args = ap.parse_args()
    data = curves(args.paths)
    rows, meta, headline = gather(args.paths)
    table = to_markdown(rows, meta, headline) + ("\n" + curve_table(data) if data else "")
    if args.by_metric:
        table += "\n" + by_metric_table(args.paths)
    if args.csv:
        to_csv(rows, headline, args.csv)
    if args.plot and data:
        plot_curves(data, args.plot)
    if args.out:
        args.out.write_text(table)
    print(table)


if __name__ == "__main__":
    main()
