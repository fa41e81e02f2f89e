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

Prints one JSON line per mode and the ratios to ``none``. This measures the DP
building blocks only; the end-to-end benchmark belongs to the training loop.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from vflgan_app.privacy import (
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--features", type=int, default=53)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument(
        "--device", default="cuda" if torch.cuda.is_available() else "cpu"
    )
    args = parser.parse_args()

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
