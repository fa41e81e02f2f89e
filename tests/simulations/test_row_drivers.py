"""``run_chunked.py`` (its complete-or-partial outputs, its resume) and
``summarize_rows.py`` (column choice, the plot)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True)


def test_run_chunked_writes_its_output_only_when_complete_and_resumes(tmp_path):
    out = tmp_path / "c.json"
    partial = tmp_path / "c.partial.json"
    # a planted row for K = 2 of the same settings (kept), one of another step budget
    # (dropped, so it must not reach the output)
    planted = {"dataset": "digits", "seed": 0, "steps": 3, "k": 2, "overrides": {},
               "fd": 123.0}
    other = dict(planted, steps=99, k=1, fd=456.0)
    partial.write_text(json.dumps([planted, other]))
    res = _run("simulations/run_chunked.py", "--steps", "3", "--ks", "1,2", "--seeds", "0",
               "--out", str(out))
    assert res.returncode == 0, res.stderr[-2000:]
    assert "seed 0 K 2: kept" in res.stdout
    rows = json.loads(out.read_text())
    assert [(r["k"], r["steps"]) for r in rows] == [(1, 3), (2, 3)]
    assert rows[1]["fd"] == 123.0 and rows[0]["fd"] != 456.0
    assert rows[0]["round_trips"] > 0 and "agreement_model" in rows[0]
    assert not partial.exists()


ROWS = [{"k": 1, "seed": 0, "fd": 1.0, "auc": 0.5, "name": "x"},
        {"k": 1, "seed": 1, "fd": 3.0, "auc": 0.7, "name": "x"},
        {"k": 4, "seed": 0, "fd": 2.0, "auc": 0.6, "name": "x"}]


def test_summarize_rows_columns_order_and_plot(tmp_path):
    src = tmp_path / "rows.json"
    src.write_text(json.dumps(ROWS))
    md, png = tmp_path / "t.md", tmp_path / "t.png"
    res = _run("simulations/summarize_rows.py", "--key", "k", "--columns", "auc,fd",
               "--out", str(md), "--plot", str(png), "--plot-y", "fd", str(src))
    assert res.returncode == 0, res.stderr
    lines = md.read_text().splitlines()
    assert lines[0] == "| k | seeds | auc | fd |"
    assert lines[2] == "| 1 | [0, 1] | 0.6 ± 0.14 | 2 ± 1.4 |"
    assert lines[3] == "| 4 | [0] | 0.6 | 2 |"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("argv, message", [
    (("--columns", "fd,nope"), "--columns: ['nope']"),
    (("--columns", "name"), "--columns: ['name']"),  # not numeric
    (("--plot", "p.png"), "--plot needs --plot-y"),
    (("--plot", "p.png", "--plot-y", "nope"), "--plot-y: no rows have column(s) ['nope']"),
])
def test_summarize_rows_names_bad_arguments(tmp_path, argv, message):
    src = tmp_path / "rows.json"
    src.write_text(json.dumps(ROWS))
    argv = tuple(str(tmp_path / a) if a.endswith(".png") else a for a in argv)
    res = _run("simulations/summarize_rows.py", "--key", "k", *argv, str(src))
    assert res.returncode != 0 and message in res.stderr
    assert not list(tmp_path.glob("*.png"))


def test_judge_blend_probe_names_a_missing_ensemble(tmp_path):
    res = _run("simulations/judge_blend_probe.py", "--judges", str(tmp_path / "none.pt"))
    assert res.returncode != 0 and "--judges:" in res.stderr and "does not exist" in res.stderr
