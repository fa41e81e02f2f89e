"""Architecture presets: layer sizes and training constants per dataset (plain values).

The official scripts' sizes (research/vflgan.md 2.2 and 3); ``digits`` and
``breast_cancer`` are the CPU-scale defaults, shaped like the MNIST and Adult models.
Sits below :mod:`vflgan_app.config` and imports nothing of the package, so reading a
config does not import torch.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Architecture:
    """Sizes and training constants of one dataset's VFLGAN (per party unless noted).

    Attributes:
        latent_dim: d, the size of the shared latent z.
        gen_hidden: generator hidden widths; the first block has no BatchNorm.
        critic_hidden: bottom critic widths; the last is the IF width.
        server_hidden: top critic hidden widths (input = sum of IF widths).
        bias: linear layers have biases (the DP models and red wine have none).
        bn_eps: BatchNorm eps in the generator (0.8, the paper's quirk).
        tau: Gumbel-softmax temperature for categorical outputs.
        lambda_gp: gradient-penalty weight.
        lr: Adam learning rate for every module.
        batch_size: B.
    """

    latent_dim: int
    gen_hidden: tuple[int, ...]
    critic_hidden: tuple[int, ...]
    server_hidden: tuple[int, ...]
    bias: bool = True
    bn_eps: float = 0.8
    tau: float = 1.0
    lambda_gp: float = 10.0
    lr: float = 2e-4
    batch_size: int = 64

    @property
    def if_dim(self) -> int:
        """Width of one party's intermediate features."""
        return self.critic_hidden[-1]


ARCHITECTURES: dict[str, Architecture] = {
    "mnist": Architecture(
        100,
        (128, 256, 512, 1024),
        (512, 256),
        (256,),
        lambda_gp=40.0,
        lr=2e-4,
        batch_size=64,
    ),
    "adult": Architecture(
        20,
        (32, 64, 128),
        (256, 128),
        (128,),
        tau=1.0,
        lambda_gp=30.0,
        lr=5e-4,
        batch_size=64,
    ),
    "wine_red": Architecture(
        10,
        (16, 32, 64),
        (16, 32),
        (32,),
        bias=False,
        tau=0.2,
        lambda_gp=10.0,
        lr=5e-4,
        batch_size=16,
    ),
    "wine_white": Architecture(
        10,
        (16, 32, 64),
        (16, 32),
        (32,),
        tau=0.2,
        lambda_gp=10.0,
        lr=4e-4,
        batch_size=64,
    ),
    "digits": Architecture(
        32, (64, 128, 256), (128, 64), (64,), lambda_gp=10.0, lr=5e-4, batch_size=64
    ),
    "breast_cancer": Architecture(
        16,
        (32, 64, 128),
        (64, 32),
        (32,),
        tau=1.0,
        lambda_gp=10.0,
        lr=5e-4,
        batch_size=64,
    ),
}


def get_architecture(name: str, **overrides) -> Architecture:
    """Return the architecture preset ``name`` with ``overrides`` applied.

    Raises:
        ValueError: unknown preset name or override field.
    """
    if name not in ARCHITECTURES:
        raise ValueError(
            f"architecture: got {name!r}, expected one of {list(ARCHITECTURES)}"
        )
    fields = Architecture.__dataclass_fields__
    bad = [k for k in overrides if k not in fields]
    if bad:
        raise ValueError(
            f"architecture override: unknown field(s) {bad}; expected {list(fields)}"
        )
    return replace(
        ARCHITECTURES[name], **{k: v for k, v in overrides.items() if v is not None}
    )
