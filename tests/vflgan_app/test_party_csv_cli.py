"""The CLI trains on the user's own party CSVs (issue 14 item 3): any dialect, rows in any
order (aligned by the id column), errors named before anything is written."""

import json

import pandas as pd
import pytest

from tests.vflgan_app.conftest import make_table
from vflgan_app.__main__ import main
from vflgan_app.data.partition import split_vertical

SPLIT = [["a", "color", "count"], ["b", "c", "kind"]]


def party_csvs(tmp_path, n=64):
    a, b = split_vertical(make_table(n), SPLIT, "record_id")
    a.rename(columns={"record_id": "cid"}).to_csv(tmp_path / "bank.csv", index=False)
    (b.rename(columns={"record_id": "cid"}).sample(frac=1, random_state=0)
     .to_csv(tmp_path / "shop.csv", index=False, sep=";"))
    return [f"bank={tmp_path / 'bank.csv'}", f"shop={tmp_path / 'shop.csv'}"]


def test_train_on_two_party_csvs(tmp_path, capsys):
    specs = party_csvs(tmp_path)
    rc = main(["train", "--party-csv", specs[0], "--party-csv", specs[1], "--id-column", "cid",
               "--categorical", "color,kind", "--steps", "3", "--batch-size", "8",
               "--output-dir", str(tmp_path / "runs"), "--run-name", "own", "--threads", "1",
               "--progress", "false"])
    assert rc == 0, capsys.readouterr().err
    run = tmp_path / "runs" / "own"
    synth = pd.read_csv(run / "synthetic.csv")
    assert list(synth.columns) == ["a", "color", "count", "b", "c", "kind"]
    assert set(synth["color"]) <= {"blue", "green", "red"}
    report = json.loads((run / "report.json").read_text())
    assert report["dataset"] == "custom" and report["config"]["dataset"] == "custom"
    assert report["party_columns"] == [["a", "color", "count"], ["b", "c", "kind"]]
    # the user holds both tables, so the run is scored against them, control beside it
    metrics = report["metrics"]
    assert {"model", "control", "real"} <= set(metrics) and metrics["dependence"]["verdicts"]
    assert "independent-latent control" in (run / "summary.md").read_text()
    assert (run / "plot_correlations.png").exists()
    # the saved model's party folders carry the --party-csv names
    assert {p.name for p in (run / "model").iterdir() if p.is_dir()} == {"bank", "shop",
                                                                         "server"}


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda s: s[:1], "got 1 party, expected at least 2"),
        (lambda s: [s[0], "shop"], "got 'shop', expected NAME=PATH"),
        (lambda s: [s[0], s[0]], "party name 'bank' given twice"),
        (lambda s: [s[0], "../up=" + s[1].partition("=")[2]], "--party-csv NAME"),
        (lambda s: [s[0], "shop=missing.csv"], "missing.csv does not exist"),
    ],
    ids=["one-party", "no-path", "twice", "bad-name", "missing-file"],
)
def test_bad_party_csv_arguments_are_named_before_writing(tmp_path, capsys, edit, match):
    args = ["train", "--id-column", "cid", "--output-dir", str(tmp_path / "runs"),
            "--steps", "2"]
    for spec in edit(party_csvs(tmp_path)):
        args += ["--party-csv", spec]
    assert main(args) == 2
    assert match in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_a_missing_id_column_is_named(tmp_path, capsys):
    specs = party_csvs(tmp_path)
    assert main(["train", "--party-csv", specs[0], "--party-csv", specs[1],
                 "--output-dir", str(tmp_path / "runs")]) == 2
    assert "no id column 'record_id'" in capsys.readouterr().err
