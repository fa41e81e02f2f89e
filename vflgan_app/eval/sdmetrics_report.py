"""Optional SDMetrics scores: the single-table QualityReport and DiagnosticReport.

``sdmetrics`` is not a dependency: its releases (0.32 at the time of writing) need
pandas < 3 and this project runs on pandas 3, so the scores are added only where the
package happens to be importable, and only without DP (they are computed from the real
rows, like the other quality metrics, but unlike those they are not part of the
project's own report; docs/privacy.md).
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

logger = logging.getLogger(__name__)

MAX_ROWS = 5_000  # rows of each table scored (SDMetrics' column-pair trends are slow)

NOT_INSTALLED = ("sdmetrics is not importable (optional, not a dependency: its releases "
                 "need pandas<3)")
UNDER_DP = "not computed under DP (its scores are computed from the real rows)"


def sdmetrics_available() -> bool:
    """Whether ``sdmetrics`` can be imported here."""
    try:
        import sdmetrics.reports.single_table  # noqa: F401
    except Exception:  # ImportError, or a broken install against our pandas
        return False
    return True


def sdmetrics_scores(real: pd.DataFrame, synthetic: pd.DataFrame,
                     categorical: set[str], verbose: bool = False) -> dict[str, Any]:
    """QualityReport and DiagnosticReport of ``synthetic`` against ``real``.

    Args:
        real: the real table, decoded (original columns).
        synthetic: the synthetic table, same columns.
        categorical: names of the categorical columns (the rest are numerical).
        verbose: let SDMetrics print its progress.

    Returns:
        ``{"quality_score": float, "quality_properties": {name: score},
        "diagnostic_score": float, "diagnostic_properties": {name: score}}``, every
        score in [0, 1] (1 = best); or ``{"skipped": reason}`` when the package is
        missing or its report fails.
    """
    try:
        from sdmetrics.reports.single_table import DiagnosticReport, QualityReport
    except Exception:
        return {"skipped": NOT_INSTALLED}
    columns = list(synthetic.columns)
    metadata = {"columns": {c: {"sdtype": "categorical" if c in categorical else
                                "numerical"} for c in columns}}
    real, synthetic = real[columns].head(MAX_ROWS), synthetic.head(MAX_ROWS)
    out: dict[str, Any] = {}
    try:
        for key, cls in (("quality", QualityReport), ("diagnostic", DiagnosticReport)):
            rep = cls()
            rep.generate(real, synthetic, metadata, verbose=verbose)
            out[f"{key}_score"] = float(rep.get_score())
            props = rep.get_properties()
            out[f"{key}_properties"] = {str(p): float(s) for p, s in
                                        zip(props["Property"], props["Score"])}
    except Exception as e:  # an optional extra must not cost the run its report
        logger.warning("sdmetrics failed (%s: %s); its scores are left out",
                       type(e).__name__, e)
        return {"skipped": f"sdmetrics failed: {type(e).__name__}: {e}"}
    return out
