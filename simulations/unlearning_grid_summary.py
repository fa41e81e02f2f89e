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


# ------------------------------------------------------------ robust grid (issue 15)

ROBUST_ORDER = ("base", "retrain", "swap_label", "salun", "erasediff", "dimum")


def load_cells(out: Path) -> tuple[list[dict], list[dict]]:
    """(unlearn cells, attack cells) from ``out/cells/*.json``."""
    unl, att = [], []
    for p in sorted((out / "cells").glob("*.json")):
        row = json.loads(p.read_text())
        (unl if row["kind"] == "unlearn" else att).append(row)
    return unl, att


def _order(methods) -> list[str]:
    ms = list(dict.fromkeys(methods))
    return [m for m in ROBUST_ORDER if m in ms] + [
        m for m in ms if m not in ROBUST_ORDER
    ]


def _ci(values: list[float]) -> dict:
    from unlearning.stats import t_interval

    return t_interval(values) if values else {"n": 0}


def _fmt(ci: dict, digits: int = 3) -> str:
    from unlearning.stats import format_interval

    return format_interval(ci, digits) if ci.get("n") else "—"


UNLEARN_METRICS = [
    ("forget_rate (w=2)", lambda r: r["forget"]["w2_forget_rate"]),
    ("confident (w=2)", lambda r: r["forget"]["w2_confident_forget_rate"]),
    ("forget_rate (w=0)", lambda r: r["forget"]["w0_forget_rate"]),
    ("retain p_correct", lambda r: r["retain"]["retain_p_correct"]),
    ("KID x1000", lambda r: r["retain"]["kid_x1000"]),
    ("precision", lambda r: r["retain"]["precision"]),
    ("recall", lambda r: r["retain"]["recall"]),
    ("class recall", lambda r: r["retain"]["class_recall"]),
]
ATTACK_METRICS = [
    ("peak (w=2)", lambda r: r["summary"]["w2_forget_rate"]["peak"]),
    ("late mean (w=2)", lambda r: r["summary"]["w2_forget_rate"]["late_mean"]),
    ("endpoint (w=2)", lambda r: r["summary"]["w2_forget_rate"]["endpoint"]),
    (
        "confident peak (w=2)",
        lambda r: r["summary"]["w2_confident_forget_rate"]["peak"],
    ),
    ("peak (w=0)", lambda r: r["summary"]["w0_forget_rate"]["peak"]),
    ("late mean (w=0)", lambda r: r["summary"]["w0_forget_rate"]["late_mean"]),
    ("retain p_correct after", lambda r: r["retain_after"]["retain_p_correct"]),
    ("KID x1000 after", lambda r: r["retain_after"]["kid_x1000"]),
]


def _table(rows: list[dict], metrics, title_cols: list[str], key) -> tuple[list, list]:
    """Markdown lines and CSV records of the mean [95% t interval] per group."""
    groups: dict = {}
    for r in rows:
        groups.setdefault(key(r), []).append(r)
    md = [
        "| " + " | ".join(title_cols + ["n"] + [m for m, _ in metrics]) + " |",
        "| " + " | ".join(["---"] * (len(title_cols) + 1 + len(metrics))) + " |",
    ]
    csv = []
    for k in sorted(
        groups,
        key=lambda k: tuple(
            (ROBUST_ORDER.index(x) if x in ROBUST_ORDER else 99, x)
            if isinstance(x, str)
            else (0, str(x))
            for x in k
        ),
    ):
        rs = groups[k]
        cells = []
        for name, f in metrics:
            vals = []
            for r in rs:
                try:
                    vals.append(float(f(r)))
                except (KeyError, TypeError):
                    pass
            ci = _ci(vals)
            cells.append(_fmt(ci))
            csv.append(
                {
                    **dict(zip(title_cols, k, strict=True)),
                    "metric": name,
                    "n": ci.get("n", 0),
                    "mean": ci.get("mean"),
                    "lo": ci.get("lo"),
                    "hi": ci.get("hi"),
                }
            )
        md.append(
            "| " + " | ".join([str(x) for x in k] + [str(len(rs))] + cells) + " |"
        )
    return md, csv


