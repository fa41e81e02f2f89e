"""Noise predictors and noise schedule: diffusers ``UNet2DModel`` + ``DDPMScheduler``.

The UNet is the published, diffusers-format model. ``ClassConditionalMLP`` is a fast CPU
variant for 8x8 digits (the dimum.md pilot's MLP) with the same call signature and the
same save/load path (it is a diffusers ``ModelMixin``). Both reserve class index
``num_classes`` as the classifier-free-guidance null label.
"""

from __future__ import annotations

import math

import torch
from diffusers import DDPMScheduler, UNet2DModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.unets.unet_2d import UNet2DOutput
from torch import nn

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


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of integer timesteps t (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(
        -math.log(10000.0)
        * torch.arange(half, device=t.device, dtype=torch.float32)
        / half
    )
    args = t.float()[:, None] * freqs[None]  # (B, half)
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)


class ClassConditionalMLP(ModelMixin, ConfigMixin):
    """MLP noise predictor eps(x_t, t, c) for tiny images (the pilot's fast variant).

    Input: flattened x (C*H*W), a sinusoidal time embedding through a 2-layer MLP, and a
    class embedding with ``num_class_embeds`` rows, all concatenated; then ``depth``
    Linear+SiLU layers and a linear read-out. Called like ``UNet2DModel``.
    """

    @register_to_config
    def __init__(
        self,
        sample_size: int = 8,
        in_channels: int = 1,
        out_channels: int = 1,
        num_class_embeds: int = 11,
        hidden_dim: int = 512,
        embed_dim: int = 128,
        depth: int = 3,
    ) -> None:
        super().__init__()
        d_in = in_channels * sample_size * sample_size
        self.time_mlp = nn.Sequential(
            nn.Linear(embed_dim, embed_dim), nn.SiLU(), nn.Linear(embed_dim, embed_dim)
        )
        self.class_embedding = nn.Embedding(num_class_embeds, embed_dim)
        layers: list[nn.Module] = []
        width = d_in + 2 * embed_dim
        for _ in range(depth):
            layers += [nn.Linear(width, hidden_dim), nn.SiLU()]
            width = hidden_dim
        self.body = nn.Sequential(*layers)
        self.out = nn.Linear(hidden_dim, out_channels * sample_size * sample_size)

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | int,
        class_labels: torch.Tensor | None = None,
        return_dict: bool = True,
    ) -> UNet2DOutput | tuple[torch.Tensor]:
        """Predict the noise in ``sample`` (B, C, H, W)."""
        if class_labels is None:
            raise ValueError(
                "class_labels should be provided for a class-conditional model"
            )
        b = sample.shape[0]
        t = torch.as_tensor(timestep, device=sample.device)
        if t.ndim == 0:
            t = t.expand(b)
        emb_t = self.time_mlp(timestep_embedding(t, self.config.embed_dim))  # (B, E)
        emb_c = self.class_embedding(class_labels)  # (B, E)
        h = self.body(torch.cat([sample.reshape(b, -1), emb_t, emb_c], dim=1))
        eps = self.out(h).reshape(
            b,
            self.config.out_channels,
            self.config.sample_size,
            self.config.sample_size,
        )
        return UNet2DOutput(sample=eps) if return_dict else (eps,)


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
    """Number of real classes (the last embedding row is the null label)."""
    return int(model.config.num_class_embeds) - 1


def image_shape_of(model: nn.Module) -> tuple[int, int, int]:
    """(C, H, W) the model expects."""
    c = model.config
    size = c.sample_size if isinstance(c.sample_size, int) else c.sample_size[0]
    return (int(c.in_channels), int(size), int(size))
