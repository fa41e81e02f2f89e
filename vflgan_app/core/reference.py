"""Single-process reference VFLGAN: every module in one place, as the paper's scripts.

This mirrors ``MNIST/WGAN_GP_real_VFL_v2.py`` generalised to K parties: one ``d_loss``
built from all modules and one ``d_loss.backward()``; no transport, no split autograd.
It exists to prove the federated implementation computes the same thing (the exactness
test) and as the single-process baseline of ``bench_step.py``. It shares only the
module builders and the (seed, step) randomness with the federated code.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from vflgan_app.architectures import Architecture
from vflgan_app.core.model import build_party_modules, build_top_critic, build_trunk
from vflgan_app.core.party import ADAM_BETAS
from vflgan_app.core.sampling import (
    batch_indices,
    gp_alpha,
    gumbel_generator,
    party_shuffle,
    shared_latent,
)
from vflgan_app.data.schema import OutputSpan


def _penalty(grad: torch.Tensor) -> torch.Tensor:
    grad = grad.reshape(grad.shape[0], -1)
    return ((grad.norm(2, dim=1) - 1) ** 2).mean()


class ReferenceVFLGAN:
    """All parties' modules and the server's D_S in one object.

    Args:
        parts: each party's encoded columns ``(N, width_k)``.
        spans: each party's generator output spans.
        arch: architecture preset.
        seed: run seed.
        n_critic: critic iterations per generator iteration.
        lambda_p: private-head weight.
        sampler: batch sampler.
        objective: ``"paper"`` (the per-module penalties of the paper's script) or
            ``"joint"`` (one penalty on the gradient of the whole critic w.r.t. the whole
            interpolated row, plus each private head's end-to-end penalty), written
            with one autograd graph, independently of :mod:`vflgan_app.core.joint`.
        shuffle_negatives: weight of the shuffled-real negatives term (0 = off).
        generator_trunk: the generator's first blocks shared by every party (0 = none):
            each party's fakes are ``G_k(trunk(z))``, one trunk trained by the summed
            generator loss.
    """

    def __init__(
        self,
        parts: Sequence[torch.Tensor],
        spans: Sequence[Sequence[OutputSpan]],
        arch: Architecture,
        seed: int = 0,
        n_critic: int = 5,
        lambda_p: float = 1.0,
        sampler: str = "shuffle",
        objective: str = "paper",
        shuffle_negatives: float = 0.0,
        generator_trunk: int = 0,
    ) -> None:
        self.shuffle_negatives = shuffle_negatives
        if objective not in ("paper", "joint"):
            raise ValueError(f"objective: got {objective!r}, expected 'paper' or 'joint'")
        self.objective = objective
        self.parts = [
            torch.as_tensor(p, dtype=torch.get_default_dtype()) for p in parts
        ]
        self.arch, self.seed, self.n_critic = arch, seed, n_critic
        self.lambda_p, self.sampler = lambda_p, sampler
        self.G, self.D_C, self.D_p = [], [], []
        for k, (x, sp) in enumerate(zip(self.parts, spans, strict=True)):
            g, dc, dp = build_party_modules(arch, sp, x.shape[1], seed, k,
                                            trunk=generator_trunk)
            self.G.append(g)
            self.D_C.append(dc)
            self.D_p.append(dp)
        self.D_S = build_top_critic(arch, [arch.if_dim] * len(self.parts), seed)
        # z -> z (no trunk) or the shared trunk's features
        self.trunk = build_trunk(arch, generator_trunk, seed) if generator_trunk \
            else torch.nn.Identity()
        adam = dict(lr=arch.lr, betas=ADAM_BETAS)
        self.opt_G = [torch.optim.Adam(m.parameters(), **adam) for m in self.G]
        if generator_trunk:
            self.opt_G.append(torch.optim.Adam(self.trunk.parameters(), **adam))
        self.opt_D = [
            torch.optim.Adam(m.parameters(), **adam)
            for m in [*self.D_C, *self.D_p, self.D_S]
        ]
        self.step = 0

    # why: one block, as the paper's script, so the exactness test compares the federated
    # protocol against a reference that reads straight from the published code
    def train_step(self) -> tuple[float, float | None]:
        """One iteration; returns ``(d_loss, g_loss or None)``."""
        t, a, K = self.step, self.arch, len(self.parts)
        idx = batch_indices(
            self.seed, t, self.parts[0].shape[0], a.batch_size, self.sampler
        )
        real = [x[idx] for x in self.parts]
        B = len(idx)
        z = shared_latent(self.seed, t, B, a.latent_dim)

        # ---- train the critic
        for opt in self.opt_D:
            opt.zero_grad()
        tz = self.trunk(z)
        fake = [
            self.G[k](tz, gumbel_generator(self.seed, k, t, "critic")) for k in range(K)
        ]
        lat_real = [self.D_C[k](real[k]) for k in range(K)]
        real_private = [self.D_p[k](lat_real[k]) for k in range(K)]
        real_validity = self.D_S(torch.cat(lat_real, dim=1))
        lat_fake = [self.D_C[k](fake[k]) for k in range(K)]
        fake_private = [self.D_p[k](lat_fake[k]) for k in range(K)]
        fake_validity = self.D_S(torch.cat(lat_fake, dim=1))

        # compute_gradient_penalty_2, generalised to K parties
        alpha = gp_alpha(self.seed, t, B)
        interp = [
            (alpha * real[k] + (1 - alpha) * fake[k].detach()).requires_grad_(True)
            for k in range(K)
        ]
        lat_hat = [self.D_C[k](interp[k]) for k in range(K)]
        priv_hat = [self.D_p[k](lat_hat[k]) for k in range(K)]
        latent = torch.cat(lat_hat, dim=1)
        d_hat = self.D_S(latent)
        gp = self._joint_penalty(d_hat, priv_hat, interp) if self.objective == "joint" \
            else self._paper_penalty(d_hat, latent, lat_hat, priv_hat, interp)

        d_loss = -real_validity.mean() + fake_validity.mean()
        if self.shuffle_negatives:  # real rows re-paired across parties, as more fakes
            perms = party_shuffle(self.seed, t, B, K)
            mixed = torch.cat([lat_real[k][perms[k]] for k in range(K)], dim=1)
            d_loss = d_loss + self.shuffle_negatives * (
                self.D_S(mixed).mean() - real_validity.mean())
        for k in range(K):
            d_loss = d_loss + self.lambda_p * (
                -real_private[k].mean() + fake_private[k].mean()
            )
        d_loss = d_loss + a.lambda_gp * gp
        d_loss.backward()
        for opt in self.opt_D:
            opt.step()

        # ---- train the generators every n_critic iterations
        g_loss = None
        if t % self.n_critic == 0:
            for opt in self.opt_G:
                opt.zero_grad()
            tz = self.trunk(z)
            fake = [
                self.G[k](tz, gumbel_generator(self.seed, k, t, "gen")) for k in range(K)
            ]
            lat_fake = [self.D_C[k](fake[k]) for k in range(K)]
            loss = -self.D_S(torch.cat(lat_fake, dim=1)).mean()
            for k in range(K):
                loss = loss - self.lambda_p * self.D_p[k](lat_fake[k]).mean()
            loss.backward()
            for opt in self.opt_G:
                opt.step()
            g_loss = float(loss.detach())
        self.step += 1
        return float(d_loss.detach()), g_loss

    @staticmethod
    def _paper_penalty(d_hat, latent, lat_hat, priv_hat, interp):
        """compute_gradient_penalty_2 of the paper's script, generalised to K parties."""
        gp = 0.0
        for k in range(len(interp)):
            (g_c,) = torch.autograd.grad(
                lat_hat[k], interp[k], torch.ones_like(lat_hat[k]),
                create_graph=True, retain_graph=True,
            )
            (g_p,) = torch.autograd.grad(
                priv_hat[k], lat_hat[k], torch.ones_like(priv_hat[k]),
                create_graph=True, retain_graph=True,
            )
            gp = gp + _penalty(g_c) + _penalty(g_p)
        (g_s,) = torch.autograd.grad(
            d_hat, latent, torch.ones_like(d_hat), create_graph=True, retain_graph=True
        )
        return gp + _penalty(g_s)

    @staticmethod
    def _joint_penalty(d_hat, priv_hat, interp):
        """WGAN-GP's penalty on the whole critic, plus each head's end-to-end penalty."""
        grads = torch.autograd.grad(
            d_hat, interp, torch.ones_like(d_hat), create_graph=True, retain_graph=True
        )
        gp = _penalty(torch.cat(grads, dim=1))  # ||d D(x^) / d (x^_1, ..., x^_K)||
        for k in range(len(interp)):
            (g_p,) = torch.autograd.grad(
                priv_hat[k], interp[k], torch.ones_like(priv_hat[k]),
                create_graph=True, retain_graph=True,
            )
            gp = gp + _penalty(g_p)
        return gp

