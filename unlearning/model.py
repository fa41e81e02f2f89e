"""Noise predictors and noise schedule: diffusers ``UNet2DModel`` + ``DDPMScheduler``.

The UNet is the published, diffusers-format model. ``ClassConditionalMLP``
(:mod:`unlearning.mlp`) is a fast CPU variant for 8x8 digits (the dimum.md pilot's MLP)
with the same call signature and the same save/load path (it is a diffusers
``ModelMixin``). Both reserve class index ``num_classes`` as the classifier-free-guidance
null label.
"""

from __future__ import annotations

from diffusers import DDPMScheduler, UNet2DModel
from torch import nn

from unlearning.mlp import ClassConditionalMLP, timestep_embedding  # noqa: F401
from unlearning.pipeline import class_count, image_shape_of  # noqa: F401 - re-exported

# Per-dataset UNet presets. digits/mnist are sized to train on CPU; cifar10 follows the
# baselines' DDPM (ch 128, ch_mult 1,2,2,2, 2 res blocks, attention at 16x16, dropout
# 0.1; dimum.md section 5), about 36M parameters here against their 38.6M.
UNET_PRESETS: dict[str, dict] = {
    "digits": dict(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
    ),
    "mnist": dict(
        sample_size=16,
        in_channels=1,
        out_channels=1,
        block_out_channels=(32, 64, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
    ),
    "cifar10": dict(
        sample_size=32,
        in_channels=3,
        out_channels=3,
        block_out_channels=(128, 256, 256, 256),
        layers_per_block=2,
        down_block_types=(
            "DownBlock2D",
            "AttnDownBlock2D",
            "DownBlock2D",
            "DownBlock2D",
        ),
        up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
        dropout=0.1,
        norm_num_groups=32,
    ),
}


def build_unet(dataset: str, num_classes: int = 10, **overrides) -> UNet2DModel:
    """Return a class-conditional ``UNet2DModel`` with ``num_classes + 1`` embeddings.

    The extra embedding (index ``num_classes``) is the null label for CFG.
    """
    if dataset not in UNET_PRESETS:
        raise ValueError(
            f"dataset: got {dataset!r}, expected one of {list(UNET_PRESETS)}"
        )
    kwargs = {**UNET_PRESETS[dataset], **overrides}
    return UNet2DModel(num_class_embeds=num_classes + 1, **kwargs)


def build_scheduler() -> DDPMScheduler:
    """The baselines' schedule: T=1000, linear betas 1e-4..0.02, epsilon prediction."""
    return DDPMScheduler(
        num_train_timesteps=1000,
        beta_start=1e-4,
        beta_end=0.02,
        beta_schedule="linear",
        prediction_type="epsilon",
        clip_sample=True,
    )


def build_model(arch: str, dataset: str, num_classes: int = 10) -> nn.Module:
    """Return the noise predictor for ``arch`` ('unet' or 'mlp') and ``dataset``."""
    if arch == "unet":
        return build_unet(dataset, num_classes)
    if arch == "mlp":
        p = UNET_PRESETS[dataset]
        return ClassConditionalMLP(
            sample_size=p["sample_size"],
            in_channels=p["in_channels"],
            out_channels=p["out_channels"],
            num_class_embeds=num_classes + 1,
        )
    raise ValueError(f"arch: got {arch!r}, expected 'unet' or 'mlp'")


def num_classes_of(model: nn.Module) -> int:
    """Number of real classes K (label K is the null label); see ``class_count``."""
    return class_count(model)
