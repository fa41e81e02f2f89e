"""Import cost of the ClientApp (paid by every deployment message in a fresh process).

Measures ``import vflgan_app.client_app`` in fresh interpreters for this tree and, as
the baseline in the same run, for another git revision checked out in a temporary
worktree (default: the commit before the package was split into folders). Prints the
median wall time of each, their ratio, and which heavy packages each import pulls in.

    python simulations/benchmarks/bench_import.py [--base REV] [--repeats 7]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
try:  # run as a script: simulations/benchmarks/ is on sys.path
    from summary import report
except ImportError:  # imported as simulations.benchmarks.<name>
    from simulations.benchmarks.summary import report

HEAVY = ("dp_accounting", "sklearn", "scipy", "pandas", "matplotlib", "flwr", "torch")
PROBE = (
    "import sys, time; t = time.perf_counter(); import vflgan_app.client_app; "
    "dt = time.perf_counter() - t; import json; "
    f"print(json.dumps({{'s': dt, 'heavy': [m for m in {HEAVY!r} if m in sys.modules], "
    "'file': vflgan_app.client_app.__file__}))"
)


def probe(tree: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=tree, env=env, check=True,
                         capture_output=True, text=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    if not result["file"].startswith(str(tree)):
        raise RuntimeError(f"imported {result['file']}, expected a file under {tree}")
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="cb981d6", help="baseline git revision")
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        subprocess.run(["git", "worktree", "add", "--detach", str(base), args.base],
                       cwd=ROOT, check=True, capture_output=True)
        try:
            runs: dict[str, list[dict]] = {"base": [], "tree": []}
            for _ in range(args.repeats):  # interleaved, so load drifts hit both alike
                runs["base"].append(probe(base))
                runs["tree"].append(probe(ROOT))
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=ROOT,
                           check=True, capture_output=True)
    med = {k: statistics.median(r["s"] for r in v) for k, v in runs.items()}
    print(f"load average {os.getloadavg()[0]:.2f}; {args.repeats} fresh interpreters each")
    for k, label in (("base", f"base {args.base}"), ("tree", "this tree")):
        print(f"{label:>16}: median {med[k]:.2f} s, imports {runs[k][0]['heavy']}")
    print(f"ratio this tree / base: {med['tree'] / med['base']:.2f} (goal: < 1, and no "
          "dp_accounting / sklearn / scipy in a plain party)")
    report("bench_import", "import vflgan_app.client_app, this tree / base",
           med["tree"] / med["base"], f"base {args.base}, same run", "< 1")


if __name__ == "__main__":
    main()
