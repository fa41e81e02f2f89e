"""Audit VFLGAN (no DP, paper-mode DP, strict DP) with the membership game of ``audit/``.

``audit`` knows nothing of VFLGAN: this driver hands it a picklable ``fit_and_sample``
that trains VFLGAN with the in-process federation on a world's rows (split between the
dataset's parties), samples a synthetic table of the same size, and returns with it
each party's bottom-critic intermediate features of that party's whole real table
(for ASIF, as the paper's IF attacks do).

    python simulations/run_audit.py --dataset wine_red --data-root ../shared/data \\
        --dp none paper:10 paper:5

``--scale cpu`` (the default) is the CPU-scale audit of ``simulations/README.md``: 300
steps per shadow, 32 shadows per world, 1 target, 200 trees (about 20 minutes for the
three DP settings above on 2 cores). ``--scale paper`` is the paper's setting
(research/vflgan.md section 5): its epochs per dataset, 100 + 100 shadows, its two
target rows, 1,000 trees and its delta; a GPU-scale job. Any flag given explicitly
overrides the preset.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from audit import AuditConfig, run_audit
from trainkit import atomic_write_text
from vflgan_app.api import build_federation
from vflgan_app.config import DPConfig, VFLGANConfig
from vflgan_app.data.partition import prepare_parties
from vflgan_app.data.sources import ID_COLUMN, load_dataset

log = logging.getLogger("run_audit")


@dataclasses.dataclass(frozen=True)
class VFLGANShadow:
    """``(rows, seed) -> (synthetic, [IFs per party])`` for ``audit.run_audit`` (picklable)."""

    config: VFLGANConfig
    party_columns: tuple[tuple[str, ...], ...]
    categorical: tuple[str, ...]
    real: pd.DataFrame  # the whole real table (ASIF feeds each party's columns of it)

    def __call__(self, rows: pd.DataFrame, seed: int):
        torch.set_num_threads(1)
        cfg = dataclasses.replace(self.config, seed=int(seed))
        rows = rows.assign(**{ID_COLUMN: np.arange(len(rows))})
        tables = [rows[[ID_COLUMN, *cols]] for cols in self.party_columns]
        parties = prepare_parties(tables, ID_COLUMN, list(self.categorical))
        model = build_federation(parties, cfg).fit()
        synthetic = model.sample(len(rows), seed=int(seed))[list(self.real.columns)]
        feats = []
        for party, cols in zip(model.parties, self.party_columns, strict=True):
            x = party.data.schema.encode(self.real[list(cols)])
            with torch.no_grad():
                feats.append(party.D_C(torch.as_tensor(x, dtype=torch.float32)).numpy())
        return synthetic, feats


#: Presets of ``--scale``: steps per shadow, shadows per world, targets, trees.
SCALES = {"cpu": {"steps": 300, "n_shadows": 32, "n_targets": 1, "n_estimators": 200}}
#: The paper's audit per dataset (research/vflgan.md sections 2.2, 4 and 5): epochs x
#: ceil(N / B) steps, its target rows (positions in the UCI order) and its DP delta.
PAPER = {
    "wine_red": {"steps": 150 * 100, "targets": (151, 1235), "delta": 5e-4},
    "wine_white": {"steps": 400 * 77, "targets": (1034, 2781), "delta": 2e-4},
    "adult": {"steps": 75 * 671, "targets": (33914, 37592), "delta": 1e-5},
}


def scale_settings(scale: str, dataset: str) -> dict:
    """The ``--scale`` preset for ``dataset``.

    Raises:
        ValueError: ``scale`` unknown, or ``paper`` for a dataset the paper did not audit.
    """
    if scale == "cpu":
        return {**SCALES["cpu"], "targets": (), "delta": 1e-5}
    if scale != "paper":
        raise ValueError(f"--scale: got {scale!r}, expected 'cpu' or 'paper'")
    if dataset not in PAPER:
        raise ValueError(f"--scale paper: got --dataset {dataset!r}, expected one the paper "
                         f"audited: {sorted(PAPER)}")
    return {"n_shadows": 100, "n_targets": 2, "n_estimators": 1000, **PAPER[dataset]}


def parse_dp(spec: str, delta: float = 1e-5) -> DPConfig:
    """``none``, ``paper:10`` or ``strict:5`` -> DPConfig."""
    if spec == "none":
        return DPConfig()
    mode, eps = spec.split(":")
    return DPConfig(mode=mode, target_epsilon=float(eps), delta=delta)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="wine_red")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--scale", default="cpu", choices=["cpu", "paper"],
                    help="preset of the four settings below (explicit flags win)")
    ap.add_argument("--steps", type=int, default=None, help="VFLGAN steps per shadow")
    ap.add_argument("--n-shadows", type=int, default=None, help="shadows per world")
    ap.add_argument("--n-targets", type=int, default=None)
    ap.add_argument("--n-estimators", type=int, default=None)
    ap.add_argument("--dp", nargs="+", default=["none", "paper:10", "paper:5"],
                    help="none, paper:<epsilon> or strict:<epsilon>")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--out", default="simulations/results/audit")
    args = ap.parse_args()
    preset = scale_settings(args.scale, args.dataset)
    for key in ("steps", "n_shadows", "n_targets", "n_estimators"):
        if getattr(args, key) is None:
            setattr(args, key, preset[key])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    ds = load_dataset(args.dataset, args.data_root)
    real = ds.table.drop(columns=[ID_COLUMN])
    lines = [f"VFLGAN on {ds.name}, {args.steps} steps per shadow, {args.n_shadows} shadows "
             f"per world, {args.n_targets} targets, {args.n_estimators} trees", "",
             "| DP | target | attack | AUC | TPR@1%FPR | TPR@10%FPR | eps_lb | accountant eps "
             "| wall s |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for spec in args.dp:
        dp = parse_dp(spec, preset["delta"])
        cfg = VFLGANConfig(dataset="custom", architecture=args.dataset, steps=args.steps,
                           progress=False, threads=1, dp=dp)
        gen = VFLGANShadow(cfg, tuple(tuple(c) for c in ds.party_columns),
                           tuple(ds.categorical), real)
        audit_cfg = AuditConfig(n_shadows=args.n_shadows, n_targets=args.n_targets,
                                target_positions=preset["targets"],
                                n_estimators=args.n_estimators, workers=args.workers,
                                categorical_columns=tuple(ds.categorical),
                                accountant_epsilon=dp.target_epsilon if dp.enabled else None,
                                progress=False)
        t0 = time.perf_counter()
        report = run_audit(real, gen, audit_cfg,
                           out_dir=Path(args.out) / f"{ds.name}-{spec.replace(':', '-')}")
        wall = time.perf_counter() - t0
        frame = report.results_frame()
        log.info("%s: %.0f s\n%s", spec, wall, frame.to_string())
        for _, r in frame.iterrows():
            lines.append(f"| {spec} | {r['target_label']} | {r['feature_set']} | "
                         f"{r['auc']:.3f} | {r['tpr_at_fpr_0.01']:.3f} | "
                         f"{r['tpr_at_fpr_0.1']:.3f} | {r['eps_lb']:.3f} | "
                         f"{dp.target_epsilon if dp.enabled else '-'} | {wall:.0f} |")
        atomic_write_text(Path(args.out) / f"{ds.name}-summary.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
