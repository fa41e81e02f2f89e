"""The table registry behind ``python -m simulations``: resume, manifest, README check."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from simulations import tables
from simulations.tables import Step, Table

ROOT = Path(__file__).resolve().parents[2]

# a step that writes a run_compare-like JSON; argv[1] = file, argv[2] = value, argv[3] =
# "partial" to leave the model unfinished, "fail" to exit non-zero
WRITER = """
import json, sys
path, value, mode = sys.argv[1], float(sys.argv[2]), sys.argv[3]
if mode == "fail":
    sys.exit(3)
model = {"curve": [], "partial": True} if mode == "partial" else {"model": {"v": value}}
json.dump({"commit": "abc", "models": {"m": model}}, open(path, "w"))
"""

SUMMARY = """
import json, sys, statistics
out, paths = sys.argv[1], sys.argv[2:]
vals = [json.load(open(p))["models"]["m"]["model"]["v"] for p in paths]
open(out, "w").write("| model | v |\\n| --- | --- |\\n"
                     f"| m | {statistics.mean(vals):.3f} ± {statistics.stdev(vals):.3f} |\\n")
"""


@pytest.fixture()
def fake_table(tmp_path, monkeypatch):
    writer, summary = tmp_path / "writer.py", tmp_path / "summary.py"
    writer.write_text(WRITER)
    summary.write_text(SUMMARY)
    modes = {"a.json": "ok", "b.json": "ok"}

    def make() -> Table:
        steps = tuple(Step((str(writer), f"{{out}}/{name}", str(1.0 + i), modes[name]),
                           name, ("m",)) for i, name in enumerate(modes))
        return Table("fake", "Fake", steps, (str(summary), "{out}/fake.md"), steps,
                     (str(summary), "{out}/fake.md"), (0, 1), "seconds")

    monkeypatch.setitem(tables.TABLES, "fake", make())
    return make, modes


def test_run_writes_table_and_manifest_and_resumes(fake_table, tmp_path):
    out = tmp_path / "out"
    first = tables.run_table("fake", quick=False, out=out)
    assert (out / "fake.md").read_text().splitlines()[2] == "| m | 1.500 ± 0.707 |"
    assert [r["output"] for r in first["ran"]] == ["a.json", "b.json"]
    manifest = json.loads((out / "fake.manifest.json").read_text())
    assert manifest["seeds"] == [0, 1] and "torch" in manifest["versions"]
    assert manifest["commit"] and len(manifest["commands"]) == 3
    # a second run reuses both outputs; --fresh reruns them
    again = tables.run_table("fake", quick=False, out=out)
    assert again["ran"] == [] and [r["commit"] for r in again["reused"]] == ["abc", "abc"]
    assert len(tables.run_table("fake", quick=False, out=out, fresh=True)["ran"]) == 2


def test_unfinished_output_is_rerun_and_failures_are_named(fake_table, tmp_path):
    make, modes = fake_table
    out = tmp_path / "out"
    modes["b.json"] = "partial"
    tables.TABLES["fake"] = make()
    with pytest.raises(subprocess.CalledProcessError):  # the summary needs b finished
        tables.run_table("fake", quick=False, out=out)
    assert not tables.step_done(tables.TABLES["fake"].steps[1], out)
    assert tables.step_done(tables.TABLES["fake"].steps[0], out)
    modes["b.json"] = "fail"
    tables.TABLES["fake"] = make()
    with pytest.raises(SystemExit, match=r"b\.json \(rc 3"):
        tables.run_table("fake", quick=False, out=out)


def test_check_passes_within_the_spread_and_fails_outside_it(monkeypatch):
    readme = ("| model | FD | agreement | ms/step | beats |\n| --- | --- | --- | --- | --- |\n"
              "| joint | 0.159 ± 0.018 | 0.269 ± 0.036 | 22.0 ± 4.1 | 5/6, 5/6 |\n")
    close = readme.replace("0.269 ± 0.036", "0.300 ± 0.020").replace("22.0", "99.0")
    far = readme.replace("0.269 ± 0.036", "0.469 ± 0.036")
    assert tables.compare("digits-5000", readme, close) == []  # timing not compared
    problems = tables.compare("digits-5000", readme, far)
    assert len(problems) == 1 and "agreement" in problems[0]
    assert "missing" in tables.compare("digits-5000", readme, readme.replace("joint", "x"))[0]


def test_every_registered_table_names_existing_drivers_and_a_readme_section():
    text = (ROOT / "simulations" / "README.md").read_text()
    for t in tables.TABLES.values():
        for step in (*t.steps, *t.quick_steps):
            assert (ROOT / step.argv[0]).exists(), (t.name, step.argv[0])
            assert "{out}" in " ".join(step.argv), (t.name, "writes outside --out")
        assert not t.summary or (ROOT / t.summary[0]).exists()
        assert f"<!-- table: {t.name}" in text, f"README has no block for {t.name}"


def test_cli_lists_tables():
    r = subprocess.run([sys.executable, "-m", "simulations", "list"], cwd=ROOT,
                       capture_output=True, text=True, check=True)
    assert all(f"python -m simulations run {n}" in r.stdout for n in tables.TABLES)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["digits-5000", "dp-2000", "chunked-6000"])
def test_quick_table_regenerates_the_readme_numbers(name, tmp_path):
    """The README's quick blocks are what `python -m simulations run NAME --quick` prints,
    within the tables' stated seed spread."""
    r = subprocess.run([sys.executable, "-m", "simulations", "run", name, "--quick",
                        "--out", str(tmp_path), "--check"], cwd=ROOT, capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert f"{name}: README matches" in r.stdout


def test_check_matches_tables_by_title_and_reads_intervals():
    run = ("**Attack a**\n\n| method | n | peak |\n| --- | --- | --- |\n"
           "| dimum | 22 | 0.004 [0.001, 0.007] |\n\n"
           "**Attack b**\n\n| method | n | peak |\n| --- | --- | --- |\n"
           "| dimum | 22 | 0.800 [0.700, 0.900] |\n")
    only_b = run[run.index("**Attack b**"):]
    assert tables.compare("unlearning-robust", only_b, run) == []  # b, not the first
    wrong = only_b.replace("0.800 [0.700, 0.900]", "0.004 [0.001, 0.007]")
    assert len(tables.compare("unlearning-robust", wrong, run)) == 1
    near = only_b.replace("0.800 [0.700, 0.900]", "0.850 [0.800, 0.900]")  # within 3 x 0.1
    assert tables.compare("unlearning-robust", near, run) == []