def write_robust_summary(out: Path) -> str:
    """summary.md and summary.csv of a robust grid's cells; returns the markdown."""
    import csv as _csv
    import io

    from trainkit import atomic_write_text

    unl, att = load_cells(out)
    lines = [
        f"# Robust unlearning grid: {len(unl)} unlearn cells, {len(att)} attack cells",
        "",
        "Mean [95% Student-t interval] over the (seed) cells in each group; per-cell "
        "values are in cells/*.json. Forget rates use the 5-judge ensemble (argmax of "
        "the mean probability); 'confident' counts ensemble p(c_f) >= 0.9.",
        "",
        "## After unlearning, pooled over forget classes",
        "",
    ]
    records = []
    md, rec = _table(unl, UNLEARN_METRICS, ["method"], lambda r: (r["method"],))
    lines += md
    records += [{"table": "unlearn_pooled", **x} for x in rec]
    lines += ["", "## After unlearning, per forget class", ""]
    md, rec = _table(
        unl,
        UNLEARN_METRICS,
        ["method", "forget_class"],
        lambda r: (r["method"], r["forget_class"]),
    )
    lines += md
    records += [{"table": "unlearn_by_class", **x} for x in rec]
    for attack in sorted({r["attack"] for r in att}):
        rs = [r for r in att if r["attack"] == attack]
        lines += ["", f"## Attack {attack}, pooled over forget classes", ""]
        md, rec = _table(rs, ATTACK_METRICS, ["method"], lambda r: (r["method"],))
        lines += md
        records += [{"table": "attack_pooled", "attack": attack, **x} for x in rec]
        lines += ["", f"## Attack {attack}, per forget class", ""]
        md, rec = _table(
            rs,
            ATTACK_METRICS[:5],
            ["method", "forget_class"],
            lambda r: (r["method"], r["forget_class"]),
        )
        lines += md
        records += [{"table": "attack_by_class", "attack": attack, **x} for x in rec]
        if attack.startswith("fewshot"):
            lines += [
                "",
                "Steps to relearn (first checkpoint with w=2 forget rate >= "
                "0.5; 'never' counts as absent):",
                "",
            ]
            for m in _order(r["method"] for r in rs):
                st = [r["steps_to_relearn"] for r in rs if r["method"] == m]
                got = [s for s in st if s is not None]
                lines.append(
                    f"* {m}: reached in {len(got)}/{len(st)} cells; steps {sorted(got)}"
                )
    excess_md, excess_rec = _excess_over_control(att)
    lines += excess_md
    records += excess_rec
    copies = [(r, r["copy_check"]) for r in unl + att if "copy_check" in r]
    if copies:
        lines += [
            "",
            "## Copying check (pixel NN distance to D_alt vs held-out "
            "images of the alternative class; ratio = median d_mem / d_held)",
            "",
            "| model | when | n | ratio | copy fraction | flagged copying |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        groups: dict = {}
        for r, c in copies:
            when = "after unlearning" if r["kind"] == "unlearn" else r["attack"]
            name = "base (alt-class samples)" if r["method"] == "base" else r["method"]
            groups.setdefault((name, when), []).append(c)
        for (name, when), cs in sorted(groups.items()):
            lines.append(
                f"| {name} | {when} | {len(cs)} | "
                f"{_fmt(_ci([c['ratio'] for c in cs]))} | "
                f"{_fmt(_ci([c['copy_fraction'] for c in cs]))} | "
                f"{sum(c['copying'] for c in cs)}/{len(cs)} |"
            )
            records.append(
                {
                    "table": "copy_check",
                    "method": name,
                    "attack": when,
                    "metric": "ratio",
                    **{
                        k: v
                        for k, v in _ci([c["ratio"] for c in cs]).items()
                        if k != "half"
                    },
                }
            )
    hist_lines = _histograms(unl, att)
    lines += hist_lines
    walls = [r["wall_s"] for r in unl + att]
    lines += [
        "",
        f"Sum of cell wall times: {sum(walls):.0f} s over {len(walls)} cells. "
        f"Commit of the first cell: {(unl or att or [{}])[0].get('commit')}.",
    ]
    lines += _provenance(unl, att)
    text = "\n".join(lines) + "\n"
    atomic_write_text(out / "summary.md", text)
    buf = io.StringIO()
    cols = [
        "table",
        "attack",
        "method",
        "forget_class",
        "metric",
        "n",
        "mean",
        "lo",
        "hi",
    ]
    w = _csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
    w.writeheader()
    for rec_ in records:
        w.writerow(rec_)
    atomic_write_text(out / "summary.csv", buf.getvalue())
    return text


def _cell_id(r: dict) -> str:
    what = "after unlearning" if r["kind"] == "unlearn" else r["attack"]
    return f"s{r['seed']} c{r['forget_class']} {r['method']} {what}"


def _provenance(unl: list[dict], att: list[dict]) -> list[str]:
    """Which judge ensemble measured each cell, and which attacks ran on a rebuilt model.

    Empty when no cell records fingerprints (grids written before they were added), so
    such a grid's summary is unchanged.
    """
    cells = unl + att
    judges: dict[str, list[dict]] = {}
    for r in cells:
        if "judges_sha256" in r:
            judges.setdefault(r["judges_sha256"], []).append(r)
    if not judges:
        return []
    unrecorded = len(cells) - sum(len(v) for v in judges.values())
    lines = ["", "## Provenance (sha256 fingerprints of the weights)", ""]
    lines += [f"* judge ensemble `{sha}`: {len(rs)} cells" for sha, rs in sorted(judges.items())]
    if unrecorded:
        lines.append(f"* {unrecorded} cells predate the fingerprint (judge ensemble "
                     "unrecorded)")
    if len(judges) > 1:
        lines.append(f"\n**These cells were measured by {len(judges)} different judge "
                     "ensembles**; rates from different ensembles are not directly "
                     "comparable.")
    checked = [r for r in att if r.get("model_matches_unlearn_cell") is not None]
    rebuilt = [r for r in checked if not r["model_matches_unlearn_cell"]]
    lines.append(
        f"\nAttack cells whose model is not the one its unlearn cell measured (a model "
        f"rebuilt after the cache was lost): {len(rebuilt)} of the {len(checked)} that "
        "can tell" + (": " + "; ".join(_cell_id(r) for r in rebuilt) if rebuilt else "")
        + "."
    )
    return lines


EXCESS_METRICS = [m for m in ATTACK_METRICS
                  if m[0] in ("peak (w=2)", "late mean (w=2)", "confident peak (w=2)")]


def _excess_over_control(att: list[dict]) -> tuple[list[str], list[dict]]:
    """Each attack cell minus the retrain control's cell under the same attack, seed and
    forget class: what the attack recovers beyond its own floor (the control never saw
    c_f, so its rate is what the attack and the judges make of nothing). Only pairs
    whose control exists are counted."""
    control = {(r["attack"], r["seed"], r["forget_class"]): r
               for r in att if r["method"] == "retrain"}
    groups: dict = {}
    for r in att:
        c = control.get((r["attack"], r["seed"], r["forget_class"]))
        if r["method"] != "retrain" and c is not None:
            groups.setdefault((r["attack"], r["method"]), []).append((r, c))
    if not groups:
        return [], []
    lines = [
        "",
        "## Excess over the retrain control (same attack, seed and forget class)",
        "",
        "Mean [95% t interval] of (method - retrain) over the pairs; 'above' counts the "
        "pairs whose peak (w=2) exceeds the control's by more than 0.05.",
        "",
        "| attack | method | pairs | " + " | ".join(f"{m} - control" for m, _ in EXCESS_METRICS)
        + " | above |",
        "| --- | --- | --- | " + " | ".join("---" for _ in EXCESS_METRICS) + " | --- |",
    ]
    records = []
    for attack in sorted({a for a, _ in groups}):
        for method in _order(m for a, m in groups if a == attack):
            pairs = groups[(attack, method)]
            cells = []
            for name, f in EXCESS_METRICS:
                ci = _ci([float(f(r)) - float(f(c)) for r, c in pairs])
                cells.append(_fmt(ci))
                records.append({"table": "excess_over_control", "attack": attack,
                                "method": method, "metric": name,
                                **{k: v for k, v in ci.items() if k != "half"}})
            peak = EXCESS_METRICS[0][1]
            above = sum(float(peak(r)) - float(peak(c)) > 0.05 for r, c in pairs)
            lines.append(f"| {attack} | {method} | {len(pairs)} | " + " | ".join(cells)
                         + f" | {above}/{len(pairs)} |")
    return lines, records


def _histograms(unl: list[dict], att: list[dict]) -> list[str]:
    """What c_f samples become (w=2): mean class fractions per method."""
    lines = [
        "",
        "## What c_f samples become (w=2, ensemble argmax; classes relative "
        "to c_f: 'c_f', 'c_f+1' (DiMUM's alternative), 'other', 'uncertain')",
        "",
        "| method | when | n | c_f | c_f+1 | other | uncertain |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]

    def rel(h: dict, c_f: int) -> dict:
        alt = (c_f + 1) % 10
        out = {"c_f": h[str(c_f)], "alt": h[str(alt)], "unc": h["uncertain"]}
        out["other"] = max(0.0, 1.0 - out["c_f"] - out["alt"] - out["unc"])
        return out

    groups: dict = {}
    for r in unl:
        groups.setdefault((r["method"], "after unlearning"), []).append(
            rel(r["forget"]["w2_hist"], r["forget_class"])
        )
    for r in att:
        # the histogram at the checkpoint of the w=2 peak
        c = r["curve"]
        i = c["steps"].index(r["summary"]["w2_forget_rate"]["peak_step"])
        groups.setdefault((r["method"], f"{r['attack']} at peak"), []).append(
            rel(c["w2_hist"][i], r["forget_class"])
        )
        groups.setdefault((r["method"], f"{r['attack']} at end"), []).append(
            rel(c["w2_hist"][-1], r["forget_class"])
        )
    for (m, when), hs in sorted(
        groups.items(),
        key=lambda kv: (
            ROBUST_ORDER.index(kv[0][0]) if kv[0][0] in ROBUST_ORDER else 99,
            kv[0][1],
        ),
    ):
        mean = {k: float(np.mean([h[k] for h in hs])) for k in hs[0]}
        lines.append(
            f"| {m} | {when} | {len(hs)} | {mean['c_f']:.3f} | "
            f"{mean['alt']:.3f} | {mean['other']:.3f} | {mean['unc']:.3f} |"
        )
    return lines
