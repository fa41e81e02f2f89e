"""Quality metrics against closed forms: Frechet distance, IS analogue, TSTR."""

import math

import numpy as np
import pytest
import torch

from vflgan_app.eval.quality import (
    ConvAutoencoder,
    encode_features,
    frechet_distance,
    inception_score,
    predict_proba,
    train_autoencoder,
    train_classifier,
    tstr_score,
)


def sample_with_moments(mu: np.ndarray, cov: np.ndarray, n: int, seed: int) -> np.ndarray:
    """n rows whose sample mean is exactly ``mu`` and sample covariance exactly ``cov``."""
    z = np.random.default_rng(seed).normal(size=(n, len(mu)))
    z -= z.mean(axis=0)
    # whiten to identity sample covariance (ddof=1), then colour with cov's Cholesky
    z = z @ np.linalg.inv(np.linalg.cholesky(np.atleast_2d(np.cov(z, rowvar=False)))).T
    return mu + z @ np.linalg.cholesky(cov).T


def psd_sqrt(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(s)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def gaussian_fd(mu_a, s_a, mu_b, s_b) -> float:
    """Closed form via the symmetric root: Tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2)."""
    r = psd_sqrt(s_a)
    cross = psd_sqrt(r @ s_b @ r)
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a + s_b - 2 * cross))


# ------------------------------------------------------------------ Frechet distance


def test_frechet_distance_matches_gaussian_closed_form():
    # Prepare: two samples with known, non-commuting covariances.
    mu_a, mu_b = np.array([0.0, 1.0, -1.0]), np.array([0.5, 0.0, 2.0])
    s_a = np.array([[2.0, 0.6, 0.0], [0.6, 1.0, 0.3], [0.0, 0.3, 0.5]])
    s_b = np.array([[1.0, -0.4, 0.2], [-0.4, 3.0, 0.0], [0.2, 0.0, 0.8]])
    a = sample_with_moments(mu_a, s_a, 400, seed=0)
    b = sample_with_moments(mu_b, s_b, 300, seed=1)

    # Execute
    fd = frechet_distance(a, b)

    # Assert
    assert fd == pytest.approx(gaussian_fd(mu_a, s_a, mu_b, s_b), rel=1e-9)
    assert fd == pytest.approx(frechet_distance(b, a), rel=1e-9)


def test_frechet_distance_in_one_dimension_is_mean_and_std_gap():
    a = sample_with_moments(np.array([1.0]), np.array([[4.0]]), 100, seed=2)
    b = sample_with_moments(np.array([-2.0]), np.array([[0.25]]), 50, seed=3)

    # (mu_a - mu_b)^2 + (sigma_a - sigma_b)^2 = 9 + (2 - 0.5)^2
    assert frechet_distance(a, b) == pytest.approx(9.0 + 2.25, rel=1e-9)


def test_frechet_distance_of_a_sample_with_itself_is_zero():
    x = np.random.default_rng(4).normal(size=(200, 6))

    assert abs(frechet_distance(x, x)) < 1e-8
    assert frechet_distance(x, x + 1.0) == pytest.approx(6.0, rel=1e-6)


def test_frechet_distance_rejects_mismatched_features():
    with pytest.raises(ValueError, match=r"shapes \(4, 2\) and \(4, 3\)"):
        frechet_distance(np.zeros((4, 2)), np.zeros((4, 3)))


# ------------------------------------------------------------- Inception Score analogue


def test_inception_score_of_uniform_rows_is_one():
    assert inception_score(np.full((50, 10), 0.1)) == pytest.approx(1.0, abs=1e-9)


def test_inception_score_of_balanced_one_hot_rows_is_the_class_count():
    probs = np.eye(10)[np.arange(50) % 10]

    assert inception_score(probs) == pytest.approx(10.0, rel=1e-6)
    # one class only (mode collapse) scores 1
    assert inception_score(np.eye(10)[np.zeros(50, int)]) == pytest.approx(1.0, rel=1e-6)


def test_inception_score_of_mixed_rows_matches_hand_value():
    # half the rows are sure of class 0, half are uniform: p(y) = (3/4, 1/4),
    # KL = log(4/3) and 0.5 log(4/3), so IS = exp(0.75 log(4/3)).
    probs = np.array([[1.0, 0.0], [0.5, 0.5]] * 20)

    assert inception_score(probs) == pytest.approx((4 / 3) ** 0.75, rel=1e-9)


def test_classifier_probabilities_are_rows_that_sum_to_one():
    # Prepare: two separable classes of 8x8 "images"
    rng = np.random.default_rng(5)
    labels = np.arange(64) % 2
    images = np.clip(rng.normal(size=(64, 64)) * 0.1 + (2 * labels[:, None] - 1) * 0.5, -1, 1)

    # Execute
    model = train_classifier(images, labels, epochs=5, seed=0)
    probs = predict_proba(model, images)

    # Assert
    assert probs.shape == (64, 2)
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    assert (probs.argmax(axis=1) == labels).mean() > 0.9


# ------------------------------------------------------------------ FD features


@pytest.mark.parametrize("shape, latent", [((28, 28), 196), ((8, 8), 32)])
def test_autoencoder_latent_sizes(shape, latent):
    model = ConvAutoencoder(shape)
    x = torch.zeros(3, shape[0] * shape[1])

    assert model.encode(x).shape == (3, latent)
    assert model(x).shape == x.shape


def test_autoencoder_training_depends_on_its_seed_not_the_global_rng():
    images = np.random.default_rng(6).uniform(-1, 1, size=(32, 64))

    def features(seed, global_seed):
        torch.manual_seed(global_seed)  # a caller's global state must not matter
        return encode_features(train_autoencoder(images, (8, 8), 1, seed), images)

    assert np.array_equal(features(3, global_seed=1), features(3, global_seed=2))
    assert not np.allclose(features(3, global_seed=1), features(4, global_seed=1))


# ----------------------------------------------------------------------------- TSTR


@pytest.fixture(scope="module")
def tiny_table():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(120, 3))
    y = (x[:, 0] > 0).astype(int)
    return x, y


def test_tstr_of_real_copy_matches_trtr_and_has_only_the_two_keys(tiny_table):
    x, y = tiny_table

    scores = tstr_score(x, y, x.copy(), y.copy(), seed=0)

    assert set(scores) == {"tstr_accuracy", "trtr_accuracy"}
    assert all(0.0 <= v <= 1.0 for v in scores.values())
    assert scores["trtr_accuracy"] > 0.85
    assert scores["tstr_accuracy"] > 0.9


def test_tstr_of_flipped_labels_is_below_chance(tiny_table):
    x, y = tiny_table

    assert tstr_score(x, y, x, 1 - y, seed=0)["tstr_accuracy"] < 0.2


def test_tstr_of_one_class_synthetic_table_is_that_class_share(tiny_table):
    x, y = tiny_table

    scores = tstr_score(x, y, x[:5], np.ones(5, int), seed=0)

    assert scores["tstr_accuracy"] == pytest.approx(float(np.mean(y == 1)))
    assert not math.isnan(scores["trtr_accuracy"])
