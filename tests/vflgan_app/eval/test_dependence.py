"""Planted-signal tests for the cross-party dependence metrics (issue 6)."""

import json
import math

import numpy as np
import pytest

from vflgan_app.eval.dependence import (
    Target,
    column_mutual_information,
    cross_party_correlation_error,
    cross_party_correlations,
    cross_party_utility,
    dependence_report,
    fit_party_classifiers,
    format_dependence_table,
    judge_metric,
    party_agreement,
    party_shuffle,
    select_mi_columns,
    shuffle_two_sample_auc,
    targets_from_spans,
    validate_party_slices,
)

N = 600
SLICES = [slice(0, 2), slice(2, 5)]  # party A: a0, a1; party B: b0, b1, b2


def make_table(kind: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Party B's b0/b1 are a function of party A's a0 (or independent of it).

    linear: b0 = a0 + noise, b1 = -a0 + noise (|corr| ~ 0.99).
    nonlinear: b0 = a0^2, b1 = cos(3 a0) with a0 symmetric, so corr(a, b) ~ 0.
    independent: b0, b1 are fresh noise.
    The label is a0's tercile, known to party A directly and to B only through b.
    """
    rng = np.random.default_rng(seed)
    a0 = rng.uniform(-1.5, 1.5, n)
    a1, b2, e0, e1 = rng.normal(size=(4, n))
    if kind == "linear":
        b0, b1 = a0 + 0.1 * e0, -a0 + 0.1 * e1
    elif kind == "nonlinear":
        b0, b1 = a0**2, np.cos(3 * a0)
    else:
        b0, b1 = e0, e1
    x = np.column_stack([a0, a1, b0, b1, b2])
    x = (x - x.mean(axis=0)) / x.std(axis=0)  # z-scored, as in the encoded space
    labels = np.digitize(a0, [-0.5, 0.5])
    return x, labels


@pytest.fixture(scope="module", params=["linear", "nonlinear", "independent"])
def planted(request):
    kind = request.param
    train, labels_train = make_table(kind, N, seed=1)
    holdout, labels_holdout = make_table(kind, N, seed=2)
    shuffled = party_shuffle(holdout, SLICES, np.random.default_rng(3))
    return kind, train, labels_train, holdout, labels_holdout, shuffled


# ------------------------------------------------------------------ party_shuffle


def test_party_shuffle_keeps_each_party_rows_but_breaks_pairing():
    # Prepare
    x, _ = make_table("linear", N, seed=0)

    # Execute
    shuffled = party_shuffle(x, SLICES, np.random.default_rng(0))

    # Assert: every party's multiset of rows is unchanged ...
    for s in SLICES:
        assert np.array_equal(np.sort(shuffled[:, s], axis=0), np.sort(x[:, s], axis=0))
    # ... but the linear cross-party correlation is gone.
    assert abs(np.corrcoef(x[:, 0], x[:, 2])[0, 1]) > 0.95
    assert abs(np.corrcoef(shuffled[:, 0], shuffled[:, 2])[0, 1]) < 0.15


# ------------------------------------------------------- separation per metric


def test_shuffle_auc_separates_joint_from_shuffled(planted):
    kind, _, _, holdout, _, shuffled = planted

    auc_joint = shuffle_two_sample_auc(holdout, SLICES, seed=0)
    auc_shuffled = shuffle_two_sample_auc(shuffled, SLICES, seed=0)

    assert 0.4 < auc_shuffled < 0.6
    if kind == "independent":
        assert 0.4 < auc_joint < 0.6
        assert abs(auc_joint - auc_shuffled) < 0.1
    else:
        assert auc_joint > 0.8


def test_correlation_error_separates_linear_and_is_blind_to_nonlinear(planted):
    kind, train, _, holdout, _, shuffled = planted

    joint = cross_party_correlation_error(train, holdout, SLICES)
    shuf = cross_party_correlation_error(train, shuffled, SLICES)

    assert joint["n_pairs"] == 2 * 3 and joint["n_focused"] == 1  # ceil(0.1 * 6)
    if kind == "linear":
        assert joint["focused"] < 0.05
        assert shuf["focused"] > 0.8
        assert shuf["all"] > 0.2
    else:
        # The planted nonlinear function is invisible to linear correlation: this is
        # why the AUC and MI metrics exist.
        assert np.abs(cross_party_correlations(train, SLICES)).max() < 0.15
        assert abs(joint["focused"] - shuf["focused"]) < 0.15


def test_mutual_information_separates_joint_from_shuffled(planted):
    kind, train, _, holdout, _, shuffled = planted
    columns = select_mi_columns(train, SLICES)

    mi_joint = column_mutual_information(columns, holdout)
    mi_shuffled = column_mutual_information(columns, shuffled)

    assert mi_shuffled < 0.1
    if kind == "independent":
        assert mi_joint < 0.1
    else:
        assert mi_joint > 0.5


def test_cross_party_utility_separates_joint_from_shuffled(planted):
    kind, train, _, holdout, _, shuffled = planted
    targets = [Target("b0", party=1, columns=slice(2, 3), kind="numeric")]

    (row,) = cross_party_utility(
        train, holdout, {"joint": holdout, "shuffled": shuffled}, SLICES, targets
    )

    assert (row["source_party"], row["target_party"], row["score"]) == (0, 1, "r2")
    joint, shuf = row["synthetic"]["joint"], row["synthetic"]["shuffled"]
    assert shuf["trts"] < 0.1 and shuf["tstr"] < 0.1
    if kind == "independent":
        assert row["trtr"] < 0.1 and joint["trts"] < 0.1
    else:
        assert row["trtr"] > 0.8
        assert joint["trts"] > 0.8 and joint["tstr"] > 0.8


def test_cross_party_utility_scores_categorical_targets_by_accuracy():
    # Prepare: party B holds a one-hot of the label, which party A's a0 determines.
    x, labels = make_table("linear", 2 * N, seed=4)
    one_hot = np.eye(3)[labels]
    table = np.column_stack([x[:, :2], one_hot])  # A: a0, a1; B: 3-way one-hot
    slices = [slice(0, 2), slice(2, 5)]
    train, holdout = table[:N], table[N:]
    shuffled = party_shuffle(holdout, slices, np.random.default_rng(0))
    (target,) = targets_from_spans(slices, [slice(2, 5)], names=["tercile"])

    # Execute
    (row,) = cross_party_utility(train, holdout, {"s": shuffled}, slices, [target])

    # Assert
    assert target == Target("tercile", 1, slice(2, 5), "categorical")
    assert row["score"] == "accuracy"
    assert row["trtr"] > 0.95
    assert row["synthetic"]["s"]["trts"] < 0.5  # chance is 1/3


def test_agreement_separates_joint_from_shuffled(planted):
    kind, train, labels_train, holdout, _, shuffled = planted
    if kind == "nonlinear":
        pytest.skip("a linear per-party classifier cannot read a0's tercile from a0^2")
    classifiers = fit_party_classifiers(train, labels_train, SLICES)

    joint = party_agreement(classifiers, holdout, SLICES)
    shuf = party_agreement(classifiers, shuffled, SLICES)

    assert abs(shuf["pairwise"] - shuf["chance"]) < 0.08
    if kind == "linear":
        assert joint["pairwise"] > 0.85
        assert shuf["pairwise"] < 0.45
    else:
        assert abs(joint["pairwise"] - shuf["pairwise"]) < 0.08


def test_agreement_with_three_parties_reports_all_agree_rate():
    # Prepare: three parties each hold a noisy copy of a0.
    rng = np.random.default_rng(0)
    a0 = rng.uniform(-1.5, 1.5, 2 * N)
    x = np.column_stack([a0 + 0.1 * rng.normal(size=2 * N) for _ in range(3)])
    labels = np.digitize(a0, [-0.5, 0.5])
    slices = [slice(0, 1), slice(1, 2), slice(2, 3)]
    classifiers = fit_party_classifiers(x[:N], labels[:N], slices)

    # Execute
    joint = party_agreement(classifiers, x[N:], slices)
    shuf = party_agreement(
        classifiers, party_shuffle(x[N:], slices, np.random.default_rng(1)), slices
    )

    # Assert: all-agree <= pairwise, near 1 jointly and near 1/9 shuffled.
    assert joint["all_agree"] <= joint["pairwise"]
    assert joint["all_agree"] > 0.8
    assert shuf["all_agree"] < 0.25


# ----------------------------------------------------------------- correlations


def test_constant_column_counts_as_zero_correlation_not_nan():
    x, _ = make_table("linear", N, seed=0)
    x[:, 2] = 3.0  # b0 constant

    corr = cross_party_correlations(x, SLICES)

    assert np.isfinite(corr).all()
    # Block A x B is row-major: pairs (a0, b0) and (a1, b0) are entries 0 and 3.
    assert corr[0] == 0.0 and corr[3] == 0.0
    assert corr[1] < -0.95  # (a0, b1) is still there


def test_select_mi_columns_keeps_highest_variance_columns_per_party():
    x = np.column_stack([np.arange(10.0) * k for k in (1, 3, 2, 0, 5)])

    columns = select_mi_columns(x, SLICES, n_columns=1)

    assert [c.tolist() for c in columns] == [[1], [4]]


def test_focused_error_uses_the_top_decile_of_real_pairs():
    # Prepare: 10 x 10 cross pairs; only (a0, b0) is correlated in the reference.
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(4000, 20))
    ref[:, 10] = ref[:, 0] + 0.1 * rng.normal(size=4000)
    other = rng.normal(size=(4000, 20))  # nothing correlated
    slices = [slice(0, 10), slice(10, 20)]

    # Execute
    err = cross_party_correlation_error(ref, other, slices)

    # Assert: 10 focused pairs; the strong pair dominates their mean.
    assert err["n_pairs"] == 100 and err["n_focused"] == math.ceil(0.1 * 100)
    assert err["focused"] > 0.99 / 10
    assert err["focused"] > 2 * err["all"]


# ----------------------------------------------------------- report and verdicts


@pytest.fixture(scope="module")
def linear_report_inputs():
    train, labels_train = make_table("linear", N, seed=1)
    holdout, labels_holdout = make_table("linear", N, seed=2)
    fresh, _ = make_table("linear", N, seed=5)  # another real sample: a good model
    targets = targets_from_spans(SLICES, [slice(0, 1), slice(2, 3)], ["a0", "b0"])
    return train, labels_train, holdout, labels_holdout, fresh, targets


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


def test_judge_metric_directions_and_uninformative_case():
    # closer-to-real: 0.75 is closer to 0.78 than 0.10 is
    assert judge_metric("agreement", 0.78, 0.75, 0.10)["beats_control"]
    # overshooting real by more than the control undershoots it is not better
    assert not judge_metric("agreement", 0.78, 1.0, 0.60)["beats_control"]
    # lower-is-better errors
    assert judge_metric("corr_error_focused", 0.02, 0.05, 0.40)["beats_control"]
    assert not judge_metric("corr_error_focused", 0.02, 0.40, 0.05)["beats_control"]
    # within the margin is a tie, not a win
    assert not judge_metric("shuffle_auc", 0.9, 0.61, 0.60)["beats_control"]
    # a control that already matches real makes the metric uninformative
    verdict = judge_metric("shuffle_auc", 0.51, 0.52, 0.50)
    assert not verdict["beats_control"] and not verdict["informative"]
    assert "cannot show" in verdict["sentence"]


# ------------------------------------------------------------------ bad inputs


@pytest.fixture(scope="module")
def small():
    x, labels = make_table("linear", 40, seed=0)
    return x, labels


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


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            dict(columns=slice(0, 2), kind="numeric"),
            "spans 2 columns, expected exactly",
        ),
        (dict(columns=slice(0, 1), kind="categorical"), "at least 2"),
        (dict(columns=slice(0, 1), kind="ordinal"), "kind='ordinal'"),
        (dict(columns=slice(3, 3), kind="numeric"), "non-empty"),
    ],
)
def test_target_rejects_bad_fields(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Target("t", party=0, **kwargs)


def test_targets_from_spans_rejects_span_crossing_parties():
    with pytest.raises(ValueError, match="not inside any party"):
        targets_from_spans(SLICES, [slice(1, 3)])


def test_validate_party_slices_rejects_stepped_slice():
    with pytest.raises(ValueError, match=r"party_slices\[0\].*step 1"):
        validate_party_slices([slice(0, 2, 2), slice(2, 5)], 5)


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
