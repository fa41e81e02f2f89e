"""Plots next to summary.md, the console summary, evaluation progress, optional SDMetrics.

The evaluation runs for real (the Evaluator on a 120-row table, with fake models), then
``write_report`` publishes; one test trains through the CLI end to end.
"""

import json
import re
import stat
import sys
import types

import numpy as np
import pytest

from tests.vflgan_app.eval.test_evaluator import make_models, tiny_table_dataset
from vflgan_app.data.partition import decode_parts, prepare_parties
from vflgan_app.data.sources import ID_COLUMN
from vflgan_app.eval import plots
from vflgan_app.eval.evaluator import Evaluator
from vflgan_app.publish import console_summary, write_report, write_synthetic

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
HISTORY = {"history": {"d_loss": [3.0, 2.5, 2.0, 1.8], "g_loss": {"1": 0.5, "3": 0.4}}}
OMITTED = {"history_omitted": "omitted under DP: not covered by the accountant"}


def no_dp(progress=False):
    return {"steps": 4, "progress": progress, "dp": {"mode": "none"}}


def dp_config():
    return {"steps": 4, "progress": False, "dp": {"mode": "paper"}}


@pytest.fixture(scope="module")
def evaluated():
    """(metrics with plot inputs, the decoded synthetic table) of the 'copy' model."""
    ds = tiny_table_dataset()
    parties = prepare_parties(ds.party_tables(), ID_COLUMN, ds.categorical, ds.bounded)
    evaluator = Evaluator(ds, parties, seed=0)
    model = make_models(parties, evaluator.party_slices)["copy"]
    metrics = evaluator.evaluate(model, seed=0, dependence=False, progress=False)
    synth = decode_parts([p.schema for p in parties], model.sample_parts(len(ds.table), 0))
    return metrics, synth


def publish(tmp_path, evaluated, config, extra):
    metrics, synth = evaluated
    files = write_synthetic(tmp_path, synth)
    write_report(tmp_path, metrics, config, 0, files,
                 {"model": "vflgan", "dataset": "tiny", **extra})
    return json.loads((tmp_path / "report.json").read_text())


def assert_valid_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, f"{path.name} is not a PNG"
    assert len(data) > 5_000, f"{path.name}: {len(data)} bytes, expected a drawn figure"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_every_plot_is_a_png_linked_from_summary(tmp_path, evaluated):
    # Execute
    report = publish(tmp_path, evaluated, no_dp(), HISTORY)
    # Assert
    names = [f["file"] for f in report["plots"]["files"]]
    assert names == ["plot_losses.png", "plot_marginals_1.png", "plot_correlations.png"]
    summary = (tmp_path / "summary.md").read_text()
    for name in names:
        assert_valid_png(tmp_path / name)
        assert f"]({name})" in summary
    shows = {f["file"]: f["shows"] for f in report["plots"]["files"]}
    assert shows["plot_marginals_1.png"] == ["real", "synthetic"]
    assert shows["plot_correlations.png"] == ["real", "model", "control"]
    assert report["plots"]["real_data_shown"] is True


def test_marginals_split_into_figures_of_at_most_twelve_columns(tmp_path, monkeypatch,
                                                                 evaluated):
    # Prepare: two columns a figure, so the 4-column table needs two figures
    monkeypatch.setattr(plots, "MAX_COLUMNS_PER_FIGURE", 2)
    seen = []
    real_draw = plots.draw_marginals
    monkeypatch.setattr(plots, "draw_marginals",
                        lambda s, r, c: seen.append(list(s.columns)) or real_draw(s, r, c))
    # Execute
    report = publish(tmp_path, evaluated, no_dp(), HISTORY)
    # Assert
    assert seen == [["a", "color"], ["b", "kind"]]
    assert {"plot_marginals_1.png", "plot_marginals_2.png"} <= {
        f["file"] for f in report["plots"]["files"]}
    assert plots.MAX_COLUMNS_PER_FIGURE == 2 and len(seen[0]) <= 12


