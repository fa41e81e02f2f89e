"""VFLGAN modules exactly as the paper's code: generator, bottom critic, heads.

Per party k: a generator ``G_k`` fed the shared latent z, a bottom critic ``D_Ck`` that
maps the party's columns to an intermediate feature (IF) vector, and a private critic
head ``D_pk`` (one linear layer). The server holds the top critic ``D_S`` scoring the
concatenated IFs. Layer sizes per dataset follow the official scripts
(research/vflgan.md section 2.2), including ``BatchNorm1d(n, 0.8)`` where 0.8 is *eps*
(a quirk of the PyTorch-GAN template the paper's code inherits).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from trainkit import derive_seed
from vflgan_app.architectures import Architecture
from vflgan_app.data.schema import OutputSpan

# ---------------------------------------------------------------------------------
# modules


class OutputHead(nn.Module):
    """Per-span output activations: identity, tanh, or hard Gumbel-softmax.

    The Gumbel noise comes from an explicit ``torch.Generator`` so that the federated run
    and the single-process reference draw the same noise.
    """

    def __init__(self, spans: Sequence[OutputSpan], tau: float) -> None:
        super().__init__()
        self.spans = list(spans)
        self.tau = tau
        self.all_tanh = all(s.kind == "tanh" for s in self.spans)
        self.all_linear = all(s.kind == "linear" for s in self.spans)

    def forward(
        self, logits: torch.Tensor, generator: torch.Generator | None
    ) -> torch.Tensor:
        """Apply the activations to ``logits`` ``(B, width)``."""
        if self.all_tanh:
            return torch.tanh(logits)
        if self.all_linear:
            return logits
        parts = []
        for s in self.spans:
            x = logits[:, s.start : s.end]
            if s.kind == "tanh":
                parts.append(torch.tanh(x))
            elif s.kind == "linear":
                parts.append(x)
            else:
                parts.append(hard_gumbel_softmax(x, self.tau, generator))
        return torch.cat(parts, dim=1)


def hard_gumbel_softmax(
    logits: torch.Tensor, tau: float, generator: torch.Generator | None
) -> torch.Tensor:
    """Straight-through hard Gumbel-softmax (as ``F.gumbel_softmax(hard=True)``).

    Forward value is one-hot at argmax((logits + g) / tau); the gradient is that of the
    soft sample. ``g`` is Gumbel(0, 1) noise drawn from ``generator``.
    """
    u = torch.rand(logits.shape, generator=generator, device="cpu", dtype=logits.dtype)
    u = u.to(logits.device)
    e = -torch.log(u.clamp_min(1e-20))  # Exp(1)
    g = -torch.log(e.clamp_min(1e-20))  # Gumbel(0, 1)
    soft = F.softmax((logits + g) / tau, dim=-1)
    index = soft.argmax(dim=-1, keepdim=True)
    hard = torch.zeros_like(soft).scatter_(-1, index, 1.0)
    return hard - soft.detach() + soft


def generator_blocks(arch: Architecture, start: int = 0,
                     stop: int | None = None) -> list[nn.Module]:
    """The generator's hidden blocks ``start .. stop - 1`` (default: all of them).

    Linear, then BatchNorm1d(n, eps 0.8) after the first block (the PyTorch-GAN
    template's quirk), then LeakyReLU(0.2). Block ``i`` reads ``latent_dim`` features
    when ``i == 0``, else ``gen_hidden[i - 1]``, so the blocks of a shared trunk
    (``0 .. d - 1``) and a party's head (``d ..``) compose to the whole generator.
    """
    stop = len(arch.gen_hidden) if stop is None else stop
    layers: list[nn.Module] = []
    width = block_input_width(arch, start)
    for i in range(start, stop):
        h = arch.gen_hidden[i]
        layers.append(nn.Linear(width, h, bias=arch.bias))
        if i > 0:
            layers.append(nn.BatchNorm1d(h, arch.bn_eps))
        layers.append(nn.LeakyReLU(0.2, inplace=True))
        width = h
    return layers


def block_input_width(arch: Architecture, block: int) -> int:
    """Features generator block ``block`` reads (the trunk's output width for a head)."""
    return arch.latent_dim if block == 0 else arch.gen_hidden[block - 1]


class Generator(nn.Module):
    """G_k: z -> Linear/LeakyReLU blocks (BN eps 0.8 after the first) -> output head.

    With a shared trunk of ``trunk`` blocks (held by the server,
    :class:`GeneratorTrunk`), G_k is the rest: it reads the trunk's output instead of z.
    """

    def __init__(
        self, arch: Architecture, spans: Sequence[OutputSpan], out_dim: int,
        trunk: int = 0,
    ) -> None:
        super().__init__()
        self.body = nn.Sequential(
            *generator_blocks(arch, start=trunk),
            nn.Linear(arch.gen_hidden[-1], out_dim, bias=arch.bias),
        )
        self.head = OutputHead(spans, arch.tau)

    def forward(
        self, z: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Map z ``(B, d)`` (or the trunk's output) to this party's encoded columns."""
        return self.head(self.body(z), generator)


class GeneratorTrunk(nn.Module):
    """The generator's first ``depth`` blocks, shared by every party (held by the server).

    Beyond the paper (config ``generator_trunk``): as VertiGAN's backbone, one trunk
    maps z to features every party's own generator head reads, so the parties' columns
    start from one representation instead of K separate networks.
    """

    def __init__(self, arch: Architecture, depth: int) -> None:
        super().__init__()
        if not 1 <= depth <= len(arch.gen_hidden):
            raise ValueError(f"generator_trunk: got {depth}, expected 1..{len(arch.gen_hidden)} "
                             f"(the generator has {len(arch.gen_hidden)} blocks)")
        self.depth = depth
        self.width = arch.gen_hidden[depth - 1]
        self.net = nn.Sequential(*generator_blocks(arch, stop=depth))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """``(B, latent_dim)`` -> ``(B, width)``."""
        return self.net(z)


def mlp(widths: Sequence[int], bias: bool, last_activation: bool) -> nn.Sequential:
    """Linear layers with LeakyReLU(0.2) between them (and after the last if asked)."""
    layers: list[nn.Module] = []
    for i in range(len(widths) - 1):
        layers.append(nn.Linear(widths[i], widths[i + 1], bias=bias))
        if i < len(widths) - 2 or last_activation:
            layers.append(nn.LeakyReLU(0.2, inplace=True))
    return nn.Sequential(*layers)


class BottomCritic(nn.Module):
    """D_Ck: a party's columns -> intermediate features (LeakyReLU after every layer)."""

    def __init__(self, arch: Architecture, in_dim: int) -> None:
        super().__init__()
        self.net = mlp([in_dim, *arch.critic_hidden], arch.bias, last_activation=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_dim)`` -> ``(B, if_dim)``."""
        return self.net(x)


class PrivateCritic(nn.Module):
    """D_pk: one linear layer scoring a party's IF on its own."""

    def __init__(self, arch: Architecture) -> None:
        super().__init__()
        self.net = nn.Linear(arch.if_dim, 1, bias=arch.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """``(B, if_dim)`` -> ``(B, 1)``."""
        return self.net(h)


class TopCritic(nn.Module):
    """D_S (server): concatenated IFs -> one Wasserstein critic score."""

    def __init__(self, arch: Architecture, in_dim: int) -> None:
        super().__init__()
        self.net = mlp(
            [in_dim, *arch.server_hidden, 1], arch.bias, last_activation=False
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """``(B, sum of IF widths)`` -> ``(B, 1)``."""
        return self.net(h)


def seeded_init(seed: int, *keys: object):
    """Context in which module initialisation draws from ``derive_seed(seed, *keys)``.

    Every party (and the reference implementation) builds its modules inside this, so
    weights are identical wherever they are built and do not depend on build order.
    """
    return _SeededInit(derive_seed(seed, *keys))


class _SeededInit:
    def __init__(self, seed: int) -> None:
        self.seed = seed

    def __enter__(self) -> None:
        self._fork = torch.random.fork_rng(devices=[])
        self._fork.__enter__()
        torch.manual_seed(self.seed)

    def __exit__(self, *exc) -> None:
        self._fork.__exit__(*exc)


def build_party_modules(
    arch: Architecture,
    spans: Sequence[OutputSpan],
    width: int,
    seed: int,
    party_id: int,
    trunk: int = 0,
) -> tuple[Generator, BottomCritic, PrivateCritic]:
    """Build (G_k, D_Ck, D_pk) for party ``party_id`` with seeded initialisation.

    ``trunk`` > 0: G_k is the head after a shared trunk of that many blocks.
    """
    with seeded_init(seed, "init", "party", party_id):
        return (
            Generator(arch, spans, width, trunk),
            BottomCritic(arch, width),
            PrivateCritic(arch),
        )


def build_top_critic(
    arch: Architecture, if_dims: Sequence[int], seed: int
) -> TopCritic:
    """Build D_S for the given IF widths with seeded initialisation."""
    with seeded_init(seed, "init", "server"):
        return TopCritic(arch, int(sum(if_dims)))


def build_trunk(arch: Architecture, depth: int, seed: int) -> GeneratorTrunk:
    """Build the shared generator trunk with seeded initialisation."""
    with seeded_init(seed, "init", "trunk"):
        return GeneratorTrunk(arch, depth)
