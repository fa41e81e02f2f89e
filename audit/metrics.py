"""Attack metrics: accuracy, ROC AUC, TPR at fixed FPR and an empirical epsilon.

All score arguments follow one convention: a larger score means "more likely a member"
(IN). ``scores_in`` are the scores of trials whose world contained the target,
``scores_out`` those whose world did not.

The empirical epsilon (Jagielski et al. 2020, Nasr et al. 2021) turns the attack's
error rates into a statistical lower bound on the epsilon of any (epsilon, delta)-DP
mechanism that could have produced them: for every event S, P_in(S) <= e^eps P_out(S) +
delta, so with S = {score >= tau}, eps >= log((TPR - delta) / FPR) and, from the
complement, eps >= log((1 - FPR - delta) / (1 - TPR)). Replacing TPR by its
Clopper-Pearson lower end and FPR by its upper end makes the bound for one test fixed
in advance hold with the chosen confidence; :func:`empirical_epsilon` therefore picks
its test on one half of the trials and bounds it on the other.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats
from sklearn.metrics import roc_auc_score, roc_curve


def clopper_pearson(
    k: int | np.ndarray, n: int, confidence: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided exact (Clopper-Pearson) interval for a binomial proportion k/n.

    Args:
        k: number of successes, an int or an integer array with 0 <= k <= n.
        n: number of trials, >= 1.
        confidence: coverage of the two-sided interval, in (0, 1).

    Returns:
        (low, high), each shaped like ``k``.

    Raises:
        ValueError: ``n < 1``, ``k`` outside [0, n] or ``confidence`` outside (0, 1).
    """
    k = np.asarray(k)
    if n < 1:
        raise ValueError(f"n={n}; expected at least 1 trial")
    if np.any(k < 0) or np.any(k > n):
        raise ValueError(f"k={k.tolist()} with n={n}; expected 0 <= k <= n")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence={confidence}; expected a value in (0, 1)")
    alpha = 1.0 - confidence
    with np.errstate(invalid="ignore"):
        low = np.where(k == 0, 0.0, stats.beta.ppf(alpha / 2, k, n - k + 1))
        high = np.where(k == n, 1.0, stats.beta.ppf(1 - alpha / 2, k + 1, n - k))
    return low, high


@dataclass(frozen=True)
class EpsilonBound:
    """An empirical epsilon and the test that achieves it.

    Attributes:
        epsilon: the bound (0.0 when the test gives no evidence).
        threshold: score threshold tau of the test (members: score >= tau).
        direction: ``"tpr/fpr"`` or ``"tnr/fnr"``: which inequality gave the bound.
        tpr: observed TPR of the test on the trials the bound is computed from.
        fpr: observed FPR of the test on those trials.
        n_in: IN trials the bound is computed from.
        n_out: OUT trials the bound is computed from.
        confidence: confidence of each Clopper-Pearson interval.
        delta: the delta the bound is stated for.
    """

    epsilon: float
    threshold: float
    direction: str
    tpr: float
    fpr: float
    n_in: int
    n_out: int
    confidence: float
    delta: float

    def to_dict(self) -> dict:
        """Return a JSON-ready dict (an infinite threshold becomes ``None``)."""
        out = asdict(self)
        out["threshold"] = self.threshold if math.isfinite(self.threshold) else None
        return out


