"""Verdict tests: directions, margins and the uninformative case."""

from vflgan_app.eval.dependence import (
    METRIC_DESCRIPTIONS,
    judge_metric,
    judge_metrics,
    summarize_verdicts,
)


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


def test_judge_metrics_keeps_order_and_attaches_direction_and_description():
    metrics = {
        "shuffle_auc": {"real": 0.9, "model": 0.88, "control": 0.5},
        "corr_error_all": {"real": 0.01, "model": 0.30, "control": 0.30},
    }

    report_metrics, verdicts = judge_metrics(metrics, {"shuffle_auc": 0.1}, n_rows=400)

    assert list(report_metrics) == list(verdicts) == ["shuffle_auc", "corr_error_all"]
    assert report_metrics["shuffle_auc"] == {
        "real": 0.9, "model": 0.88, "control": 0.5,
        "direction": "closer", "description": METRIC_DESCRIPTIONS["shuffle_auc"],
    }  # fmt: skip
    assert verdicts["shuffle_auc"]["margin"] == 0.1  # the fixed margin wins
    assert verdicts["shuffle_auc"]["beats_control"]
    assert not verdicts["corr_error_all"]["beats_control"]  # a tie is not a win


def test_summary_counts_beaten_informative_metrics():
    def verdict(informative, beats):
        return {"informative": informative, "beats_control": beats}

    mixed = {"a": verdict(True, True), "b": verdict(True, False), "c": verdict(False, False)}
    assert summarize_verdicts(mixed) == (
        "The model beats its independent-latent control on 1 of 2 informative "
        "metrics (a); it does not on b."
    )
    assert "not better" in summarize_verdicts({"b": verdict(True, False)})
    assert "No metric separates" in summarize_verdicts({"c": verdict(False, False)})
