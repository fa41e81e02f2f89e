"""The planted single-row value of issue 12 item 6: is it published?

One row of a 20,000-row mixed table holds ``color="violet"``; VFLGAN trains 300 steps at
(epsilon 1, delta 1e-5) with the default DP schema release (or without DP), publishes
2,000 rows, and this counts the rows holding the value and whether the handshake schema
names it.

    python simulations/private_schema_leak.py MODE      # MODE: none, paper or strict
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd

from vflgan_app import api
from vflgan_app.architectures import Architecture
from vflgan_app.config import VFLGANConfig
from vflgan_app.data.partition import prepare_parties, split_vertical

SPLIT = [["a", "color", "count"], ["b", "c", "kind"]]
ARCH = Architecture(latent_dim=4, gen_hidden=(8, 16), critic_hidden=(16, 8),
                    server_hidden=(8,), tau=0.5, lambda_gp=10.0, lr=1e-3, batch_size=8)


def table(n: int = 20_000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n)
    df = pd.DataFrame({
        "record_id": np.arange(n), "a": a, "b": 2 * a + rng.normal(scale=0.1, size=n),
        "color": rng.choice(["red", "green", "blue"], size=n),
        "count": rng.integers(0, 5, size=n), "c": rng.normal(size=n),
        "kind": np.where(a > 0, "pos", "neg"),
    })
    df.loc[123, "color"] = "violet"  # the single-row value
    return df


def main(mode: str) -> dict:
    dp = {"mode": mode} | ({"target_epsilon": 1.0, "delta": 1e-5} if mode != "none" else {})
    cfg = VFLGANConfig(dataset="custom", steps=300, seed=0, threads=1, progress=False, dp=dp)
    parties = prepare_parties(split_vertical(table(), SPLIT, "record_id"), "record_id",
                              categorical=["color", "kind"])
    model = api.build_federation(parties, cfg, arch=ARCH)
    model.fit()
    synth = model.sample(2000, seed=0)
    in_schema = "violet" in model.coordinator.hellos[0]["schema"]
    return {"mode": mode, "violet_rows": int((synth["color"] == "violet").sum()),
            "in_handshake_schema": in_schema}


if __name__ == "__main__":
    print(main(sys.argv[1] if len(sys.argv) > 1 else "strict"), flush=True)
