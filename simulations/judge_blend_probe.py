"""Which class does the unlearning grid's judge ensemble give to blended digits?

For each class c, ``--n`` blends are formed as the pixel mean of k random training images
of the *other* classes (k = 2 and 4), and scored by the ensemble. The question is
whether some class is the judges' sink for ambiguous images: then a forget rate of that
class counts blends as relearned digits (README, unlearning section: c_f = 8).

    python simulations/judge_blend_probe.py \
        --judges simulations/results/cache/unlearning_robust/judges.pt
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from unlearning.data import load_dataset
from unlearning.judge import load_judge_ensemble


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--judges", type=Path, required=True,
                   help="judge ensemble file (run_unlearning_grid.py --robust writes it)")
    p.add_argument("--n", type=int, default=500, help="blends per class and k")
    p.add_argument("--ks", default="2,4", help="images per blend, comma-separated")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    if not a.judges.exists():
        raise SystemExit(f"--judges: {a.judges} does not exist (run the robust grid first, "
                         "or point at another ensemble file)")
    torch.set_num_threads(1)
    ens = load_judge_ensemble(a.judges)
    data = load_dataset("digits").train
    g = torch.Generator().manual_seed(a.seed)
    ks = [int(k) for k in a.ks.split(",")]
    print("| c | k | argmax = c | p(c) >= 0.9 | most frequent argmax |")
    print("| --- | --- | --- | --- | --- |")
    for c in range(int(data.labels.max()) + 1):
        others = data.images[data.labels != c]
        for k in ks:
            idx = torch.randint(len(others), (a.n, k), generator=g)
            probs = ens.probs(others[idx].mean(1)).mean(0)  # judges' mean, (n, classes)
            arg = probs.argmax(1)
            top = int(np.bincount(arg, minlength=probs.shape[1]).argmax())
            print(f"| {c} | {k} | {(arg == c).mean():.3f} | {(probs[:, c] >= 0.9).mean():.3f} "
                  f"| {top} |")


if __name__ == "__main__":
    main()
