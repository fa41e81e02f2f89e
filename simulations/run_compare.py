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
                         "shuffled-real negatives), any of those with -trunk (a shared "
                         "generator trunk, e.g. vflgan-joint-trunk-shuffle), vertigan, "
                         "centralized")
    ap.add_argument("--trunk", type=int, default=3,
                    help="generator blocks in the shared trunk of the -trunk variants")
    ap.add_argument("--curve-every", type=int, default=0,
                    help="VFLGAN variants: evaluate every this many steps (agreement-vs-"
                         "step curve in the JSON); 0 = only at the end")
    ap.add_argument("--shuffle-weight", type=float, default=0.5,
                    help="shuffle_negatives weight of the -shuffle variants")
    ap.add_argument("--label", default="", help="suffix of the output file names")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--n-eval", type=int, default=None, help="synthetic rows scored")
    ap.add_argument("--out", default="simulations/results")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="config override for every model, e.g. --set batch_size=256 "
                         "(JSON values; repeatable)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    cfg = VFLGANConfig.from_dict({
        "dataset": args.dataset, "data_root": args.data_root, "steps": args.steps,
        "seed": args.seed, "progress": False, "threads": args.threads,
        **dict(parse_override(s) for s in args.set)})
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
        "overrides": dict(parse_override(s) for s in args.set),
        "commit": git_commit(),
        "models": {},
    }
    out = Path(args.out)
    for kind in args.models.split(","):
        t0 = time.perf_counter()
        curve = []
        if kind.startswith("vflgan"):  # vflgan[-joint][-trunk][-shuffle]
            variant = dataclasses.replace(
                cfg, objective="joint" if "-joint" in kind else "paper",
                shuffle_negatives=args.shuffle_weight if "-shuffle" in kind else 0.0,
                generator_trunk=args.trunk if "-trunk" in kind else 0)
            if args.curve_every:
                model, curve, eval_s = train_with_curve(variant, parties, ev, n, args,
                                                        results, kind, out, ds.name)
                t0 += eval_s  # train_seconds: training only
            else:
                model = train_model(variant, "vflgan", parties)
        else:
            model = train_model(cfg, kind, parties)
        train_s = time.perf_counter() - t0
        with timer(f"evaluate {kind}"):
            rep = ev.evaluate(model, n=n, seed=args.seed)
        if curve:
            rep["curve"] = curve
        rep["config"] = (variant if kind.startswith("vflgan") else cfg).to_dict()
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


def parse_override(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` -> ``(key, value)``, the value read as JSON when it parses."""
    import json

    key, sep, value = text.partition("=")
    if not sep or not key:
        raise SystemExit(f"--set: got {text!r}; expected KEY=VALUE, e.g. batch_size=256")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def curve_point(step: int, rep: dict) -> dict:
    """One point of an agreement-vs-step curve, from an evaluation report."""
    met = rep["dependence"]["metrics"]
    return {"step": step, "fd": rep["model"]["fd"], "fd_control": rep["control"]["fd"],
            "agreement": met["agreement"]["model"],
            "agreement_control": met["agreement"]["control"],
            "agreement_real": met["agreement"]["real"]}


def train_with_curve(cfg: VFLGANConfig, parties, ev: Evaluator, n: int,
                     args: argparse.Namespace, results: dict, kind: str, out: Path,
                     name: str):
    """Train in stretches of ``--curve-every`` steps, evaluating after each (partial
    results written as the curve grows); returns the model, the curve and the seconds
    spent evaluating."""
    from vflgan_app.api import build_federation

    model = build_federation(parties, cfg)
    curve, eval_s = [], 0.0
    for step in [*range(args.curve_every, args.steps, args.curve_every), args.steps]:
        model.fit(step)
        t0 = time.perf_counter()
        curve.append(curve_point(step, ev.evaluate(model, n=n, seed=args.seed)))
        eval_s += time.perf_counter() - t0
        log.info("%s step %d: agreement %.3f (control %.3f), FD %.4g", kind, step,
                 curve[-1]["agreement"], curve[-1]["agreement_control"], curve[-1]["fd"])
        results["models"][kind] = {"curve": curve, "partial": True}
        write_results(results, out, name, args)
    return model, curve, eval_s


def write_results(
    results: dict, out: Path, name: str, args: argparse.Namespace
) -> None:
    m = results["models"]
    if "model" in m.get("vflgan", {}) and "model" in m.get("vertigan", {}):
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
        if r.get("partial"):
            lines.append(f"| {kind} | (in progress: evaluated at step "
                         f"{r['curve'][-1]['step']}) | | | | | |")
            continue
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
