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
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.feature_selection import mutual_info_regression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, r2_score, roc_auc_score

MAX_ROWS = 2000  # rows drawn (without replacement) from each input by dependence_report
TOP_FRACTION = 0.1  # share of cross-party pairs kept by the focused correlation error
MI_COLUMNS = 8  # highest-variance columns per party for the mutual-information estimate

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


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Target:
    """A column (or one-hot span) predicted from another party's columns.

    Attributes:
        name: Label used in reports, e.g. ``"income"``.
        party: Index of the party that holds the target columns.
        columns: The target's columns in the encoded array; one column for ``numeric``,
            a one-hot span of at least two columns for ``categorical``.
        kind: ``"numeric"`` (scored by R^2) or ``"categorical"`` (class index = argmax
            of the span, scored by accuracy).
    """

    name: str
    party: int
    columns: slice
    kind: Literal["numeric", "categorical"]

    def __post_init__(self) -> None:
        if self.kind not in ("numeric", "categorical"):
            raise ValueError(
                f"Target {self.name!r}: kind={self.kind!r}, expected 'numeric' or "
                "'categorical'"
            )
        if not isinstance(self.columns, slice) or self.columns.step not in (None, 1):
            raise ValueError(
                f"Target {self.name!r}: columns={self.columns!r}, "
                "expected a slice with step 1"
            )
        start, stop = self.columns.start or 0, self.columns.stop
        if stop is None or stop <= start:
            raise ValueError(
                f"Target {self.name!r}: columns={self.columns!r}, expected a non-empty "
                "slice with an explicit stop"
            )
        width = stop - start
        if self.kind == "numeric" and width != 1:
            raise ValueError(
                f"Target {self.name!r}: a numeric target spans {width} columns, "
                "expected exactly 1"
            )
        if self.kind == "categorical" and width < 2:
            raise ValueError(
                f"Target {self.name!r}: a categorical target spans {width} column, "
                "expected a one-hot span of at least 2"
            )


def targets_from_spans(
    party_slices: Sequence[slice],
    spans: Sequence[slice],
    names: Sequence[str] | None = None,
) -> list[Target]:
    """Build targets from encoded column spans (e.g. the dataset's per-attribute spans).

    A span of width 1 becomes a numeric target, a wider span a categorical (one-hot)
    target; the owning party is the one whose slice contains the span.

    Args:
        party_slices: Each party's contiguous columns, party 0 first.
        spans: One slice per attribute in the encoded array.
        names: Optional names, one per span; default ``"cols<start>:<stop>"``.

    Returns:
        One ``Target`` per span, in the given order.

    Raises:
        ValueError: If ``names`` has the wrong length or a span crosses parties.
    """
    if names is not None and len(names) != len(spans):
        raise ValueError(
            f"names has {len(names)} entries but spans has {len(spans)}, expected equal"
        )
    targets = []
    for i, span in enumerate(spans):
        start, stop = span.start or 0, span.stop
        name = names[i] if names is not None else f"cols{start}:{stop}"
        owner = [
            p
            for p, s in enumerate(party_slices)
            if s.start <= start and stop is not None and stop <= s.stop
        ]
        if not owner:
            raise ValueError(
                f"span {name!r}={span!r} is not inside any party's columns "
                f"{list(party_slices)!r}, expected each span within one party"
            )
        kind = "numeric" if stop - start == 1 else "categorical"
        targets.append(Target(name, owner[0], slice(start, stop), kind))
    return targets


