"""Largest |intermediate feature| an honest run sends (the poisoning limit's margin).

    python simulations/if_peaks.py DATASET STEPS OBJECTIVE
    e.g. python simulations/if_peaks.py digits 2000 paper

Prints the peak |IF| per message type over the whole run (in-process transport,
observed on the wire). vflgan_app.core.coordinator.IF_LIMIT must sit far above it.
"""
import sys

import torch

from vflgan_app import federation
from vflgan_app.config import VFLGANConfig
from vflgan_app.run import prepare_dataset


def main(dataset: str, steps: int, objective: str) -> dict[str, float]:
    peak: dict[str, float] = {}

    def observe(direction, pid, method, payload):
        if direction != "reply" or not isinstance(payload, dict):
            return
        for k in ("h_real", "h_fake", "h_hat", "h_gen"):
            if k in payload:
                v = float(torch.as_tensor(payload[k]).abs().max())
                peak[method] = max(peak.get(method, 0.0), v)

    cfg = VFLGANConfig(dataset=dataset, steps=steps, threads=1, progress=False,
                       objective=objective)
    _, parties = prepare_dataset(cfg)
    fed = federation.in_process(parties, cfg, observer=observe)
    fed.coordinator.fit(steps)
    return peak


if __name__ == "__main__":
    name, n, obj = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    print(name, n, obj, {k: round(v, 2) for k, v in main(name, n, obj).items()}, flush=True)
