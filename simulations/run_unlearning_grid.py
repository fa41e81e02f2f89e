"""CPU grid on 8x8 digits: every unlearning method x DiMRA (D_r and D_au) x seeds.

Reproduces dimum.md section 9.3 qualitatively: swap-label/SalUn-type unlearning comes
back under DiMRA at an attack lr near the pre-training lr; DiMUM stays near 0.

    nice -n 10 .venv/bin/python simulations/run_unlearning_grid.py --seeds 0 1 2

Writes results.jsonl (one row per seed x method, resumable), summary.md, curves and
sample grids under --out (git-ignored by default).

``--robust`` runs the issue-15 protocol instead (unlearning/robust_grid.py): seeds x
forget classes x methods x attack specs, one JSON per finished cell under
``--robust-out/cells`` (skipped on rerun), a judge ensemble, dense relearning curves at
w = 2 and w = 0 with peak / late-mean / endpoint, and summary.csv + summary.md:

    nice -n 10 .venv/bin/python simulations/run_unlearning_grid.py --robust \
        --seeds 0 1 2 --classes 0 3 8 --attack-specs retain:1e-3:constant:1000
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from unlearning_grid_summary import (  # noqa: E402 (beside this script)
    summarize,
    write_robust_summary,
)

from trainkit import atomic_write_text, set_cpu_threads
from unlearning import (
    EvalConfig,
    Judge,
    PretrainConfig,
    RelearnConfig,
    UnlearnConfig,
    evaluate_pipeline,
    load_dataset,
    parameter_change_norms,
    pretrain,
    run_relearning_attack,
    train_judge,
    unlearn_with_log,
)
from unlearning.checkpoint import load_pipeline, save_pipeline
from unlearning.config import METHODS
from unlearning.data import DatasetSplits, ExperimentSplits, experiment_splits
from unlearning.evaluate import curve_probe, forget_metrics
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
        nargs="*",
        default=["retain", "aux"],
        choices=["retain", "aux"],
        help="DiMRA attacker data sets to run (none: after-unlearning metrics only)",
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
    p.add_argument(
        "--sa-steps",
        type=int,
        default=20000,
        help="Selective Amnesia's step budget (its authors' n_iters), with the judge stop",
    )
    p.add_argument(
        "--sa-stop-every",
        type=int,
        default=250,
        help="Selective Amnesia: steps between judge stop checks",
    )
    p.add_argument(
        "--judge-stop-rate",
        type=float,
        default=0.1,
        help="judge stop (ga, sa): stop once at most this fraction of 64 samples of "
        "the forgotten class is judged as it",
    )
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
    r = p.add_argument_group("robust protocol (issue 15)")
    r.add_argument("--robust", action="store_true", help="run the robust grid")
    r.add_argument(
        "--classes", type=int, nargs="+", default=[0, 3, 8], help="forget classes"
    )
    r.add_argument(
        "--attack-specs",
        nargs="*",
        default=["retain:1e-3:constant:1000"],
        help="DATA:LR:SCHEDULE:STEPS[:lastN|:loraN][:untie], DATA in retain, aux, "
        "retain_noalt, fewshotN (see unlearning/robust_grid.py)",
    )
    r.add_argument(
        "--robust-out",
        default="simulations/results/unlearning",
        help="cells/*.json, summary.csv and summary.md go here (tracked)",
    )
    r.add_argument(
        "--cache",
        default="simulations/results/cache/unlearning_robust",
        help="model checkpoints and the judge ensemble (git-ignored)",
    )
    r.add_argument(
        "--curve-samples", type=int, default=300, help="c_f samples per curve point"
    )
    r.add_argument(
        "--curve-every", type=int, default=100, help="attack steps between checkpoints"
    )
    r.add_argument(
        "--final-samples",
        type=int,
        default=500,
        help="c_f samples (per w) measuring each unlearned model",
    )
    r.add_argument("--late-k", type=int, default=4, help="checkpoints in the late mean")
    r.add_argument(
        "--threshold", type=float, default=0.9, help="ensemble confidence threshold"
    )
    r.add_argument(
        "--judge-seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="judges"
    )
    r.add_argument(
        "--judges",
        default=None,
        help="judge ensemble file (default: CACHE/judges.pt); the UNet grid shares the "
        "MLP grid's judges",
    )
    r.add_argument(
        "--summary-only", action="store_true", help="robust: rebuild the summary only"
    )
    return p.parse_args(argv)


def parse_overrides(items: list[str]) -> dict:
    """``--set FIELD=VALUE`` items -> UnlearnConfig overrides, typed like the field."""
    overrides = {}
    for item in items:
        key, _, value = item.partition("=")
        default = getattr(UnlearnConfig(), key)  # AttributeError: unknown field
        if isinstance(default, bool):
            overrides[key] = value.lower() in ("1", "true", "yes")
        elif default is None:
            overrides[key] = int(value)
        else:
            overrides[key] = type(default)(value)
    return overrides


@dataclass
class Grid:
    """What every cell of the grid shares: data, judge, budgets and the output."""

    args: argparse.Namespace
    out: Path
    overrides: dict
    data: DatasetSplits
    splits: ExperimentSplits
    judge: Judge
    judge_acc: float
    eval_cfg: EvalConfig
    attack: dict[str, RelearnConfig]

    @property
    def results_file(self) -> Path:
        return self.out / "results.jsonl"

    def evaluate(self, pipe) -> dict:
        """All sample metrics of ``pipe`` (fixed judge, forget class and reference)."""
        c_f = self.args.forget_class
        return evaluate_pipeline(
            pipe, self.judge, c_f, self.splits.reference, self.eval_cfg
        )


def build_grid(args: argparse.Namespace, out: Path, overrides: dict) -> Grid:
    """Load the digits splits, train the judge and fix the DiMRA budgets."""
    c_f = args.forget_class
    data = load_dataset("digits")
    splits = experiment_splits(data, c_f)
    logger.info(
        "|D_f|=%d |D_r|=%d |D_au|=%d",
        len(splits.forget),
        len(splits.retain),
        len(splits.aux),
    )
    # One fixed judge (seed 0) measures every model.
    judge, judge_acc = train_judge("digits", data.train, data.holdout, seed=0)
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
    eval_cfg = EvalConfig(forget_samples=args.forget_samples)
    return Grid(args, out, overrides, data, splits, judge, judge_acc, eval_cfg, attack)


def done_cells(results_file: Path) -> set[tuple[int, str]]:
    """(seed, method) pairs already in results.jsonl (resume)."""
    done = set()
    if results_file.exists():
        for line in results_file.read_text().splitlines():
            r = json.loads(line)
            done.add((r["seed"], r["method"]))
    return done


def load_or_pretrain(grid: Grid, seed: int):
    """The seed's pre-trained model: from its cache folder, else trained and saved."""
    args = grid.args
    base_dir = grid.out / f"seed{seed}" / "base"
    if (base_dir / "model_index.json").exists():
        return load_pipeline(base_dir)
    t0 = time.perf_counter()
    base = pretrain(
        grid.data.train,
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
        {"dataset": "digits", "method": "pretrain", "seed": seed, "arch": args.arch},
    )
    return base


