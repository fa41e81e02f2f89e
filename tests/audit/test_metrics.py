import math

import numpy as np
import pytest
from scipy.stats import binomtest

from audit import metrics


@pytest.mark.parametrize("n", [1, 7, 30, 200])
@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_clopper_pearson_matches_scipy_exact_interval(n, confidence):
    # Prepare: every k for this n
    ks = np.arange(n + 1)
    # Execute
    low, high = metrics.clopper_pearson(ks, n, confidence)
    # Assert: scipy's exact binomial interval is an independent reference
    for k in ks:
        ref = binomtest(int(k), n).proportion_ci(
            confidence_level=confidence, method="exact"
        )
        assert low[k] == pytest.approx(ref.low, abs=1e-10)
        assert high[k] == pytest.approx(ref.high, abs=1e-10)


def test_clopper_pearson_rejects_bad_input():
    with pytest.raises(ValueError, match="k=\\[5\\] with n=4"):
        metrics.clopper_pearson([5], 4)
    with pytest.raises(ValueError, match="confidence=1.0"):
        metrics.clopper_pearson(1, 4, confidence=1.0)


def test_perfect_separation_reaches_exactly_the_resolvable_maximum():
    # Prepare: a perfect attack on 20 + 20 trials (10 + 10 bound the epsilon)
    s_in, s_out = np.ones(20), np.zeros(20)
    # Execute
    bound = metrics.empirical_epsilon(s_in, s_out, 0.95)
    best = metrics.max_resolvable_epsilon(20, 20, 0.95)
    # Assert: a / (1 - a) with a = 0.025 ** (1/10), the exact CP ends at k = 0 and n
    a = 0.025 ** (1 / 10)
    assert best == pytest.approx(math.log(a / (1 - a)))
    assert bound.epsilon == pytest.approx(best)
    assert (bound.tpr, bound.fpr, bound.n_in, bound.n_out) == (1.0, 0.0, 10, 10)


def test_resolvable_epsilon_and_trial_count_agree():
    # 100 shadows per world (the paper) cannot resolve epsilon 5 or 10 at 95%
    assert metrics.max_resolvable_epsilon(100, 100) == pytest.approx(2.57, abs=0.01)
    need = metrics.min_trials_for_epsilon(5.0)
    assert metrics.max_resolvable_epsilon(need, need) > 5.0
    assert metrics.max_resolvable_epsilon(need - 1, need - 1) <= 5.0
    assert need > 1000
    # 10 trials per class (5 to bound on) show nothing at 95%; 11 (6 to bound on) do
    assert metrics.max_resolvable_epsilon(10, 10) == 0.0
    assert metrics.min_trials_for_epsilon(0.0) == 11


def test_no_signal_gives_zero_and_the_complement_test_counts():
    rng = np.random.default_rng(0)
    same = rng.normal(size=50)
    assert metrics.empirical_epsilon(same, same).epsilon == 0.0
    # Members are score >= tau, so reversed scores give no evidence.
    assert metrics.empirical_epsilon(np.zeros(30), np.ones(30)).epsilon == 0.0
    # A test with few false negatives but many false positives is strongest in the
    # TNR/FNR form: OUT trials below tau are common, IN trials below tau rare.
    s_in = np.ones(200)
    s_out = np.r_[np.ones(100), np.zeros(100)]
    bound = metrics.epsilon_over_thresholds(s_in, s_out)
    assert bound.direction == "tnr/fnr" and bound.epsilon > 2


def randomized_response(bit: int, eps: float, n: int, rng) -> np.ndarray:
    keep = rng.random(n) < math.exp(eps) / (1 + math.exp(eps))
    return np.where(keep, bit, 1 - bit).astype(float)


@pytest.mark.parametrize("seed", range(5))
def test_bound_never_exceeds_the_true_epsilon_of_randomized_response(seed):
    # Prepare: a pure eps-DP release of one bit (the target's membership)
    rng = np.random.default_rng(seed)
    eps = 1.0
    s_in = randomized_response(1, eps, 2000, rng)
    s_out = randomized_response(0, eps, 2000, rng)
    # Execute
    bound = metrics.empirical_epsilon(s_in, s_out, 0.95)
    # Assert: sound (below eps) and not vacuous (the attack is optimal here)
    assert 0.7 < bound.epsilon <= eps


@pytest.mark.parametrize("seed", range(5))
def test_bound_never_exceeds_the_true_epsilon_of_the_laplace_mechanism(seed):
    # Prepare: Laplace mechanism on a sensitivity-1 statistic (0 vs 1), eps = 2;
    # every threshold of the output is a test, so this exercises the max over them.
    rng = np.random.default_rng(100 + seed)
    eps = 2.0
    s_in = 1.0 + rng.laplace(scale=1 / eps, size=3000)
    s_out = 0.0 + rng.laplace(scale=1 / eps, size=3000)
    # Execute
    bound = metrics.empirical_epsilon(s_in, s_out, 0.95)
    # Assert
    assert 0.5 < bound.epsilon <= eps


def test_max_over_thresholds_of_the_same_trials_is_not_a_bound():
    # The optimistic figure (threshold chosen on the trials it is computed from)
    # exceeds the true epsilon in the Laplace tails for this seed; the halved bound
    # does not. This is why empirical_epsilon selects on one half.
    rng = np.random.default_rng(101)
    eps = 2.0
    s_in = 1.0 + rng.laplace(scale=1 / eps, size=3000)
    s_out = 0.0 + rng.laplace(scale=1 / eps, size=3000)
    assert metrics.epsilon_over_thresholds(s_in, s_out).epsilon > eps
    assert metrics.empirical_epsilon(s_in, s_out).epsilon <= eps


def test_gaussian_mechanism_bound_respects_its_exact_delta():
    # Gaussian mechanism, sensitivity 1, sigma 1: exact delta(eps) (Balle & Wang 2018)
    from scipy.stats import norm

    sigma, eps = 1.0, 1.0
    delta = norm.cdf(-eps * sigma + 1 / (2 * sigma)) - math.exp(eps) * norm.cdf(
        -eps * sigma - 1 / (2 * sigma)
    )
    rng = np.random.default_rng(7)
    s_in = 1.0 + sigma * rng.standard_normal(3000)
    s_out = sigma * rng.standard_normal(3000)
    bound = metrics.empirical_epsilon(s_in, s_out, 0.95, delta=delta)
    assert 0.3 < bound.epsilon <= eps


def test_tpr_at_fpr_and_auc_on_known_scores():
    s_in = np.array([0.9, 0.8, 0.7, 0.2])
    s_out = np.array([0.85, 0.3, 0.1, 0.05])
    assert metrics.auc(s_in, s_out) == pytest.approx(12 / 16)
    assert metrics.tpr_at_fpr(s_in, s_out, 0.0) == pytest.approx(0.25)
    assert metrics.tpr_at_fpr(s_in, s_out, 0.25) == pytest.approx(0.75)
    assert metrics.accuracy(s_in, s_out) == pytest.approx(6 / 8)


def test_auc_null_interval_covers_chance_attacks():
    # Prepare: many chance attacks of 30 + 30 trials
    rng = np.random.default_rng(0)
    lo, hi = metrics.auc_null_interval(30, 30, 0.95)
    aucs = [metrics.auc(rng.random(30), rng.random(30)) for _ in range(400)]
    # Assert: about 95 % of them inside
    inside = np.mean([(lo <= a <= hi) for a in aucs])
    assert 0.92 <= inside <= 0.98
