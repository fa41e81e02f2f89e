"""Optional SDMetrics scores: the single-table QualityReport and DiagnosticReport.

``sdmetrics`` is not a dependency: its releases (0.32 at the time of writing) need
pandas < 3 and this project runs on pandas 3, so the scores are added only where the
package happens to be importable, and only without DP (they are computed from the real
rows, like the other quality metrics, but unlike those they are not part of the
project's own report; docs/privacy.md).

Two adjustments to what SDMetrics would otherwise report (both found by running the real
package, ``simulations/check_sdmetrics.py``):

* The synthetic table usually comes back from ``synthetic.csv``, which keeps values but
  not ``category``, ``string`` or ``datetime64`` dtypes. SDMetrics' Data Structure
  property compares column dtypes, so such columns are cast back to the real table's
  dtype first (:func:`align_dtypes`); date/time columns are declared ``datetime``.
* A property SDMetrics cannot score comes back NaN (Column Pair Trends when no real pair
  passes its correlation/association threshold). It is left out of the properties and
  named under ``<report>_not_scored``, so every score returned is a number in [0, 1].
"""

from __future__ import annotations

import logging
import math
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


def align_dtypes(real: pd.DataFrame, synthetic: pd.DataFrame) -> pd.DataFrame:
    """``synthetic`` with text columns cast to the real column's dtype where that differs.

    Only text columns (object or string, as ``read_csv`` gives) are cast, and only to a
    real ``category`` (its categories plus the synthetic table's unseen ones),
    ``string``, ``object`` or ``datetime64`` dtype (unparseable times become NaT), so no
    value is lost; numeric columns are left alone.
    """
    out = synthetic.copy()
    for c in out.columns:
        if c not in real.columns or str(real[c].dtype) == str(out[c].dtype):
            continue
        col, dtype = out[c], real[c].dtype
        if not (pd.api.types.is_object_dtype(col) or pd.api.types.is_string_dtype(col)):
            continue
        if isinstance(dtype, pd.CategoricalDtype):
            unseen = [v for v in pd.unique(col.dropna()) if v not in set(dtype.categories)]
            out[c] = col.astype(pd.CategoricalDtype([*dtype.categories, *unseen]))
        elif pd.api.types.is_datetime64_dtype(dtype):
            out[c] = pd.to_datetime(col, errors="coerce").astype(dtype)
        elif pd.api.types.is_string_dtype(dtype):  # "string", or object holding text
            out[c] = col.astype(dtype)
    return out


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
        score in [0, 1] (1 = best), plus ``"<report>_not_scored": [names]`` for the
        properties SDMetrics returned NaN for; or ``{"skipped": reason}`` when the
        package is missing, its report fails or it gives no overall score.
    """
    try:
        from sdmetrics.reports.single_table import DiagnosticReport, QualityReport
    except Exception:
        return {"skipped": NOT_INSTALLED}
    columns = list(synthetic.columns)
    real = real[columns].head(MAX_ROWS)
    synthetic = align_dtypes(real, synthetic.head(MAX_ROWS))

    def sdtype(c: str) -> str:
        if c in categorical:
            return "categorical"
        return "datetime" if pd.api.types.is_datetime64_dtype(real[c]) else "numerical"

    metadata = {"columns": {c: {"sdtype": sdtype(c)} for c in columns}}
    out: dict[str, Any] = {}
    try:
        for key, cls in (("quality", QualityReport), ("diagnostic", DiagnosticReport)):
            rep = cls()
            rep.generate(real, synthetic, metadata, verbose=verbose)
            score = float(rep.get_score())
            if not math.isfinite(score):
                return {"skipped": f"sdmetrics gave no {key} score ({score})"}
            out[f"{key}_score"] = score
            props = rep.get_properties()
            scores = {str(p): float(s) for p, s in zip(props["Property"], props["Score"])}
            out[f"{key}_properties"] = {p: v for p, v in scores.items() if math.isfinite(v)}
            nan = [p for p, v in scores.items() if not math.isfinite(v)]
            if nan:
                out[f"{key}_not_scored"] = nan
    except Exception as e:  # an optional extra must not cost the run its report
        logger.warning("sdmetrics failed (%s: %s); its scores are left out",
                       type(e).__name__, e)
        return {"skipped": f"sdmetrics failed: {type(e).__name__}: {e}"}
    return out
