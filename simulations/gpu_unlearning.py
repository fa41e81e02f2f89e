"""GPU check: short pretrain + unlearn + DiMRA with the diffusers UNet, under 8 minutes.

    python simulations/gpu_unlearning.py --dataset mnist --data-root <MNIST IDX folder>
    python simulations/gpu_unlearning.py --dataset cifar10 --data-root <cifar folder>
    python simulations/gpu_unlearning.py             # digits 8x8 (no files needed)

Reports throughput (steps/s) of pre-training, unlearning and the attack, and the forget
rate after unlearning and after DiMRA on D_r and D_au for swap-label, SalUn and DiMUM,
with the judge FD and, where ``pytorch_fid`` and its Inception weights are in torch
hub's cache, the Inception FID of the retained classes (skipped with the reason
otherwise: the script never downloads the weights). Exits cleanly with a message
(status 0) when no CUDA device is present; ``--device cpu`` runs the same code as a
smoke test (``tests/vflgan_app/test_gpu_configs.py``). Never run on a GPU so far (none
was lent); expect to tune --pretrain-steps on first use.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from trainkit import atomic_write_json, git_commit, select_device
from unlearning import (
    EvalConfig,
    PretrainConfig,
    RelearnConfig,
    UnlearnConfig,
    evaluate_pipeline,
    load_dataset,
    pretrain,
    run_relearning_attack,
    train_judge,
    unlearn_with_log,
)
from unlearning.data import experiment_splits
from unlearning.evaluate import curve_probe, inception_unavailable
from unlearning.plots import save_class_grid, save_curves

# Pretrain steps meant to fit the 8-minute budget (estimates, not measured).
DEFAULT_STEPS = {
    "digits": 4000,
    "mnist": 4000,
    "cifar10": 6000,
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument(
        "--dataset", default="digits", choices=["digits", "mnist", "cifar10"]
    )
    p.add_argument("--data-root", default=None, help="MNIST IDX / CIFAR-10 folder")
    p.add_argument("--download", action="store_true", help="allow CIFAR-10 download")
    p.add_argument(
        "--pretrain-steps", type=int, default=None, help="default per dataset"
    )
    p.add_argument("--batch", type=int, default=256, help="pretrain batch size")
    p.add_argument("--unlearn-steps", type=int, default=600, help="unlearning steps")
    p.add_argument("--attack-steps", type=int, default=1000, help="DiMRA steps")
    p.add_argument(
        "--attack-lr",
        type=float,
        default=None,
        help="DiMRA lr; default the pre-training lr",
    )
    p.add_argument("--methods", nargs="+", default=["swap_label", "salun", "dimum"])
    p.add_argument("--forget-class", type=int, default=0)
    p.add_argument(
        "--device",
        default="cuda",
        choices=["cuda", "cpu"],
        help="cpu: the same code as a smoke test (its timings mean nothing)",
    )
    p.add_argument(
        "--forget-samples", type=int, default=300, help="c_f samples per measurement"
    )
    p.add_argument(
        "--probe-samples", type=int, default=100, help="c_f samples per curve point"
    )
    p.add_argument("--judge-steps", type=int, default=None, help="default per dataset")
    p.add_argument("--sample-steps", type=int, default=50, help="DDIM steps")
    p.add_argument(
        "--grid-per-class",
        type=int,
        default=8,
        help="samples per class in the PNG sample grids; 0: no grids",
    )
    p.add_argument(
        "--retain-per-class",
        type=int,
        default=30,
        help="samples per retained class for retain accuracy, judge FD and Inception "
        "FID (FID needs thousands in all to be unbiased; compare equal counts only)",
    )
    p.add_argument("--out", default="runs/gpu_unlearning", help="output folder")
    p.add_argument("--config", default=None,
                   help="a TOML of these options (dashes as underscores), e.g. "
                        "simulations/configs/gpu/unlearning-cifar10.toml; the command "
                        "line overrides it")
    args = p.parse_args(argv)
    if args.config:
        import tomllib

        values = tomllib.loads(Path(args.config).read_text())
        known = set(vars(args)) - {"config"}
        bad = sorted(set(values) - known)
        if bad:
            p.error(f"--config {args.config}: unknown keys {bad}; expected some of "
                    f"{sorted(known)}")
        p.set_defaults(**values)
        args = p.parse_args(argv)
    return args


def timed(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` and its wall time in s, CUDA work included."""
    t0 = time.perf_counter()
    result = fn(*args, **kwargs)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return result, time.perf_counter() - t0


