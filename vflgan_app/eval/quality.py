"""Quality metrics of synthetic data: FD, Inception-Score analogue, TSTR (vflgan.md 6.2).

* Frechet distance: images in the latent space of a small autoencoder trained on the
  real training split (the paper's 196-d conv AE for 28x28); tables in the encoded data
  space (z-scored numerics + one-hot).
* An Inception-Score analogue: exp(E_x KL(p(y|x) || p(y))) with a small classifier
  trained on real images.
* TSTR: train a random forest on synthetic rows, test on real rows.

The cross-party correlation error lives with the other dependence metrics in
``vflgan_app.eval.dependence.correlation``.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from scipy import linalg
from torch import nn

from trainkit import make_generator

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------
# Frechet distance


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """FD = ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^{1/2}) between two samples.

    Args:
        a: ``(N, F)`` features of one sample.
        b: ``(M, F)`` features of the other.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(
            f"frechet_distance: shapes {a.shape} and {b.shape}; expected (N, F), (M, F)"
        )
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a = np.atleast_2d(np.cov(a, rowvar=False))
    s_b = np.atleast_2d(np.cov(b, rowvar=False))
    # no disp=False: it is deprecated, and SciPy 1.16 returns a bare array for 1x1
    covmean = linalg.sqrtm(s_a @ s_b)
    # a near-singular product gives a non-finite root: regularise (as pytorch-fid does)
    if not np.isfinite(covmean).all():
        eps = 1e-6 * np.eye(s_a.shape[0])
        covmean = linalg.sqrtm((s_a + eps) @ (s_b + eps))
    covmean = covmean.real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a + s_b - 2 * covmean))


# ---------------------------------------------------------------------------------
# image feature extractors (trained on real data only)


class ConvAutoencoder(nn.Module):
    """The paper's MNIST FD extractor shape: 28x28 -> 4x7x7 = 196-d latent -> 28x28.

    For other sizes an MLP autoencoder with a ``latent`` bottleneck is used.
    """

    def __init__(self, image_shape: tuple[int, int], latent: int = 196) -> None:
        super().__init__()
        self.image_shape = image_shape
        h, w = image_shape
        self.conv = (h, w) == (28, 28)
        if self.conv:
            self.enc = nn.Sequential(
                nn.Conv2d(1, 16, 3, stride=2, padding=1),
                nn.ReLU(),
                nn.Conv2d(16, 4, 3, stride=2, padding=1),
                nn.Tanh(),
            )
            self.dec = nn.Sequential(
                nn.ConvTranspose2d(4, 16, 4, stride=2, padding=1),
                nn.ReLU(),
                nn.ConvTranspose2d(16, 1, 4, stride=2, padding=1),
                nn.Tanh(),
            )
        else:
            d = h * w
            latent = min(latent, max(8, d // 2))
            self.enc = nn.Sequential(
                nn.Linear(d, 128), nn.ReLU(), nn.Linear(128, latent), nn.Tanh()
            )
            self.dec = nn.Sequential(
                nn.Linear(latent, 128), nn.ReLU(), nn.Linear(128, d), nn.Tanh()
            )

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, H*W)`` in [-1, 1] -> ``(B, latent)``."""
        if self.conv:
            return self.enc(x.view(-1, 1, *self.image_shape)).flatten(1)
        return self.enc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruct ``x``."""
        z = self.encode(x)
        if self.conv:
            return self.dec(z.view(-1, 4, 7, 7)).flatten(1)
        return self.dec(z)


def _train(
    model: nn.Module,
    loss_fn,
    x: torch.Tensor,
    y: torch.Tensor | None,
    epochs: int,
    seed: int,
    lr: float = 1e-3,
    batch: int = 128,
) -> nn.Module:
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = make_generator(seed, "metric-train")
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), batch):
            b = perm[i : i + batch]
            loss = loss_fn(model(x[b]), x[b] if y is None else y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


def train_autoencoder(
    images: np.ndarray, image_shape: tuple[int, int], epochs: int = 10, seed: int = 0
) -> ConvAutoencoder:
    """Train the FD feature extractor on real images ``(N, H*W)`` in [-1, 1]."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ConvAutoencoder(image_shape)
    x = torch.as_tensor(images, dtype=torch.float32)
    return _train(model, nn.functional.mse_loss, x, None, epochs, seed)


class SmallClassifier(nn.Module):
    """A small MLP classifier on flattened images (for the Inception-Score analogue)."""

    def __init__(self, d: int, n_classes: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(d, 256),
            nn.ReLU(),
            nn.Linear(256, 128),
            nn.ReLU(),
            nn.Linear(128, n_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, n_classes)``."""
        return self.net(x)


def train_classifier(
    images: np.ndarray, labels: np.ndarray, epochs: int = 15, seed: int = 0
) -> SmallClassifier:
    """Train the IS-analogue classifier on real images and their labels."""
    n_classes = int(labels.max()) + 1
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SmallClassifier(images.shape[1], n_classes)
    x = torch.as_tensor(images, dtype=torch.float32)
    y = torch.as_tensor(labels, dtype=torch.long)
    return _train(model, nn.functional.cross_entropy, x, y, epochs, seed)


@torch.no_grad()
def predict_proba(model: nn.Module, x: np.ndarray) -> np.ndarray:
    """Class probabilities of a trained classifier."""
    logits = torch.cat(
        [model(c) for c in torch.split(torch.as_tensor(x, dtype=torch.float32), 2048)]
    )
    return torch.softmax(logits, dim=1).numpy()


def inception_score(probs: np.ndarray, eps: float = 1e-12) -> float:
    """exp(E_x KL(p(y|x) || p(y))) from class probabilities ``(N, C)``."""
    p_y = probs.mean(0, keepdims=True)
    kl = (probs * (np.log(probs + eps) - np.log(p_y + eps))).sum(1)
    return float(np.exp(kl.mean()))


@torch.no_grad()
def encode_features(model: ConvAutoencoder, x: np.ndarray) -> np.ndarray:
    """Autoencoder latent features of images ``(N, H*W)``."""
    xt = torch.as_tensor(x, dtype=torch.float32)
    return torch.cat([model.encode(c) for c in torch.split(xt, 2048)]).numpy()


# ---------------------------------------------------------------------------------
# utility


def tstr_score(
    real_x: np.ndarray,
    real_y: np.ndarray,
    synth_x: np.ndarray,
    synth_y: np.ndarray,
    seed: int = 0,
    holdout: float = 0.3,
) -> dict[str, float]:
    """Train-on-synthetic/test-on-real accuracy with the paper's random forest.

    Random forest: 100 trees, depth 3, max_features 1.0 (``red_wine/data/evaluate_dlpt.py``).
    Also reports train-real/test-real on a held-out split for reference.

    Returns:
        ``{"tstr_accuracy", "trtr_accuracy"}``.
    """
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import train_test_split

    def rf():
        return RandomForestClassifier(
            n_estimators=100, max_depth=3, max_features=1.0, random_state=seed, n_jobs=1
        )

    xtr, xte, ytr, yte = train_test_split(
        real_x, real_y, test_size=holdout, random_state=seed
    )
    trtr = rf().fit(xtr, ytr).score(xte, yte)
    if len(np.unique(synth_y)) < 2:
        tstr = float(np.mean(real_y == synth_y[0]))  # a one-class synthetic table
    else:
        tstr = rf().fit(synth_x, synth_y).score(real_x, real_y)
    return {"tstr_accuracy": float(tstr), "trtr_accuracy": float(trtr)}
