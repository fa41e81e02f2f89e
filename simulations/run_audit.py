"""Audit VFLGAN (no DP, paper-mode DP, strict DP) with the membership game of ``audit/``.

``audit`` knows nothing of VFLGAN: this driver hands it a picklable ``fit_and_sample``
that trains VFLGAN with the in-process federation on a world's rows (split between the
dataset's parties), samples a synthetic table of the same size, and returns with it
each party's bottom-critic intermediate features of that party's whole real table
(for ASIF, as the paper's IF attacks do).

    python simulations/run_audit.py --dataset wine_red --data-root ../shared/data \\
        --steps 300 --n-shadows 11 --dp none paper:10 paper:5
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


def parse_dp(spec: str) -> DPConfig:
    """``none``, ``paper:10`` or ``strict:5`` -> DPConfig."""
    if spec == "none":
        return DPConfig()
    mode, eps = spec.split(":")
    return DPConfig(mode=mode, target_epsilon=float(eps))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="wine_red")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--steps", type=int, default=300, help="VFLGAN steps per shadow")
    ap.add_argument("--n-shadows", type=int, default=11, help="shadows per world")
    ap.add_argument("--n-targets", type=int, default=2)
    ap.add_argument("--n-estimators", type=int, default=200)
    ap.add_argument("--dp", nargs="+", default=["none", "paper:10", "paper:5"],
                    help="none, paper:<epsilon> or strict:<epsilon>")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--out", default="simulations/results/audit")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    ds = load_dataset(args.dataset, args.data_root)
    real = ds.table.drop(columns=[ID_COLUMN])
    lines = [f"VFLGAN on {ds.name}, {args.steps} steps per shadow, {args.n_shadows} shadows "
             f"per world, {args.n_targets} targets, {args.n_estimators} trees", "",
             "| DP | target | attack | AUC | TPR@1%FPR | TPR@10%FPR | eps_lb | accountant eps "
             "| wall s |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for spec in args.dp:
        dp = parse_dp(spec)
        cfg = VFLGANConfig(dataset="custom", architecture=args.dataset, steps=args.steps,
                           progress=False, threads=1, dp=dp)
        gen = VFLGANShadow(cfg, tuple(tuple(c) for c in ds.party_columns),
                           tuple(ds.categorical), real)
        audit_cfg = AuditConfig(n_shadows=args.n_shadows, n_targets=args.n_targets,
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
