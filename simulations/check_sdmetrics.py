"""Run our SDMetrics wrapper against the real ``sdmetrics`` package, in a side venv.

``sdmetrics`` pins pandas<3 and the project runs on pandas 3, so the SDMetrics part of
the published report is skipped in the project's own environment and its tests use a
stand-in module. This script runs the real package through the same two calls
``vflgan_app.publish`` makes (:func:`vflgan_app.eval.sdmetrics_report.sdmetrics_available`
and :func:`~vflgan_app.eval.sdmetrics_report.sdmetrics_scores`), on the inputs publish
gives them: the real table after our schema's encode/decode round trip, and the
synthetic table read back from a ``synthetic.csv``. It imports only pandas/numpy modules
of this repository (no torch), so the side venv needs no torch.

Side venv, outside the repository (Python 3.11, as the project)::

    python3 -m venv ../sdm-venv
    ../sdm-venv/bin/pip install "pandas<3" sdmetrics
    ../sdm-venv/bin/python simulations/check_sdmetrics.py --out ../sdm-check
    # a CSV with a header instead of sklearn's bundled wine table:
    ../sdm-venv/bin/python simulations/check_sdmetrics.py --out ../sdm-check-red \\
        --csv ../shared/data/wine/winequality-red.csv --categorical quality

The default table is sklearn's wine table plus four derived columns of the dtypes that
matter here (category, string, bool, datetime). Two synthetic tables are scored:
``perturbed`` (the real rows with Gaussian noise of 0.1 in the encoded space, which also
flips some one-hot categories) and ``noise`` (independent draws of encoded noise,
decoded: right ranges, wrong shapes, no pair trends). The script fails (exit status 1,
``FAIL: ...``) when SDMetrics is not importable, when a report comes back skipped, empty
or malformed (a score missing, not a finite number in [0, 1], a property missing), when
``perturbed`` (same columns, same dtypes) has a Data Structure below 1, or when it does
not score clearly above ``noise``. It writes ``sdmetrics_check.json`` (versions and both
cases' scores, as they go into ``report.json``) and each case's ``synthetic_<case>.csv``
to ``--out``, and prints the quality and diagnostic scores.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import warnings
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a venv where the project is not installed
    sys.path.insert(0, str(ROOT))

from vflgan_app.data.schema import TableSchema  # noqa: E402
from vflgan_app.eval import sdmetrics_report as sdm  # noqa: E402

#: The properties each report must list (SDMetrics' single-table reports).
EXPECTED_PROPERTIES = {
    "quality": {"Column Shapes", "Column Pair Trends"},
    "diagnostic": {"Data Validity", "Data Structure"},
}
#: How much higher ``perturbed`` must score than ``noise`` (quality score).
MIN_QUALITY_GAP = 0.1


def fail(msg: str) -> None:
    print(f"FAIL: {msg}", file=sys.stderr)
    raise SystemExit(1)


def real_table(args) -> tuple[pd.DataFrame, list[str]]:
    """(table, categorical column names) of --csv, or sklearn's bundled wine table."""
    if args.csv:
        df = pd.read_csv(args.csv)
        cat = [c for c in args.categorical.split(",") if c]
        return df, cat
    from sklearn.datasets import load_wine

    df = load_wine(as_frame=True).frame
    # columns of the dtypes a CSV read-back loses (category, string, datetime) and a
    # bool, derived from real ones so that they have pair trends to score
    df["alcohol_band"] = pd.cut(df["alcohol"], 3, labels=["low", "mid", "high"])
    deep = df["color_intensity"] > df["color_intensity"].median()
    df["colour"] = pd.array(np.where(deep, "deep", "pale"), dtype="string")
    df["rich_proline"] = df["proline"] > df["proline"].median()
    days = pd.to_timedelta(df["magnesium"] - df["magnesium"].min(), "D")
    df["harvest"] = pd.Timestamp("2020-09-01") + days
    return df, ["target", "alcohol_band"]


