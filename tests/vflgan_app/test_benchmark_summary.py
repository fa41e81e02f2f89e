"""simulations/benchmarks/run_all.py and summary.py: one table of ratios with goals."""

import json

import pytest

from simulations.benchmarks import run_all
from simulations.benchmarks.summary import goal_met, report


@pytest.mark.parametrize("value, goal, met", [
    (1.2, "<= 1.3", True), (1.3, "<= 1.3", True), (1.31, "<= 1.3", False),
    (0.99, "< 1", True), (1.0, "< 1", False), (2.0, ">= 2", True), (5.0, "", None)])
def test_goal_met(value, goal, met):
    assert goal_met(value, goal) is met


def test_a_goal_that_does_not_parse_is_refused():
    with pytest.raises(ValueError, match="goal: got 'about 1', expected e.g. '<= 1.3'"):
        goal_met(1.0, "about 1")


def test_report_appends_a_row_where_bench_summary_points(tmp_path, monkeypatch, capsys):
    path = tmp_path / "rows.jsonl"
    monkeypatch.setenv("BENCH_SUMMARY", str(path))
    report("b", "x / y", 2.5, "y, same run", "<= 2")
    report("b", "z", 0.5, "-")
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["met"] for r in rows] == [False, None]
    assert rows[0]["value"] == 2.5 and rows[0]["baseline"] == "y, same run"
    assert "[summary] b: x / y = 2.500 x vs y, same run (goal <= 2)" in capsys.readouterr().out


def test_run_all_writes_the_table_and_marks_a_failed_benchmark(tmp_path, monkeypatch):
    # a benchmark that reports one ratio, and one that fails after reporting nothing
    (tmp_path / "ok.py").write_text(
        f"import sys; sys.path.insert(0, {str(run_all.ROOT)!r})\n"
        "from simulations.benchmarks.summary import report\n"
        "report('ok', 'a / b', 1.25, 'b, same run', '<= 1.3')\n")
    (tmp_path / "bad.py").write_text("raise SystemExit(3)\n")
    monkeypatch.setattr(run_all, "HERE", tmp_path)
    monkeypatch.setattr(run_all, "BENCHMARKS", {"ok": ([], []), "bad": ([], [])})
    monkeypatch.setattr(run_all, "HAS_CSV", set())
    out = tmp_path / "out"
    assert run_all.main(["--out", str(out)]) == 1  # one benchmark failed
    md = (out / "summary.md").read_text()
    assert "| ok | a / b | 1.250 x | b, same run | <= 1.3 | yes |" in md
    assert "| bad | **failed** (exit 3" in md
    assert (out / "summary.csv").read_text().splitlines()[1].startswith("ok,a / b,1.25,")
