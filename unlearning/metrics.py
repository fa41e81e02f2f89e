"""Metrics that discriminate (issue 15, item 4).

* **Judge ensemble, confidence-thresholded forget rate.** One judge's argmax forget rate
  depends on the judge by up to 3-4x on recovered samples (p_forget ~0.55 there:
  ambiguous images). :func:`ensemble_forget_metrics` averages the class probabilities
  of several judges (trained with different seeds) and reports the argmax rate, the
  *confident* rate (ensemble p(c_f) >= tau), the *unanimous* rate (every judge says
  c_f), the spread of the single judges' rates and the fraction of ambiguous samples.
* **What c_f samples become**: :func:`class_histogram`, the ensemble's argmax class
  per sample (with an ``uncertain`` bucket for max probability < tau).
* **Retain quality that does not saturate**: :func:`precision_recall` (Kynkaenniemi et
  al. 2019, k-NN manifolds in judge feature space), :func:`kernel_distance` (KID:
  unbiased MMD^2 with the cubic polynomial kernel, fine at small sample sizes) and the
  mean ensemble probability of the requested class.
* **Copying check**: :func:`copy_check`, nearest-neighbour distances (pixel L2) of a
  model's outputs to the images it was taught to produce (DiMUM's D_alt) against the
  distances to real held-out images of the same class, which it never saw.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def _check_probs(probs: np.ndarray, name: str = "probs") -> np.ndarray:
    p = np.asarray(probs, dtype=float)
    if p.ndim != 3:
        raise ValueError(
            f"{name}: got shape {p.shape}, expected (judges, samples, classes)"
        )
    if p.shape[0] < 1 or p.shape[1] < 1:
        raise ValueError(f"{name}: got shape {p.shape}, expected >= 1 judge and sample")
    return p


def _check_tau(tau: float) -> None:
    if not 0.0 < tau <= 1.0:
        raise ValueError(f"threshold: got {tau!r}, expected in (0, 1]")


def ensemble_forget_metrics(
    probs: np.ndarray, forget_class: int, threshold: float = 0.9
) -> dict[str, float]:
    """Forget-rate variants from per-judge class probabilities.

    Args:
        probs: (J, N, K) softmax outputs of J judges on N samples of the forget label.
        forget_class: c_f.
        threshold: tau for the confident rate and the ambiguous fraction.

    Returns:
        ``forget_rate`` (ensemble-mean argmax == c_f), ``confident_forget_rate``
        (ensemble-mean p(c_f) >= tau), ``unanimous_forget_rate`` (all J argmaxes ==
        c_f), ``p_forget`` (ensemble-mean p(c_f) averaged over samples),
        ``judge_rate_min`` / ``judge_rate_max`` (single judges' argmax rates) and
        ``ambiguous`` (ensemble max probability < tau).
    """
    p = _check_probs(probs)
    _check_tau(threshold)
    if not 0 <= forget_class < p.shape[2]:
        raise ValueError(
            f"forget_class: got {forget_class}, expected 0..{p.shape[2] - 1}"
        )
    mean = p.mean(0)
    per_judge = (p.argmax(2) == forget_class).mean(1)
    return {
        "forget_rate": float((mean.argmax(1) == forget_class).mean()),
        "confident_forget_rate": float((mean[:, forget_class] >= threshold).mean()),
        "unanimous_forget_rate": float((p.argmax(2) == forget_class).all(0).mean()),
        "p_forget": float(mean[:, forget_class].mean()),
        "judge_rate_min": float(per_judge.min()),
        "judge_rate_max": float(per_judge.max()),
        "ambiguous": float((mean.max(1) < threshold).mean()),
    }


def class_histogram(probs: np.ndarray, threshold: float = 0.9) -> dict[str, float]:
    """Fraction of samples per ensemble argmax class, plus ``uncertain``.

    A sample whose ensemble max probability is below ``threshold`` counts as
    ``uncertain`` instead of its argmax class; the fractions sum to 1. Keys are the
    class indices as strings (JSON-ready) and ``"uncertain"``.
    """
    p = _check_probs(probs)
    _check_tau(threshold)
    mean = p.mean(0)
    n, k = mean.shape
    top = mean.argmax(1)
    sure = mean.max(1) >= threshold
    out = {str(c): float(((top == c) & sure).sum() / n) for c in range(k)}
    out["uncertain"] = float((~sure).sum() / n)
    return out


def _pairwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances (|a|, |b|) of flattened rows."""
    a = np.asarray(a, dtype=np.float64).reshape(len(a), -1)
    b = np.asarray(b, dtype=np.float64).reshape(len(b), -1)
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.maximum(d2, 0.0))