def check_scores(name: str, scores: dict) -> None:
    """Fail unless ``scores`` is a complete, well-formed ``sdmetrics_scores`` result."""
    if not isinstance(scores, dict) or not scores:
        fail(f"{name}: empty result {scores!r}")
    if "skipped" in scores:
        fail(f"{name}: the wrapper skipped SDMetrics: {scores['skipped']}")
    for key, expected in EXPECTED_PROPERTIES.items():
        score = scores.get(f"{key}_score")
        if (
            not isinstance(score, float)
            or not math.isfinite(score)
            or not 0 <= score <= 1
        ):
            fail(f"{name}: {key}_score = {score!r}, expected a number in [0, 1]")
        props = scores.get(f"{key}_properties")
        if not isinstance(props, dict) or not expected <= set(props):
            fail(
                f"{name}: {key}_properties = {props!r} (not scored: "
                f"{scores.get(f'{key}_not_scored')}), expected {sorted(expected)}"
            )
        bad = {p: v for p, v in props.items() if not (math.isfinite(v) and 0 <= v <= 1)}
        if bad:
            fail(f"{name}: {key} properties not in [0, 1]: {bad}")


def score_cases(args, out: Path) -> tuple[dict, dict]:
    """(table description, {case: scores}), each case checked by :func:`check_scores`."""
    # what publish passes: the real table decoded by the schema, the categorical names
    df, cat = real_table(args)
    schema = TableSchema.fit(df, cat)
    encoded = schema.encode(df)
    real = schema.decode(encoded)
    categorical = {c.name for c in schema.columns if c.kind == "categorical"}
    rng = np.random.default_rng(args.seed)
    cases = {
        "perturbed": encoded + rng.normal(0.0, 0.1, encoded.shape),
        "noise": rng.normal(0.0, 1.0, encoded.shape),
    }
    results = {}
    for name, x in cases.items():
        # publish scores the synthetic table as read back from synthetic.csv
        path = out / f"synthetic_{name}.csv"
        schema.decode(x).to_csv(path, index=False)
        synthetic = pd.read_csv(path)
        scores = sdm.sdmetrics_scores(real, synthetic, categorical)
        check_scores(name, scores)
        results[name] = scores
        print(
            f"{name}: quality score {scores['quality_score']:.4f}, diagnostic score "
            f"{scores['diagnostic_score']:.4f}"
        )
        for key in ("quality_properties", "diagnostic_properties"):
            for p, v in scores[key].items():
                print(f"    {p}: {v:.4f}")
    table = {
        "source": args.csv or "sklearn load_wine + 4 derived columns",
        "rows": len(df),
        "dtypes": {str(c): str(t) for c, t in real.dtypes.items()},
        "categorical": sorted(categorical),
    }
    return table, results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="folder for the reports")
    ap.add_argument(
        "--csv",
        default=None,
        help="real table, CSV with a header (default: sklearn's bundled wine table)",
    )
    ap.add_argument(
        "--categorical",
        default="",
        help="comma-separated categorical "
        "columns of --csv (text columns are categorical anyway)",
    )
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    versions = {"python": platform.python_version()}
    for pkg in ("sdmetrics", "pandas", "numpy", "scipy", "copulas"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    print("versions:", json.dumps(versions))
    if not sdm.sdmetrics_available():
        fail(f"{sdm.NOT_INSTALLED}; run this with the side venv's python (docstring)")
    # SDMetrics' warnings (its deprecations, pandas FutureWarnings inside it) are
    # printed once each at the end instead of once per column pair
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table, results = score_cases(args, out)
    distinct = sorted({f"{w.category.__name__}: {w.message}" for w in caught})
    for w in distinct:
        print(f"warning (from sdmetrics or pandas): {w[:200]}")
    report = {
        "versions": versions,
        "table": table,
        "cases": results,
        "warnings": distinct,
    }
    (out / "sdmetrics_check.json").write_text(json.dumps(report, indent=1) + "\n")
    structure = results["perturbed"]["diagnostic_properties"]["Data Structure"]
    if structure != 1.0:
        fail(
            f"perturbed: Data Structure {structure}, expected 1.0 (the same columns "
            "and dtypes: a dtype was lost between the real table and synthetic.csv)"
        )
    gap = results["perturbed"]["quality_score"] - results["noise"]["quality_score"]
    if gap < MIN_QUALITY_GAP:
        fail(
            f"quality of 'perturbed' exceeds 'noise' by {gap:.3f}, expected at least "
            f"{MIN_QUALITY_GAP} (the scores do not tell the tables apart)"
        )
    print(f"OK: wrote {out / 'sdmetrics_check.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
