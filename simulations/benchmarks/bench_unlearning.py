"""Benchmark: one DiMUM step vs one plain fine-tune step, and the CPU grid's wall time.

    nice -n 10 .venv/bin/python simulations/benchmarks/bench_unlearning.py
    nice -n 10 .venv/bin/python simulations/benchmarks/bench_unlearning.py --grid

Steps are timed interleaved (FT, DiMUM, FT, DiMUM, ...) on the same model so that
load from other processes hits both alike; the median of the per-pair ratios is
reported. Two pairings: equal images per step (FT batch 2B vs DiMUM B retain + B
alternative) and equal retain batch (FT B vs DiMUM B + B). One CSV row per scenario is
appended to --csv with device and commit.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from trainkit import git_commit, make_generator, set_cpu_threads

try:  # run as a script: simulations/benchmarks/ is on sys.path
    from summary import report
except ImportError:  # imported as simulations.benchmarks.<name>
    from simulations.benchmarks.summary import report
from unlearning import UnlearnConfig, build_model, build_scheduler, load_dataset
from unlearning.data import split_forget_retain
from unlearning.pipeline import ClassConditionalDDPMPipeline
from unlearning.unlearn import DiMUM, FineTune

ROOT = Path(__file__).resolve().parents[2]
CSV_FIELDS = [
    "scenario",
    "arch",
    "finetune_batch",
    "dimum_batch",
    "finetune_ms_median",
    "dimum_ms_median",
    "median_ratio",
    "grid_wall_s",
    "threads",
    "device",
    "commit",
]


def time_steps(objectives, model, reps: int, warmup: int = 5) -> list[list[float]]:
    """Interleave one optimizer step of each objective; return per-objective times."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    times = [[] for _ in objectives]
    for i in range(warmup + reps):
        for j, obj in enumerate(objectives):
            t0 = time.perf_counter()
            loss, _ = obj.loss(i)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            dt = time.perf_counter() - t0
            if i >= warmup:
                times[j].append(dt)
    return times


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--arch", default="mlp", choices=["mlp", "unet"], help="model")
    p.add_argument("--batch", type=int, default=128, help="B, retain images per step")
    p.add_argument("--reps", type=int, default=60, help="timed step pairs")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument(
        "--grid",
        action="store_true",
        help="also run and time the full 3-seed CPU grid (about 30 min)",
    )
    p.add_argument(
        "--grid-out",
        default="simulations/results/cache/bench_grid",
        help="grid output folder (fresh runs only)",
    )
    p.add_argument(
        "--csv",
        default="simulations/results/cache/bench_unlearning.csv",
        help="CSV to append rows to",
    )
    return p.parse_args(argv)


def step_rows(args: argparse.Namespace) -> list[dict]:
    """Time DiMUM vs fine-tune steps in both pairings; one printed row per pairing."""
    data = load_dataset("digits")
    forget, retain = split_forget_retain(data.train, 0, 10)
    torch.manual_seed(0)
    model = build_model(args.arch, "digits")
    pipe = ClassConditionalDDPMPipeline(unet=model, scheduler=build_scheduler())
    pipe.set_progress_bar_config(disable=True)
    model.train()
    rows = []
    b = args.batch
    for name, ft_batch in (("equal images per step", 2 * b), ("equal retain batch", b)):
        gen = make_generator(0, "bench", name)
        ft = FineTune(
            pipe,
            forget,
            retain,
            UnlearnConfig(method="finetune", batch_size=ft_batch),
            gen,
        )
        dm = DiMUM(
            pipe, forget, retain, UnlearnConfig(method="dimum", batch_size=b), gen
        )
        t_ft, t_dm = time_steps([ft, dm], model, args.reps)
        ratios = [d / f for d, f in zip(t_dm, t_ft)]
        row = {
            "scenario": f"dimum_vs_finetune ({name})",
            "arch": args.arch,
            "finetune_batch": ft_batch,
            "dimum_batch": f"{b}+{b}",
            "finetune_ms_median": 1e3 * statistics.median(t_ft),
            "dimum_ms_median": 1e3 * statistics.median(t_dm),
            "median_ratio": statistics.median(ratios),
            "threads": torch.get_num_threads(),
            "device": "cpu",
            "commit": git_commit(),
        }
        rows.append(row)
        print(
            f"{row['scenario']}: FT {row['finetune_ms_median']:.1f} ms (batch "
            f"{ft_batch}), DiMUM {row['dimum_ms_median']:.1f} ms (batch {b}+{b}), "
            f"median ratio {row['median_ratio']:.3f} (goal <= 1.1)"
        )
        report("bench_unlearning", f"DiMUM / fine-tune step, {row['scenario']}",
               row["median_ratio"], "fine-tune step, interleaved", "<= 1.1")
    return rows


def grid_row(grid_out: str) -> dict:
    """Run the 3-seed CPU grid in a fresh process and time it."""
    t0 = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "simulations" / "run_unlearning_grid.py"),
            "--seeds",
            "0",
            "1",
            "2",
            "--out",
            grid_out,
        ],
        check=True,
        cwd=ROOT,
    )
    wall = time.perf_counter() - t0
    print(f"CPU grid wall time: {wall:.0f} s = {wall / 60:.1f} min (goal <= 30 min)")
    report("bench_unlearning", "CPU grid wall time", wall / 60, "-", "<= 30", unit="min")
    return {
        "scenario": "cpu grid, 3 seeds x 8 methods x 2 attacks",
        "grid_wall_s": wall,
        "threads": 1,
        "device": "cpu",
        "commit": git_commit(),
    }


def append_csv(path: str, rows: list[dict]) -> None:
    """Append ``rows`` to the CSV at ``path`` (header first if it is new)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    new = not out.exists()
    with out.open("a", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_FIELDS, restval="")
        if new:
            w.writeheader()
        w.writerows(rows)


def main(argv=None) -> None:
    args = parse_args(argv)
    set_cpu_threads(args.threads)
    rows = step_rows(args)
    if args.grid:
        rows.append(grid_row(args.grid_out))
    append_csv(args.csv, rows)


if __name__ == "__main__":
    main()
