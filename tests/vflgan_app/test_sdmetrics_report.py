"""The SDMetrics wrapper against a stand-in that behaves as the real package does.

sdmetrics needs pandas<3, so it is never importable here. Running the real package
(``simulations/check_sdmetrics.py``, SDMetrics 0.32) showed two things the plain
stand-in of ``test_plots_report.py`` cannot: its Data Structure property compares column
dtypes (the real ``TableStructure`` formula is reproduced below), which a
``synthetic.csv`` read-back loses for category/string/date columns; and a property it
cannot score comes back NaN (Column Pair Trends when no real pair passes its threshold).
"""

import io
import math
import sys
import types

import numpy as np
import pandas as pd
import pytest

from vflgan_app.eval import sdmetrics_report as sdm


def install_stand_in(monkeypatch, seen, pair_trends=0.9, shapes=0.8):
    """``sdmetrics.reports.single_table`` whose DiagnosticReport scores dtypes for real."""

    class Report:
        def generate(self, real, synthetic, metadata, verbose=True):
            seen.append((type(self).__name__, real.copy(), synthetic.copy(), metadata))
            self.scores = self.compute(real, synthetic)

        def get_score(self):
            ok = [v for v in self.scores.values() if not math.isnan(v)]
            return sum(ok) / len(ok) if ok else float("nan")

        def get_properties(self):
            return pd.DataFrame(
                {"Property": list(self.scores), "Score": list(self.scores.values())}
            )

    class QualityReport(Report):
        def compute(self, real, synthetic):
            return {"Column Shapes": shapes, "Column Pair Trends": pair_trends}

    class DiagnosticReport(Report):
        def compute(self, real, synthetic):
            # sdmetrics.single_table.TableStructure, as in SDMetrics 0.32
            r = set(zip(real.columns, map(str, real.dtypes)))
            s = set(zip(synthetic.columns, map(str, synthetic.dtypes)))
            return {"Data Validity": 1.0, "Data Structure": len(r & s) / len(r | s)}

    single = types.ModuleType("sdmetrics.reports.single_table")
    single.QualityReport, single.DiagnosticReport = QualityReport, DiagnosticReport
    for name, mod in [
        ("sdmetrics", types.ModuleType("sdmetrics")),
        ("sdmetrics.reports", types.ModuleType("sdmetrics.reports")),
        ("sdmetrics.reports.single_table", single),
    ]:
        monkeypatch.setitem(sys.modules, name, mod)
    sys.modules["sdmetrics"].reports = sys.modules["sdmetrics.reports"]
    sys.modules["sdmetrics.reports"].single_table = single


def typed_table(n=40, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n)
    return pd.DataFrame(
        {
            "a": a,
            "count": rng.integers(0, 9, n),
            "band": pd.Categorical(np.where(a > 0, "hi", "lo")),
            "tag": pd.array(np.where(a > 0.5, "x", "y"), dtype="string"),
            "flag": a > 0.2,
            "day": pd.Timestamp("2020-01-01") + pd.to_timedelta(np.arange(n), "D"),
        }
    )


def csv_round_trip(df: pd.DataFrame) -> pd.DataFrame:
    """What publish scores: the table as read back from ``synthetic.csv``."""
    return pd.read_csv(io.StringIO(df.to_csv(index=False)))


def test_a_csv_read_back_keeps_full_data_structure(monkeypatch):
    # Prepare: the real table with category/string/datetime dtypes; the synthetic one
    # is the same rows (one unseen category) after a CSV round trip, as publish reads it
    seen = []
    install_stand_in(monkeypatch, seen)
    real = typed_table()
    fake = real.assign(band=real["band"].astype(object).where(real.index != 3, "mid"))
    synthetic = csv_round_trip(fake)
    assert str(synthetic["day"].dtype) != str(real["day"].dtype)  # the artefact
    # Execute
    scores = sdm.sdmetrics_scores(real, synthetic, {"band", "tag", "flag"})
    # Assert: nothing lost to dtypes; values kept; dates declared as dates
    assert scores["diagnostic_properties"]["Data Structure"] == 1.0
    _, _, scored, metadata = seen[-1]
    assert list(scored["band"].astype(object)) == list(fake["band"])  # "mid" kept
    assert (scored["day"] == real["day"]).all()
    assert metadata["columns"]["day"] == {"sdtype": "datetime"}
    assert metadata["columns"]["a"] == {"sdtype": "numerical"}
    assert metadata["columns"]["band"] == {"sdtype": "categorical"}
    assert scored["count"].dtype == real["count"].dtype  # numbers untouched


def test_a_property_sdmetrics_cannot_score_is_named_not_returned_as_nan(monkeypatch):
    # Prepare: Column Pair Trends comes back NaN (no real pair above the threshold)
    install_stand_in(monkeypatch, [], pair_trends=float("nan"))
    real = typed_table()
    # Execute
    scores = sdm.sdmetrics_scores(real, real.copy(), {"band", "tag", "flag"})
    # Assert: every number returned is a score in [0, 1]; the NaN one is named
    assert scores["quality_properties"] == {"Column Shapes": 0.8}
    assert scores["quality_not_scored"] == ["Column Pair Trends"]
    assert scores["quality_score"] == pytest.approx(0.8)
    numbers = [scores["quality_score"], scores["diagnostic_score"]]
    numbers += [*scores["quality_properties"].values()]
    numbers += [*scores["diagnostic_properties"].values()]
    assert all(math.isfinite(v) and 0 <= v <= 1 for v in numbers)
    # the summary says which property was not scored, and prints no "nan"
    from vflgan_app.publish import summary_markdown

    text = summary_markdown({"sdmetrics": scores})
    assert "* Column Pair Trends: not scored by SDMetrics" in text and "nan" not in text
    # no overall score at all: skipped with the reason, not a NaN in report.json
    install_stand_in(monkeypatch, [], pair_trends=float("nan"), shapes=float("nan"))
    scores = sdm.sdmetrics_scores(real, real.copy(), {"band", "tag", "flag"})
    assert scores == {"skipped": "sdmetrics gave no quality score (nan)"}