def pretrain_timed(args: argparse.Namespace, data, report: dict):
    """Pre-train the UNet; report steps/s and parameter count. -> (pipe, config)."""
    steps = args.pretrain_steps or DEFAULT_STEPS[args.dataset]
    pcfg = PretrainConfig(
        dataset=args.dataset,
        arch="unet",
        steps=steps,
        batch_size=args.batch,
        lr=2e-4 if args.dataset == "cifar10" else 1e-3,
        device=args.device,
        progress=False,
    )
    base, dt = timed(pretrain, data.train, pcfg, data.num_classes)
    base.set_progress_bar_config(disable=True)
    n_params = sum(q.numel() for q in base.unet.parameters())
    report["pretrain"] = {
        "steps": steps,
        "s": dt,
        "steps_per_s": steps / dt,
        "params": n_params,
    }
    print(
        f"pretrain: {steps} steps in {dt:.0f} s = {steps / dt:.1f} steps/s "
        f"({n_params / 1e6:.2f}M params)",
        flush=True,
    )
    return base, pcfg


def run_method(args, base, method: str, splits, judge, ev, attack_lr, curves) -> dict:
    """Unlearn ``method``, then DiMRA on D_r and D_au; adds to ``curves``. -> row."""
    c_f = args.forget_class
    ucfg = UnlearnConfig(
        method=method,
        forget_class=c_f,
        steps=args.unlearn_steps,
        device=args.device,
        progress=False,
    )
    (u, log), du = timed(unlearn_with_log, base, splits.forget, splits.retain, ucfg)
    row = {
        "unlearn_s": du,
        "unlearn_steps_per_s": log.steps_run / du,
        "after_unlearn": evaluate_pipeline(u, judge, c_f, splits.reference, ev),
    }
    if args.grid_per_class:
        save_class_grid(
            u,
            Path(args.out) / f"{method}_after.png",
            title=f"{method}",
            per_class=args.grid_per_class,
            num_inference_steps=args.sample_steps,
        )
    probe = curve_probe(judge, c_f, args.probe_samples, ev)
    for name, d_att in (("retain", splits.retain), ("aux", splits.aux)):
        rcfg = RelearnConfig(
            attack_data=name,
            steps=args.attack_steps,
            lr=attack_lr,
            device=args.device,
            progress=False,
            eval_every=250,
        )
        (attacked, curve), dt = timed(run_relearning_attack, u, d_att, c_f, rcfg, probe)
        row[f"dimra_{name}_s"] = dt
        row[f"after_dimra_{name}"] = evaluate_pipeline(
            attacked, judge, c_f, splits.reference, ev
        )
        curves[f"{method} / {name}"] = (curve.steps, curve.forget_rate)
    print(
        f"{method}: forget rate {row['after_unlearn']['forget_rate']:.3f} "
        f"(retain acc {row['after_unlearn']['retain_acc']:.3f}) -> DiMRA D_r "
        f"{row['after_dimra_retain']['forget_rate']:.3f}, D_au "
        f"{row['after_dimra_aux']['forget_rate']:.3f}; unlearn "
        f"{row['unlearn_steps_per_s']:.1f} steps/s",
        flush=True,
    )
    return row


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print(
            "gpu_unlearning: no CUDA device found; nothing to do (this check needs a "
            "GPU; --device cpu runs the same code as a smoke test)."
        )
        return 0
    setup = select_device(args.device)
    t_all = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = load_dataset(args.dataset, args.data_root, download=args.download)
    c_f = args.forget_class
    splits = experiment_splits(data, c_f)
    report: dict = {
        "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
        "commit": git_commit(),
        "dataset": args.dataset,
        "forget_class": c_f,
    }
    t0 = time.perf_counter()
    judge, acc = train_judge(
        args.dataset,
        data.train,
        data.holdout,
        device=setup.device,
        steps=args.judge_steps,
        min_accuracy=0.0,
    )
    report["judge"] = {"holdout_acc": acc, "s": time.perf_counter() - t0}
    print(f"judge held-out accuracy {acc:.4f}", flush=True)
    base, pcfg = pretrain_timed(args, data, report)
    ev = EvalConfig(
        forget_samples=args.forget_samples,
        retain_samples_per_class=args.retain_per_class,
        num_inference_steps=args.sample_steps,
    )
    why = inception_unavailable()
    report["inception_fid"] = why or "computed (pytorch_fid pool3, 2048 features)"
    print(f"Inception FID: {'skipped: ' + why if why else 'on'}", flush=True)
    report["base"] = evaluate_pipeline(base, judge, c_f, splits.reference, ev)
    if args.grid_per_class:
        save_class_grid(
            base,
            out / "base.png",
            title="pre-trained",
            per_class=args.grid_per_class,
            num_inference_steps=args.sample_steps,
        )
    attack_lr = args.attack_lr or pcfg.lr
    curves = {}
    for method in args.methods:
        report[method] = run_method(
            args, base, method, splits, judge, ev, attack_lr, curves
        )
    save_curves(
        curves, out / "curves.png", title=f"{args.dataset}, attack lr {attack_lr}"
    )
    report["total_s"] = time.perf_counter() - t_all
    atomic_write_json(out / "report.json", report)
    print(json.dumps({k: v for k, v in report.items() if k in ("device", "total_s")}))
    if report["total_s"] > 480:
        print("warning: exceeded the 8-minute budget; lower --pretrain-steps")
    return 0


if __name__ == "__main__":
    sys.exit(main())
