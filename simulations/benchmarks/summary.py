"""One line per measured ratio, for ``run_all.py``'s summary table.

Each benchmark calls :func:`report` for every ratio it measures against a baseline in the
same run. It prints the line; when the environment names a file in ``BENCH_SUMMARY``
(``run_all.py`` does), it also appends the row there as a JSON line.
"""

from __future__ import annotations

import json
import operator
import os
import re

_OPS = {"<=": operator.le, "<": operator.lt, ">=": operator.ge, ">": operator.gt}


def goal_met(value: float, goal: str) -> bool | None:
    """``goal_met(1.2, "<= 1.3") -> True``; None for an empty goal (informational)."""
    if not goal:
        return None
    m = re.fullmatch(r"\s*(<=|<|>=|>)\s*([0-9.eE+-]+)\s*", goal)
    if not m:
        raise ValueError(f"goal: got {goal!r}, expected e.g. '<= 1.3'")
    return _OPS[m.group(1)](value, float(m.group(2)))


def report(bench: str, measure: str, value: float, baseline: str, goal: str = "",
           unit: str = "x") -> dict:
    """Print one measured ratio (and append it to ``$BENCH_SUMMARY``)."""
    row = {"bench": bench, "measure": measure, "value": float(value), "unit": unit,
           "baseline": baseline, "goal": goal, "met": goal_met(float(value), goal)}
    print(f"[summary] {bench}: {measure} = {value:.3f} {unit} vs {baseline} "
          f"(goal {goal or '-'})", flush=True)
    path = os.environ.get("BENCH_SUMMARY")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")
    return row
