"""Membership-inference auditing of released synthetic data and models (ASSD/ASIF).

The audit is handed the generator as callables, ``fit_and_sample(rows, seed)`` and
optionally ``fit_and_features(rows, seed)``, so it audits any generator without
importing it. Entry points: :func:`run_audit` and ``python -m audit``.

Names are imported on first use (PEP 562), so the shadow worker processes, which import
only ``audit.worker``, start without loading the rest (nor torch, via ``trainkit``).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "AuditConfig": "audit.config",
    "IF_FEATURE_SETS": "audit.config",
    "TABLE_FEATURE_SETS": "audit.config",
    "CopyGenerator": "audit.generators",
    "GaussianCopulaGenerator": "audit.generators",
    "IndependentGenerator": "audit.generators",
    "make_generator": "audit.generators",
    "EpsilonBound": "audit.metrics",
    "clopper_pearson": "audit.metrics",
    "empirical_epsilon": "audit.metrics",
    "epsilon_over_thresholds": "audit.metrics",
    "max_resolvable_epsilon": "audit.metrics",
    "min_trials_for_epsilon": "audit.metrics",
    "AttackResult": "audit.report",
    "AuditReport": "audit.report",
    "run_audit": "audit.run",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    """Import an exported name on first use."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'audit' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """List the exported names."""
    return sorted(set(globals()) | set(__all__))
