"""Gather run_compare JSONs over seeds into one markdown table (mean +- std).

    python simulations/summarize_compare.py simulations/results/compare-digits-5000-seed*-objectives.json

Columns: FD (model and its independent-latent control), per-party classifier agreement
(model / control / real), party-shuffle AUC, and how many of the dependence report's
informative metrics the model beats its control on, per seed.
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
    rows: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    meta = set()
    for path in paths:
        r = json.loads(path.read_text())
        meta.add((r["dataset"], r["steps"]))
        for kind, m in r["models"].items():
            row = rows[kind]
            row["seed"].append(r["seed"])
            row["fd"].append(m["model"]["fd"])
            row["fd_control"].append(m["control"]["fd"])
            dep = m["dependence"]
            met = dep["metrics"]
            row["agreement"].append(met["agreement"]["model"])
            row["agreement_control"].append(met["agreement"]["control"])
            row["agreement_real"].append(met["agreement"]["real"])
            row["shuffle_auc"].append(met["shuffle_auc"]["model"])
            verdicts = [v for v in dep["verdicts"].values() if v.get("informative")]
            row["beats"].append(f"{sum(v['beats_control'] for v in verdicts)}/{len(verdicts)}")
            row["ms"].append(m["ms_per_step"])
    lines = [
        f"{', '.join(f'{d} {s} steps' for d, s in sorted(meta))}; mean ± std over seeds.",
        "",
        "| model | seeds | FD | FD (control) | agreement | (control) | (real) "
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("paths", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, help="also write the table here")
    args = ap.parse_args()
    table = summarize(args.paths)
    if args.out:
        args.out.write_text(table)
    print(table)


if __name__ == "__main__":
    main()