def test_dp_publishes_no_plot_of_real_data(tmp_path, monkeypatch, evaluated):
    # Prepare: record what reaches the drawing functions
    calls = {"marginals_real": [], "correlation_panels": []}
    draw_m, draw_c = plots.draw_marginals, plots.draw_correlations

    def spy_marginals(synthetic, real, categorical):
        calls["marginals_real"].append(real)
        return draw_m(synthetic, real, categorical)

    def spy_correlations(matrices, slices, names=None):
        calls["correlation_panels"].append(list(matrices))
        return draw_c(matrices, slices, names)

    monkeypatch.setattr(plots, "draw_marginals", spy_marginals)
    monkeypatch.setattr(plots, "draw_correlations", spy_correlations)
    # Execute
    report = publish(tmp_path, evaluated, dp_config(), {"dp": {"mode": "paper"}, **OMITTED})
    # Assert
    assert calls["marginals_real"] == [None]
    assert calls["correlation_panels"] == [["model", "control"]]
    assert report["plots"]["real_data_shown"] is False
    assert all("real" not in f["shows"] for f in report["plots"]["files"])
    assert not (tmp_path / "plot_losses.png").exists()  # the history is not published
    for f in report["plots"]["files"]:
        assert_valid_png(tmp_path / f["file"])
    summary = (tmp_path / "summary.md").read_text()
    assert plots.DP_NOTE in summary and "Loss curves: not drawn" in summary
    assert "history" not in report


def test_without_evaluation_only_the_synthetic_side_is_drawn(tmp_path, evaluated):
    # Prepare
    _, synth = evaluated
    files = write_synthetic(tmp_path, synth)
    # Execute
    write_report(tmp_path, {}, no_dp(), 0, files, {"model": "vertigan"})
    # Assert
    report = json.loads((tmp_path / "report.json").read_text())
    assert [f["file"] for f in report["plots"]["files"]] == ["plot_marginals_1.png"]
    assert report["plots"]["files"][0]["shows"] == ["synthetic"]
    assert_valid_png(tmp_path / "plot_marginals_1.png")
    notes = " ".join(report["plots"]["notes"])
    assert "keeps no loss history" in notes and "Cross-party correlations: not drawn" in notes


def test_sdmetrics_is_skipped_in_one_line_when_missing(tmp_path, monkeypatch, evaluated):
    # Prepare: make sure it cannot be imported (it needs pandas<3; we run pandas 3)
    monkeypatch.setitem(sys.modules, "sdmetrics", None)
    # Execute
    report = publish(tmp_path, evaluated, no_dp(), HISTORY)
    # Assert
    assert "not importable" in report["sdmetrics"]["skipped"]
    lines = [x for x in (tmp_path / "summary.md").read_text().splitlines() if "SDMetrics" in x]
    assert len(lines) == 1 and lines[0].startswith("SDMetrics: sdmetrics is not importable")


def fake_sdmetrics(monkeypatch, seen):
    """A stand-in ``sdmetrics.reports.single_table`` with SDMetrics' report interface."""
    import pandas as pd

    class Report:
        score = 0.0

        def generate(self, real, synthetic, metadata, verbose=True):
            seen.append((type(self).__name__, list(real.columns), metadata))

        def get_score(self):
            return self.score

        def get_properties(self):
            return pd.DataFrame({"Property": ["Column Shapes"], "Score": [self.score]})

    single = types.ModuleType("sdmetrics.reports.single_table")
    single.QualityReport = type("QualityReport", (Report,), {"score": 0.81})
    single.DiagnosticReport = type("DiagnosticReport", (Report,), {"score": 0.99})
    for name, mod in [("sdmetrics", types.ModuleType("sdmetrics")),
                      ("sdmetrics.reports", types.ModuleType("sdmetrics.reports")),
                      ("sdmetrics.reports.single_table", single)]:
        monkeypatch.setitem(sys.modules, name, mod)
    sys.modules["sdmetrics"].reports = sys.modules["sdmetrics.reports"]
    sys.modules["sdmetrics.reports"].single_table = single


