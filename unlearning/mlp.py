"""``ClassConditionalMLP``: the fast CPU noise predictor for tiny images (the pilot's MLP).

Self-contained on purpose (torch and diffusers only, no ``unlearning`` import):
``ClassConditionalDDPMPipeline.save_pretrained`` copies this file into the saved
folder as ``unet/mlp.py``, so plain diffusers can rebuild the model from the folder
alone (``DiffusionPipeline.from_pretrained(dir, trust_remote_code=True)``).
"""

from __future__ import annotations

import math

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.unets.unet_2d import UNet2DOutput
from torch import nn


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
