"""The transport table: bench_transport's ``--md`` output and what ``simulations check``
compares in it (steps and round trips, not timings)."""

from __future__ import annotations

import csv
import json

from simulations import tables
from simulations.benchmarks.bench_transport import write_table


def _row(scenario, value, unit, goal="", steps=2000, **extra):
    return {"scenario": scenario, "value": value, "unit": unit, "goal": goal,
            "steps": steps, "device": "cpu", "commit": "abc", "extra": json.dumps(extra)}


ROWS = [
    _row("in-process exact", 14.23, "s", s_per_step=0.0071),
    _row("deploy TLS+auth launcher s/round trip (median)", 0.33, "s/round trip", "<= 1.0",
         steps=20, round_trips=29, train_s=9.17),
    _row("deploy TLS+auth launcher exact / in-process", 46.07, "ratio", "<= 10", steps=500,
         round_trips=605, median_s=0.369),
]


def test_write_table_files_and_goals(tmp_path):
    md = tmp_path / "t" / "transport.md"
    write_table(ROWS, md, ("0.1 0.2 0.3", "1.0 1.0 1.0"))
    text = md.read_text()
    [(title, head, rows)] = tables.parse_tables(text)
    assert "load 0.1 0.2 0.3" in title
    assert head[:4] == ("scenario", "steps", "round trips", "value")
    lat = rows["deploy TLS+auth launcher s/round trip (median) | 20 | 29"]
    assert (lat["value"], lat["met"]) == ("0.330", "yes")
    assert rows["deploy TLS+auth launcher exact / in-process | 500 | 605"]["met"] == "no"
    assert rows["in-process exact | 2000 | -"]["goal"] == "-"
    with (md.with_suffix(".csv")).open() as fh:
        got = list(csv.DictReader(fh))
    assert [r["round trips"] for r in got] == ["-", "29", "605"]
    assert md.with_suffix(".png").stat().st_size > 0
    assert not list(md.parent.glob("*.tmp*"))


def test_check_ignores_timings_and_catches_round_trips(tmp_path):
    a, b, c = (tmp_path / n / "transport.md" for n in "abc")
    write_table(ROWS, a, ("0", "0"))
    slower = [dict(r, value=r["value"] * 3) for r in ROWS]
    write_table(slower, b, ("5", "5"))
    assert tables.compare("transport", a.read_text(), b.read_text()) == []
    # planted: one more round trip in the exact run (a protocol change)
    extra = json.loads(ROWS[2]["extra"]) | {"round_trips": 606}
    write_table([*ROWS[:2], dict(ROWS[2], extra=json.dumps(extra))], c, ("0", "0"))
    problems = tables.compare("transport", a.read_text(), c.read_text())
    assert len(problems) == 1 and "605" in problems[0] and "missing" in problems[0]