def unlearn_cell(grid: Grid, base, seed: int, method: str):
    """Unlearn ``method`` from ``base`` -> (pipe, log).

    Gradient ascent and Selective Amnesia stop on the judge: every ``stop_every``
    steps 64 samples of c_f are drawn and the run stops once at most
    ``--judge-stop-rate`` of them are judged c_f. GA checks every 5 steps (its
    divergence guard is asked at the same steps, after the judge); SA runs up to its
    authors' 20,000 steps (``--sa-steps``) and checks every ``--sa-stop-every``.
    """
    args, c_f, eval_cfg = grid.args, grid.args.forget_class, grid.eval_cfg
    budget = {"steps": args.unlearn_steps}
    if method == "sa":
        budget = {"steps": args.sa_steps, "stop_every": args.sa_stop_every}
    cfg = UnlearnConfig(
        method=method,
        forget_class=c_f,
        seed=seed,
        device="cpu",
        progress=False,
        retrain_steps=args.pretrain_steps,
        retrain_batch_size=args.pretrain_batch,
        retrain_lr=args.pretrain_lr,
        **{**budget, **grid.overrides},
    )
    stop_fn = None
    if method in ("ga", "sa"):

        def stop_fn(p):
            m = forget_metrics(p, grid.judge, c_f, 64, eval_cfg, f"{method}-stop")
            return m["forget_rate"] <= args.judge_stop_rate

    return unlearn_with_log(
        base, grid.splits.forget, grid.splits.retain, cfg, stop_fn=stop_fn
    )


def attack_cell(grid: Grid, pipe, seed: int, run_name: str, row: dict) -> dict:
    """DiMRA on each attacker set; adds its metrics and curve to ``row``.

    Returns the curves for the plot, ``{label: (steps, forget rates)}``.
    """
    args, c_f = grid.args, grid.args.forget_class
    probe = curve_probe(grid.judge, c_f, 100, grid.eval_cfg)
    curves = {}
    for name, acfg in grid.attack.items():
        acfg = RelearnConfig(**{**acfg.__dict__, "seed": seed})
        d_att = grid.splits.retain if name == "retain" else grid.splits.aux
        attacked, curve = run_relearning_attack(pipe, d_att, c_f, acfg, probe)
        row[f"after_dimra_{name}"] = grid.evaluate(attacked)
        row[f"curve_{name}"] = curve.as_dict()
        curves[f"{run_name} / D_{'r' if name == 'retain' else 'au'}"] = (
            curve.steps,
            curve.forget_rate,
        )
        if seed == args.seeds[0]:
            save_class_grid(
                attacked,
                grid.out / "grids" / f"{run_name}_dimra_{name}.png",
                title=f"{run_name} after DiMRA on {name}",
            )
    return curves


