"""Command line: ``python -m vflgan_app train|generate``.

``train`` runs the federated protocol in-process on a built-in dataset, then publishes
the synthetic data, a preview (table) or image grid, and ``report.json`` into a run
folder it prints. ``generate`` re-samples a saved run.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from pathlib import Path

from trainkit import StageTimer, create_run_dir
from vflgan_app.config import MODELS, DPConfig, VFLGANConfig

logger = logging.getLogger("vflgan_app")


def _add_config_args(p: argparse.ArgumentParser) -> None:
    helps = {
        "dataset": "built-in dataset (digits, breast_cancer, mnist, adult, wine_red, wine_white)",
        "architecture": "architecture preset (default: the dataset's)",
        "steps": "critic iterations (generator steps every n-critic)",
        "batch_size": "batch size B (default: preset)",
        "lr": "Adam learning rate (default: preset)",
        "latent_dim": "latent size d (default: preset)",
        "lambda_gp": "gradient-penalty weight (default: preset)",
        "lambda_p": "private critic head weight",
        "n_critic": "critic iterations per generator iteration",
        "shuffle_negatives": "weight of shuffled-real negatives at the server (0 = off)",
        "objective": "critic objective: paper (per-module penalties, the published one) "
                     "or joint (one penalty through the whole split critic)",
        "sampler": "batch sampler: shuffle (epochs) or wor (fixed-size, without replacement)",
        "seed": "run seed",
        "num_parties": "parties for image data (pixel-row bands)",
        "max_rows": "use only the first rows of the dataset",
        "n_samples": "rows to publish (default: as many as the real table)",
        "data_root": "folder with offline datasets (or VFLGAN_DATA_ROOT)",
        "output_dir": "where run folders are created",
        "device": "cpu, cuda or auto",
        "threads": "torch CPU threads",
        "progress": "show progress bars (true/false)",
        "log_every": "steps between progress-bar updates",
    }
    for f in dataclasses.fields(VFLGANConfig):
        if f.name == "dp":
            continue
        p.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, default=None,
                       help=f"{helps.get(f.name, f.name)} (default: {f.default})")
    dp_helps = {
        "mode": "differential privacy: none, paper (the published first-layer mechanism) or "
                "strict (per-sample DP-SGD on every critic block); DP needs --sampler wor (its default)",
        "target_epsilon": "privacy budget; training stops before exceeding it",
        "delta": "delta of (epsilon, delta)-DP (warned about when >= 1/N)",
        "noise_multiplier": "sigma per noised block (default: calibrated from the target)",
        "clip": "clip bound C (default: 1.5/B in paper mode, 1.0 per sample in strict mode)",
        "noise_seed": "fixed DP noise seed, TESTS ONLY (default: OS randomness)",
    }
    for f in dataclasses.fields(DPConfig):
        p.add_argument(f"--dp-{f.name.replace('_', '-')}", dest=f"dp_{f.name}", default=None,
                       help=f"{dp_helps[f.name]} (default: {f.default})")


def _config_from_args(ns: argparse.Namespace) -> VFLGANConfig:
    values = {f.name: getattr(ns, f.name) for f in dataclasses.fields(VFLGANConfig)
              if f.name != "dp" and getattr(ns, f.name) is not None}
    dp = {f.name: getattr(ns, f"dp_{f.name}") for f in dataclasses.fields(DPConfig)
          if getattr(ns, f"dp_{f.name}") is not None}
    if dp:
        values["dp"] = dp
    return VFLGANConfig.from_dict(values)


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(prog="python -m vflgan_app", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train on a built-in dataset and publish")
    _add_config_args(train)
    train.add_argument("--model", choices=MODELS, default="vflgan",
                       help="vflgan (default), or a baseline: vertigan, centralized")
    train.add_argument("--no-eval", action="store_true", help="skip the metrics")
    train.add_argument("--run-name", default=None, help="run folder name (default: timestamp)")
    gen = sub.add_parser("generate", help="sample a saved run again")
    gen.add_argument("run_dir", help="a run folder written by train")
    gen.add_argument("--n", type=int, default=1000, help="rows to generate")
    gen.add_argument("--seed", type=int, default=1, help="publication seed")
    gen.add_argument("--out", default=None, help="output folder (default: <run>/generated-<seed>)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "train":
            return _train(args)
        return _generate(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _train(args: argparse.Namespace) -> int:
    from vflgan_app.run import run_experiment

    cfg = _config_from_args(args)
    run_dir = create_run_dir(cfg.output_dir, {**cfg.to_dict(), "model": args.model}, cfg.seed,
                             name=args.run_name)
    t0 = time.perf_counter()
    report = run_experiment(cfg, args.model, run_dir, evaluate=not args.no_eval,
                            timer=StageTimer(logger))
    print(f"wrote {run_dir} ({time.perf_counter() - t0:.1f} s)")
    m = report.get("metrics", {}).get("model", {})
    if m:
        print("metrics: " + ", ".join(f"{k}={v:.4g}" for k, v in m.items() if isinstance(v, float)))
    return 0


def _generate(args: argparse.Namespace) -> int:
    from vflgan_app.run import regenerate

    out = regenerate(Path(args.run_dir), args.n, args.seed, args.out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