def test_sdmetrics_scores_go_into_the_report_without_dp_only(tmp_path, monkeypatch, evaluated):
    # Prepare
    seen = []
    fake_sdmetrics(monkeypatch, seen)
    # Execute
    report = publish(tmp_path / "plain", evaluated, no_dp(), HISTORY)
    dp_report = publish(tmp_path / "dp", evaluated, dp_config(), {"dp": {"mode": "paper"}})
    # Assert
    assert report["sdmetrics"]["quality_score"] == pytest.approx(0.81)
    assert report["sdmetrics"]["diagnostic_score"] == pytest.approx(0.99)
    name, columns, metadata = seen[0]
    assert columns == ["a", "color", "b", "kind"]
    assert metadata["columns"]["color"]["sdtype"] == "categorical"
    assert metadata["columns"]["a"]["sdtype"] == "numerical"
    assert "QualityReport overall score 0.810" in (tmp_path / "plain" / "summary.md").read_text()
    assert len(seen) == 2  # quality + diagnostic, and nothing for the DP run
    assert "under DP" in dp_report["sdmetrics"]["skipped"]


def test_console_summary_puts_each_metric_beside_control_and_real():
    # Prepare
    report = {"model": "vflgan", "dataset": "adult", "metrics": {
        "model": {"tstr_accuracy": 0.61, "trtr_accuracy": 0.85, "fd": 2.0},
        "control": {"tstr_accuracy": 0.58, "trtr_accuracy": 0.85, "fd": 2.1},
        "dependence": {
            "summary": "The model beats its independent-latent control on 1 of 1.",
            "metrics": {"agreement": {"real": 0.769, "model": 0.147, "control": 0.119,
                                      "description": "cross-party agreement"}},
            "verdicts": {"agreement": {"sentence": "The model beats it on agreement."}}}},
        "plots": {"files": [{"file": "plot_losses.png", "title": "t", "shows": []}]}}
    # Execute
    text = console_summary(report)
    # Assert
    assert "  cross-party agreement 0.147 (control 0.119, real 0.769)" in text
    assert "  tstr_accuracy 0.61 (control 0.58, real 0.85)" in text
    assert "  fd 2 (control 2.1)" in text and "trtr_accuracy" not in text
    assert "The model beats its independent-latent control on 1 of 1." in text
    assert "* The model beats it on agreement." in text and "plot_losses.png" in text
    assert "metrics:" not in text


@pytest.mark.parametrize("progress", [False, True])
def test_evaluation_progress_follows_the_config(capsys, progress):
    # Prepare
    ds = tiny_table_dataset(60)
    parties = prepare_parties(ds.party_tables(), ID_COLUMN, ds.categorical, ds.bounded)
    evaluator = Evaluator(ds, parties, seed=0)
    model = make_models(parties, evaluator.party_slices)["copy"]
    model.config = types.SimpleNamespace(progress=progress)  # like VFLGANModel.config
    # Execute
    evaluator.evaluate(model, seed=0, dependence=False)
    # Assert
    err = capsys.readouterr().err
    assert ("evaluation" in err) is progress
    if progress:
        assert "quality (control)" in err and "3/3" in err


def test_cli_train_prints_controls_and_writes_linked_plots(tmp_path, capsys):
    from vflgan_app.__main__ import main

    # Execute
    rc = main(["train", "--dataset", "breast_cancer", "--max-rows", "100", "--steps", "2",
               "--batch-size", "16", "--threads", "1", "--progress", "false",
               "--output-dir", str(tmp_path), "--run-name", "r"])
    # Assert
    assert rc == 0
    out = capsys.readouterr().out
    assert re.search(r"^  tstr_accuracy [\d.]+ \(control [\d.]+, real [\d.]+\)$", out, re.M)
    assert re.search(r"^  cross-party correlation error, all cross pairs [\d.]+ "
                     r"\(control [\d.]+, real [\d.]+\)$", out, re.M)
    assert "independent-latent control" in out and "metrics:" not in out
    run = tmp_path / "r"
    summary = (run / "summary.md").read_text()
    pngs = sorted(p.name for p in run.glob("plot_*.png"))
    assert {"plot_losses.png", "plot_correlations.png", "plot_marginals_1.png"} <= set(pngs)
    for name in pngs:
        assert_valid_png(run / name)
        assert f"]({name})" in summary
    assert np.isfinite(json.loads((run / "report.json").read_text())["metrics"]["model"]["fd"])