def log_cell(row: dict) -> None:
    """One log line per finished cell."""
    a = row["after_unlearn"]
    logger.info(
        "seed %d %-10s unlearn fr %.3f ret %.3f FD %.1f, %d steps (%s) | DiMRA D_r %.3f"
        " D_au %.3f | %.0f s",
        row["seed"],
        row["method"],
        a["forget_rate"],
        a["retain_acc"],
        a["judge_fd"],
        row["unlearn_steps_run"],
        row["stop_reason"] or "budget",
        row.get("after_dimra_retain", {}).get("forget_rate", float("nan")),
        row.get("after_dimra_aux", {}).get("forget_rate", float("nan")),
        row["wall_s"],
    )


def run_cell(grid: Grid, base, base_metrics: dict, seed: int, method: str) -> None:
    """One seed x method cell: unlearn, attack, plot, append a row to results.jsonl."""
    args, c_f = grid.args, grid.args.forget_class
    run_name = method + args.label
    t0 = time.perf_counter()
    pipe, log = unlearn_cell(grid, base, seed, method)
    t_unlearn = time.perf_counter() - t0
    row = {
        "seed": seed,
        "method": run_name,
        "overrides": grid.overrides,
        "forget_class": c_f,
        "unlearn_steps_run": log.steps_run,
        "stopped_early": log.stopped_early,
        "stop_reason": log.extra.get("stop_reason"),
        "inner_steps": log.extra.get("inner_steps"),
        "unlearn_s": t_unlearn,
        "base": base_metrics,
        "after_unlearn": grid.evaluate(pipe),
        "param_change": parameter_change_norms(base.unet, pipe.unet, c_f),
        "judge_holdout_acc": grid.judge_acc,
    }
    curves = attack_cell(grid, pipe, seed, run_name, row)
    row["wall_s"] = time.perf_counter() - t0
    if seed == args.seeds[0]:
        save_class_grid(
            pipe,
            grid.out / "grids" / f"{run_name}_after.png",
            title=f"{run_name}, forget {c_f}",
        )
    if curves:
        save_curves(
            curves,
            grid.out / "curves" / f"seed{seed}_{run_name}.png",
            title=f"{run_name}, seed {seed}, attack lr {args.attack_lr}",
        )
    with grid.results_file.open("a") as fh:
        fh.write(json.dumps(row) + "\n")
    log_cell(row)


def write_summary(results_file: Path, args: argparse.Namespace, wall: float) -> None:
    """Rebuild summary.md (and the mean-curve PNGs) and print it."""
    summary = summarize(results_file, args, wall)
    atomic_write_text(results_file.parent / "summary.md", summary)
    print(summary)


def main(argv=None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    set_cpu_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    overrides = parse_overrides(args.set)
    t_start = time.perf_counter()
    if args.robust:
        run_robust(args)
        return
    if args.summarize_only:
        write_summary(out / "results.jsonl", args, float("nan"))
        return
    grid = build_grid(args, out, overrides)
    done = done_cells(grid.results_file)
    for seed in args.seeds:
        base = load_or_pretrain(grid, seed)
        base.set_progress_bar_config(disable=True)
        base_metrics = grid.evaluate(base)
        for method in args.methods:
            if (seed, method + args.label) not in done:
                run_cell(grid, base, base_metrics, seed, method)
        if seed == args.seeds[0]:
            save_class_grid(base, out / "grids" / "base.png", title="pre-trained")
    write_summary(grid.results_file, args, time.perf_counter() - t_start)


def run_robust(args: argparse.Namespace) -> None:
    """The issue-15 grid: resumable JSON cells, then summary.csv and summary.md."""
    from unlearning.robust_grid import ROBUST_METHODS, AttackSpec, GridSpec, RobustGrid

    out = Path(args.robust_out)
    if not args.summary_only:
        methods = (
            args.methods if args.methods != list(METHODS) else list(ROBUST_METHODS)
        )
        spec = GridSpec(
            seeds=args.seeds,
            classes=args.classes,
            methods=methods,
            attacks=[AttackSpec.parse(a) for a in args.attack_specs],
            out=out,
            cache=Path(args.cache),
            eval_every=args.curve_every,
            curve_samples=args.curve_samples,
            forget_samples=args.final_samples,
            late_k=args.late_k,
            threshold=args.threshold,
            judge_seeds=tuple(args.judge_seeds),
            pretrain_steps=args.pretrain_steps,
            unlearn_steps=args.unlearn_steps,
            overrides=parse_overrides(args.set),
            label=args.label,
            arch=args.arch,
            judges=Path(args.judges) if args.judges else None,
        )
        t0 = time.perf_counter()
        RobustGrid(spec).run()
        logger.info("robust grid: %.0f s", time.perf_counter() - t0)
    print(write_robust_summary(out))


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
