"""Party: one data holder's columns, modules (G_k, D_Ck, D_pk), optimizers and RNG.

One public method per protocol step. What a method returns is all that leaves the
party: intermediate features (IFs) and scalar losses, never rows or weights. The shared
latent z and the GP alpha are recomputed here from ``(seed, step)``.
"""

from __future__ import annotations

import logging
import math
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from trainkit import make_generator
from vflgan_app.architectures import Architecture
from vflgan_app.core.losses import (
    bottom_critic_penalty,
    head_penalty,
    interpolate,
    wasserstein_critic_loss,
)
from vflgan_app.core.model import block_input_width, build_party_modules
from vflgan_app.core.protocol import CRITIC_FEATURES, abs_peak
from vflgan_app.core.sampling import (
    gp_alpha,
    gumbel_generator,
    publication_latent,
    shared_latent,
)
from vflgan_app.data.partition import PartyData
from vflgan_app.errors import ProtocolError

logger = logging.getLogger(__name__)

ADAM_BETAS = (0.5, 0.999)
#: The most rows one ``sample`` request may ask for, unless the party sets its own cap
#: (``PartySettings.max_sample_rows``; node config ``max-sample-rows`` in Flower).
MAX_SAMPLE_ROWS = 200_000
#: Largest |value| accepted in a shared trunk's output (LeakyReLU/BatchNorm features;
#: far beyond means a diverged or hostile server).
TRUNK_LIMIT = 1e6


@dataclass(frozen=True)
class PartySettings:
    """Training constants a party needs (all parties use the same values).

    Attributes:
        seed: run seed (derives z, alpha, Gumbel noise and module initialisation).
        lambda_gp: gradient-penalty weight.
        lambda_p: weight of the private critic heads.
        lr: Adam learning rate.
        batch_size: B. When given with ``sampler``, a request's row indices must be
            exactly the run's batch of ``(seed, step)``: the server cannot choose rows.
            None (bare test parties) checks only range, length and repeats.
        sampler: the run's batch sampler (:func:`vflgan_app.core.sampling.batch_indices`).
        max_sample_rows: the most rows one ``sample`` request may ask for.
        trunk: generator blocks held by the server as a shared trunk (0 = none, the
            paper): G_k is then the rest of the generator, and every request that
            generates carries the trunk's output ``t`` instead of the party deriving z.
    """

    seed: int
    lambda_gp: float
    lambda_p: float = 1.0
    lr: float = 2e-4
    batch_size: int | None = None
    sampler: str | None = None
    max_sample_rows: int = MAX_SAMPLE_ROWS
    trunk: int = 0


class CriticGradients:
    """How a party turns one critic step into gradients of its ``(D_Ck, D_pk)``.

    This class is the exact rule of the paper's Algorithm box: a batch forward that
    keeps its autograd graph, then one backward of the party's own loss terms plus the
    server's dL_D/dIF. A DP mechanism is another rule plugged into the same slot
    (``Party(critic_rule=...)``; :mod:`vflgan_app.dp.processors`): paper mode
    post-processes this rule's gradient, strict mode replaces it with clipped,
    noised per-sample gradients. The optimizer step stays with the party.
    """

    def forward(self, party: Party, x_real: torch.Tensor, x_fake: torch.Tensor,
                x_hat: torch.Tensor) -> tuple[dict, object]:
        """IFs and the party's part of L_D for one batch.

        Returns:
            ``({"h_real", "h_fake", "h_hat": (B, if_dim), "loss": float}, pending)``:
            the reply, and what :meth:`backward` needs later.
        """
        s = party.settings
        h_real, h_fake, h_hat = party.D_C(x_real), party.D_C(x_fake), party.D_C(x_hat)
        local = s.lambda_p * wasserstein_critic_loss(party.D_p(h_real), party.D_p(h_fake))
        local = local + s.lambda_gp * (
            bottom_critic_penalty(h_hat, x_hat) + head_penalty(party.D_p(h_hat), h_hat)
        )
        reply = {"h_real": h_real.detach(), "h_fake": h_fake.detach(),
                 "h_hat": h_hat.detach(), "loss": float(local.detach())}
        return reply, (local, [h_real, h_fake, h_hat])

    def chunk_features(self, party: Party, x_hat: torch.Tensor) -> dict:
        """What chunked mode sends besides the IFs, for rules that need more (none here)."""
        return {}

    def penalty(self, party: Party, pending: object, u: torch.Tensor) -> dict:
        """A mid-step exchange for rules that need one (the joint objective's)."""
        raise ProtocolError(f"party {party.party_id}: critic_penalty is not part of the "
                            "paper objective (config objective='joint' uses it)")

    def backward(self, party: Party, step: int, pending: object,
                 upstream: list[torch.Tensor], grads: dict | None = None) -> None:
        """Leave the step's gradients in ``.grad`` of ``D_Ck`` and ``D_pk`` (zeroed before).

        ``grads`` is the server's whole message (rules may read more than the IF
        gradients in ``upstream``).
        """
        local, feats = pending
        torch.autograd.backward([local, *feats], [torch.ones_like(local), *upstream])


