"""Metrics on generated samples, and which parameters a method changed.

Sample metrics: forget rate, p_forget, retained accuracy, Frechet distances.

* forget rate: fraction of samples generated with the forgotten label that the judge
  labels as that class (UA = 1 - forget rate; after DiMRA: relearning accuracy).
* p_forget: mean judge probability of the forgotten class on those samples.
* retain accuracy: judge accuracy on samples of the retained classes.
* judge-space Frechet distance: retained-class samples vs real held-out images, in the
  judge's penultimate features (an offline stand-in for FID).
* Inception FID: only if ``pytorch_fid`` and its Inception weights are present locally.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from scipy import linalg
from torch import nn

from trainkit import make_generator
from unlearning.config import EvalConfig
from unlearning.data import ImageData
from unlearning.judge import Judge
from unlearning.pipeline import ClassConditionalDDPMPipeline

logger = logging.getLogger(__name__)


def frechet_distance(feat_a: np.ndarray, feat_b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) (Heusel et al. 2017)."""
    mu_a, mu_b = feat_a.mean(0), feat_b.mean(0)
    s_a = np.cov(feat_a, rowvar=False)
    s_b = np.cov(feat_b, rowvar=False)
    covmean, _ = linalg.sqrtm(s_a @ s_b, disp=False)
    if not np.isfinite(covmean).all():
        eps = 1e-6 * np.eye(s_a.shape[0])
        covmean = linalg.sqrtm((s_a + eps) @ (s_b + eps))
    covmean = covmean.real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a + s_b - 2 * covmean))


@torch.no_grad()
def judge_outputs(judge: Judge, images: torch.Tensor, batch: int = 1024):
    """(probabilities (N, K), features (N, d)) as NumPy arrays."""
    judge.eval()
    dev = next(judge.parameters()).device
    probs, feats = [], []
    for lo in range(0, len(images), batch):
        f = judge.features(images[lo : lo + batch].to(dev))
        probs.append(torch.softmax(judge.head(f), dim=1).cpu())
        feats.append(f.cpu())
    return torch.cat(probs).numpy(), torch.cat(feats).numpy()


def _generate(
    pipe: ClassConditionalDDPMPipeline,
    labels: torch.Tensor,
    cfg: EvalConfig,
    stream: str,
) -> torch.Tensor:
    """Samples for ``labels`` with the sampler settings and seed of ``cfg``."""
    gen = make_generator(cfg.seed, stream, device=pipe.unet.device)
    return pipe(
        labels,
        generator=gen,
        num_inference_steps=cfg.num_inference_steps,
        guidance_scale=cfg.guidance_scale,
        eta=cfg.eta,
    ).images


def forget_metrics(
    pipe: ClassConditionalDDPMPipeline,
    judge: Judge,
    forget_class: int,
    n: int,
    cfg: EvalConfig,
    stream: str = "forget",
) -> dict[str, float]:
    """Forget rate and p_forget on ``n`` samples generated with the forgotten label."""
    images = _generate(pipe, torch.full((n,), forget_class), cfg, stream)
    probs, _ = judge_outputs(judge, images)
    return {
        "forget_rate": float((probs.argmax(1) == forget_class).mean()),
        "p_forget": float(probs[:, forget_class].mean()),
    }


def curve_probe(
    judge: Judge, forget_class: int, n: int, cfg: EvalConfig
) -> Callable[[ClassConditionalDDPMPipeline], dict[str, float]]:
    """DiMRA curve probe: :func:`forget_metrics` on ``n`` samples, stream "curve"."""

    def probe(pipe: ClassConditionalDDPMPipeline) -> dict[str, float]:
        return forget_metrics(pipe, judge, forget_class, n, cfg, "curve")

    return probe


def evaluate_pipeline(
    pipe: ClassConditionalDDPMPipeline,
    judge: Judge,
    forget_class: int,
    reference: ImageData,
    cfg: EvalConfig,
) -> dict[str, float | None | str]:
    """All sample-based metrics of one model.

    Args:
        pipe: the model to score.
        judge: the classifier trained on real data.
        forget_class: c_f.
        reference: real held-out images of the retained classes (Frechet reference).
        cfg: sample counts, sampler settings and seed.
    """
    out: dict[str, float | None | str] = dict(
        forget_metrics(pipe, judge, forget_class, cfg.forget_samples, cfg)
    )
    retained = [c for c in range(pipe.num_classes) if c != forget_class]
    labels = torch.tensor(retained).repeat_interleave(cfg.retain_samples_per_class)
    images = _generate(pipe, labels, cfg, "retain")
    probs, feats = judge_outputs(judge, images)
    out["retain_acc"] = float((probs.argmax(1) == labels.numpy()).mean())
    _, ref_feats = judge_outputs(judge, reference.images)
    out["judge_fd"] = frechet_distance(feats, ref_feats)
    fid, why = inception_fid(images, reference.images)
    out["inception_fid"] = fid
    if fid is None:
        out["inception_fid_skipped"] = why
    return out


