"""The dependence report: verdicts on planted models, layout, bad input."""

import json

import numpy as np
import pytest

from tests.vflgan_app.eval.dependence.conftest import SLICES
from vflgan_app.eval.dependence import (
    Target,
    dependence_report,
    format_dependence_table,
    party_shuffle,
)


def run_report(inputs, model, control, **kwargs):
    train, labels_train, holdout, labels_holdout, _, targets = inputs
    return dependence_report(
        train, holdout, model, control, SLICES,
        labels_train=labels_train, labels_holdout=labels_holdout, targets=targets,
        seed=0, **kwargs,
    )  # fmt: skip


def test_report_says_shuffled_model_does_not_beat_its_control(linear_report_inputs):
    # Prepare: the "model" has no cross-party dependence, like its control.
    holdout, fresh = linear_report_inputs[2], linear_report_inputs[4]
    model = party_shuffle(fresh, SLICES, np.random.default_rng(10))
    control = party_shuffle(holdout, SLICES, np.random.default_rng(11))

    # Execute
    report = run_report(linear_report_inputs, model, control)

    # Assert
    assert set(report["verdicts"]) == set(report["metrics"])
    assert {"agreement", "utility_trts", "utility_tstr", "shuffle_auc"} <= set(
        report["metrics"]
    )
    assert "agreement_all" not in report["metrics"]  # two parties
    for name, verdict in report["verdicts"].items():
        assert not verdict["beats_control"], (name, report["metrics"][name])
        assert verdict["informative"], name  # real data has the dependence
        assert "has not learned cross-party dependence" in verdict["sentence"]
    assert "not better than its independent-latent control" in report["summary"]


def test_report_says_real_like_model_beats_its_control(linear_report_inputs):
    # Prepare: the "model" is a fresh real sample; the control is shuffled.
    holdout, fresh = linear_report_inputs[2], linear_report_inputs[4]
    control = party_shuffle(holdout, SLICES, np.random.default_rng(11))

    # Execute
    report = run_report(linear_report_inputs, fresh, control)

    # Assert
    for name, verdict in report["verdicts"].items():
        assert verdict["beats_control"], (name, report["metrics"][name])
    m = report["metrics"]
    assert m["shuffle_auc"]["model"] > 0.8 and m["shuffle_auc"]["control"] < 0.6
    assert m["agreement"]["model"] > 0.85 and m["agreement"]["control"] < 0.45
    assert json.loads(json.dumps(report)) == report  # plain JSON types only


def test_report_subsamples_to_max_rows(linear_report_inputs):
    holdout, fresh = linear_report_inputs[2], linear_report_inputs[4]

    report = run_report(linear_report_inputs, fresh, holdout, max_rows=100)

    assert set(report["n_rows"].values()) == {100}


def test_format_dependence_table_lists_every_metric_with_its_verdict(
    linear_report_inputs,
):
    holdout, fresh = linear_report_inputs[2], linear_report_inputs[4]
    control = party_shuffle(holdout, SLICES, np.random.default_rng(11))
    report = run_report(linear_report_inputs, fresh, control)

    table = format_dependence_table(report)

    lines = table.splitlines()
    assert lines[0].startswith("| metric |")
    rows = [line for line in lines[2:] if line.startswith("| ")]
    assert len(rows) == len(report["metrics"])
    assert all(row.endswith("| yes |") for row in rows)
    assert report["summary"] in table


def call_report(small, **overrides):
    x, labels = small
    kwargs = dict(
        real_train=x, real_holdout=x, synthetic=x, synthetic_control=x,
        party_slices=SLICES,
    )  # fmt: skip
    kwargs.update(overrides)
    return dependence_report(**kwargs)


@pytest.mark.parametrize(
    "overrides, match",
    [
        (lambda x, y: {"synthetic": x[:, :4]}, r"synthetic has 4 columns.*real_train"),
        (lambda x, y: {"synthetic_control": x[:0]}, r"synthetic_control has shape"),
        (lambda x, y: {"real_train": x[:0]}, r"real_train has shape \(0, 5\)"),
        (lambda x, y: {"party_slices": [slice(0, 2), slice(2, 4)]},
         r"cover columns \[0, 4\).*5 columns"),
        (lambda x, y: {"party_slices": [slice(0, 3), slice(2, 5)]},
         r"party_slices\[1\] starts at column 2, expected 3.*overlaps"),
        (lambda x, y: {"party_slices": [slice(0, 2), slice(3, 5)]},
         r"party_slices\[1\].*gap"),
        (lambda x, y: {"party_slices": [slice(0, 5)]}, r"at least 2 parties"),
        (lambda x, y: {"real_holdout": np.where(x > 1.0, np.nan, x)},
         r"real_holdout has \d+ NaN/inf"),
        (lambda x, y: {"labels_train": y[:-1], "labels_holdout": y},
         r"labels_train has shape \(39,\), expected \(40,\)"),
        (lambda x, y: {"labels_train": y}, r"labels_train and labels_holdout"),
        (lambda x, y: {"targets": [Target("a0", 1, slice(0, 1), "numeric")]},
         r"Target 'a0'.*not inside party 1"),
        (lambda x, y: {"max_rows": 2}, r"max_rows=2"),
        (lambda x, y: {"margins": {"fid": 0.1}}, r"margins has unknown.*'fid'"),
    ],
)  # fmt: skip
def test_report_rejects_bad_input_naming_field_and_expectation(small, overrides, match):
    x, labels = small
    with pytest.raises(ValueError, match=match):
        call_report(small, **overrides(x, labels))


def test_report_rejects_non_array_input(small):
    with pytest.raises(TypeError, match="synthetic is a list"):
        call_report(small, synthetic=small[0].tolist())


def test_report_with_three_parties_includes_all_agree_rate():
    rng = np.random.default_rng(0)
    a0 = rng.uniform(-1.5, 1.5, 3 * 300)
    x = np.column_stack([a0 + 0.1 * rng.normal(size=a0.size) for _ in range(3)])
    labels = np.digitize(a0, [-0.5, 0.5])
    slices = [slice(0, 1), slice(1, 2), slice(2, 3)]
    train, holdout, fresh = x[:300], x[300:600], x[600:]
    control = party_shuffle(holdout, slices, rng)

    report = dependence_report(
        train, holdout, fresh, control, slices, labels[:300], labels[300:600]
    )

    assert report["n_parties"] == 3
    assert report["verdicts"]["agreement_all"]["beats_control"]
    assert report["metrics"]["agreement_all"]["control"] < 0.25