def validate_party_slices(party_slices: Sequence[slice], n_columns: int) -> list[slice]:
    """Check that ``party_slices`` tile ``[0, n_columns)`` contiguously, in order.

    Args:
        party_slices: Each party's columns, party 0 first.
        n_columns: Number of encoded columns D.

    Returns:
        The slices with explicit integer start/stop.

    Raises:
        ValueError: Fewer than two parties, a non-slice or stepped slice, an empty
            party,
            a gap or overlap, or slices that do not end at ``n_columns``.
    """
    if len(party_slices) < 2:
        raise ValueError(
            f"party_slices has {len(party_slices)} part(s), expected at least 2 parties"
        )
    out, expected_start = [], 0
    for p, s in enumerate(party_slices):
        if not isinstance(s, slice) or s.step not in (None, 1):
            raise ValueError(f"party_slices[{p}]={s!r}, expected a slice with step 1")
        start = 0 if s.start is None else s.start
        stop = s.stop
        if stop is None or stop <= start:
            raise ValueError(
                f"party_slices[{p}]={s!r} is empty or open-ended, expected start < stop"
            )
        if start != expected_start:
            what = (
                "overlaps the previous party"
                if start < expected_start
                else "leaves a gap"
            )
            raise ValueError(
                f"party_slices[{p}] starts at column {start}, "
                f"expected {expected_start} "
                f"(it {what}); slices must be contiguous and in party order"
            )
        out.append(slice(start, stop))
        expected_start = stop
    if expected_start != n_columns:
        raise ValueError(
            f"party_slices cover columns [0, {expected_start}) but the data has "
            f"{n_columns} columns, expected them to cover every column exactly once"
        )
    return out