#: the FID Inception weights ``pytorch_fid`` loads (the TF-ported pool3 network)
INCEPTION_WEIGHTS = "pt_inception-2015-12-05-6726825d.pth"


def inception_weights_path() -> Path:
    """Where ``pytorch_fid`` looks for :data:`INCEPTION_WEIGHTS` (torch hub's cache)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_WEIGHTS


def inception_unavailable() -> str:
    """Why :func:`inception_fid` cannot run here ("" when it can); never downloads."""
    try:
        import pytorch_fid.inception  # noqa: F401
    except ImportError:
        return "pytorch_fid not installed (pip install pytorch-fid)"
    path = inception_weights_path()
    if not path.is_file():
        return (
            f"Inception weights not found at {path}; not downloading (fetch "
            f"{INCEPTION_WEIGHTS} from the pytorch-fid releases on a networked machine "
            "and put it there, or set TORCH_HOME)"
        )
    return ""


@functools.cache
def _pytorch_fid_extractor(
    device: torch.device,
) -> Callable[[torch.Tensor], torch.Tensor]:
    from pytorch_fid.inception import InceptionV3

    # Loads the cached file only: inception_unavailable() checked that it exists. Built
    # once per device (every model's evaluation reuses it).
    net = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).to(device).eval()
    return lambda x: net(x)[0].flatten(1)


def inception_fid(
    images: torch.Tensor,
    reference: torch.Tensor,
    batch: int = 64,
    extractor=None,
) -> tuple[float | None, str]:
    """Inception-v3 FID (pool3, 2048 features) via ``pytorch_fid``.

    Images in [-1, 1], one or three channels; grey images are repeated to RGB and
    ``pytorch_fid`` resizes to 299 x 299. Runs on ``images``' device. Never downloads:
    returns ``(None, reason)`` when the package or the weights file is missing
    (:func:`inception_unavailable`). ``extractor`` (tests): a callable from a [0, 1]
    RGB batch to features, replacing the Inception network.

    With fewer images than 2,048 the covariance is singular and FID is biased upwards;
    compare FIDs only at equal sample counts.
    """
    if extractor is None:
        why = inception_unavailable()
        if why:
            return None, why
        extractor = _pytorch_fid_extractor(images.device)

    @torch.no_grad()
    def feats(x: torch.Tensor) -> np.ndarray:
        out = []
        for i in range(0, len(x), batch):
            b = (x[i : i + batch].to(images.device).clamp(-1, 1) + 1) / 2
            if b.shape[1] == 1:
                b = b.expand(-1, 3, -1, -1)
            out.append(extractor(b).double().cpu())
        return torch.cat(out).numpy()

    return frechet_distance(feats(images), feats(reference)), ""


@torch.no_grad()
def parameter_change_norms(
    before: nn.Module, after: nn.Module, forget_class: int | None = None
) -> dict[str, float]:
    """L2 norm of (after - before) per module, plus the forgotten class's embedding row.

    Modules are grouped by the first one or two name components
    (``class_embedding``, ``down_blocks.0``, ``time_mlp``, ...). The c_f row matters:
    DiMRA on D_r never sends gradient to it (dimum.md section 8.7).
    """
    sq: dict[str, float] = {}
    after_params = dict(after.named_parameters())
    for name, p0 in before.named_parameters():
        parts = name.split(".")
        key = ".".join(parts[:2]) if len(parts) > 2 and parts[1].isdigit() else parts[0]
        d = after_params[name].detach().cpu() - p0.detach().cpu()
        sq[key] = sq.get(key, 0.0) + float(d.pow(2).sum())
        # the class table only (a timestep-embedded UNet's class MLP has no c_f row)
        if forget_class is not None and name == "class_embedding.weight":
            sq["class_embedding[c_f]"] = float(d[forget_class].pow(2).sum())
    norms = {k: v**0.5 for k, v in sq.items()}
    norms["total"] = sum(v for k, v in sq.items() if k != "class_embedding[c_f]") ** 0.5
    return norms


# ------------------------------------------------- judge ensemble (issue 15, item 4)


def generate(
    pipe: ClassConditionalDDPMPipeline,
    labels: torch.Tensor,
    cfg: EvalConfig,
    stream: str,
    guidance_scale: float | None = None,
) -> torch.Tensor:
    """Samples for ``labels`` (sampler and seed of ``cfg``; optional other w)."""
    if guidance_scale is not None:
        cfg = dataclasses.replace(cfg, guidance_scale=guidance_scale)
    return _generate(pipe, labels, cfg, stream)


def ensemble_forget_probe(
    ensemble,
    forget_class: int,
    n: int,
    cfg: EvalConfig,
    guidances: tuple[float, ...] = (2.0, 0.0),
    threshold: float = 0.9,
    stream: str = "curve",
) -> Callable[[ClassConditionalDDPMPipeline], dict]:
    """DiMRA curve probe scored by a :class:`~unlearning.judge.JudgeEnsemble`.

    ``n`` samples of c_f per guidance weight w in ``guidances``. The required
    ``forget_rate`` / ``p_forget`` keys are those of the first w; every w adds
    ``w{w}_<metric>`` for each metric of
    :func:`~unlearning.metrics.ensemble_forget_metrics` and ``w{w}_hist`` (the
    :func:`~unlearning.metrics.class_histogram`).
    """
    from unlearning.metrics import class_histogram, ensemble_forget_metrics

    if not guidances:
        raise ValueError("guidances: got none, expected at least one weight")

    def probe(pipe: ClassConditionalDDPMPipeline) -> dict:
        out: dict = {}
        for i, w in enumerate(guidances):
            images = generate(pipe, torch.full((n,), forget_class), cfg, stream, w)
            probs = ensemble.probs(images)
            m = ensemble_forget_metrics(probs, forget_class, threshold)
            if i == 0:
                out["forget_rate"], out["p_forget"] = m["forget_rate"], m["p_forget"]
            tag = f"w{w:g}"
            out.update({f"{tag}_{k}": v for k, v in m.items()})
            out[f"{tag}_hist"] = class_histogram(probs, threshold)
        return out

    return probe


def retain_quality(
    pipe: ClassConditionalDDPMPipeline,
    ensemble,
    forget_class: int,
    reference: ImageData,
    cfg: EvalConfig,
    per_class: int = 50,
    threshold: float = 0.9,
    k: int = 3,
) -> dict[str, float]:
    """Retain-class quality measures that do not saturate at 1.0.

    ``per_class`` samples of every retained class (w of ``cfg``), scored against
    ``reference`` (real held-out images of those classes):

    * ``retain_acc``: ensemble argmax accuracy (saturates; kept for comparison);
    * ``retain_p_correct``: mean ensemble probability of the requested class;
    * ``retain_confident_acc``: fraction with ensemble p(requested) >= ``threshold``;
    * ``judge_fd``: pooled Frechet distance in the first judge's feature space (raw,
      as :func:`evaluate_pipeline`); ``kid_x1000``: 1000 x the kernel distance on those
      features standardised by the reference's per-dimension mean and sd;
    * ``precision`` / ``recall``: pooled k-NN precision and recall (standardised
      features, k = ``k``), and
      ``class_precision`` / ``class_recall``: their mean over retained classes, each
      class's samples against its own real images.
    """
    from unlearning.metrics import kernel_distance, precision_recall

    retained = [c for c in range(pipe.num_classes) if c != forget_class]
    labels = torch.tensor(retained).repeat_interleave(per_class)
    images = _generate(pipe, labels, cfg, "retain-quality")
    probs = ensemble.probs(images).mean(0)
    y = labels.numpy()
    p_req = probs[np.arange(len(y)), y]
    raw = ensemble.features(images)
    raw_ref = ensemble.features(reference.images)
    # KID and the k-NN manifolds on features standardised by the real reference's
    # per-dimension mean and sd (the judge's ReLU features are not unit-scaled; the
    # cubic kernel would be dominated by a few large dimensions).
    mu, sd = raw_ref.mean(0), raw_ref.std(0) + 1e-6
    feats, ref_feats = (raw - mu) / sd, (raw_ref - mu) / sd
    ref_y = reference.labels.numpy()
    out = {
        "retain_acc": float((probs.argmax(1) == y).mean()),
        "retain_p_correct": float(p_req.mean()),
        "retain_confident_acc": float((p_req >= threshold).mean()),
        "judge_fd": frechet_distance(raw, raw_ref),
        "kid_x1000": 1000.0 * kernel_distance(feats, ref_feats),
    }
    out.update(precision_recall(ref_feats, feats, k))
    cp, cr = [], []
    for c in retained:
        real_c = ref_feats[ref_y == c]
        if len(real_c) <= k:
            continue
        pr = precision_recall(real_c, feats[y == c], k)
        cp.append(pr["precision"])
        cr.append(pr["recall"])
    out["class_precision"] = float(np.mean(cp)) if cp else float("nan")
    out["class_recall"] = float(np.mean(cr)) if cr else float("nan")
    return out
