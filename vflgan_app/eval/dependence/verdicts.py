"""Verdicts: does the model beat its independent-latent control on each metric?"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

# A model "beats" its control on a metric when its distance to the real value is smaller
# than the control's by more than a margin (units of the metric). A metric is
# "informative" only when the control itself is further than the margin from real.
# margin = max(VERDICT_MARGINS[name], NOISE_SCALES[name] / sqrt(n)), n = rows evaluated.
VERDICT_MARGINS: dict[str, float] = {
    "agreement": 0.02,
    "agreement_all": 0.02,
    "shuffle_auc": 0.02,
    "shuffle_auc_real_critic": 0.02,
    "corr_error_focused": 0.01,
    "corr_error_all": 0.005,
    "mutual_information": 0.02,
    "utility_trts": 0.02,
    "utility_tstr": 0.02,
}

# Two standard errors of the difference of two independent estimates, times sqrt(n):
# rates (agreement, accuracy) have variance <= 1/(4n), so 2 * sqrt(2 / 4); a null AUC on
# m joint and m shuffled rows has variance ~ 1/(6m), with m = n/2 for the own-critic
# test (half the rows are held out) and m = n for the real-trained critic; a single
# correlation has standard error ~ 1/sqrt(n), so 2 * sqrt(2) for the focused error (a
# few pairs, possibly one) and 1 for the mean over all pairs. The maximum-MI estimate of
# independent parties reached 0.05 nats at 600 rows (about 1.2/sqrt(n)), hence 2. TRTS
# R^2 is treated like a rate. TSTR is noisier: a forest fitted to party-shuffled rows
# picks up spurious trends, and on real rows whose target is nearly a function of the
# features its R^2 had sd 0.085 at 600 rows over 20 shuffles (about 2/sqrt(n)), hence 2
# * sqrt(2) * 2 ~ 4 (rounded down because negative R^2 is clipped to 0 in the means).
NOISE_SCALES: dict[str, float] = {
    "agreement": 2 * math.sqrt(0.5),
    "agreement_all": 2 * math.sqrt(0.5),
    "shuffle_auc": 2 * math.sqrt(2 / 3),
    "shuffle_auc_real_critic": 2 * math.sqrt(1 / 3),
    "corr_error_focused": 2 * math.sqrt(2),
    "corr_error_all": 1.0,
    "mutual_information": 2.0,
    "utility_trts": 2 * math.sqrt(0.5),
    "utility_tstr": 4.0,
}

# "closer": the value closest to the real one is best; "lower": smaller is better
# (an error measured against real_train, whose real-vs-real value is the noise floor).
METRIC_DIRECTIONS: dict[str, Literal["closer", "lower"]] = {
    "agreement": "closer",
    "agreement_all": "closer",
    "shuffle_auc": "closer",
    "shuffle_auc_real_critic": "closer",
    "corr_error_focused": "lower",
    "corr_error_all": "lower",
    "mutual_information": "closer",
    "utility_trts": "closer",
    "utility_tstr": "closer",
}

METRIC_DESCRIPTIONS: dict[str, str] = {
    "agreement": "per-party classifier agreement (mean over party pairs)",
    "agreement_all": "per-party classifier agreement (all parties agree)",
    "shuffle_auc": "party-shuffle two-sample AUC (own classifier)",
    "shuffle_auc_real_critic": "party-shuffle two-sample AUC (critic trained on real)",
    "corr_error_focused": "cross-party correlation error, top-decile real pairs",
    "corr_error_all": "cross-party correlation error, all cross pairs",
    "mutual_information": "max mutual information of cross-party column pairs (nats)",
    "utility_trts": "cross-party utility, train real / test synthetic (mean score)",
    "utility_tstr": "cross-party utility, train synthetic / test real (mean score)",
}


def judge_metric(
    name: str,
    real: float,
    model: float,
    control: float,
    margin: float | None = None,
    n_rows: int | None = None,
) -> dict[str, Any]:
    """Decide whether the model beats its independent-latent control on one metric.

    For a "closer" metric the distance to ``real`` is compared; for a "lower" metric
    (errors against real_train, whose real value is the noise floor) the value minus
    ``real`` is. The metric is *informative* only when the control is more than
    ``margin`` away from real (otherwise the metric cannot see what the control lacks),
    and the model beats the control when its distance is smaller by more than
    ``margin``.

    Args:
        name: A key of ``METRIC_DIRECTIONS``.
        real: Real-vs-real value.
        model: The model's value.
        control: The independent-latent control's value.
        margin: Minimum difference that counts; default
            ``max(VERDICT_MARGINS[name], NOISE_SCALES[name] / sqrt(n_rows))``.
        n_rows: Rows each value was computed on (the smallest table), for the
            sampling-noise part of the default margin.

    Returns:
        ``beats_control`` (bool), ``informative`` (bool), ``margin`` and ``sentence``.

    Raises:
        ValueError: If ``name`` is not a known metric.
    """
    if name not in METRIC_DIRECTIONS:
        raise ValueError(
            f"metric {name!r} is unknown, expected one of {sorted(METRIC_DIRECTIONS)}"
        )
    if margin is None:
        noise = NOISE_SCALES[name] / math.sqrt(n_rows) if n_rows else 0.0
        margin = max(VERDICT_MARGINS[name], noise)
    if METRIC_DIRECTIONS[name] == "closer":
        d_model, d_control = abs(model - real), abs(control - real)
    else:
        d_model, d_control = model - real, control - real
    informative = d_control > margin
    beats = informative and d_model < d_control - margin
    what = METRIC_DESCRIPTIONS[name]
    numbers = f"model {model:.3f}, control {control:.3f}, real {real:.3f}"
    if beats:
        sentence = (
            f"The model beats its independent-latent control on {what} ({numbers}): "
            "it has learned cross-party dependence that this metric sees."
        )
    elif not informative:
        sentence = (
            f"On {what} the independent-latent control is already within "
            f"{margin:.3f} of real ({numbers}), so this metric cannot show "
            "cross-party dependence here."
        )
    else:
        sentence = (
            f"The model is not better than its independent-latent control on {what} "
            f"({numbers}): it has not learned cross-party dependence."
        )
    return {
        "beats_control": bool(beats),
        "informative": bool(informative),
        "margin": float(margin),
        "sentence": sentence,
    }


def judge_metrics(
    metrics: Mapping[str, Mapping[str, float]],
    margins: Mapping[str, float],
    n_rows: int,
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """Judge every metric and attach its direction and description.

    Args:
        metrics: ``{name: {"real": v, "model": v, "control": v}}``, in report order.
        margins: Fixed margins for some metrics (``judge_metric``'s ``margin``).
        n_rows: Rows of the smallest evaluated table (``judge_metric``'s ``n_rows``).

    Returns:
        ``(report_metrics, verdicts)``, both keyed by metric name in input order:
        ``{name: {"real", "model", "control", "direction", "description"}}`` and
        ``{name: judge_metric(...)}``.
    """
    report_metrics, verdicts = {}, {}
    for name, values in metrics.items():
        report_metrics[name] = {
            **{k: float(values[k]) for k in ("real", "model", "control")},
            "direction": METRIC_DIRECTIONS[name],
            "description": METRIC_DESCRIPTIONS[name],
        }
        verdicts[name] = judge_metric(
            name,
            values["real"],
            values["model"],
            values["control"],
            margin=margins.get(name),
            n_rows=n_rows,
        )
    return report_metrics, verdicts


def summarize_verdicts(verdicts: Mapping[str, Mapping[str, Any]]) -> str:
    """One paragraph: on how many informative metrics the model beats its control."""
    informative = [k for k, v in verdicts.items() if v["informative"]]
    beaten = [k for k in informative if verdicts[k]["beats_control"]]
    if not informative:
        return (
            "No metric separates the real data from the independent-latent control, "
            "so these data cannot show whether the model learned cross-party "
            "dependence."
        )
    if not beaten:
        return (
            "The model is not better than its independent-latent control on any "
            f"informative metric ({', '.join(informative)}): it has not learned "
            "cross-party dependence."
        )
    lost = [k for k in informative if k not in beaten]
    tail = f"; it does not on {', '.join(lost)}" if lost else ""
    return (
        f"The model beats its independent-latent control on {len(beaten)} of "
        f"{len(informative)} informative metrics ({', '.join(beaten)}){tail}."
    )