def _validate_table(name: str, x: Any, n_columns: int | None = None) -> np.ndarray:
    """Return ``x`` as a finite float64 (N, D) array or raise naming ``name``."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} is a {type(x).__name__}, expected a numpy array")
    if x.ndim != 2:
        raise ValueError(f"{name} has shape {x.shape}, expected a 2-D (N, D) array")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(
            f"{name} has shape {x.shape}, expected at least one row/column"
        )
    if n_columns is not None and x.shape[1] != n_columns:
        raise ValueError(
            f"{name} has {x.shape[1]} columns but real_train has {n_columns}, "
            "expected the same encoded columns"
        )
    x = x.astype(np.float64, copy=False)
    if not np.isfinite(x).all():
        bad = int((~np.isfinite(x)).sum())
        raise ValueError(f"{name} has {bad} NaN/inf entries, expected finite values")
    return x


def _validate_labels(name: str, labels: Any, n_rows: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] != n_rows:
        raise ValueError(
            f"{name} has shape {labels.shape}, expected ({n_rows},) to match the rows "
            "of its table"
        )
    if labels.dtype.kind == "f" and not np.isfinite(labels).all():
        raise ValueError(f"{name} contains NaN/inf, expected finite labels")
    return labels


def _subsample(
    x: np.ndarray, labels: np.ndarray | None, max_rows: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray | None]:
    if x.shape[0] <= max_rows:
        return x, labels
    rows = np.sort(rng.choice(x.shape[0], size=max_rows, replace=False))
    return x[rows], None if labels is None else labels[rows]


def _as_rng(seed: int | np.random.Generator) -> np.random.Generator:
    return (
        seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    )


def _child_seed(rng: np.random.Generator) -> int:
    return int(rng.integers(2**31 - 1))


# --------------------------------------------------------------------- the control


def party_shuffle(
    x: np.ndarray, party_slices: Sequence[slice], rng: np.random.Generator
) -> np.ndarray:
    """Permute each party's rows independently, destroying all cross-party dependence.

    Every party's marginal distribution (the multiset of its rows) is unchanged; the
    pairing of parties within a record becomes random.

    Args:
        x: Encoded table, shape (N, D).
        party_slices: Each party's contiguous columns, party 0 first.
        rng: Source of the K permutations.

    Returns:
        A new (N, D) array.
    """
    out = np.empty_like(x)
    for s in party_slices:
        out[:, s] = x[rng.permutation(x.shape[0]), s]
    return out


# ------------------------------------------------------------------ 1. agreement


def fit_party_classifiers(
    x: np.ndarray, labels: np.ndarray, party_slices: Sequence[slice], seed: int = 0
) -> list[LogisticRegression]:
    """Fit one logistic regression per party predicting ``labels`` from its columns.

    Args:
        x: Real encoded table, shape (N, D).
        labels: Shared attribute, shape (N,), e.g. the digit label.
        party_slices: Each party's contiguous columns.
        seed: Seed for the solvers.

    Returns:
        K fitted classifiers, one per party.
    """
    return [
        LogisticRegression(max_iter=1000, random_state=seed).fit(x[:, s], labels)
        for s in party_slices
    ]


def party_agreement(
    classifiers: Sequence[LogisticRegression],
    x: np.ndarray,
    party_slices: Sequence[slice],
) -> dict[str, float]:
    """How often the per-party classifiers predict the same label for a record.

    Args:
        classifiers: One fitted classifier per party (``fit_party_classifiers``).
        x: Encoded records to score, shape (N, D).
        party_slices: Each party's contiguous columns.

    Returns:
        ``pairwise``: mean over party pairs of the agreement rate; ``all_agree``: share
        of records on which all K parties agree; ``chance``: the pairwise agreement
        expected if the parties' predictions were independent with the same label
        frequencies (what party-shuffled data converges to).
    """
    preds = [c.predict(x[:, s]) for c, s in zip(classifiers, party_slices)]  # K x (N,)
    classes = classifiers[0].classes_
    freqs = [np.array([(p == c).mean() for c in classes]) for p in preds]
    pairwise, chance = [], []
    for i in range(len(preds)):
        for j in range(i + 1, len(preds)):
            pairwise.append(float((preds[i] == preds[j]).mean()))
            chance.append(float(freqs[i] @ freqs[j]))
    all_agree = np.all([p == preds[0] for p in preds[1:]], axis=0)
    return {
        "pairwise": float(np.mean(pairwise)),
        "all_agree": float(all_agree.mean()),
        "chance": float(np.mean(chance)),
    }


# ------------------------------------------------------------ 2. predictive utility


def _target_values(x: np.ndarray, target: Target) -> np.ndarray:
    cols = x[:, target.columns]
    return cols.argmax(axis=1) if target.kind == "categorical" else cols[:, 0]


def _fit_target_model(
    features: np.ndarray, y: np.ndarray, kind: str, seed: int
) -> RandomForestClassifier | RandomForestRegressor:
    cls = RandomForestClassifier if kind == "categorical" else RandomForestRegressor
    return cls(
        n_estimators=30,
        max_depth=8,
        min_samples_leaf=3,
        max_features="sqrt",
        random_state=seed,
        n_jobs=-1,
    ).fit(features, y)


def _score(model: Any, features: np.ndarray, y: np.ndarray, kind: str) -> float:
    pred = model.predict(features)
    if kind == "categorical":
        return float(accuracy_score(y, pred))
    return float(r2_score(y, pred))


def cross_party_utility(
    real_train: np.ndarray,
    real_holdout: np.ndarray,
    synthetic_sets: Mapping[str, np.ndarray],
    party_slices: Sequence[slice],
    targets: Sequence[Target],
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Predict each target from every *other* party's columns: TRTR, TRTS and TSTR.

    For every source party p and target t held by a party q != p, a small random forest
    (30 trees, depth 8, sqrt(D_p) features per split) predicts t from p's columns only.
    Scores are accuracy for categorical targets (class = argmax of the one-hot span) and
    R^2 for numeric ones (R^2 can be negative; on a constant y it is 1.0 if predicted
    exactly, else 0.0).

    Args:
        real_train: Real rows the "train real" models are fitted on, shape (N, D).
        real_holdout: Real rows never used for fitting, shape (M, D).
        synthetic_sets: Named synthetic tables, e.g. ``{"model": s, "control": c}``.
        party_slices: Each party's contiguous columns.
        targets: Targets to predict (see ``targets_from_spans``).
        seed: Seed for the forests.

    Returns:
        One row per (source party, target): ``source_party``, ``target``,
        ``target_party``, ``kind``, ``score`` ("accuracy" or "r2"), ``trtr`` (train
        real, test real hold-out) and, under ``"synthetic"``, per synthetic name
        ``{name: {"trts": ..., "tstr": ...}}``.
    """
    rows = []
    for t in targets:
        y_train, y_hold = _target_values(real_train, t), _target_values(real_holdout, t)
        for p, s in enumerate(party_slices):
            if p == t.party:
                continue
            real_model = _fit_target_model(real_train[:, s], y_train, t.kind, seed)
            row: dict[str, Any] = {
                "source_party": p,
                "target": t.name,
                "target_party": t.party,
                "kind": t.kind,
                "score": "accuracy" if t.kind == "categorical" else "r2",
                "trtr": _score(real_model, real_holdout[:, s], y_hold, t.kind),
                "synthetic": {},
            }
            for name, syn in synthetic_sets.items():
                y_syn = _target_values(syn, t)
                syn_model = _fit_target_model(syn[:, s], y_syn, t.kind, seed)
                row["synthetic"][name] = {
                    "trts": _score(real_model, syn[:, s], y_syn, t.kind),
                    "tstr": _score(syn_model, real_holdout[:, s], y_hold, t.kind),
                }
            rows.append(row)
    return rows


