"""summary.md and the mean relearning curves of an unlearning grid (results.jsonl).

Used by simulations/run_unlearning_grid.py (and its --summarize-only mode).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from trainkit import git_commit
from unlearning.config import METHODS
from unlearning.plots import save_curves


def _ms(values: list[float]) -> str:
    a = np.asarray(values, dtype=float)
    return f"{a.mean():.3f} ± {a.std(ddof=1):.3f}" if len(a) > 1 else f"{a.mean():.3f}"


def save_mean_curves(rows: list[dict], methods: list[str], out: Path, lr) -> None:
    """One PNG per attacker data set: mean relearning curve over seeds per method."""
    for attack in ("retain", "aux"):
        curves = {}
        for m in methods:
            cs = [
                r[f"curve_{attack}"]
                for r in rows
                if r["method"] == m and f"curve_{attack}" in r
            ]
            if cs:
                mean = np.mean([c["forget_rate"] for c in cs], axis=0)
                curves[m] = (cs[0]["steps"], list(mean))
        if curves:
            save_curves(
                curves,
                out / f"mean_curves_{attack}.png",
                title=f"DiMRA on D_{'r' if attack == 'retain' else 'au'}, "
                f"lr {lr}, mean over seeds",
            )


def summarize(results_file: Path, args, wall: float) -> str:
    rows, seen = [], set()
    for line in results_file.read_text().splitlines():
        r = json.loads(line)
        if (r["seed"], r["method"]) not in seen:  # first row wins (parallel resumes)
            seen.add((r["seed"], r["method"]))
            rows.append(r)
    names = list(dict.fromkeys(r["method"] for r in rows))
    methods = [m for m in METHODS if m in names] + [
        m for m in names if m not in METHODS
    ]
    seeds = sorted({r["seed"] for r in rows})
    save_mean_curves(rows, methods, results_file.parent, args.attack_lr)
    lines = [
        f"digits, forget class {args.forget_class}, {args.arch} noise predictor, "
        f"seeds {seeds}; unlearning {args.unlearn_steps} steps; DiMRA "
        f"{args.attack_steps} steps, lr {args.attack_lr}, batch {args.attack_batch} "
        f"(same for every method). Mean ± std over seeds. Commit {git_commit()}.",
        "",
        "| method | forget rate after unlearning | p_forget | retain acc | judge FD "
        "| DiMRA D_r forget rate | DiMRA D_au forget rate | retain acc after D_r "
        "| changed c_f emb. row | unlearn s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    base = [r["base"] for r in rows if r["method"] == methods[0]]
    lines.append(
        f"| (pre-trained) | {_ms([b['forget_rate'] for b in base])} | "
        f"{_ms([b['p_forget'] for b in base])} | "
        f"{_ms([b['retain_acc'] for b in base])} | "
        f"{_ms([b['judge_fd'] for b in base])} | | | | | |"
    )
    for m in methods:
        rs = [r for r in rows if r["method"] == m]

        def g(k: str, f: str, rs=rs) -> str:
            if any(k not in r for r in rs):
                return "n/a"
            return _ms([r[k][f] for r in rs])

        emb = _ms(
            [r["param_change"].get("class_embedding[c_f]", float("nan")) for r in rs]
        )
        lines.append(
            f"| {m} | {g('after_unlearn', 'forget_rate')} | "
            f"{g('after_unlearn', 'p_forget')} | {g('after_unlearn', 'retain_acc')} | "
            f"{g('after_unlearn', 'judge_fd')} | "
            f"{g('after_dimra_retain', 'forget_rate')} | "
            f"{g('after_dimra_aux', 'forget_rate')} | "
            f"{g('after_dimra_retain', 'retain_acc')} | {emb} | "
            f"{_ms([r['unlearn_s'] for r in rs])} |"
        )
    lines += [
        "",
        f"Grid wall time of this invocation: {wall:.0f} s "
        f"({len(rows)} seed x method cells in results.jsonl).",
    ]
    return "\n".join(lines) + "\n"
