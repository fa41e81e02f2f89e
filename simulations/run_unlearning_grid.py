"""CPU grid on 8x8 digits: every unlearning method x DiMRA (D_r and D_au) x seeds.

Reproduces dimum.md section 9.3 qualitatively: swap-label/SalUn-type unlearning comes
back under DiMRA at an attack lr near the pre-training lr; DiMUM stays near 0.

    nice -n 10 .venv/bin/python simulations/run_unlearning_grid.py --seeds 0 1 2

Writes results.jsonl (one row per seed x method, resumable), summary.md, curves and
sample grids under --out (git-ignored by default).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

from trainkit import atomic_write_text, git_commit, set_cpu_threads
from unlearning import (
    EvalConfig,
    PretrainConfig,
    RelearnConfig,
    UnlearnConfig,
    auxiliary_set,
    evaluate_pipeline,
    load_dataset,
    parameter_change_norms,
    pretrain,
    run_relearning_attack,
    split_forget_retain,
    train_judge,
    unlearn_with_log,
)
from unlearning.checkpoint import load_pipeline, save_pipeline
from unlearning.config import METHODS
from unlearning.evaluate import forget_metrics
from unlearning.plots import save_class_grid, save_curves

logger = logging.getLogger("grid")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds")
    p.add_argument("--forget-class", type=int, default=0, help="class to forget")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument(
        "--arch",
        default="mlp",
        choices=["mlp", "unet"],
        help="noise predictor (mlp: the pilot's fast variant)",
    )
    p.add_argument("--pretrain-steps", type=int, default=3000, help="pre-train steps")
    p.add_argument("--pretrain-lr", type=float, default=1e-3, help="pre-train lr")
    p.add_argument("--pretrain-batch", type=int, default=256, help="pre-train batch")
    p.add_argument(
        "--attacks",
        nargs="+",
        default=["retain", "aux"],
        choices=["retain", "aux"],
        help="DiMRA attacker data sets to run",
    )
    p.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="FIELD=VALUE",
        help="override UnlearnConfig fields for every method, e.g. sa_lambda=0",
    )
    p.add_argument(
        "--label",
        default="",
        help="suffix for the method names in results.jsonl (for variants run with --set)",
    )
    p.add_argument("--unlearn-steps", type=int, default=600, help="unlearning steps")
    p.add_argument("--attack-steps", type=int, default=1000, help="DiMRA steps")
    p.add_argument("--attack-lr", type=float, default=1e-3, help="DiMRA lr")
    p.add_argument("--attack-batch", type=int, default=128, help="DiMRA batch size")
    p.add_argument("--eval-every", type=int, default=250, help="DiMRA curve spacing")
    p.add_argument(
        "--forget-samples",
        type=int,
        default=300,
        help="forgotten-class samples per final measurement",
    )
    p.add_argument(
        "--out",
        default="simulations/results/cache/unlearning_grid",
        help="output folder (git-ignored)",
    )
    p.add_argument(
        "--summarize-only",
        action="store_true",
        help="only rebuild summary.md and the mean-curve PNGs from results.jsonl",
    )
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    set_cpu_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    overrides = {}
    for item in args.set:
        key, _, value = item.partition("=")
        default = getattr(UnlearnConfig(), key)  # AttributeError: unknown field
        if isinstance(default, bool):
            overrides[key] = value.lower() in ("1", "true", "yes")
        elif default is None:
            overrides[key] = int(value)
        else:
            overrides[key] = type(default)(value)
    t_start = time.perf_counter()
    if args.summarize_only:
        summary = summarize(out / "results.jsonl", args, float("nan"))
        atomic_write_text(out / "summary.md", summary)
        print(summary)
        return
    c_f = args.forget_class
    data = load_dataset("digits")
    forget, retain = split_forget_retain(data.train, c_f, data.num_classes)
    aux = auxiliary_set(data.holdout, c_f)
    reference = data.holdout.subset(data.holdout.labels != c_f)
    logger.info("|D_f|=%d |D_r|=%d |D_au|=%d", len(forget), len(retain), len(aux))
    # One fixed judge (seed 0) measures every model.
    judge, judge_acc = train_judge("digits", data.train, data.holdout, seed=0)
    eval_cfg = EvalConfig(forget_samples=args.forget_samples)
    results_file = out / "results.jsonl"
    done = set()
    if results_file.exists():
        for line in results_file.read_text().splitlines():
            r = json.loads(line)
            done.add((r["seed"], r["method"]))
    attack = {
        name: RelearnConfig(
            attack_data=name,
            steps=args.attack_steps,
            lr=args.attack_lr,
            batch_size=args.attack_batch,
            eval_every=args.eval_every,
            progress=False,
        )
        for name in args.attacks
    }
    for seed in args.seeds:
        base_dir = out / f"seed{seed}" / "base"
        if (base_dir / "model_index.json").exists():
            base = load_pipeline(base_dir)
        else:
            t0 = time.perf_counter()
            base = pretrain(
                data.train,
                PretrainConfig(
                    arch=args.arch,
                    steps=args.pretrain_steps,
                    lr=args.pretrain_lr,
                    batch_size=args.pretrain_batch,
                    seed=seed,
                    device="cpu",
                    progress=False,
                ),
            )
            logger.info("seed %d: pretrain took %.1f s", seed, time.perf_counter() - t0)
            save_pipeline(
                base,
                base_dir,
                {
                    "dataset": "digits",
                    "method": "pretrain",
                    "seed": seed,
                    "arch": args.arch,
                },
            )
        base.set_progress_bar_config(disable=True)
        base_metrics = evaluate_pipeline(base, judge, c_f, reference, eval_cfg)
        for method in args.methods:
            run_name = method + args.label
            if (seed, run_name) in done:
                continue
            t0 = time.perf_counter()
            cfg = UnlearnConfig(
                method=method,
                forget_class=c_f,
                steps=args.unlearn_steps,
                seed=seed,
                device="cpu",
                progress=False,
                retrain_steps=args.pretrain_steps,
                retrain_batch_size=args.pretrain_batch,
                retrain_lr=args.pretrain_lr,
                **overrides,
            )
            stop_fn = None
            if method == "ga":
                # Gradient ascent has no minimum; the usual rule stops it once the
                # forgotten class is gone (here: <= 10% of 64 samples judged c_f).
                def stop_fn(p):
                    m = forget_metrics(p, judge, c_f, 64, eval_cfg, "ga-stop")
                    return m["forget_rate"] <= 0.1

            pipe, log = unlearn_with_log(base, forget, retain, cfg, stop_fn=stop_fn)
            t_unlearn = time.perf_counter() - t0
            row = {
                "seed": seed,
                "method": run_name,
                "overrides": overrides,
                "forget_class": c_f,
                "unlearn_steps_run": log.steps_run,
                "stopped_early": log.stopped_early,
                "unlearn_s": t_unlearn,
                "base": base_metrics,
                "after_unlearn": evaluate_pipeline(
                    pipe, judge, c_f, reference, eval_cfg
                ),
                "param_change": parameter_change_norms(base.unet, pipe.unet, c_f),
                "judge_holdout_acc": judge_acc,
            }

            def probe(p):
                return forget_metrics(p, judge, c_f, 100, eval_cfg, "curve")

            curves = {}
            for name, acfg in attack.items():
                acfg = RelearnConfig(**{**acfg.__dict__, "seed": seed})
                d_att = retain if name == "retain" else aux
                attacked, curve = run_relearning_attack(pipe, d_att, c_f, acfg, probe)
                row[f"after_dimra_{name}"] = evaluate_pipeline(
                    attacked, judge, c_f, reference, eval_cfg
                )
                row[f"curve_{name}"] = curve.as_dict()
                curves[f"{run_name} / D_{'r' if name == 'retain' else 'au'}"] = (
                    curve.steps,
                    curve.forget_rate,
                )
                if seed == args.seeds[0]:
                    save_class_grid(
                        attacked,
                        out / "grids" / f"{run_name}_dimra_{name}.png",
                        title=f"{run_name} after DiMRA on {name}",
                    )
            row["wall_s"] = time.perf_counter() - t0
            if seed == args.seeds[0]:
                save_class_grid(
                    pipe,
                    out / "grids" / f"{run_name}_after.png",
                    title=f"{run_name}, forget {c_f}",
                )
            save_curves(
                curves,
                out / "curves" / f"seed{seed}_{run_name}.png",
                title=f"{run_name}, seed {seed}, attack lr {args.attack_lr}",
            )
            with results_file.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
            a = row["after_unlearn"]
            logger.info(
                "seed %d %-10s unlearn fr %.3f ret %.3f | DiMRA D_r %.3f D_au %.3f"
                " | %.0f s",
                seed,
                run_name,
                a["forget_rate"],
                a["retain_acc"],
                row.get("after_dimra_retain", {}).get("forget_rate", float("nan")),
                row.get("after_dimra_aux", {}).get("forget_rate", float("nan")),
                row["wall_s"],
            )
        if seed == args.seeds[0]:
            save_class_grid(base, out / "grids" / "base.png", title="pre-trained")
    wall = time.perf_counter() - t_start
    summary = summarize(results_file, args, wall)
    atomic_write_text(out / "summary.md", summary)
    print(summary)


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


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