class Party:
    """One party of VFLGAN.

    Args:
        data: the party's aligned, encoded columns.
        arch: the architecture preset.
        settings: seed and loss weights.
        device: where the party's modules and data live.
        critic_rule: how critic gradients are formed (default: the exact rule; DP
            modes plug in theirs, :mod:`vflgan_app.dp.processors`).
    """

    def __init__(
        self,
        data: PartyData,
        arch: Architecture,
        settings: PartySettings,
        device: str | torch.device = "cpu",
        critic_rule: CriticGradients | None = None,
    ) -> None:
        self.party_id = data.party_id
        self.critic_rule = critic_rule or CriticGradients()
        self.data = data
        self.arch = arch
        self.settings = settings
        self.device = torch.device(device)
        self.x = torch.as_tensor(data.x, dtype=torch.get_default_dtype(), device=self.device)
        width = data.schema.width
        self.G, self.D_C, self.D_p = build_party_modules(
            arch, data.schema.output_spans(), width, settings.seed, self.party_id,
            trunk=settings.trunk,
        )
        for m in (self.G, self.D_C, self.D_p):
            m.to(self.device)
        adam = dict(lr=settings.lr, betas=ADAM_BETAS)
        self.opt_G = torch.optim.Adam(self.G.parameters(), **adam)
        self.opt_D_C = torch.optim.Adam(self.D_C.parameters(), **adam)
        self.opt_D_p = torch.optim.Adam(self.D_p.parameters(), **adam)
        # autograd state kept between a forward and its backward (one step in flight)
        self._critic: tuple[int, object] | None = None
        self._gen: tuple[int, torch.Tensor, torch.Tensor] | None = None
        # the arguments of the forwards in flight, so that a party restored in a fresh
        # process (Flower deployment) can recompute their autograd graphs: replay_forwards
        self._critic_args: tuple[int, torch.Tensor, torch.Tensor | None] | None = None
        self._penalty_u: torch.Tensor | None = None  # the joint objective's u, if sent
        self._gen_args: tuple[int, int, torch.Tensor | None] | None = None
        # the last critic / generator step whose gradients this party applied: a request
        # for a step at or before it (a replayed or duplicated message) is refused
        self.done = {"critic": -1, "gen": -1}
        # where save_checkpoint/load_checkpoint keep this party's own files (party-local)
        self.checkpoint_dir = None

    # -- handshake ----------------------------------------------------------------
    def hello(self) -> dict:
        """Describe this party for the coordinator's start-up checks."""
        return {
            "party_id": self.party_id,
            "n_rows": int(self.x.shape[0]),
            "id_hash": self.data.id_hash,
            "schema": self.data.schema.to_json(),
            "width": int(self.data.schema.width),
            "if_dim": int(self.arch.if_dim),
            "trunk": int(self.settings.trunk),
        }

    # -- critic step ----------------------------------------------------------------
    def critic_inputs(self, step: int, idx: torch.Tensor,
                      t: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """Real, fake and interpolated rows of step ``step`` (Algorithm lines 1-3).

        The fakes come from the shared z of ``(seed, step)`` (or, with a shared trunk,
        from the trunk's output ``t`` the server sent) without a graph (the critic step
        does not train G; BatchNorm statistics still update); the interpolates are a
        fresh leaf for the gradient penalty.
        """
        s = self.settings
        idx = self._check_batch(step, idx)
        B = int(idx.shape[0])
        z = self._generator_input(step, B, t)
        with torch.no_grad():
            x_fake = self.G(z, gumbel_generator(s.seed, self.party_id, step, "critic"))
        x_real = self.x[idx.to(self.device)]
        x_hat = interpolate(x_real, x_fake, gp_alpha(s.seed, step, B).to(self.x))
        return x_real, x_fake, x_hat

    def critic_forward(self, step: int, idx: torch.Tensor,
                       t: torch.Tensor | None = None) -> dict:
        """Algorithm lines 1-4 at this party: IFs of real, fake and interpolated rows.

        Also builds the party's own part of L_D (private-head Wasserstein terms and its
        two GP terms), kept for :meth:`critic_backward`.

        Args:
            step: the step.
            idx: the step's row indices (checked against the run's batch).
            t: the shared trunk's output for the step's z (trunk mode only).

        Returns:
            ``{"h_real", "h_fake", "h_hat"}`` IFs ``(B, if_dim)`` and ``"loss"`` (float).
        """
        step = self._check_step(step, "critic")
        x_real, x_fake, x_hat = self.critic_inputs(step, idx, t)
        reply, pending = self.critic_rule.forward(self, x_real, x_fake, x_hat)
        self._critic = (step, pending)
        self._critic_args = (step, torch.as_tensor(idx, dtype=torch.long).clone(),
                             None if t is None else torch.as_tensor(t).detach().clone())
        return {"step": step, **reply}

    def critic_backward(self, step: int, grads: dict) -> dict:
        """Algorithm line 5 at this party: apply the critic rule, step D_Ck and D_pk.

        Args:
            step: the step whose forward this completes.
            grads: ``{"h_real", "h_fake", "h_hat"}``: dL_D/dIF from the server.
        """
        if self._critic is None or self._critic[0] != step:
            raise ProtocolError(
                f"party {self.party_id}: critic gradients for step {step} but the pending "
                f"forward is {self._critic[0] if self._critic else None}"
            )
        if isinstance(grads, dict) and "u" in grads and self._penalty_u is None:
            # the joint objective over Gram matrices (chunked mode, or exact mode with
            # joint_exchange "gram"): u travels with the gradients
            self.critic_penalty(step, grads["u"])
        B = int(self._critic_args[1].shape[0])
        upstream = [self._check_grad(grads, k, B, step) for k in CRITIC_FEATURES]
        self.opt_D_C.zero_grad(set_to_none=True)
        self.opt_D_p.zero_grad(set_to_none=True)
        self.critic_rule.backward(self, step, self._critic[1], upstream, grads)
        self.opt_D_C.step()
        self.opt_D_p.step()
        self._critic = self._critic_args = self._penalty_u = None
        self.done["critic"] = int(step)
        return {}

    def critic_penalty(self, step: int, u: torch.Tensor) -> dict:
        """The joint objective's mid-step exchange (:mod:`vflgan_app.core.joint`).

        Args:
            step: the step whose forward this continues.
            u: ``dD_S/dIF`` at this party's interpolates, ``(B, if_dim)``.
        """
        if self._critic is None or self._critic[0] != step:
            raise ProtocolError(
                f"party {self.party_id}: critic_penalty for step {step} but the pending "
                f"forward is {self._critic[0] if self._critic else None}"
            )
        B = int(self._critic_args[1].shape[0])
        u = self._check_grad({"u": u}, "u", B, step)
        reply = self.critic_rule.penalty(self, self._critic[1], u)
        self._penalty_u = u.detach().clone()
        return {"step": int(step), **reply}

    # -- generator step ------------------------------------------------------------
    def generator_forward(self, step: int, batch_size: int,
                          t: torch.Tensor | None = None) -> dict:
        """Algorithm line 6 at this party: IFs of fresh fakes from the same z.

        Args:
            step: the step (its z is reused, as in the paper's code).
            batch_size: B.
            t: the shared trunk's output for the step's z (trunk mode only); the
                backward returns the loss's gradient with respect to it.

        Returns:
            ``{"h_gen"}`` IFs ``(B, if_dim)`` and ``"loss"`` (this party's part of L_G).
        """
        s = self.settings
        step = self._check_step(step, "gen")
        batch_size = self._check_batch_size(batch_size)
        z = self._generator_input(step, batch_size, t)
        if s.trunk:
            z = z.detach().requires_grad_(True)
        x_fake = self.G(z, gumbel_generator(s.seed, self.party_id, step, "gen"))
        h_gen = self.D_C(x_fake)
        local = -s.lambda_p * self.D_p(h_gen).mean()
        self._gen = (step, local, h_gen, z if s.trunk else None)
        self._gen_args = (int(step), int(batch_size),
                          None if t is None else torch.as_tensor(t).detach().clone())
        return {"step": int(step), "h_gen": h_gen.detach(), "loss": float(local.detach())}

    def generator_backward(self, step: int, grads: dict) -> dict:
        """Backpropagate dL_G/dIF from the server and step G_k.

        Returns:
            ``{}``; with a shared trunk ``{"step", "t"}``: the gradient of this party's
            path of L_G with respect to the trunk's output ``(B, width)``, for the
            server to step the trunk.
        """
        if self._gen is None or self._gen[0] != step:
            raise ProtocolError(
                f"party {self.party_id}: generator gradients for step {step} but the "
                f"pending forward is {self._gen[0] if self._gen else None}"
            )
        _, local, h_gen, t_leaf = self._gen
        upstream = self._check_grad(grads, "h_gen", int(h_gen.shape[0]), step)
        self.opt_G.zero_grad(set_to_none=True)
        torch.autograd.backward([local, h_gen], [torch.ones_like(local), upstream.to(h_gen)])
        self.opt_G.step()
        self._gen = self._gen_args = None
        self.done["gen"] = int(step)
        if t_leaf is not None:
            return {"step": int(step), "t": t_leaf.grad.detach()}
        return {}

    # -- chunked mode (steps-per-round = K; coordinator.train_chunk) ---------------------
    def critic_features(self, step: int, idx: torch.Tensor,
                        t: torch.Tensor | None = None) -> dict:
        """IFs of step ``step`` without building a graph or changing state (chunked mode).

        The same values :meth:`critic_forward` returns, computed under ``no_grad`` with
        the weights at the chunk's start; BatchNorm running statistics are left
        untouched (they move once, in :meth:`critic_apply`). The party's own loss terms
        need the GP graph, so they are reported by :meth:`critic_apply` instead
        (``"loss"`` here is 0). A rule may add more (the joint objective: each row's
        Jacobian Gram matrix ``"G"``, :meth:`CriticGradients.chunk_features`).
        """
        step = self._check_step(step, "critic")
        with self._frozen_buffers():
            with torch.no_grad():
                x_real, x_fake, x_hat = self.critic_inputs(step, idx, t)
                h_real, h_fake, h_hat = self.D_C(x_real), self.D_C(x_fake), self.D_C(x_hat)
            extra = self.critic_rule.chunk_features(self, x_hat)
        return {"step": int(step), "h_real": h_real, "h_fake": h_fake, "h_hat": h_hat,
                "loss": 0.0, **extra}

    def generator_features(self, step: int, batch_size: int,
                           t: torch.Tensor | None = None) -> dict:
        """Generator-step IFs and loss of ``step`` without changing state (chunked mode)."""
        with self._frozen_buffers(), torch.no_grad():
            out = self.generator_forward(step, batch_size, t)
        self._gen = self._gen_args = None
        return out

    def critic_apply(self, step: int, idx: torch.Tensor, grads: dict,
                     t: torch.Tensor | None = None) -> dict:
        """Re-forward step ``step`` with the current weights, apply the server's gradients.

        The joint objective's gradients carry the step's ``u`` (the server formed its
        penalty from the chunk's Gram matrices): the party's penalty term is rebuilt
        from it at the current weights, as :meth:`critic_penalty` does in exact mode.
        """
        out = self.critic_forward(step, idx, t)
        self.critic_backward(step, grads)
        return {"step": int(step), "loss": out["loss"]}

    def generator_apply(self, step: int, batch_size: int, grads: dict,
                        t: torch.Tensor | None = None) -> dict:
        """Re-forward generator step ``step``, apply the server's gradients, step G_k.

        With a shared trunk the reply also carries ``dL_G/dt`` (``"t"``), as
        :meth:`generator_backward`'s does.
        """
        out = self.generator_forward(step, batch_size, t)
        back = self.generator_backward(step, grads)
        if "t" in back:
            return {"step": int(step), "loss": out["loss"], "t": back["t"]}
        return {"step": int(step), "loss": out["loss"]}

    # -- stateless hosting (a fresh process per message) ---------------------------------
    def pending_forwards(self) -> dict:
        """Arguments of the forwards still waiting for gradients (small, JSON-able)."""
        out: dict = {}
        if self._critic_args is not None:
            out["critic"] = {"step": self._critic_args[0],
                             "idx": self._critic_args[1].tolist()}
            if self._critic_args[2] is not None:
                out["critic"]["t"] = self._critic_args[2].tolist()
            if self._penalty_u is not None:
                out["critic"]["u"] = self._penalty_u.tolist()
        if self._gen_args is not None:
            out["gen"] = {"step": self._gen_args[0], "batch_size": self._gen_args[1]}
            if self._gen_args[2] is not None:
                out["gen"]["t"] = self._gen_args[2].tolist()
        return out

    def replay_forwards(self, pending: dict) -> None:
        """Recompute the in-flight forwards of :meth:`pending_forwards` exactly.

        Called after :meth:`load_state_dict` in a fresh process: z, alpha, the Gumbel
        noise and the rows derive from ``(seed, step, idx)``, and the weights are those
        stored after the forward, so the graph is the original one. BatchNorm running
        statistics already moved during the original forward; they are restored so the
        recomputation does not move them twice.
        """
        with self._frozen_buffers():
            if "critic" in pending:
                c = pending["critic"]
                self.critic_forward(int(c["step"]), torch.as_tensor(c["idx"], dtype=torch.long),
                                    _stored(c.get("t"), self.x))
                if "u" in c:
                    self.critic_penalty(int(c["step"]), torch.as_tensor(c["u"]).to(self.x))
            if "gen" in pending:
                g = pending["gen"]
                self.generator_forward(int(g["step"]), int(g["batch_size"]),
                                       _stored(g.get("t"), self.x))

    @contextmanager
    def _frozen_buffers(self):
        # swap the saved copies back in (not copy_: the graph of a replayed forward
        # holds the buffers, and an in-place write would invalidate its backward)
        saved = [(mod, name, buf.detach().clone())
                 for m in (self.G, self.D_C, self.D_p) for mod in m.modules()
                 for name, buf in mod._buffers.items() if buf is not None]
        try:
            yield
        finally:
            for mod, name, buf in saved:
                mod._buffers[name] = buf

    # -- resumable checkpoints (each party writes only its own files) -------------------
    # (run_id, fingerprint: the run's identity, core/checkpoint.RunIdentity.to_call)
    def start_checkpoints(self, overwrite: bool = False) -> dict:
        """A fresh run begins: refuse a folder holding this party's checkpoints.

        With ``overwrite`` those checkpoints are deleted instead.
        """
        from vflgan_app.core.checkpoint import start_party_checkpoints

        start_party_checkpoints(self.checkpoint_dir, self.party_id, bool(overwrite))
        return {}

    def save_checkpoint(self, step: int, run_id: str, fingerprint: str,
                        keep: int = 2) -> dict:
        """Write this party's state to ``<checkpoint_dir>/checkpoint-<step>/party-<k>/``.

        The folder is written atomically and records the run; this run's older folders
        are pruned to the newest ``keep`` (the server keeps as many).
        """
        from vflgan_app.core.checkpoint import RunIdentity, save_party_checkpoint

        if self._critic is not None or self._gen is not None:
            raise ProtocolError(f"party {self.party_id}: checkpoint with a step in flight")
        save_party_checkpoint(self.checkpoint_dir, step, self,
                              RunIdentity.from_call(run_id, fingerprint), keep=int(keep))
        return {"step": int(step)}

    def check_checkpoint(self, step: int, run_id: str, fingerprint: str) -> dict:
        """Confirm this party holds ``checkpoint-<step>`` of this run, readable (resume)."""
        from vflgan_app.core.checkpoint import RunIdentity, check_party_checkpoint

        check_party_checkpoint(self.checkpoint_dir, step, self,
                               RunIdentity.from_call(run_id, fingerprint))
        return {"step": int(step)}

    def load_checkpoint(self, step: int, run_id: str, fingerprint: str) -> dict:
        """Restore this party's state from its own ``checkpoint-<step>`` folder."""
        from vflgan_app.core.checkpoint import RunIdentity, load_party_checkpoint

        load_party_checkpoint(self.checkpoint_dir, step, self,
                              RunIdentity.from_call(run_id, fingerprint))
        self._critic = self._critic_args = self._gen = self._gen_args = None
        self._penalty_u = None
        return {"step": int(step)}

    # -- publication ----------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int, seed: int, independent: bool = False,
               t: torch.Tensor | None = None, offset: int = 0) -> dict:
        """Generate ``n`` rows of this party's encoded columns (G in eval mode).

        Args:
            n: number of rows.
            seed: publication seed; every party derives the same z from it.
            independent: draw z from a party-specific stream instead (the
                independent-latent control: cross-party dependence destroyed).
            t: with a shared trunk, the trunk's output for rows ``offset ..
                offset + n - 1`` of the publication's z (the server sends a
                publication in slices); the party derives no z then.
            offset: the first row of this slice (keys the slice's Gumbel noise).

        Returns:
            ``{"x": ndarray (n, width)}``. Published to the data recipient, not the
            server, in a real deployment.
        """
        n = _whole("n", n, self.party_id, 1, self.settings.max_sample_rows)
        seed = _whole("seed", seed, self.party_id, 0, None)
        offset = _whole("offset", offset, self.party_id, 0, None)
        if not isinstance(independent, bool | np.bool_):
            raise ProtocolError(f"party {self.party_id}: sample independent={independent!r}; "
                                "expected true or false")
        if self.settings.trunk:
            z = self._trunk_output("sample", t, n)
            gumbel = make_generator(seed, "sample-gumbel", self.party_id, offset)
        else:
            if t is not None or offset:
                raise ProtocolError(f"party {self.party_id}: sample got a trunk output or "
                                    "an offset, but this run has no shared trunk")
            z = publication_latent(seed, n, self.arch.latent_dim,
                                   self.party_id if independent else None)
            gumbel = make_generator(seed, "sample-gumbel", self.party_id)
        was_training = self.G.training
        self.G.eval()
        out = []
        for chunk in torch.split(z, 4096):
            out.append(self.G(chunk.to(self.x), gumbel).cpu())
        self.G.train(was_training)
        return {"x": torch.cat(out).numpy().astype(np.float32)}

    # -- persistence ------------------------------------------------------------------
    def state_dict(self) -> dict:
        """This party's modules and optimizers (nothing of any other party)."""
        return {
            "party_id": self.party_id,
            "G": self.G.state_dict(), "D_C": self.D_C.state_dict(), "D_p": self.D_p.state_dict(),
            "opt_G": self.opt_G.state_dict(), "opt_D_C": self.opt_D_C.state_dict(),
            "opt_D_p": self.opt_D_p.state_dict(),
            "done": dict(self.done),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore from :meth:`state_dict` (refuses another party's state)."""
        if state["party_id"] != self.party_id:
            raise ValueError(
                f"state of party {state['party_id']} cannot be loaded into party {self.party_id}"
            )
        self.G.load_state_dict(state["G"])
        self.D_C.load_state_dict(state["D_C"])
        self.D_p.load_state_dict(state["D_p"])
        self.opt_G.load_state_dict(state["opt_G"])
        self.opt_D_C.load_state_dict(state["opt_D_C"])
        self.opt_D_p.load_state_dict(state["opt_D_p"])
        self.done = {"critic": -1, "gen": -1, **state.get("done", {})}

    # -- what a party accepts from the server ---------------------------------------------
    def _check_step(self, step: object, phase: str) -> int:
        """A step number this party has not applied yet (``phase`` "critic" or "gen")."""
        step = _whole("step", step, self.party_id, 0, None)
        if step <= self.done[phase]:
            raise ProtocolError(
                f"party {self.party_id}: {phase} step {step} requested, but this party "
                f"already applied {phase} step {self.done[phase]}; a replayed or duplicated "
                "request is refused"
            )
        return step

    def _generator_input(self, step: int, B: int, t: object) -> torch.Tensor:
        """G_k's input at ``step``: the shared z of ``(seed, step)``, or the trunk's ``t``."""
        if self.settings.trunk:
            return self._trunk_output(f"step {step}", t, B)
        if t is not None:
            raise ProtocolError(f"party {self.party_id}: step {step} request carries a trunk "
                                "output t, but this run has no shared trunk")
        return shared_latent(self.settings.seed, step, B, self.arch.latent_dim).to(self.x)

    def _trunk_output(self, where: str, t: object, B: int) -> torch.Tensor:
        """The server's trunk output: present, float, ``(B, width)``, finite and bounded."""
        pid = self.party_id
        if t is None:
            raise ProtocolError(f"party {pid}: {where} request has no trunk output t; "
                                f"expected one (this run's generator trunk has "
                                f"{self.settings.trunk} blocks)")
        t = torch.as_tensor(np.asarray(t) if not isinstance(t, torch.Tensor) else t)
        want = (B, block_input_width(self.arch, self.settings.trunk))
        if not t.is_floating_point() or tuple(t.shape) != want:
            raise ProtocolError(f"party {pid}: {where} trunk output t has dtype {t.dtype} "
                                f"and shape {tuple(t.shape)}; expected float {want}")
        if not abs_peak(t) <= TRUNK_LIMIT:
            raise ProtocolError(f"party {pid}: {where} trunk output t holds NaN, inf or "
                                f"values beyond {TRUNK_LIMIT:g}; refused")
        return t.to(self.x)

    def _check_batch_size(self, batch_size: object) -> int:
        B = _whole("batch_size", batch_size, self.party_id, 1, int(self.x.shape[0]))
        want = self.settings.batch_size
        if want is not None and B != want:
            raise ProtocolError(f"party {self.party_id}: batch_size {B}; expected the "
                                f"run's batch size {want}")
        return B

    def _check_batch(self, step: int, idx: object) -> torch.Tensor:
        """The request's row indices, if they are the run's batch of ``step``.

        A curious server could otherwise ask for every row, one row many times or rows
        of its choice (a membership probe); the batch derives from ``(seed, step)``, so
        the party recomputes it and refuses any other.
        """
        pid, n = self.party_id, int(self.x.shape[0])
        idx_t = torch.as_tensor(np.asarray(idx))
        if idx_t.dtype.is_floating_point or idx_t.dtype == torch.bool or idx_t.ndim != 1:
            raise ProtocolError(f"party {pid}: idx has dtype {idx_t.dtype} and shape "
                                f"{tuple(idx_t.shape)}; expected a 1-D integer array")
        idx_t = idx_t.long()
        self._check_batch_size(int(idx_t.shape[0]))
        if len(idx_t) and (int(idx_t.min()) < 0 or int(idx_t.max()) >= n):
            raise ProtocolError(f"party {pid}: idx holds rows {int(idx_t.min())}.."
                                f"{int(idx_t.max())}; expected rows 0..{n - 1}")
        if len(torch.unique(idx_t)) != len(idx_t):
            raise ProtocolError(f"party {pid}: idx repeats rows; batches are drawn "
                                "without replacement")
        s = self.settings
        if s.batch_size is not None and s.sampler is not None:
            from vflgan_app.core.sampling import batch_indices

            want = batch_indices(s.seed, step, n, s.batch_size, s.sampler)
            if not torch.equal(idx_t, want):
                raise ProtocolError(f"party {pid}: idx of step {step} is not the run's batch "
                                    f"(seed {s.seed}, sampler {s.sampler!r}); refused")
        return idx_t

    def _check_grad(self, grads: object, name: str, B: int, step: int) -> torch.Tensor:
        """The server's gradient ``name``: present, float, ``(B, if_dim)``, finite."""
        pid = self.party_id
        if not isinstance(grads, dict) or name not in grads:
            raise ProtocolError(f"party {pid}: step {step} gradients have no {name!r}")
        g = torch.as_tensor(np.asarray(grads[name]) if not isinstance(grads[name], torch.Tensor)
                            else grads[name])
        want = (B, int(self.arch.if_dim))
        if not g.is_floating_point() or tuple(g.shape) != want:
            raise ProtocolError(f"party {pid}: step {step} gradient {name} has dtype {g.dtype} "
                                f"and shape {tuple(g.shape)}; expected float {want}")
        if not math.isfinite(abs_peak(g)):
            raise ProtocolError(f"party {pid}: step {step} gradient {name} contains NaN or "
                                "inf; refused (nothing applied)")
        return g.to(self.x)


def _stored(values: list | None, like: torch.Tensor) -> torch.Tensor | None:
    """A tensor kept by :meth:`Party.pending_forwards` (JSON lists), or None."""
    return None if values is None else torch.as_tensor(values, dtype=like.dtype)


def _whole(name: str, value: object, pid: int, low: int, high: int | None) -> int:
    """``value`` as an int in ``[low, high]``, or a ProtocolError naming the field."""
    ok = isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)
    if not ok and isinstance(value, torch.Tensor) and value.ndim == 0 \
            and not value.is_floating_point() and value.dtype != torch.bool:
        value, ok = int(value), True
    if not ok or value < low or (high is not None and value > high):
        rng = f"{low}..{high}" if high is not None else f">= {low}"
        raise ProtocolError(f"party {pid}: {name}={value!r}; expected an integer {rng}")
    return int(value)
