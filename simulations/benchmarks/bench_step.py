"""In-process federated VFLGAN step vs the single-process reference step.

Same model (MNIST sizes by default: 2 parties x 392 pixels, B=64), same seeds, same
data. Runs are interleaved (reference block, federated block, alternating which goes
first) and the median of the per-block ratios is printed, with ms/step of each and the
process's peak RSS. Appends a CSV row to simulations/benchmarks/results.csv.

    python simulations/benchmarks/bench_step.py --threads 2 --blocks 7 --steps 50

``--objective joint --baseline paper`` times the joint objective's federated step against
the paper objective's federated step instead (goal: ratio <= 1.3). ``--trunk N`` gives the
timed side (and, against ``reference``, the reference) a shared generator trunk of N
blocks, ``--gram`` sends the joint penalty's Gram matrices with the IFs
(``joint_exchange = "gram"``). The federated side's round trips per step are printed too.
"""

from __future__ import annotations

import argparse
import csv
import platform
import resource
import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from trainkit import git_commit
from vflgan_app.architectures import get_architecture
from vflgan_app.core.coordinator import Coordinator
from vflgan_app.core.joint import JointCriticGradients, JointServerCritic
from vflgan_app.core.party import Party, PartySettings
from vflgan_app.core.protocol import InProcessTransport
from vflgan_app.core.reference import ReferenceVFLGAN
from vflgan_app.data.partition import prepare_parties

try:  # run as a script: simulations/benchmarks/ is on sys.path
    from summary import report
except ImportError:  # imported as simulations.benchmarks.<name>
    from simulations.benchmarks.summary import report


def build(arch_name: str, rows: int, seed: int, objective: str = "paper", trunk: int = 0,
          gram: bool = False):
    arch = get_architecture(arch_name)
    h = 28 if arch_name == "mnist" else 8
    rng = np.random.default_rng(seed)
    pix = rng.integers(0, 256, size=(rows, h * h)).astype(np.float32)
    cols = [f"px_{i}" for i in range(h * h)]
    table = pd.DataFrame(pix, columns=cols)
    table.insert(0, "record_id", np.arange(rows))
    half = len(cols) // 2
    tables = [table[["record_id", *cols[:half]]], table[["record_id", *cols[half:]]]]
    parties_data = prepare_parties(
        tables, "record_id", bounded={c: (0, 255) for c in cols}
    )
    settings = PartySettings(seed=seed, lambda_gp=arch.lambda_gp, lr=arch.lr, trunk=trunk)
    joint = objective == "joint"
    parties = [Party(d, arch, settings,
                     critic_rule=JointCriticGradients(gram) if joint else None)
               for d in parties_data]
    coord = Coordinator(InProcessTransport(parties), arch, seed=seed,
                        critic_rule=JointServerCritic() if joint else None,
                        generator_trunk=trunk)
    coord.handshake()
    ref = ReferenceVFLGAN(
        [d.x for d in parties_data],
        [d.schema.output_spans() for d in parties_data],
        arch,
        seed,
        objective=objective,
        generator_trunk=trunk,
    )
    return coord, ref


def time_block(fn, steps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - t0) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--arch", default="mnist")
    ap.add_argument("--rows", type=int, default=2048)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--blocks", type=int, default=7, help="interleaved timing blocks per side"
    )
    ap.add_argument(
        "--steps", type=int, default=50, help="steps per block (multiple of 5)"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--csv", default="simulations/benchmarks/results.csv")
    ap.add_argument("--objective", choices=["paper", "joint"], default="paper",
                    help="objective of the federated step")
    ap.add_argument("--baseline", choices=["reference", "paper"], default="reference",
                    help="single-process reference of the same objective, or the paper "
                         "objective's federated step")
    ap.add_argument("--trunk", type=int, default=0,
                    help="shared generator trunk blocks of the timed side (0 = none)")
    ap.add_argument("--gram", action="store_true",
                    help="joint objective: Gram matrices with the IFs (joint_exchange gram)")
    args = ap.parse_args()
    if args.gram and args.objective != "joint":
        ap.error(f"--gram: needs --objective joint, got --objective {args.objective}")
    torch.set_num_threads(args.threads)
    coord, ref = build(args.arch, args.rows, args.seed, args.objective, args.trunk,
                       args.gram)
    fed_step = coord.train_step
    ref_step = ref.train_step
    if args.baseline == "paper":
        base, _ = build(args.arch, args.rows, args.seed, "paper")
        ref_step = base.train_step
    time_block(fed_step, 10)  # warm-up
    time_block(ref_step, 10)
    ratios, fed_ms, ref_ms = [], [], []
    for b in range(args.blocks):
        order = [("ref", ref_step), ("fed", fed_step)]
        if b % 2:
            order.reverse()
        got = {name: time_block(fn, args.steps) for name, fn in order}
        ratios.append(got["fed"] / got["ref"])
        fed_ms.append(1000 * got["fed"])
        ref_ms.append(1000 * got["ref"])
    coord.flush()
    trips_per_step = (coord.transport.round_trips - 1) / coord.step  # less the handshake
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    row = {
        "scenario": f"vflgan-step-{args.arch}"
        + ("" if args.objective == "paper" and args.baseline == "reference"
           else f"-{args.objective}-vs-{args.baseline}")
        + (f"-trunk{args.trunk}" if args.trunk else "") + ("-gram" if args.gram else ""),
        "device": platform.processor() or platform.machine(),
        "threads": args.threads,
        "batch": coord.arch.batch_size,
        "blocks": args.blocks,
        "steps_per_block": args.steps,
        "ref_ms_median": round(statistics.median(ref_ms), 2),
        "fed_ms_median": round(statistics.median(fed_ms), 2),
        "ratio_median": round(statistics.median(ratios), 3),
        "ratio_min": round(min(ratios), 3),
        "ratio_max": round(max(ratios), 3),
        "peak_rss_mb": round(peak_mb, 1),
        "round_trips_per_step": round(trips_per_step, 3),
        "commit": git_commit(),
    }
    for k, v in row.items():
        print(f"{k:>16}: {v}")
    print(
        f"federated/{args.baseline} median ratio {row['ratio_median']} (goal <= "
        f"{1.15 if args.baseline == 'reference' else 1.3}); "
        f"reference {row['ref_ms_median']} ms/step, federated {row['fed_ms_median']} ms/step; "
        f"peak RSS {row['peak_rss_mb']} MB"
    )
    append_row(Path(args.csv), row)
    goal = "<= 1.15" if args.baseline == "reference" else "<= 1.3"
    report("bench_step", f"{row['scenario']}: federated / {args.baseline} step time",
           row["ratio_median"], f"{args.baseline} step, same run", goal)
    if args.objective == "joint":
        report("bench_step", f"{row['scenario']}: round trips per step (exact mode)",
               trips_per_step, "-", "<= 2", unit="round trips")


def append_row(path: Path, row: dict) -> None:
    """Append ``row`` to the CSV, widening its header when the row brings a new column."""
    rows, fields = [], list(row)
    if path.exists():
        with path.open(newline="") as fh:
            reader = csv.DictReader(fh)
            rows = list(reader)
            fields = [*(reader.fieldnames or []), *(k for k in row
                                                    if k not in (reader.fieldnames or []))]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields, restval="")
        w.writeheader()
        w.writerows([*rows, row])


if __name__ == "__main__":
    main()