def empirical_epsilon(
    scores_in: np.ndarray,
    scores_out: np.ndarray,
    confidence: float = 0.95,
    delta: float = 0.0,
    seed: int = 0,
) -> EpsilonBound:
    """Empirical epsilon lower bound that holds with probability ``confidence``.

    The trials of each class are split at random in two halves. The threshold and
    direction are chosen on the first half (the best of
    :func:`epsilon_over_thresholds`); the bound is that one test's Clopper-Pearson
    bound on the second half. Choosing the threshold on the same trials as the bound
    (the max over all thresholds) is not a valid bound: in the tails of a Laplace
    mechanism it exceeds the true epsilon (``tests/audit/test_metrics.py``).

    Args:
        scores_in: scores of IN trials, shape (n_in,); larger = member; n_in >= 2.
        scores_out: scores of OUT trials, shape (n_out,); n_out >= 2.
        confidence: confidence of each Clopper-Pearson interval. With both intervals
            two-sided, the bound fails with probability at most 1 - confidence.
        delta: the delta of the (epsilon, delta) guarantee being audited.
        seed: seed of the random halving.

    Returns:
        The bound; ``n_in``/``n_out`` are the evaluation half's sizes.
    """
    s_in, s_out = _check_scores(scores_in, scores_out)
    if len(s_in) < 2 or len(s_out) < 2:
        raise ValueError(
            f"got {len(s_in)} IN and {len(s_out)} OUT scores; expected at least 2 each "
            "(one half selects the threshold, the other bounds epsilon)"
        )
    rng = np.random.default_rng([seed, 5])
    sel_in, ev_in = _halves(s_in, rng)
    sel_out, ev_out = _halves(s_out, rng)
    chosen = epsilon_over_thresholds(sel_in, sel_out, confidence, delta)
    tau, direction = chosen.threshold, chosen.direction
    k_in, k_out = int(np.sum(ev_in >= tau)), int(np.sum(ev_out >= tau))
    fwd, bwd = _test_bounds(k_in, len(ev_in), k_out, len(ev_out), confidence, delta)
    eps = float(fwd if direction == "tpr/fpr" else bwd)
    return EpsilonBound(
        epsilon=max(eps, 0.0),
        threshold=tau,
        direction=direction,
        tpr=k_in / len(ev_in),
        fpr=k_out / len(ev_out),
        n_in=len(ev_in),
        n_out=len(ev_out),
        confidence=confidence,
        delta=delta,
    )


def epsilon_over_thresholds(
    scores_in: np.ndarray,
    scores_out: np.ndarray,
    confidence: float = 0.95,
    delta: float = 0.0,
) -> EpsilonBound:
    """Largest per-threshold bound over all thresholds of the same trials.

    This is the number many audits report. It is optimistic: every threshold's bound
    holds with ``confidence``, but their maximum does not. Use
    :func:`empirical_epsilon` for a bound; this one selects its threshold.
    """
    s_in, s_out = _check_scores(scores_in, scores_out)
    n_in, n_out = len(s_in), len(s_out)
    # One threshold between each pair of neighbouring distinct scores, plus -inf and
    # +inf: every test these trials can tell apart, placed mid-gap so that a threshold
    # chosen here carries over to new trials with some margin.
    u = np.unique(np.concatenate([s_in, s_out]))
    taus = np.concatenate([[-np.inf], (u[:-1] + u[1:]) / 2, [np.inf]])
    k_in = n_in - np.searchsorted(np.sort(s_in), taus, side="left")  # s_in >= tau
    k_out = n_out - np.searchsorted(np.sort(s_out), taus, side="left")
    eps_fwd, eps_bwd = _test_bounds(k_in, n_in, k_out, n_out, confidence, delta)
    best_fwd, best_bwd = int(np.argmax(eps_fwd)), int(np.argmax(eps_bwd))
    if eps_fwd[best_fwd] >= eps_bwd[best_bwd]:
        i, direction, eps = best_fwd, "tpr/fpr", eps_fwd[best_fwd]
    else:
        i, direction, eps = best_bwd, "tnr/fnr", eps_bwd[best_bwd]
    return EpsilonBound(
        epsilon=float(max(eps, 0.0)),
        threshold=float(taus[i]),
        direction=direction,
        tpr=float(k_in[i] / n_in),
        fpr=float(k_out[i] / n_out),
        n_in=n_in,
        n_out=n_out,
        confidence=confidence,
        delta=delta,
    )


def evaluation_size(n: int) -> int:
    """Trials of a class that :func:`empirical_epsilon` bounds on (the second half)."""
    return n - n // 2


def max_resolvable_epsilon(
    n_in: int, n_out: int, confidence: float = 0.95, delta: float = 0.0
) -> float:
    """The largest epsilon :func:`empirical_epsilon` can show from n_in + n_out trials.

    It is the bound of a perfect attack (TPR = 1, FPR = 0) on the evaluation halves.
    An audit with these trial counts cannot demonstrate any epsilon above it, however
    leaky the mechanism.

    Returns:
        The epsilon, 0.0 when even perfect separation gives no evidence.
    """
    m_in, m_out = evaluation_size(n_in), evaluation_size(n_out)
    fwd, bwd = _test_bounds(m_in, m_in, 0, m_out, confidence, delta)
    return float(max(fwd, bwd, 0.0))


