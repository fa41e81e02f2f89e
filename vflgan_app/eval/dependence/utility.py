"""Cross-party predictive utility: predict one party's column from another's."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.metrics import accuracy_score, r2_score

from vflgan_app.eval.dependence.inputs import Target


def _target_values(x: np.ndarray, target: Target) -> np.ndarray:
    cols = x[:, target.columns]
    return cols.argmax(axis=1) if target.kind == "categorical" else cols[:, 0]


def _fit_target_model(
    features: np.ndarray, y: np.ndarray, kind: str, seed: int
) -> RandomForestClassifier | RandomForestRegressor:
    cls = RandomForestClassifier if kind == "categorical" else RandomForestRegressor
    return cls(
        n_estimators=30,
        max_depth=8,
        min_samples_leaf=3,
        max_features="sqrt",
        random_state=seed,
        n_jobs=-1,
    ).fit(features, y)


def _score(model: Any, features: np.ndarray, y: np.ndarray, kind: str) -> float:
    pred = model.predict(features)
    if kind == "categorical":
        return float(accuracy_score(y, pred))
    return float(r2_score(y, pred))


def cross_party_utility(
    real_train: np.ndarray,
    real_holdout: np.ndarray,
    synthetic_sets: Mapping[str, np.ndarray],
    party_slices: Sequence[slice],
    targets: Sequence[Target],
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Predict each target from every *other* party's columns: TRTR, TRTS and TSTR.

    For every source party p and target t held by a party q != p, a small random forest
    (30 trees, depth 8, sqrt(D_p) features per split) predicts t from p's columns only.
    Scores are accuracy for categorical targets (class = argmax of the one-hot span) and
    R^2 for numeric ones (R^2 can be negative; on a constant y it is 1.0 if predicted
    exactly, else 0.0).

    Args:
        real_train: Real rows the "train real" models are fitted on, shape (N, D).
        real_holdout: Real rows never used for fitting, shape (M, D).
        synthetic_sets: Named synthetic tables, e.g. ``{"model": s, "control": c}``.
        party_slices: Each party's contiguous columns.
        targets: Targets to predict (see ``targets_from_spans``).
        seed: Seed for the forests.

    Returns:
        One row per (source party, target): ``source_party``, ``target``,
        ``target_party``, ``kind``, ``score`` ("accuracy" or "r2"), ``trtr`` (train
        real, test real hold-out) and, under ``"synthetic"``, per synthetic name
        ``{name: {"trts": ..., "tstr": ...}}``.
    """
    rows = []
    for t in targets:
        y_train, y_hold = _target_values(real_train, t), _target_values(real_holdout, t)
        for p, s in enumerate(party_slices):
            if p == t.party:
                continue
            real_model = _fit_target_model(real_train[:, s], y_train, t.kind, seed)
            row: dict[str, Any] = {
                "source_party": p,
                "target": t.name,
                "target_party": t.party,
                "kind": t.kind,
                "score": "accuracy" if t.kind == "categorical" else "r2",
                "trtr": _score(real_model, real_holdout[:, s], y_hold, t.kind),
                "synthetic": {},
            }
            for name, syn in synthetic_sets.items():
                y_syn = _target_values(syn, t)
                syn_model = _fit_target_model(syn[:, s], y_syn, t.kind, seed)
                row["synthetic"][name] = {
                    "trts": _score(real_model, syn[:, s], y_syn, t.kind),
                    "tstr": _score(syn_model, real_holdout[:, s], y_hold, t.kind),
                }
            rows.append(row)
    return rows
