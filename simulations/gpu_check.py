"""GPU check: paper-scale step throughput of VFLGAN and of the diffusion UNet, in minutes.

    python simulations/gpu_check.py                  # on a machine with a CUDA GPU
    python simulations/gpu_check.py --device cpu --vfl-steps 10 --unet-steps 2   # smoke

Two timed runs, each on the GPU and (a few steps) on the CPU for the ratio:

* **VFLGAN**, the paper's MNIST architecture (2 parties x 392 pixels, B = 64) with the
  joint objective, a shared trunk and shuffled negatives (the main job's setting) and
  with the paper objective, federated in-process (every party message still crosses the
  protocol, not Flower). Rows are random pixels of MNIST's shape: throughput does not
  depend on the data, and no file is needed.
* **Diffusion**: the CIFAR-10 ``UNet2DModel`` preset (``unlearning.model``, 32x32x3,
  channels 128-256-256-256) on random images, one L_simple training step per iteration
  with Adam, in float32 and in bf16 autocast where the GPU supports it (the denoising
  loss is computed in float32 either way).

Prints steps/s, peak GPU memory and the GPU/CPU ratio per run, writes them as JSON
(``--out``), and estimates the training time of the paper-scale configs in
``simulations/configs/gpu/`` from the measured rates (:func:`estimates`). Exits 0 with a message, having
run nothing, when no CUDA device is present (unless ``--device cpu`` is given). Meant to
finish within 8 minutes on one GPU; ``--vfl-steps`` / ``--unet-steps`` scale it.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from trainkit import atomic_write_json, git_commit

CONFIGS = Path(__file__).resolve().parent / "configs" / "gpu"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu (a smoke run)")
    p.add_argument("--vfl-steps", type=int, default=2000, help="timed VFLGAN steps per run")
    p.add_argument("--unet-steps", type=int, default=300, help="timed UNet steps per run")
    p.add_argument("--unet-batch", type=int, default=128, help="UNet batch (DDPM: 128)")
    p.add_argument("--cpu-steps", type=int, default=None,
                   help="steps of the CPU side of each ratio (default: 1/20 of the GPU's)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps before each run")
    p.add_argument("--out", default="simulations/results/gpu_check.json")
    return p.parse_args(argv)


def vfl_federation(objective: str, device: str, seed: int = 0, rows: int = 2048):
    """The paper's MNIST architecture, 2 parties, in-process, on ``device``."""
    from vflgan_app.architectures import get_architecture
    from vflgan_app.core.coordinator import Coordinator
    from vflgan_app.core.joint import JointCriticGradients, JointServerCritic
    from vflgan_app.core.party import Party, PartySettings
    from vflgan_app.core.protocol import InProcessTransport
    from vflgan_app.data.partition import prepare_parties

    arch = get_architecture("mnist")
    rng = np.random.default_rng(seed)
    cols = [f"px_{i}" for i in range(784)]
    table = pd.DataFrame(rng.integers(0, 256, size=(rows, 784)).astype(np.float32),
                         columns=cols)
    table.insert(0, "record_id", np.arange(rows))
    tables = [table[["record_id", *cols[:392]]], table[["record_id", *cols[392:]]]]
    data = prepare_parties(tables, "record_id", bounded={c: (0, 255) for c in cols})
    joint = objective == "joint"
    trunk = 3 if joint else 0
    settings = PartySettings(seed=seed, lambda_gp=arch.lambda_gp, lr=arch.lr, trunk=trunk)
    parties = [Party(d, arch, settings, device=device,
                     critic_rule=JointCriticGradients() if joint else None) for d in data]
    coord = Coordinator(InProcessTransport(parties), arch, seed=seed, device=device,
                        critic_rule=JointServerCritic() if joint else None,
                        generator_trunk=trunk, shuffle_negatives=0.5 if joint else 0.0)
    coord.handshake()
    return coord


