"""K-vs-quality curve of the chunked mode (steps-per-round = K) on the same step budget.

Trains VFLGAN on digits (2 parties) with the in-process transport for each K (the
Flower transport gives identical numbers: tests/vflgan_app/flower/test_flower.py), then scores
each model with the same Evaluator: FD (autoencoder latent) and cross-party correlation
error, plus the dependence report's per-party classifier agreement,
focused (top-decile) correlation error and party-shuffle AUC, next to the
independent-latent control. K = 1 here is the exact algorithm
(Coordinator.train_step); K > 1 is Coordinator.train_chunk.

    python simulations/run_chunked.py --steps 2000 --ks 1,4,16,64 --out simulations/results/chunked.json
    python simulations/run_chunked.py --steps 5000 --set objective=joint --set shuffle_negatives=0.5 \
        --out simulations/results/chunked-joint-shuffle.json
"""

import argparse
import json
import time
from pathlib import Path

import torch

from trainkit import atomic_write_json
from vflgan_app.api import build_federation
from vflgan_app.config import VFLGANConfig
from vflgan_app.eval.evaluator import Evaluator
from vflgan_app.run import prepare_dataset

try:  # run as a script: simulations/ is on sys.path
    from run_compare import parse_override
except ImportError:  # imported as simulations.run_chunked
    from simulations.run_compare import parse_override


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--dataset", default="digits")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--ks", default="1,4,16,64")
    p.add_argument("--seeds", default="0")
    p.add_argument("--out", default="simulations/results/chunked.json")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="config override, e.g. --set objective=joint (JSON values)")
    a = p.parse_args()
    overrides = dict(parse_override(s) for s in a.set)
    torch.set_num_threads(1)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # rows land in <out>.partial.json as each K finishes; <out> itself is written (atomically)
    # only when every seed and K is done, so a table driver can take its existence as
    # "complete", and a rerun resumes from the partial rows of the same settings
    partial = out.with_name(out.stem + ".partial.json")
    rows = json.loads(partial.read_text()) if partial.exists() else []
    rows = [r for r in rows if r.get("dataset") == a.dataset and r.get("steps") == a.steps
            and r.get("overrides") == overrides]
    seeds, ks = [int(x) for x in a.seeds.split(",")], [int(x) for x in a.ks.split(",")]
    for seed in seeds:
        cfg = VFLGANConfig.from_dict({"dataset": a.dataset, "steps": a.steps, "seed": seed,
                                      "threads": 1, "progress": False, **overrides})
        ds, parties = prepare_dataset(cfg)
        ev = Evaluator(ds, parties, seed=seed)
        for k in ks:
            if any(r["seed"] == seed and r["k"] == k for r in rows):
                print(f"seed {seed} K {k}: kept from {partial.name}", flush=True)
                continue
            model = build_federation(parties, cfg)
            t0 = time.perf_counter()
            model.coordinator.fit(a.steps, steps_per_round=k)
            wall = time.perf_counter() - t0
            m = ev.evaluate(model, seed=seed, dependence=True)
            dep = m["dependence"]["metrics"]
            row = {"dataset": a.dataset, "seed": seed, "steps": a.steps, "k": k,
                   "overrides": overrides,
                   "round_trips": model.coordinator.transport.round_trips,
                   "train_s": round(wall, 2),
                   "fd": m["model"]["fd"], "fd_control": m["control"]["fd"],
                   "corr_err": m["model"]["cross_party_corr_error"],
                   "corr_err_control": m["control"]["cross_party_corr_error"],
                   "corr_err_real_holdout": m["real"]["cross_party_corr_error_holdout_vs_all"],
                   # the dependence metrics that see cross-party structure on digits
                   **{f"{name}_{who}": dep[name][who]
                      for name in ("agreement", "corr_error_focused", "shuffle_auc")
                      if name in dep for who in ("real", "model", "control")}}
            rows.append(row)
            print(json.dumps(row), flush=True)
            atomic_write_json(partial, rows)
    by_cell = {(r["seed"], r["k"]): r for r in rows}
    atomic_write_json(out, [by_cell[(seed, k)] for seed in seeds for k in ks])
    partial.unlink(missing_ok=True)

if __name__ == "__main__":
    main()