# ------------------------------------------------------- 3a. correlation errors


def cross_party_correlations(
    x: np.ndarray, party_slices: Sequence[slice]
) -> np.ndarray:
    """Pearson correlations of every cross-party column pair, flattened.

    A constant (zero-variance) column has no defined correlation; it is treated as
    uncorrelated (0.0) with every column rather than producing NaN.

    Args:
        x: Encoded table, shape (N, D).
        party_slices: Each party's contiguous columns.

    Returns:
        Shape (P,), P = sum over party pairs i < j of D_i * D_j, in the order
        (i, j) blocks, row-major within each block.
    """
    xc = x - x.mean(axis=0)
    std = np.sqrt((xc**2).mean(axis=0))  # (D,)
    constant = std <= 1e-12 * np.maximum(1.0, np.abs(x).max(axis=0))
    z = np.where(constant, 0.0, xc / np.where(constant, 1.0, std))
    corr = np.clip(z.T @ z / x.shape[0], -1.0, 1.0)  # (D, D)
    blocks = [
        corr[si, sj].ravel()
        for i, si in enumerate(party_slices)
        for sj in party_slices[i + 1 :]
    ]
    return np.concatenate(blocks)


def cross_party_correlation_error(
    reference: np.ndarray,
    other: np.ndarray,
    party_slices: Sequence[slice],
    top_fraction: float = TOP_FRACTION,
) -> dict[str, float]:
    """Mean |corr_reference - corr_other| over cross-party pairs: all, and focused.

    The focused error keeps the ceil(top_fraction * P) cross-party pairs with the
    largest |correlation| in ``reference`` (the dependence that actually exists), so it
    is not diluted by the many pairs whose correlation is ~0 in every dataset. Constant
    columns count as correlation 0 (see ``cross_party_correlations``).

    Args:
        reference: Real table that defines the target correlations, shape (N, D).
        other: Table to compare, shape (M, D).
        party_slices: Each party's contiguous columns.
        top_fraction: Share of pairs in the focused set, in (0, 1].

    Returns:
        ``all``, ``focused`` (mean absolute errors), ``n_pairs``, ``n_focused``.

    Raises:
        ValueError: If ``top_fraction`` is outside (0, 1].
    """
    if not 0.0 < top_fraction <= 1.0:
        raise ValueError(f"top_fraction={top_fraction}, expected a value in (0, 1]")
    c_ref = cross_party_correlations(reference, party_slices)
    c_other = cross_party_correlations(other, party_slices)
    err = np.abs(c_ref - c_other)
    n_focused = max(1, math.ceil(top_fraction * c_ref.size))
    top = np.argsort(-np.abs(c_ref), kind="stable")[:n_focused]
    return {
        "all": float(err.mean()),
        "focused": float(err[top].mean()),
        "n_pairs": int(c_ref.size),
        "n_focused": int(n_focused),
    }


# -------------------------------------------------- 3b. two-sample shuffle test


