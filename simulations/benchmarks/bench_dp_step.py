"""Micro-benchmark: critic step time for no DP, paper-mode DP and strict-mode DP.

A stand-alone bottom critic with the paper's Adult-like sizes (53 -> 256 -> 128),
a WGAN-GP style per-sample loss with an upstream gradient (as a VFLGAN party
sees it), and three ways to get the parameter gradients:

* ``none``:   batch loss, ``loss.backward()`` (GP via ``create_graph``);
* ``paper``:  the same, then ``clip_and_noise_`` on the first-layer weight;
* ``strict``: ``per_sample_grads`` (vmap + double backward) then
  ``clip_per_sample_and_noise`` over all parameters.

Usage::

    python simulations/benchmarks/bench_dp_step.py --batch-size 64 --repeats 20

Prints one JSON line per mode and the ratios to ``none``.

``--integrated`` times the real VFLGAN training step instead
(``Coordinator.train_step`` of an in-process federation on digits: both parties'
critic forward/backward, the server's D_S step, the generator step every
``n_critic`` steps, and for DP the accountant hook). Three federations with the
same architecture (bias-free, "wor" sampler, same seed) are built in one process:
no DP, paper mode and strict mode; their steps are interleaved so that load from
other processes hits all of them, and the median step times are compared::

    python simulations/benchmarks/bench_dp_step.py --integrated --repeats 200 --threads 1

The machine's load average (before and after) is printed with the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import warnings

import torch

try:  # run as a script: simulations/benchmarks/ is on sys.path
    from summary import report
except ImportError:  # imported as simulations.benchmarks.<name>
    from simulations.benchmarks.summary import report

from vflgan_app.dp.mechanisms import (
    clip_and_noise_,
    clip_per_sample_and_noise,
    gradient_penalty,
    paper_clip_bound,
    per_sample_grads,
)


def make_critic(d_in: int) -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Linear(d_in, 256),
        torch.nn.LeakyReLU(0.2),
        torch.nn.Linear(256, 128),
        torch.nn.LeakyReLU(0.2),
    )


def per_sample_loss(call, x_real, x_fake, x_hat, up):
    return (
        (up * call(x_real)).sum()
        - (up * call(x_fake)).sum()
        + 10.0 * gradient_penalty(call, x_hat, weight=up)
    )


def batch_loss(module, x_real, x_fake, x_hat, up):
    x_hat = x_hat.clone().requires_grad_(True)
    (gx,) = torch.autograd.grad((up * module(x_hat)).sum(), x_hat, create_graph=True)
    gp = ((gx.pow(2).sum(dim=1) + 1e-12).sqrt() - 1.0).pow(2)
    per = (up * module(x_real)).sum(1) - (up * module(x_fake)).sum(1) + 10.0 * gp
    return per.mean()


def integrated(args) -> None:
    """Median ``train_step`` time of no-DP, paper and strict federations, interleaved."""
    from vflgan_app.api import build_federation
    from vflgan_app.config import VFLGANConfig
    from vflgan_app.dp.plan import DPConfig
    from vflgan_app.run import prepare_dataset

    load0 = os.getloadavg()
    base = {
        "dataset": args.dataset,
        "steps": 10**6,
        "progress": False,
        "seed": 0,
        "sampler": "wor",
        "device": args.device,
        "threads": args.threads,
    }
    dps = {
        "none": DPConfig(),
        # sigma given: no calibration; budget large enough never to stop the benchmark
        "paper": DPConfig(mode="paper", noise_multiplier=1.0, target_epsilon=1e9),
        "strict": DPConfig(mode="strict", noise_multiplier=1.0, target_epsilon=1e9),
    }
    feds = {}
    for name, dp in dps.items():
        cfg = VFLGANConfig(**base, dp=dp)
        _, parties = prepare_dataset(cfg)
        arch = VFLGANConfig(
            **base, dp=dps["strict"]
        ).resolve_architecture()  # bias-free
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            feds[name] = build_federation(parties, cfg, arch=arch)
    for fed in feds.values():  # warm-up
        for _ in range(5):
            fed.coordinator.train_step()
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    times: dict[str, list[float]] = {name: [] for name in feds}
    for _ in range(args.repeats):
        for name, fed in feds.items():
            t0 = time.perf_counter()
            fed.coordinator.train_step()
            sync()
            times[name].append(time.perf_counter() - t0)
    med = {name: statistics.median(ts) for name, ts in times.items()}
    for name, m in med.items():
        print(
            json.dumps(
                {
                    "integrated": True,
                    "mode": name,
                    "dataset": args.dataset,
                    "batch_size": feds[name].coordinator.arch.batch_size,
                    "median_step_ms": round(1e3 * m, 3),
                    "p90_step_ms": round(
                        1e3 * sorted(times[name])[int(0.9 * len(times[name]))], 3
                    ),
                }
            )
        )
    print(
        json.dumps(
            {
                "integrated": True,
                "ratio_paper_to_none": round(med["paper"] / med["none"], 2),
                "ratio_strict_to_none": round(med["strict"] / med["none"], 2),
                "repeats": args.repeats,
                "torch_threads": torch.get_num_threads(),
                "device": args.device,
                "cpu_count": os.cpu_count(),
                "loadavg_before": [round(x, 2) for x in load0],
                "loadavg_after": [round(x, 2) for x in os.getloadavg()],
            }
        )
    )
    for mode in ("paper", "strict"):
        report("bench_dp_step", f"{mode}-mode DP / no DP, VFLGAN train_step ({args.dataset})",
               med[mode] / med["none"], "no DP, interleaved")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--features", type=int, default=53)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument(
        "--device", default="cuda" if torch.cuda.is_available() else "cpu"
    )
    parser.add_argument(
        "--integrated",
        action="store_true",
        help="time the real VFLGAN train_step (see the module doc)",
    )
    parser.add_argument("--dataset", default="digits", help="dataset of --integrated")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.integrated:
        integrated(args)
        return

    torch.manual_seed(0)
    dev = torch.device(args.device)
    module = make_critic(args.features).to(dev)
    b = args.batch_size
    x_real, x_fake = torch.randn(2, b, args.features, device=dev)
    alpha = torch.rand(b, 1, device=dev)
    x_hat = alpha * x_real + (1 - alpha) * x_fake
    up = torch.randn(b, 128, device=dev)
    gen = torch.Generator(device=dev).manual_seed(0)
    first = module[0].weight
    inputs = (x_real, x_fake, x_hat, up)

    def step_none():
        module.zero_grad(set_to_none=True)
        batch_loss(module, *inputs).backward()

    def step_paper():
        step_none()
        clip_and_noise_(
            first.grad, clip=paper_clip_bound(b), noise_multiplier=1.0, generator=gen
        )

    def step_strict():
        per = per_sample_grads(module, per_sample_loss, *inputs)
        out = clip_per_sample_and_noise(
            per, clip=1.0, noise_multiplier=1.0, generator=gen, batch_size=b
        )
        for name, p in module.named_parameters():
            p.grad = out[name]

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    modes = {"none": step_none, "paper": step_paper, "strict": step_strict}
    for fn in modes.values():  # warm-up
        for _ in range(3):
            fn()
    sync()
    # Interleave the modes so that load from other processes hits all of them.
    times: dict[str, list[float]] = {name: [] for name in modes}
    for _ in range(args.repeats):
        for name, fn in modes.items():
            t0 = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - t0)
    results = {name: statistics.median(ts) for name, ts in times.items()}
    for name, median in results.items():
        print(
            json.dumps(
                {
                    "mode": name,
                    "device": str(dev),
                    "batch_size": b,
                    "median_step_ms": round(1e3 * median, 3),
                }
            )
        )
    print(
        json.dumps(
            {
                "ratio_paper_to_none": round(results["paper"] / results["none"], 2),
                "ratio_strict_to_none": round(results["strict"] / results["none"], 2),
                "torch_threads": torch.get_num_threads(),
            }
        )
    )


if __name__ == "__main__":
    main()
