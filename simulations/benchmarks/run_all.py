"""Run every benchmark and write one summary table of ratios, each with its goal.

    python simulations/benchmarks/run_all.py                 # the settings of simulations/README.md
    python simulations/benchmarks/run_all.py --quick         # CI-sized: minutes, noisy ratios
    python simulations/benchmarks/run_all.py --only bench_step bench_dp_step

Each benchmark measures its ratios against a baseline timed in the same run
(``summary.report``); this driver runs them one after another in fresh processes,
collects those rows and writes ``summary.md`` and ``summary.csv`` into ``--out`` with
the load average before and after each benchmark, its wall time, the commit and the
exact commands. A benchmark that fails is listed as failed; the others still run. The
transport benchmark starts real Flower processes (simulation, loopback deployment with
TLS and node auth) and is the long one: ``--skip bench_transport`` leaves it out.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent

# name -> (full arguments, --quick arguments); the full ones are the README's settings
BENCHMARKS: dict[str, tuple[list[str], list[str]]] = {
    "bench_step": (["--threads", "1", "--blocks", "7", "--steps", "50"],
                   ["--threads", "1", "--blocks", "3", "--steps", "5"]),
    "bench_step_joint": (["--objective", "joint", "--baseline", "paper", "--trunk", "3",
                          "--threads", "1", "--blocks", "5", "--steps", "20"],
                         ["--objective", "joint", "--baseline", "paper", "--trunk", "3",
                          "--threads", "1", "--blocks", "3", "--steps", "5"]),
    "bench_dp_step": (["--integrated", "--repeats", "200", "--threads", "1"],
                      ["--integrated", "--repeats", "20", "--threads", "1"]),
    "bench_import": (["--repeats", "7"], ["--repeats", "2"]),
    "bench_unlearning": ([], ["--reps", "6"]),
    "bench_transport": (["--only-deploy"],
                        ["--only-deploy", "--steps", "64", "--exact-deploy-steps", "10",
                         "--launcher-latency-steps", "5", "--skip-stock"]),
}
SCRIPT = {"bench_step_joint": "bench_step"}  # benchmarks that are a setting of another
HAS_CSV = {"bench_step", "bench_step_joint", "bench_transport", "bench_unlearning"}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="CI-sized settings")
    p.add_argument("--only", nargs="+", choices=list(BENCHMARKS), default=None)
    p.add_argument("--skip", nargs="+", choices=list(BENCHMARKS), default=[])
    p.add_argument("--out", default="simulations/results/benchmarks",
                   help="folder of summary.md / summary.csv")
    return p.parse_args(argv)


def run_one(name: str, quick: bool, log_dir: Path) -> dict:
    """Run benchmark ``name`` in a fresh process; its summary rows, wall time and load."""
    full, fast = BENCHMARKS[name]
    script = HERE / f"{SCRIPT.get(name, name)}.py"
    bench_args = [*(fast if quick else full)]
    if name in HAS_CSV:  # their own CSV rows go beside the summary, not into the repo's
        bench_args += ["--csv", str(log_dir / f"{name}.csv")]
    cmd = [sys.executable, str(script), *bench_args]
    with tempfile.NamedTemporaryFile("r", suffix=".jsonl", delete=False) as fh:
        rows_file = Path(fh.name)
    env = {**os.environ, "BENCH_SUMMARY": str(rows_file)}
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    log = log_dir / f"{name}.log"
    with log.open("w") as out:
        rc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - t0
    rows = [json.loads(line) for line in rows_file.read_text().splitlines() if line.strip()]
    rows_file.unlink(missing_ok=True)
    shown = script.relative_to(ROOT) if script.is_relative_to(ROOT) else script.name
    return {"name": name, "command": " ".join(["python", str(shown),
                                               *(fast if quick else full)]),
            "rc": rc, "wall_s": wall, "load_before": load0,
            "load_after": os.getloadavg()[0], "rows": rows, "log": log.name}


def to_markdown(runs: list[dict], meta: dict) -> str:
    lines = [f"# Benchmarks ({'quick' if meta['quick'] else 'full'} settings)", "",
             f"commit {meta['commit']}, {meta['machine']}, {meta['cpus']} CPUs, "
             f"python {meta['python']}; every ratio is against a baseline measured in "
             "the same run", "",
             "| benchmark | measure | value | baseline | goal | met |",
             "| --- | --- | --- | --- | --- | --- |"]
    for run in runs:
        if run["rc"] != 0:
            lines.append(f"| {run['name']} | **failed** (exit {run['rc']}, see "
                         f"{run['log']}) | | | | |")
        for r in run["rows"]:
            met = {True: "yes", False: "**no**", None: "-"}[r["met"]]
            lines.append(f"| {run['name']} | {r['measure']} | {r['value']:.3f} {r['unit']} "
                         f"| {r['baseline']} | {r['goal'] or '-'} | {met} |")
    lines += ["", "| benchmark | command | wall s | load before / after |",
              "| --- | --- | --- | --- |"]
    for run in runs:
        lines.append(f"| {run['name']} | `{run['command']}` | {run['wall_s']:.0f} | "
                     f"{run['load_before']:.2f} / {run['load_after']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    from trainkit import atomic_write_text, git_commit

    names = [n for n in (args.only or BENCHMARKS) if n not in args.skip]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs = []
    for name in names:
        print(f"run_all: {name} ...", flush=True)
        runs.append(run_one(name, args.quick, out))
        print(f"run_all: {name} exit {runs[-1]['rc']} in {runs[-1]['wall_s']:.0f} s, "
              f"{len(runs[-1]['rows'])} ratios", flush=True)
    meta = {"quick": args.quick, "commit": git_commit(), "machine": platform.machine(),
            "cpus": os.cpu_count(), "python": platform.python_version()}
    md = to_markdown(runs, meta)
    atomic_write_text(out / "summary.md", md)
    with (out / "summary.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["bench", "measure", "value", "unit", "baseline",
                                           "goal", "met", "commit"])
        w.writeheader()
        for run in runs:
            for r in run["rows"]:
                w.writerow({**r, "commit": meta["commit"]})
    print(md)
    return 0 if all(r["rc"] == 0 for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