def _joint_vs_shuffled(
    x: np.ndarray, party_slices: Sequence[slice], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    # Each party's rows appear once in each class, so the classes have identical
    # per-party marginals and only the pairing differs.
    features = np.vstack([x, party_shuffle(x, party_slices, rng)])  # (2N, D)
    y = np.r_[np.ones(x.shape[0]), np.zeros(x.shape[0])]
    return features, y


def fit_shuffle_critic(
    x: np.ndarray, party_slices: Sequence[slice], seed: int = 0
) -> RandomForestClassifier:
    """Fit a classifier that tells joint records of ``x`` from party-shuffled ones.

    A random forest (50 trees) is used on purpose: because both classes have the same
    per-party marginals, no single-feature split has any gain at the root, which stalls
    greedy boosting; a forest's random feature subsets still grow into the cross-party
    interactions.

    Args:
        x: Encoded table, shape (N, D).
        party_slices: Each party's contiguous columns.
        seed: Seed for the shuffle and the forest.

    Returns:
        A fitted classifier; class 1 = joint, class 0 = shuffled.
    """
    rng = np.random.default_rng(seed)
    features, y = _joint_vs_shuffled(x, party_slices, rng)
    return RandomForestClassifier(
        n_estimators=50, min_samples_leaf=2, random_state=seed, n_jobs=-1
    ).fit(features, y)


def shuffle_critic_auc(
    critic: RandomForestClassifier,
    x: np.ndarray,
    party_slices: Sequence[slice],
    seed: int = 0,
) -> float:
    """ROC AUC of ``critic`` on ``x`` (joint, class 1) against ``x`` party-shuffled.

    Args:
        critic: From ``fit_shuffle_critic``, fitted on rows disjoint from ``x``.
        x: Encoded table, shape (N, D).
        party_slices: Each party's contiguous columns.
        seed: Seed for the shuffle.

    Returns:
        AUC in [0, 1]; 0.5 means the critic sees no cross-party dependence in ``x``.
    """
    features, y = _joint_vs_shuffled(x, party_slices, np.random.default_rng(seed))
    return float(roc_auc_score(y, critic.predict_proba(features)[:, 1]))


def shuffle_two_sample_auc(
    x: np.ndarray,
    party_slices: Sequence[slice],
    seed: int | np.random.Generator = 0,
    test_fraction: float = 0.5,
) -> float:
    """Held-out AUC of a classifier telling ``x``'s joint records from party-shuffled.

    The rows are split once; a critic (``fit_shuffle_critic``) is trained on the first
    part (joint vs its own shuffle) and scored on the held-out part (joint vs its own
    shuffle). The test sees linear and nonlinear cross-party dependence alike.

    Args:
        x: Encoded table, shape (N, D), N >= 4.
        party_slices: Each party's contiguous columns.
        seed: Seed or generator for the split, shuffles and forest.
        test_fraction: Share of rows held out, in (0, 1).

    Returns:
        AUC; about 0.5 when the parties are independent, near 1 for strong dependence.

    Raises:
        ValueError: If ``test_fraction`` is outside (0, 1) or ``x`` has under 4 rows.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction={test_fraction}, expected a value in (0, 1)")
    if x.shape[0] < 4:
        raise ValueError(f"x has {x.shape[0]} rows, expected at least 4 for a split")
    rng = _as_rng(seed)
    rows = rng.permutation(x.shape[0])
    n_test = min(max(2, round(test_fraction * x.shape[0])), x.shape[0] - 2)
    critic = fit_shuffle_critic(x[rows[n_test:]], party_slices, _child_seed(rng))
    return shuffle_critic_auc(critic, x[rows[:n_test]], party_slices, _child_seed(rng))


# ------------------------------------------------------- 3c. mutual information


def select_mi_columns(
    x: np.ndarray, party_slices: Sequence[slice], n_columns: int = MI_COLUMNS
) -> list[np.ndarray]:
    """Pick each party's highest-variance columns for the mutual-information estimate.

    Args:
        x: Real encoded table, shape (N, D).
        party_slices: Each party's contiguous columns.
        n_columns: Columns kept per party (all if a party has fewer); ties keep the
            earlier column.

    Returns:
        K arrays of absolute column indices, one per party.
    """
    var = x.var(axis=0)  # (D,)
    picked = []
    for s in party_slices:
        order = np.argsort(-var[s], kind="stable")[:n_columns]
        picked.append(np.sort(order) + s.start)
    return picked


def column_mutual_information(
    columns: Sequence[np.ndarray],
    x: np.ndarray,
    seed: int = 0,
) -> float:
    """Largest k-NN mutual information between a column of one party and one of another.

    For each party pair, scikit-learn's ``mutual_info_regression`` (Kraskov estimator,
    3 neighbours) estimates the MI of every selected column of one party with every
    selected column of the other (``select_mi_columns``, 8 per party by default); the
    pair's value is the largest, and the result is the mean over party pairs. It sees
    nonlinear dependence (B = A^2, where correlation is 0) but only between single
    columns, so dependence spread thinly over many pixels shows up weakly. Estimates
    are clipped at 0 by scikit-learn, and taking the maximum adds a small positive bias
    (about 0.05 nats at 600 rows) for independent parties; constant columns score 0.

    Args:
        columns: Per-party absolute column indices, from ``select_mi_columns``.
        x: Encoded table, shape (N, D).
        seed: Seed for the estimator's jitter.

    Returns:
        Mutual information in nats.
    """
    keep = [c[np.ptp(x[:, c], axis=0) > 0] for c in columns]  # drop constant columns
    values = []
    for i in range(len(keep)):
        for j in range(i + 1, len(keep)):
            if keep[i].size == 0 or keep[j].size == 0:
                values.append(0.0)  # a constant party carries no information
                continue
            best = max(
                mutual_info_regression(
                    x[:, keep[i]], x[:, c], n_neighbors=3, random_state=seed
                ).max()
                for c in keep[j]
            )
            values.append(float(best))
    return float(np.mean(values))


# ---------------------------------------------------------------- 4. the report


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


def dependence_report(
    real_train: np.ndarray,
    real_holdout: np.ndarray,
    synthetic: np.ndarray,
    synthetic_control: np.ndarray,
    party_slices: Sequence[slice],
    labels_train: np.ndarray | None = None,
    labels_holdout: np.ndarray | None = None,
    targets: Sequence[Target] | None = None,
    seed: int = 0,
    max_rows: int = MAX_ROWS,
    margins: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """Every cross-party dependence metric for real, model and independent control.

    Reference models (per-party label classifiers, utility forests, the real-trained
    shuffle critic, the MI column choice, the correlation reference) are fitted on
    ``real_train``. Each metric is then evaluated on three tables: ``real_holdout``
    ("real", the value a perfect generator would reach up to sampling noise),
    ``synthetic`` ("model") and ``synthetic_control`` ("control": the same generator
    sampled with an independent latent per party, i.e. ``sample(n,
    independent_latents=True)``). Each input is first subsampled to ``max_rows`` rows
    (seeded, without replacement); pass tables of equal size so the two-sample AUCs have
    equal power.

    Metrics (keys of ``report["metrics"]``):
        agreement, agreement_all: only with labels; ``party_agreement`` pairwise rate
            and (only for K > 2 parties) all-parties rate.
        utility_trts, utility_tstr: only with targets; mean score over (source party,
            target) pairs of ``cross_party_utility``, each score clipped below at 0
            (a negative R^2 predicts nothing; ``details["utility"]`` keeps the raw
            values); "real" is TRTR for both.
        corr_error_focused, corr_error_all: ``cross_party_correlation_error`` against
            real_train.
        shuffle_auc: ``shuffle_two_sample_auc`` of each table on its own.
        shuffle_auc_real_critic: a critic fitted on real_train's joint vs shuffled rows,
            scored on each table's joint vs shuffled rows (does the table carry the
            *real* kind of dependence?).
        mutual_information: ``column_mutual_information`` on real_train's
            highest-variance columns.

    Args:
        real_train: Real encoded rows used to fit reference models, shape (N, D).
        real_holdout: Real encoded rows not used for fitting, shape (M, D).
        synthetic: The model's samples, shape (S, D).
        synthetic_control: The model's independent-latent samples, shape (S', D).
        party_slices: Each party's contiguous columns, party 0 first, K >= 2.
        labels_train: Optional shared label of ``real_train`` rows, shape (N,).
        labels_holdout: Label of ``real_holdout`` rows, shape (M,); required with
            ``labels_train``.
        targets: Optional cross-party utility targets.
        seed: Seed for subsampling, shuffles and all fitted models.
        max_rows: Row cap per input table.
        margins: Fixed verdict margins per metric, replacing the default
            ``max(VERDICT_MARGINS[name], NOISE_SCALES[name] / sqrt(n))`` where n is the
            smallest evaluated table's row count.

    Returns:
        A JSON-serialisable dict::

            {
              "n_parties": K, "seed": seed, "max_rows": max_rows,
              "n_rows": {"real_train": ..., "real_holdout": ..., "synthetic": ...,
                         "synthetic_control": ...},          # after subsampling
              "metrics": {name: {"real": float, "model": float, "control": float,
                                 "direction": "closer" | "lower",
                                 "description": str}},
              "verdicts": {name: {"beats_control": bool, "informative": bool,
                                  "margin": float, "sentence": str}},
              "summary": str,                                  # one paragraph
              "details": {"agreement": {"real"|"model"|"control": party_agreement(),
                                        "party_accuracy": [float] * K},
                          "utility": cross_party_utility() rows,
                          "correlation": {"n_pairs": int, "n_focused": int}},
            }

    Raises:
        TypeError: If a table is not a numpy array.
        ValueError: On empty tables, NaN/inf, column counts that differ from
            real_train's, bad ``party_slices``, labels of the wrong length or given for
            only one real table, targets outside their party, or ``max_rows`` < 4.
    """
    # 1. validate everything at the boundary
    real_train = _validate_table("real_train", real_train)
    d = real_train.shape[1]
    real_holdout = _validate_table("real_holdout", real_holdout, d)
    synthetic = _validate_table("synthetic", synthetic, d)
    synthetic_control = _validate_table("synthetic_control", synthetic_control, d)
    slices = validate_party_slices(party_slices, d)
    if not isinstance(max_rows, int) or max_rows < 4:
        raise ValueError(f"max_rows={max_rows!r}, expected an integer >= 4")
    if (labels_train is None) != (labels_holdout is None):
        raise ValueError(
            "labels_train and labels_holdout must be given together; got "
            f"labels_train={'set' if labels_train is not None else None}, "
            f"labels_holdout={'set' if labels_holdout is not None else None}"
        )
    if labels_train is not None:
        labels_train = _validate_labels("labels_train", labels_train, len(real_train))
        labels_holdout = _validate_labels(
            "labels_holdout", labels_holdout, len(real_holdout)
        )
    for t in targets or ():
        if not 0 <= t.party < len(slices):
            raise ValueError(
                f"Target {t.name!r}: party={t.party}, expected 0..{len(slices) - 1}"
            )
        s = slices[t.party]
        if not (s.start <= (t.columns.start or 0) and t.columns.stop <= s.stop):
            raise ValueError(
                f"Target {t.name!r}: columns={t.columns!r} are not inside party "
                f"{t.party}'s columns {s!r}"
            )
    unknown = sorted(set(margins or {}) - set(VERDICT_MARGINS))
    if unknown:
        raise ValueError(
            f"margins has unknown metric(s) {unknown}, expected a subset "
            f"of {sorted(VERDICT_MARGINS)}"
        )
    margins = dict(margins or {})

    # 2. subsample each table
    rng = np.random.default_rng(seed)
    real_train, labels_train = _subsample(real_train, labels_train, max_rows, rng)
    real_holdout, labels_holdout = _subsample(
        real_holdout, labels_holdout, max_rows, rng
    )
    synthetic, _ = _subsample(synthetic, None, max_rows, rng)
    synthetic_control, _ = _subsample(synthetic_control, None, max_rows, rng)
    tables = {"real": real_holdout, "model": synthetic, "control": synthetic_control}

    metrics: dict[str, dict[str, float]] = {}
    details: dict[str, Any] = {}

    # 3. per-party classifier agreement
    if labels_train is not None:
        classifiers = fit_party_classifiers(real_train, labels_train, slices, seed)
        agree = {k: party_agreement(classifiers, x, slices) for k, x in tables.items()}
        metrics["agreement"] = {k: v["pairwise"] for k, v in agree.items()}
        if len(slices) > 2:  # with two parties it equals the pairwise rate
            metrics["agreement_all"] = {k: v["all_agree"] for k, v in agree.items()}
        details["agreement"] = {
            **agree,
            "party_accuracy": [
                float(c.score(real_holdout[:, s], labels_holdout))
                for c, s in zip(classifiers, slices)
            ],
        }

    # 4. cross-party predictive utility
    if targets:
        rows = cross_party_utility(
            real_train,
            real_holdout,
            {"model": synthetic, "control": synthetic_control},
            slices,
            targets,
            seed,
        )
        details["utility"] = rows
        # Negative R^2 (worse than predicting the mean) counts as no utility (0) in
        # the means; the per-pair rows keep the raw value.
        for mode in ("trts", "tstr"):
            metrics[f"utility_{mode}"] = {
                "real": float(np.mean([max(r["trtr"], 0.0) for r in rows])),
                **{
                    k: float(np.mean([max(r["synthetic"][k][mode], 0.0) for r in rows]))
                    for k in ("model", "control")
                },
            }

    # 5. correlation errors against real_train
    corr = {
        k: cross_party_correlation_error(real_train, x, slices)
        for k, x in tables.items()
    }
    metrics["corr_error_focused"] = {k: v["focused"] for k, v in corr.items()}
    metrics["corr_error_all"] = {k: v["all"] for k, v in corr.items()}
    details["correlation"] = {
        "n_pairs": corr["real"]["n_pairs"],
        "n_focused": corr["real"]["n_focused"],
    }

    # 6. party-shuffle two-sample tests
    metrics["shuffle_auc"] = {
        k: shuffle_two_sample_auc(x, slices, seed) for k, x in tables.items()
    }
    critic = fit_shuffle_critic(real_train, slices, seed)
    metrics["shuffle_auc_real_critic"] = {
        k: shuffle_critic_auc(critic, x, slices, seed + 1) for k, x in tables.items()
    }

    # 7. mutual information between cross-party column pairs
    mi_columns = select_mi_columns(real_train, slices)
    metrics["mutual_information"] = {
        k: column_mutual_information(mi_columns, x, seed) for k, x in tables.items()
    }

    # 8. verdicts
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
            n_rows=min(len(x) for x in tables.values()),
        )
    return {
        "n_parties": len(slices),
        "seed": seed,
        "max_rows": max_rows,
        "n_rows": {
            "real_train": len(real_train),
            "real_holdout": len(real_holdout),
            "synthetic": len(synthetic),
            "synthetic_control": len(synthetic_control),
        },
        "metrics": report_metrics,
        "verdicts": verdicts,
        "summary": _summarize(verdicts),
        "details": details,
    }


def _summarize(verdicts: Mapping[str, Mapping[str, Any]]) -> str:
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


def format_dependence_table(report: Mapping[str, Any]) -> str:
    """Render a ``dependence_report`` as a markdown table plus its verdict sentences.

    Args:
        report: The dict returned by ``dependence_report`` (or loaded from JSON).

    Returns:
        Markdown: one row per metric (real, model, control, better direction, verdict),
        followed by the summary and one bullet per verdict sentence.
    """
    lines = [
        "| metric | better | real | model | control | model beats control? |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for name, m in report["metrics"].items():
        v = report["verdicts"][name]
        better = "closer to real" if m["direction"] == "closer" else "lower"
        verdict = (
            "yes"
            if v["beats_control"]
            else ("no" if v["informative"] else "n/a (control ~ real)")
        )
        lines.append(
            f"| {m['description']} | {better} | {m['real']:.3f} | {m['model']:.3f} "
            f"| {m['control']:.3f} | {verdict} |"
        )
    lines += ["", report["summary"], ""]
    lines += [f"- {v['sentence']}" for v in report["verdicts"].values()]
    return "\n".join(lines) + "\n"
