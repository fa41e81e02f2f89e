"""Metrics of cross-party dependence in synthetic data (issue 6; VFLGAN section 2.3).

VFLGAN's claim over VertiGAN is that synthetic records keep the dependence *between*
parties' columns. Marginal metrics (per-party Frechet distance, plain correlation error
averaged over all pairs) barely move when that dependence is destroyed, so every metric
here is built to collapse when the parties of a record are paired at random:

* ``party_agreement``: per-party classifiers of a shared label, trained on real data,
  agree on joint records and agree only by chance on independently paired ones.
* ``cross_party_utility``: predict a column held by party q from party p's columns only
  (TRTR / TRTS / TSTR).
* ``cross_party_correlation_error``: correlation error on cross-party column pairs, over
  all pairs and over the pairs whose real |correlation| is in the top decile.
* ``shuffle_two_sample_auc``: a classifier two-sample test of joint records against the
  same records with each party's rows permuted independently (0.5 = no dependence).
* ``column_mutual_information``: the largest k-NN mutual information between a column
  of one party and a column of another (sees nonlinear dependence between columns).

``dependence_report`` runs all of them on the real hold-out data, the model's samples
and the model's independent-latent control, and says in words whether the model beats
its control. All data are in the encoded space: float arrays of shape (N, D) with
z-scored numeric columns, one-hot categorical spans and image pixels in [-1, 1];
``party_slices`` gives each party's contiguous columns, party 0 first.

One module per metric family: ``inputs`` (targets, slice and table checks),
``agreement``, ``utility``, ``correlation``, ``shuffle`` (the party-shuffle control and
the critic AUCs), ``mutual_information``, ``verdicts`` (margins and judgements) and
``report``. Every public name is re-exported here.
"""

from vflgan_app.eval.dependence.agreement import (
    fit_party_classifiers,
    party_agreement,
)
from vflgan_app.eval.dependence.correlation import (
    TOP_FRACTION,
    cross_party_correlation_error,
    cross_party_correlations,
    mean_cross_party_correlation_error,
)
from vflgan_app.eval.dependence.inputs import (
    Target,
    targets_from_spans,
    validate_party_slices,
)
from vflgan_app.eval.dependence.mutual_information import (
    MI_COLUMNS,
    column_mutual_information,
    select_mi_columns,
)
from vflgan_app.eval.dependence.report import (
    MAX_ROWS,
    dependence_report,
    format_dependence_table,
)
from vflgan_app.eval.dependence.shuffle import (
    fit_shuffle_critic,
    party_shuffle,
    shuffle_critic_auc,
    shuffle_two_sample_auc,
)
from vflgan_app.eval.dependence.utility import cross_party_utility
from vflgan_app.eval.dependence.verdicts import (
    METRIC_DESCRIPTIONS,
    METRIC_DIRECTIONS,
    NOISE_SCALES,
    VERDICT_MARGINS,
    judge_metric,
    judge_metrics,
    summarize_verdicts,
)

__all__ = [
    "MAX_ROWS",
    "METRIC_DESCRIPTIONS",
    "METRIC_DIRECTIONS",
    "MI_COLUMNS",
    "NOISE_SCALES",
    "TOP_FRACTION",
    "VERDICT_MARGINS",
    "Target",
    "column_mutual_information",
    "cross_party_correlation_error",
    "cross_party_correlations",
    "cross_party_utility",
    "dependence_report",
    "fit_party_classifiers",
    "fit_shuffle_critic",
    "format_dependence_table",
    "judge_metric",
    "judge_metrics",
    "mean_cross_party_correlation_error",
    "party_agreement",
    "party_shuffle",
    "select_mi_columns",
    "shuffle_critic_auc",
    "shuffle_two_sample_auc",
    "summarize_verdicts",
    "targets_from_spans",
    "validate_party_slices",
]
