"""Compare VFLGAN with VertiGAN (and the centralized upper bound) on one dataset.

Same data, same step budget, same batches/latents per step, same metrics (one Evaluator).
Writes ``<out>/compare-<dataset>-<steps>.json`` and a markdown table, and prints the
VertiGAN/VFLGAN FD ratio (the paper claims 3.2x on full MNIST).

    python simulations/run_compare.py --dataset mnist --data-root ../shared/data --steps 6000
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import time
from pathlib import Path

import torch

from trainkit import StageTimer, atomic_write_json, atomic_write_text, git_commit
from vflgan_app.config import VFLGANConfig
from vflgan_app.eval.evaluator import Evaluator
from vflgan_app.publish import image_grid_png
from vflgan_app.run import prepare_dataset, train_model

log = logging.getLogger("compare")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--models", default="vflgan,vertigan,centralized",
                    help="comma list of vflgan (paper objective), vflgan-joint (the joint "
                         "objective), vflgan-shuffle / vflgan-joint-shuffle (with "
                         "shuffled-real negatives), vertigan, centralized")
    ap.add_argument("--shuffle-weight", type=float, default=0.5,
                    help="shuffle_negatives weight of the -shuffle variants")
    ap.add_argument("--label", default="", help="suffix of the output file names")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--n-eval", type=int, default=None, help="synthetic rows scored")
    ap.add_argument("--out", default="simulations/results")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    cfg = VFLGANConfig(
        dataset=args.dataset,
        data_root=args.data_root,
        steps=args.steps,
        seed=args.seed,
        progress=False,
        threads=args.threads,
    )
    timer = StageTimer(log)
    ds, parties = prepare_dataset(cfg)
    with timer("evaluator (feature extractor training)"):
        ev = Evaluator(ds, parties, seed=args.seed)
    n = args.n_eval or len(parties[0].ids)
    results = {
        "dataset": ds.name,
        "rows": len(parties[0].ids),
        "steps": args.steps,
        "seed": args.seed,
        "commit": git_commit(),
        "models": {},
    }
    out = Path(args.out)
    for kind in args.models.split(","):
        t0 = time.perf_counter()
        if kind.startswith("vflgan"):  # vflgan[-joint][-shuffle]
            variant = dataclasses.replace(
                cfg, objective="joint" if "-joint" in kind else "paper",
                shuffle_negatives=args.shuffle_weight if "-shuffle" in kind else 0.0)
            model = train_model(variant, "vflgan", parties)
        else:
            model = train_model(cfg, kind, parties)
        train_s = time.perf_counter() - t0
        with timer(f"evaluate {kind}"):
            rep = ev.evaluate(model, n=n, seed=args.seed)
        rep["train_seconds"] = train_s
        rep["ms_per_step"] = 1000 * train_s / max(args.steps, 1)
        results["models"][kind] = rep
        log.info(
            "%s: train %.0f s, FD %.4g, corr err %.4g",
            kind,
            train_s,
            rep["model"]["fd"],
            rep["model"]["cross_party_corr_error"],
        )
        if ds.is_image:
            import numpy as np

            x = np.concatenate(model.sample_parts(100, seed=args.seed), axis=1)
            suffix = f"-seed{args.seed}" if args.seed else ""
            image_grid_png(
                (x.reshape(-1, *ds.image_shape) + 1) / 2,
                out / f"samples-{ds.name}-{kind}-{args.steps}{suffix}{args.label}.png",
                title=f"{kind}, {ds.name}, {args.steps} steps",
            )
        write_results(
            results, out, ds.name, args
        )  # after each model: partial results survive
    print(format_table(results))


def write_results(
    results: dict, out: Path, name: str, args: argparse.Namespace
) -> None:
    m = results["models"]
    if "vflgan" in m and "vertigan" in m:
        results["fd_ratio_vertigan_over_vflgan"] = (
            m["vertigan"]["model"]["fd"] / m["vflgan"]["model"]["fd"]
        )
        log.info(
            "FD ratio VertiGAN / VFLGAN = %.3f",
            results["fd_ratio_vertigan_over_vflgan"],
        )
    stem = f"compare-{name}-{args.steps}-seed{args.seed}{args.label}"
    atomic_write_json(out / f"{stem}.json", results)
    atomic_write_text(out / f"{stem}.md", format_table(results))


def format_table(results: dict) -> str:
    lines = [
        f"{results['dataset']}, {results['rows']} rows, {results['steps']} steps, "
        f"seed {results['seed']}",
        "",
        "| model | FD | FD (control) | cross-party corr err | (control) | IS / TSTR | ms/step |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind, r in results["models"].items():
        m, c = r["model"], r["control"]
        extra = m.get("inception_score", m.get("tstr_accuracy", float("nan")))
        lines.append(
            f"| {kind} | {m['fd']:.4g} | {c['fd']:.4g} | {m['cross_party_corr_error']:.4f} | "
            f"{c['cross_party_corr_error']:.4f} | {extra:.3f} | {r['ms_per_step']:.1f} |"
        )
    if "fd_ratio_vertigan_over_vflgan" in results:
        lines.append(
            f"\nFD ratio VertiGAN / VFLGAN: {results['fd_ratio_vertigan_over_vflgan']:.3f}"
        )
    try:
        from vflgan_app.eval.dependence import format_dependence_table

        for kind, r in results["models"].items():
            if "dependence" in r:
                lines += [
                    "",
                    f"Cross-party dependence, {kind}:",
                    "",
                    format_dependence_table(r["dependence"]),
                ]
    except ImportError:
        pass
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
