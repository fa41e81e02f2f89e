import json
import subprocess
import sys

import pytest

from audit.__main__ import build_parser, config_from_args, main


@pytest.fixture
def csv(table, tmp_path):
    path = tmp_path / "table.csv"
    table.to_csv(path, index=False)
    return path


FAST = [
    "--n-shadows",
    "12",
    "--world-size",
    "15",
    "--n-estimators",
    "10",
    "--n-splits",
    "2",
    "--n-folds",
    "3",
    "--no-progress",
]


def test_cli_audits_a_builtin_generator_and_writes_the_report(csv, tmp_path, capsys):
    # Execute
    out = tmp_path / "out"
    rc = main(
        [
            "--data",
            str(csv),
            "--generator",
            "copy",
            "--out-dir",
            str(out),
            "--targets",
            "7",
            "--accountant-epsilon",
            "5",
            *FAST,
        ]
    )
    # Assert
    assert rc == 0
    report = json.loads((out / "report.json").read_text())
    assert report["targets"][0]["label"] == 7
    assert report["config"]["n_shadows"] == 12
    assert {p.name for p in out.iterdir()} >= {
        "report.json",
        "results.csv",
        "roc.png",
        "summary.md",
        "config.json",
        "shadows",
    }
    printed = capsys.readouterr().out
    assert "# Membership-inference audit" in printed and "CANNOT resolve" in printed


def test_cli_flags_map_onto_the_config(table):
    ns = build_parser().parse_args(
        [
            "--data",
            "x.csv",
            "--out-dir",
            "o",
            "--feature-sets",
            "naive,knn",
            "--categorical",
            "c",
            "--max-depth",
            "0",
            "--max-features",
            "0.5",
            "--no-share-seeds",
            "--target-positions",
            "1,2",
            "--n-shadows",
            "20",
        ]
    )
    cfg = config_from_args(ns, table.index)
    assert cfg.feature_sets == ("naive", "knn") and cfg.categorical_columns == ("c",)
    assert cfg.max_depth is None and cfg.max_features == 0.5
    assert cfg.share_seeds is False and cfg.target_positions == (1, 2)


def test_cli_rejects_unknown_generators_and_bad_values(csv, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--data", str(csv), "--out-dir", str(tmp_path), "--generator", "gan"])
    assert "invalid choice: 'gan'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="n_shadows=3 is too few"):
        main(["--data", str(csv), "--out-dir", str(tmp_path / "o"), "--n-shadows", "3"])
    with pytest.raises(FileNotFoundError, match="no such file"):
        main(["--data", str(tmp_path / "nope.csv"), "--out-dir", str(tmp_path)])


@pytest.mark.slow
def test_python_m_audit_runs_end_to_end(csv, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "audit",
            "--data",
            str(csv),
            "--generator",
            "copula",
            "--out-dir",
            str(out),
            "--workers",
            "2",
            *FAST,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert (out / "summary.md").exists() and (out / "roc.png").exists()
