"""PNG figures: per-class sample grids and relearning curves (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path

import torch

from trainkit import make_generator
from unlearning.pipeline import ClassConditionalDDPMPipeline


def _pyplot():
    """matplotlib.pyplot on the Agg (file-only) backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save_figure(fig, path: str | Path, dpi: int) -> Path:
    """Write ``fig`` as a PNG (creating the folder), close it, return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    _pyplot().close(fig)
    return path


def save_class_grid(
    pipe: ClassConditionalDDPMPipeline,
    path: str | Path,
    *,
    per_class: int = 8,
    seed: int = 0,
    num_inference_steps: int = 50,
    guidance_scale: float = 2.0,
    title: str = "",
) -> Path:
    """One row per class, ``per_class`` samples each, written as a PNG."""
    plt = _pyplot()
    k = pipe.num_classes
    labels = torch.arange(k).repeat_interleave(per_class)
    gen = make_generator(seed, "grid", device=pipe.unet.device)
    images = pipe(
        labels,
        generator=gen,
        num_inference_steps=num_inference_steps,
        guidance_scale=guidance_scale,
    ).images
    images = ((images.cpu() + 1) / 2).clamp(0, 1)  # (N, C, H, W)
    fig, axes = plt.subplots(k, per_class, figsize=(per_class * 0.6, k * 0.6))
    for i, ax in enumerate(axes.flat):
        img = images[i].permute(1, 2, 0).numpy()
        ax.imshow(
            img.squeeze(-1) if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1
        )
        ax.set_xticks([])
        ax.set_yticks([])
        if i % per_class == 0:
            ax.set_ylabel(str(i // per_class), rotation=0, labelpad=8, fontsize=7)
    if title:
        fig.suptitle(title, fontsize=8)
    return _save_figure(fig, path, dpi=100)


def save_curves(
    curves: dict[str, tuple[list[int], list[float]]],
    path: str | Path,
    *,
    ylabel: str = "forget rate (relearning accuracy)",
    title: str = "",
) -> Path:
    """Plot ``{label: (steps, values)}`` on one axis and write a PNG."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for label, (steps, values) in curves.items():
        ax.plot(steps, values, marker="o", ms=3, label=label)
    ax.set_xlabel("attack step")
    ax.set_ylabel(ylabel)
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)
    if title:
        ax.set_title(title, fontsize=8)
    return _save_figure(fig, path, dpi=120)
