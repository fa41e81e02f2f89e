"""Planted tables shared by the dependence-metric tests."""

import numpy as np
import pytest

from vflgan_app.eval.dependence import party_shuffle, targets_from_spans

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


@pytest.fixture(scope="module")
def linear_report_inputs():
    train, labels_train = make_table("linear", N, seed=1)
    holdout, labels_holdout = make_table("linear", N, seed=2)
    fresh, _ = make_table("linear", N, seed=5)  # another real sample: a good model
    targets = targets_from_spans(SLICES, [slice(0, 1), slice(2, 3)], ["a0", "b0"])
    return train, labels_train, holdout, labels_holdout, fresh, targets


@pytest.fixture(scope="module")
def small():
    x, labels = make_table("linear", 40, seed=0)
    return x, labels