def min_trials_for_epsilon(
    epsilon: float, confidence: float = 0.95, delta: float = 0.0
) -> int:
    """Smallest n such that n IN and n OUT trials can show an epsilon above ``epsilon``.

    Raises:
        ValueError: ``epsilon`` < 0 or ``delta`` outside [0, 1).
    """
    if epsilon < 0:
        raise ValueError(f"epsilon={epsilon}; expected >= 0")
    if not 0 <= delta < 1:
        raise ValueError(f"delta={delta}; expected a value in [0, 1)")
    hi = 2
    while max_resolvable_epsilon(hi, hi, confidence, delta) <= epsilon:
        hi *= 2
        if hi > 2**40:
            raise ValueError(f"epsilon={epsilon} needs more than 2**40 trials")
    lo = hi // 2  # lo fails (or is 1), hi succeeds
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if max_resolvable_epsilon(mid, mid, confidence, delta) > epsilon:
            hi = mid
        else:
            lo = mid
    return hi


def accuracy(scores_in: np.ndarray, scores_out: np.ndarray, threshold=0.5) -> float:
    """Fraction of trials classified right, members being ``score > threshold``."""
    s_in, s_out = _check_scores(scores_in, scores_out)
    right = np.sum(s_in > threshold) + np.sum(s_out <= threshold)
    return float(right / (len(s_in) + len(s_out)))


def auc(scores_in: np.ndarray, scores_out: np.ndarray) -> float:
    """ROC AUC of the scores (0.5: no better than chance; ties count one half)."""
    y, s = _labels_and_scores(scores_in, scores_out)
    return float(roc_auc_score(y, s))


def roc(scores_in: np.ndarray, scores_out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ROC curve points (fpr, tpr), from (0, 0) to (1, 1)."""
    y, s = _labels_and_scores(scores_in, scores_out)
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    return fpr, tpr


def tpr_at_fpr(scores_in: np.ndarray, scores_out: np.ndarray, fpr: float) -> float:
    """Highest TPR among thresholds whose FPR is at most ``fpr``.

    With n_out OUT trials the FPR moves in steps of 1/n_out, so for fpr < 1/n_out this
    is the TPR at FPR = 0.
    """
    fprs, tprs = roc(scores_in, scores_out)
    return float(tprs[fprs <= fpr + 1e-12].max())


def auc_null_interval(
    n_in: int, n_out: int, confidence: float = 0.95
) -> tuple[float, float]:
    """Interval an attack with no signal keeps its AUC in, with the given confidence.

    Normal approximation to the Mann-Whitney statistic under the null (no ties):
    var(AUC) = (n_in + n_out + 1) / (12 n_in n_out).
    """
    z = stats.norm.ppf(0.5 + confidence / 2)
    sd = math.sqrt((n_in + n_out + 1) / (12.0 * n_in * n_out))
    return 0.5 - z * sd, 0.5 + z * sd


def mean_and_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and (population) std over splits; the paper reports mean +/- 2 std."""
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), float(arr.std())


def _test_bounds(k_in, n_in, k_out, n_out, confidence, delta):
    """Both DP inequalities' bounds for the test(s) with k_in/n_in and k_out/n_out."""
    tpr_low, _ = clopper_pearson(k_in, n_in, confidence)
    _, fpr_high = clopper_pearson(k_out, n_out, confidence)
    # TNR's lower end is 1 - FPR's upper end, FNR's upper end 1 - TPR's lower end.
    return (
        _log_ratio(tpr_low - delta, fpr_high),
        _log_ratio(1.0 - fpr_high - delta, 1.0 - tpr_low),
    )


def _halves(x: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    perm = rng.permutation(len(x))
    return x[perm[: len(x) // 2]], x[perm[len(x) // 2 :]]


def _log_ratio(num, den):
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where((num > 0) & (den > 0), np.log(num / den), -np.inf)
    return out if out.ndim else float(out)


def _check_scores(scores_in, scores_out) -> tuple[np.ndarray, np.ndarray]:
    s_in = np.asarray(scores_in, dtype=np.float64).ravel()
    s_out = np.asarray(scores_out, dtype=np.float64).ravel()
    if len(s_in) == 0 or len(s_out) == 0:
        raise ValueError(
            f"got {len(s_in)} IN and {len(s_out)} OUT scores; expected at least one each"
        )
    return s_in, s_out


def _labels_and_scores(scores_in, scores_out) -> tuple[np.ndarray, np.ndarray]:
    s_in, s_out = _check_scores(scores_in, scores_out)
    y = np.concatenate([np.ones(len(s_in)), np.zeros(len(s_out))])
    return y, np.concatenate([s_in, s_out])
