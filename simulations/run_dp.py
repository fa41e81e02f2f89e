"""DP-VFLGAN on digits: no DP vs paper mode vs strict mode at epsilon 10 and 5 (issue 4).

Every setting trains for the same number of critic steps through the real entry point
(:func:`vflgan_app.run.run_experiment`, as ``python -m vflgan_app train``), so each
run folder holds ``report.json`` with the metrics and the DP metadata. Prints and writes
a markdown table (FD, cross-party correlation error, epsilon spent, sigma, wall time)::

    nice -n 5 python simulations/run_dp.py --steps 2000 --threads 1 \
        --output-dir runs/dp --table simulations/results/dp_table.md

``--settings`` picks a subset, e.g. ``--settings none paper-10``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
from pathlib import Path

from trainkit import StageTimer
from vflgan_app.config import VFLGANConfig
from vflgan_app.run import run_experiment

JOINT = {"objective": "joint", "generator_trunk": 3}
SETTINGS = {
    "none": {},
    "none-wor": {"sampler": "wor"},
    # no DP with the DP runs' model and sampler (bias-free, "wor"): isolates the noise
    "none-wor-nobias": {"sampler": "wor", "_bias": False},
    "paper-10": {"dp": {"mode": "paper", "target_epsilon": 10.0}},
    "paper-5": {"dp": {"mode": "paper", "target_epsilon": 5.0}},
    "strict-10": {"dp": {"mode": "strict", "target_epsilon": 10.0}},
    "strict-5": {"dp": {"mode": "strict", "target_epsilon": 5.0}},
    # the joint objective with a shared generator trunk (issue 10; shuffled-real
    # negatives are refused in strict mode: a re-paired row mixes two real records)
    "joint-none": {**JOINT},
    "joint-paper-10": {**JOINT, "dp": {"mode": "paper", "target_epsilon": 10.0}},
    "joint-strict-10": {**JOINT, "dp": {"mode": "strict", "target_epsilon": 10.0}},
}


def row(name: str, report: dict, wall: float, seed: int | None = None) -> dict:
    """One table row from a report."""
    m = report["metrics"]["model"]
    c = report["metrics"]["control"]
    dp = report.get("dp") or {"mode": "none"}
    agreement = report["metrics"].get("dependence", {}).get("metrics", {}).get("agreement", {})
    return {
        "setting": name,
        "seed": seed,
        "fd": m["fd"],
        "corr_err": m["cross_party_corr_error"],
        "corr_err_control": c["cross_party_corr_error"],
        "inception_score": m.get("inception_score"),
        "agreement": agreement.get("model"),
        "agreement_control": agreement.get("control"),
        "epsilon": dp.get("epsilon"),
        "sigma": dp.get("sigma"),
        "steps": dp.get("steps"),
        "wall_s": wall,
        "train_s": report["timings_s"].get("training"),
    }


def to_markdown(rows: list[dict], delta: float) -> str:
    """The results table."""
    head = (
        "| setting | FD (AE latent) | cross-party corr. error | control (indep. z) | "
        f"IS | agreement (control) | epsilon spent (delta={delta:g}) | sigma per block | "
        "training s | wall s |"
    )
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        eps = "-" if r["epsilon"] is None else f"{r['epsilon']:.3f}"
        sig = "-" if r["sigma"] is None else f"{r['sigma']:.3f}"
        is_ = "-" if r["inception_score"] is None else f"{r['inception_score']:.2f}"
        agr = "-" if r.get("agreement") is None else \
            f"{r['agreement']:.3f} ({r['agreement_control']:.3f})"
        lines.append(
            f"| {r['setting']} | {r['fd']:.3f} | {r['corr_err']:.4f} | "
            f"{r['corr_err_control']:.4f} | {is_} | {agr} | {eps} | {sig} | "
            f"{r['train_s']:.0f} | {r['wall_s']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    """Run the settings and write the table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=2000, help="critic steps of every run")
    p.add_argument("--seed", type=int, default=0, help="run seed")
    p.add_argument("--delta", type=float, default=1e-5, help="DP delta")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument(
        "--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS)
    )
    p.add_argument("--output-dir", default="runs/dp", help="run folders go here")
    p.add_argument("--table", default=None, help="write the markdown table here")
    args = p.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logger = logging.getLogger("run_dp")
    rows = []
    for name in args.settings:
        values = {
            "dataset": "digits",
            "steps": args.steps,
            "seed": args.seed,
            "threads": args.threads,
            "progress": False,
            **SETTINGS[name],
        }
        if "dp" in values:
            values["dp"] = {**values["dp"], "delta": args.delta}
        bias = values.pop("_bias", None)
        cfg = VFLGANConfig.from_dict(values)
        arch = None
        if bias is not None:
            arch = dataclasses.replace(cfg.resolve_architecture(), bias=bias)
        run_dir = Path(args.output_dir) / f"{name}-s{args.seed}-{args.steps}"
        run_dir.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        report = run_experiment(
            cfg, "vflgan", run_dir, timer=StageTimer(logger), arch=arch
        )
        if arch is not None:  # record the override next to the outputs
            report["architecture_override"] = {"bias": arch.bias}
            (run_dir / "report.json").write_text(json.dumps(report, indent=1))
        rows.append(row(name, report, time.perf_counter() - t0, args.seed))
        logger.info("%s", json.dumps(rows[-1]))
    table = to_markdown(rows, args.delta)
    print(table)
    if args.table:
        Path(args.table).parent.mkdir(parents=True, exist_ok=True)
        Path(args.table).write_text(table)
        Path(args.table).with_suffix(".json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
