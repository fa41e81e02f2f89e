"""Baselines on the same data and metrics: centralized WGAN-GP and VertiGAN.

* :class:`CentralizedWGANGP`: one generator and one critic on the joined table, the
  non-federated upper bound (the paper's ``WGAN_GP.py``).
* :class:`VertiGAN`: our re-implementation of the design the paper compares against
  (Jiang et al., PoPETs 2023; research/vflgan.md 2.3): a shared generator backbone on the
  server, one output head per party, and purely local critics. No critic ever scores a
  joint record, so nothing penalises wrong cross-party combinations.

Both use the dataset's VFLGAN architecture sizes, Adam(0.5, 0.999), WGAN-GP and the same
(seed, step) batches and latents, so comparisons differ only in the model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from trainkit import make_generator, progress_bar
from vflgan_app.architectures import Architecture
from vflgan_app.core.losses import gradient_norm_penalty, input_gradient, interpolate
from vflgan_app.core.model import (
    BottomCritic,
    OutputHead,
    PrivateCritic,
    generator_blocks,
    mlp,
    seeded_init,
)
from vflgan_app.core.party import ADAM_BETAS
from vflgan_app.core.sampling import (
    batch_indices,
    gp_alpha,
    gumbel_generator,
    publication_latent,
    shared_latent,
)
from vflgan_app.data.schema import OutputSpan


def _backbone(arch: Architecture) -> nn.Sequential:
    """The generator body without its output layer (shared by both baselines)."""
    return nn.Sequential(*generator_blocks(arch))


def _adam(params) -> dict:
    return dict(params=params, betas=ADAM_BETAS)


class _Base:
    """Shared loop: batches, z and alpha from (seed, step), like VFLGAN."""

    def __init__(
        self,
        parts: Sequence[np.ndarray],
        arch: Architecture,
        seed: int,
        n_critic: int,
        sampler: str,
    ) -> None:
        self.parts = [torch.as_tensor(p, dtype=torch.float32) for p in parts]
        self.widths = [p.shape[1] for p in self.parts]
        self.arch, self.seed, self.n_critic, self.sampler = (
            arch,
            seed,
            n_critic,
            sampler,
        )
        self.step = 0

    def fit(self, steps: int, progress: bool = False) -> None:
        """Train until ``self.step == steps``."""
        for _ in progress_bar(
            range(self.step, steps), desc=type(self).__name__, disable=not progress
        ):
            self.train_step()

    def _batch(
        self,
    ) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor, torch.Tensor]:
        t, a = self.step, self.arch
        idx = batch_indices(
            self.seed, t, self.parts[0].shape[0], a.batch_size, self.sampler
        )
        real = [x[idx] for x in self.parts]
        z = shared_latent(self.seed, t, len(idx), a.latent_dim)
        return idx, real, z, gp_alpha(self.seed, t, len(idx))

    def train_step(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


class CentralizedWGANGP(_Base):
    """WGAN-GP on the joined table (all columns in one place).

    Args:
        parts: each party's encoded columns (joined here: this baseline is not private).
        spans: each party's output spans (shifted into the joined table).
        arch: architecture preset (generator widths; critic = D_C widths then 1).
    """

    def __init__(
        self,
        parts,
        spans: Sequence[Sequence[OutputSpan]],
        arch: Architecture,
        seed: int = 0,
        n_critic: int = 5,
        sampler: str = "shuffle",
    ) -> None:
        super().__init__(parts, arch, seed, n_critic, sampler)
        joint, offset = [], 0
        for sp, w in zip(spans, self.widths, strict=True):
            joint += [OutputSpan(s.kind, s.start + offset, s.end + offset) for s in sp]
            offset += w
        with seeded_init(seed, "init", "centralized"):
            self.body = nn.Sequential(
                _backbone(arch), nn.Linear(arch.gen_hidden[-1], offset, bias=arch.bias)
            )
            self.head = OutputHead(joint, arch.tau)
            self.critic = mlp(
                [offset, *arch.critic_hidden, 1], arch.bias, last_activation=False
            )
        self.opt_G = torch.optim.Adam(**_adam(self.body.parameters()), lr=arch.lr)
        self.opt_D = torch.optim.Adam(**_adam(self.critic.parameters()), lr=arch.lr)

    def _generate(self, z: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return self.head(self.body(z), gen)

    def train_step(self) -> None:
        """One critic iteration (+ a generator iteration every ``n_critic``)."""
        t = self.step
        _, real, z, alpha = self._batch()
        x = torch.cat(real, dim=1)
        with torch.no_grad():
            fake = self._generate(z, gumbel_generator(self.seed, -1, t, "critic"))
        x_hat = interpolate(x, fake, alpha)
        loss = (
            self.critic(fake).mean()
            - self.critic(x).mean()
            + self.arch.lambda_gp
            * (gradient_norm_penalty(input_gradient(self.critic(x_hat), x_hat)))
        )
        self.opt_D.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_D.step()
        if t % self.n_critic == 0:
            fake = self._generate(z, gumbel_generator(self.seed, -1, t, "gen"))
            g_loss = -self.critic(fake).mean()
            self.opt_G.zero_grad(set_to_none=True)
            g_loss.backward()
            self.opt_G.step()
        self.step += 1

    @torch.no_grad()
    def sample(self, n: int, seed: int, independent: bool = False) -> list[np.ndarray]:
        """Generate ``n`` rows split back into party blocks.

        ``independent=True`` takes each party's block from a different latent draw.
        """
        self.body.eval()
        gen = make_generator(seed, "sample-gumbel", "centralized")
        blocks = []
        draws = len(self.widths) if independent else 1
        for k in range(draws):
            z = publication_latent(seed, n, self.arch.latent_dim, k if independent else None)
            blocks.append(self._generate(z, gen).numpy())
        self.body.train()
        out, offset = [], 0
        for k, w in enumerate(self.widths):
            src = blocks[k if independent else 0]
            out.append(src[:, offset : offset + w].astype(np.float32))
            offset += w
        return out


class VertiGAN(_Base):
    """Shared backbone + per-party heads, trained by purely local WGAN-GP critics.

    Each party's critic is a bottom critic plus a linear head (the same sizes as VFLGAN's
    D_Ck and D_pk) and sees only that party's columns; the backbone receives the sum of
    the parties' generator gradients.
    """

    def __init__(
        self,
        parts,
        spans: Sequence[Sequence[OutputSpan]],
        arch: Architecture,
        seed: int = 0,
        n_critic: int = 5,
        sampler: str = "shuffle",
    ) -> None:
        super().__init__(parts, arch, seed, n_critic, sampler)
        with seeded_init(seed, "init", "vertigan", "server"):
            self.backbone = _backbone(arch)
        self.heads, self.out, self.critics = nn.ModuleList(), [], nn.ModuleList()
        for k, (sp, w) in enumerate(zip(spans, self.widths, strict=True)):
            with seeded_init(seed, "init", "vertigan", k):
                self.heads.append(nn.Linear(arch.gen_hidden[-1], w, bias=arch.bias))
                self.out.append(OutputHead(sp, arch.tau))
                self.critics.append(
                    nn.Sequential(BottomCritic(arch, w), PrivateCritic(arch))
                )
        gen_params = [*self.backbone.parameters(), *self.heads.parameters()]
        self.opt_G = torch.optim.Adam(**_adam(gen_params), lr=arch.lr)
        self.opt_D = [
            torch.optim.Adam(**_adam(c.parameters()), lr=arch.lr) for c in self.critics
        ]

    def _party_output(
        self, k: int, h: torch.Tensor, gen: torch.Generator
    ) -> torch.Tensor:
        return self.out[k](self.heads[k](h), gen)

    def train_step(self) -> None:
        """Local critic iterations at every party; joint backbone/head update every n_critic."""
        t = self.step
        _, real, z, alpha = self._batch()
        with torch.no_grad():
            h = self.backbone(z)
            fakes = [
                self._party_output(k, h, gumbel_generator(self.seed, k, t, "critic"))
                for k in range(len(real))
            ]
        for k, critic in enumerate(self.critics):
            x_hat = interpolate(real[k], fakes[k], alpha)
            loss = (
                critic(fakes[k]).mean()
                - critic(real[k]).mean()
                + self.arch.lambda_gp
                * (gradient_norm_penalty(input_gradient(critic(x_hat), x_hat)))
            )
            self.opt_D[k].zero_grad(set_to_none=True)
            loss.backward()
            self.opt_D[k].step()
        if t % self.n_critic == 0:
            h = self.backbone(z)
            g_loss = sum(
                -self.critics[k](
                    self._party_output(k, h, gumbel_generator(self.seed, k, t, "gen"))
                ).mean()
                for k in range(len(real))
            )
            self.opt_G.zero_grad(set_to_none=True)
            g_loss.backward()
            self.opt_G.step()
        self.step += 1

    @torch.no_grad()
    def sample(self, n: int, seed: int, independent: bool = False) -> list[np.ndarray]:
        """Generate ``n`` rows per party (same z for all parties unless ``independent``)."""
        self.backbone.eval()
        out = []
        for k in range(len(self.widths)):
            z = publication_latent(seed, n, self.arch.latent_dim, k if independent else None)
            gen = make_generator(seed, "sample-gumbel", k)
            out.append(
                self._party_output(k, self.backbone(z), gen).numpy().astype(np.float32)
            )
        self.backbone.train()
        return out