def precision_recall(
    real: np.ndarray, fake: np.ndarray, k: int = 3
) -> dict[str, float]:
    """Improved precision and recall (Kynkaenniemi et al. 2019) in a feature space.

    Each real point gets a ball of radius its k-th nearest real neighbour (itself
    excluded); precision is the fraction of fake points inside some real ball, recall
    the fraction of real points inside some fake ball (radii from the fakes).
    """
    real = np.asarray(real, dtype=np.float64).reshape(len(real), -1)
    fake = np.asarray(fake, dtype=np.float64).reshape(len(fake), -1)
    if k < 1 or len(real) <= k or len(fake) <= k:
        raise ValueError(
            f"k: got k={k} with {len(real)} real and {len(fake)} fake points, "
            "expected 1 <= k < both counts"
        )
    rr, ff, rf = _pairwise(real, real), _pairwise(fake, fake), _pairwise(real, fake)
    r_real = np.sort(rr, 1)[:, k]  # column 0 is the point itself
    r_fake = np.sort(ff, 1)[:, k]
    precision = float((rf <= r_real[:, None]).any(0).mean())
    recall = float((rf <= r_fake[None, :]).any(1).mean())
    return {"precision": precision, "recall": recall}


def kernel_distance(feat_a: np.ndarray, feat_b: np.ndarray) -> float:
    """KID: unbiased MMD^2 with k(x, y) = (x.y / d + 1)^3 (Binkowski et al. 2018)."""
    a = np.asarray(feat_a, dtype=np.float64)
    b = np.asarray(feat_b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(
            f"features: got shapes {a.shape} and {b.shape}, expected (n, d)"
        )
    m, n, d = len(a), len(b), a.shape[1]
    if m < 2 or n < 2:
        raise ValueError(f"features: got {m} and {n} rows, expected >= 2 each")
    kaa = (a @ a.T / d + 1) ** 3
    kbb = (b @ b.T / d + 1) ** 3
    kab = (a @ b.T / d + 1) ** 3
    return float(
        (kaa.sum() - np.trace(kaa)) / (m * (m - 1))
        + (kbb.sum() - np.trace(kbb)) / (n * (n - 1))
        - 2 * kab.mean()
    )


def copy_check(
    samples: torch.Tensor | np.ndarray,
    memorised: torch.Tensor | np.ndarray,
    heldout: torch.Tensor | np.ndarray,
    *,
    copy_ratio: float = 0.5,
    flag_fraction: float = 0.5,
) -> dict[str, float | bool]:
    """Does a generator reproduce the images it was taught (e.g. DiMUM's D_alt)?

    For each generated sample: ``d_mem`` = pixel-L2 distance to its nearest image of
    ``memorised`` (all of it: a copy of any memorised image must be found);
    ``d_held`` = distance to its nearest image of ``heldout``, real images of the same
    class that the model never saw. A copier gets ``d_mem << d_held``. A generator of
    the class distribution that copies nothing gets ``d_mem`` a little below
    ``d_held`` when ``memorised`` is the larger set (more images, nearer neighbours),
    so the check errs towards calling copying; compare with the same numbers for a
    control model (the grid uses the pre-trained model's samples of that class).

    Returns:
        ``median_d_mem``, ``median_d_held``, ``ratio`` = median(d_mem / d_held),
        ``copy_fraction``: samples with d_mem < ``copy_ratio`` * d_held, and ``copying``
        (bool): copy_fraction > ``flag_fraction``.
    """
    arrays = []
    for name, x in (
        ("samples", samples),
        ("memorised", memorised),
        ("heldout", heldout),
    ):
        a = np.asarray(x, dtype=np.float64)
        if len(a) == 0:
            raise ValueError(f"{name}: got no images, expected at least one")
        arrays.append(a.reshape(len(a), -1))
    s, mem, held = arrays
    if not (s.shape[1] == mem.shape[1] == held.shape[1]):
        raise ValueError(
            f"images: got {s.shape[1]}, {mem.shape[1]} and {held.shape[1]} pixels "
            "(samples, memorised, heldout), expected the same"
        )
    d_mem = _pairwise(s, mem).min(1)
    d_held = _pairwise(s, held).min(1)
    ratio = d_mem / np.maximum(d_held, 1e-12)
    frac = float((ratio < copy_ratio).mean())
    return {
        "median_d_mem": float(np.median(d_mem)),
        "median_d_held": float(np.median(d_held)),
        "ratio": float(np.median(ratio)),
        "copy_fraction": frac,
        "copying": bool(frac > flag_fraction),
    }


def stack_probs(prob_list: Sequence[np.ndarray]) -> np.ndarray:
    """List of (N, K) arrays, one per judge -> (J, N, K)."""
    return np.stack([np.asarray(p, dtype=float) for p in prob_list])