def time_steps(step, steps: int, device: str, warmup: int = 5) -> float:
    """Seconds per call of ``step`` (after ``warmup`` calls), synchronised on CUDA."""
    for _ in range(warmup):
        step()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return (time.perf_counter() - t0) / max(steps, 1)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def unet_step_fn(device: str, batch: int, bf16: bool):
    """One L_simple training step of the CIFAR-10 UNet preset on random images."""
    from unlearning.losses import diffusion_inputs
    from unlearning.model import build_scheduler, build_unet

    model = build_unet("cifar10").to(device).train()
    sched = build_scheduler()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    gen = torch.Generator(device=device).manual_seed(0)
    x0 = torch.rand(batch, 3, 32, 32, generator=gen, device=device) * 2 - 1
    y = torch.randint(10, (batch,), generator=gen, device=device)

    def step():
        x_t, t, eps, labels = diffusion_inputs(x0, y, sched, label_dropout=0.1,
                                               null_label=10, generator=gen)
        with torch.autocast(device_type="cuda" if device.startswith("cuda") else "cpu",
                            dtype=torch.bfloat16, enabled=bf16):
            pred = model(x_t, t, class_labels=labels).sample
        loss = (eps - pred.float()).pow(2).mean()  # float32 loss, as the fp32 run's
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def measure(name: str, make, steps: int, cpu_steps: int, device: str,
            warmup: int = 5) -> dict:
    """Steps/s on ``device`` and on the CPU, the ratio, and the peak GPU memory."""
    row = {"run": name, "steps": steps}
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    s = time_steps(make(device), steps, device, warmup)
    row["steps_per_s"] = 1 / s
    if device.startswith("cuda"):
        row["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
        if cpu_steps:
            row["cpu_steps_per_s"] = 1 / time_steps(make("cpu"), cpu_steps, "cpu",
                                                    warmup=1)
            row["gpu_over_cpu"] = row["steps_per_s"] / row["cpu_steps_per_s"]
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v
                      for k, v in row.items()}), flush=True)
    return row


def estimates(rows: list[dict]) -> list[dict]:
    """Training wall-time estimates of the GPU configs, from the measured step rates.

    VFLGAN configs use the MNIST paper-objective rate (for the tables an upper bound:
    their models are smaller); the CIFAR-10 unlearning config its UNet pre-training
    steps at the bf16 rate (fp32 where bf16 was not measured).
    """
    rate = {r["run"]: r["steps_per_s"] for r in rows}
    out = []
    for path in sorted(CONFIGS.glob("*.toml")):
        cfg = tomllib.loads(path.read_text())
        if path.name.startswith("vflgan-"):
            run, steps = "vflgan-mnist-paper", int(cfg["steps"])
            note = "" if cfg.get("dataset") == "mnist" else "upper bound (a smaller model)"
        elif path.name.startswith("unlearning-"):
            run = "unet-cifar10-bf16" if "unet-cifar10-bf16" in rate else "unet-cifar10-fp32"
            steps, note = int(cfg["pretrain_steps"]), "pre-training only"
        else:
            continue
        if run in rate:
            out.append({"config": path.name, "run": run, "steps": steps,
                        "hours": steps / rate[run] / 3600, "note": note})
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    device = args.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; nothing was run "
              "(use --device cpu for a CPU smoke run)")
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    bf16 = device.startswith("cuda") and torch.cuda.is_bf16_supported()
    cpu_steps = args.cpu_steps if args.cpu_steps is not None else max(
        1, args.vfl_steps // 20)
    t_all = time.perf_counter()
    rows = []
    for objective in ("joint", "paper"):
        rows.append(measure(f"vflgan-mnist-{objective}",
                            lambda d, o=objective: vfl_federation(o, d).train_step,
                            args.vfl_steps, cpu_steps, device, args.warmup))
    unet_cpu = max(1, args.unet_steps // 50) if args.cpu_steps is None else args.cpu_steps
    rows.append(measure("unet-cifar10-fp32",
                        lambda d: unet_step_fn(d, args.unet_batch, False),
                        args.unet_steps, unet_cpu, device, args.warmup))
    if bf16:
        rows.append(measure("unet-cifar10-bf16",
                            lambda d: unet_step_fn(d, args.unet_batch, d != "cpu"),
                            args.unet_steps, 0, device, args.warmup))
    result = {
        "device": torch.cuda.get_device_name() if device.startswith("cuda") else "cpu",
        "torch": torch.__version__, "python": platform.python_version(),
        "commit": git_commit(), "bf16": bf16, "rows": rows,
        "estimates": estimates(rows), "wall_s": time.perf_counter() - t_all,
    }
    for e in result["estimates"]:
        print(f"estimate: {e['config']} ({e['steps']} steps of {e['run']}): "
              f"{e['hours']:.2f} h of training{'; ' + e['note'] if e['note'] else ''}")
    print(f"gpu_check: {result['wall_s']:.0f} s in all")
    atomic_write_json(Path(args.out), result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
