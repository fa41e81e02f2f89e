"""Coordinator: the server's top critic D_S and the training loop (the Algorithm box).

Per iteration t (research/vflgan.md section 3):

1. sample a batch (row indices only; parties hold the rows);
2. each party derives the shared z and alpha from (seed, t), generates its fake columns
   and sends the IFs of real, fake and interpolated rows;
3. the server scores the concatenated IFs with D_S, adds its GP term, steps D_S and
   returns dL_D/dIF to each party;
4. each party backpropagates, adds its own terms and steps D_Ck and D_pk;
5. every ``n_critic`` iterations: parties send IFs of fresh fakes (same z), the server
   returns dL_G/dIF, parties step G_k.

Round trips are fused: the gradients of one exchange ride with the next request, so a
step costs one round trip, plus one more on generator steps (line 5 needs the critic
updated first): ``1 + 1/n_critic`` round trips per step.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from vflgan_app.architectures import Architecture
from vflgan_app.core.losses import (
    head_penalty,
    wasserstein_critic_loss,
    wasserstein_generator_loss,
)
from vflgan_app.core.model import build_top_critic, build_trunk
from vflgan_app.core.party import ADAM_BETAS
from vflgan_app.core.protocol import CRITIC_FEATURES, Call, Transport, abs_peak
from vflgan_app.core.sampling import (
    batch_indices,
    party_shuffle,
    publication_latent,
    shared_latent,
)
from vflgan_app.errors import HandshakeError, ReplyError

#: Largest |value| accepted in a party's intermediate features. Honest IFs are outputs
#: of a small critic block (measured below 1e2 in our runs; simulations/README.md,
#: security section); values far beyond mean a poisoned or diverged party, which would
#: otherwise drive every loss to -inf while the run "completes".
IF_LIMIT = 1e6
#: Largest |loss| accepted from a party, or computed at the server.
LOSS_LIMIT = 1e8

logger = logging.getLogger(__name__)

@dataclass
class History:
    """Per-step losses (``d_loss`` every step, ``g_loss`` on generator steps)."""

    d_loss: list[float] = field(default_factory=list)
    g_loss: dict[int, float] = field(default_factory=dict)


class ServerCriticGradients:
    """How the server forms D_S's update and the per-party dL_D/dIF of one critic step.

    This class is the exact rule (batch autograd, Algorithm line 5 at the server);
    strict DP mode plugs in per-sample DP-SGD for D_S
    (:class:`vflgan_app.dp.processors.StrictServerDP`) through ``Coordinator(critic_rule=)``.
    """

    def step(self, coord: Coordinator, feats: dict[int, dict]) -> tuple[dict[int, dict], float]:
        """D_S's part of L_D (Wasserstein terms + its GP term); steps D_S.

        Returns:
            ``({party: {"h_real", "h_fake", "h_hat"}: dL_D/dIF}, server part of L_D)``.
        """
        pids = coord.party_ids
        leaves = feature_leaves(coord, feats)
        s_real = coord.D_S(torch.cat(leaves["h_real"], dim=1))
        s_fake = coord.D_S(torch.cat(leaves["h_fake"], dim=1))
        h_hat = torch.cat(leaves["h_hat"], dim=1)
        loss = wasserstein_critic_loss(s_real, s_fake) + coord.lambda_gp * head_penalty(
            coord.D_S(h_hat), h_hat
        ) + shuffled_negatives_loss(coord, leaves["h_real"], feats)
        coord.opt_S.zero_grad(set_to_none=True)
        loss.backward()
        coord.opt_S.step()
        grads = {
            p: {name: leaves[name][i].grad.detach() for name in CRITIC_FEATURES}
            for i, p in enumerate(pids)
        }
        return grads, float(loss.detach())


def shuffled_negatives_loss(coord: Coordinator, h_real: list[torch.Tensor],
                            feats: dict[int, dict]) -> torch.Tensor | float:
    """``beta * (E[D_S(shuffled real IFs)] - E[D_S(real IFs)])``: re-paired rows as fakes.

    Beyond the paper (``shuffle_negatives = beta``; 0 = off): D_S also scores each
    party's real IFs paired with other records' IFs of the other parties
    (:func:`~vflgan_app.core.sampling.party_shuffle` of ``(seed, step)``) against the
    joint real rows, so it must tell rows whose parties belong together from rows whose
    parties do not. The term is a difference of two means, as the Wasserstein term is:
    a lone ``+beta E[D_S(shuffled)]`` would let a constant offset of D_S lower the loss
    without bound (measured: training collapsed, FD 7.5 vs 1.3 on digits). Only the
    server computes it, from IFs it already has.
    """
    if not coord.shuffle_negatives:
        return 0.0
    step = int(next(iter(feats.values()))["step"])
    perms = party_shuffle(coord.seed, step, h_real[0].shape[0], len(h_real))
    mixed = torch.cat([h[perm.to(h.device)] for h, perm in zip(h_real, perms, strict=True)],
                      dim=1)  # (B, sum of IF widths)
    return coord.shuffle_negatives * wasserstein_critic_loss(
        coord.D_S(torch.cat(h_real, dim=1)), coord.D_S(mixed))


def check_server_loss(phase: str, step: int, loss: float) -> None:
    """Stop when the server's own loss is not finite or absurd (every IF passed the checks)."""
    if not math.isfinite(loss) or abs(loss) > LOSS_LIMIT:
        raise ReplyError(f"server: {phase} loss is {loss:.3g} at step {step}; expected a "
                         f"finite number with |loss| <= {LOSS_LIMIT:g} (training diverged)")


def reply_step(reply: dict) -> int | None:
    """The step a party's reply says it answers (None when it has no valid one)."""
    v = reply.get("step") if isinstance(reply, dict) else None
    try:
        return int(v) if v is not None and not isinstance(v, bool) else None
    except (TypeError, ValueError):
        return None


def feature_leaves(coord: Coordinator, feats: dict[int, dict]) -> dict[str, list[torch.Tensor]]:
    """The parties' IFs as fresh leaves on the server's device, by feature name."""
    return {
        name: [torch.as_tensor(feats[p][name]).to(coord.device).detach().requires_grad_(True)
               for p in coord.party_ids]
        for name in CRITIC_FEATURES
    }


class Coordinator:
    """Runs VFLGAN training over a :class:`Transport`.

    Args:
        transport: how to reach the parties.
        arch: architecture preset (D_S sizes, lambda_gp, lr, batch size).
        seed: run seed (batches; D_S initialisation).
        n_critic: critic iterations per generator iteration.
        sampler: batch sampler name (see :func:`vflgan_app.core.sampling.batch_indices`).
        lambda_gp: GP weight (default ``arch.lambda_gp``).
        device: where D_S lives.
        expected_parties: number of parties that must be present (default: whatever the
            transport reaches, at least 2).
        critic_rule: how D_S's update is formed (default: exact; strict DP plugs in
            its own).
        shuffle_negatives: weight of the shuffled-real negatives term (0 = off; see
            :func:`shuffled_negatives_loss`).
        generator_trunk: generator blocks the server holds as a shared trunk (0 = none,
            the paper; :class:`~vflgan_app.core.model.GeneratorTrunk`). The server then
            computes the trunk's output for each step's z, sends it with the requests
            that generate, and steps the trunk with the sum of the parties' gradients
            with respect to it: one more round trip per generator step in exact mode
            (chunked mode: :func:`vflgan_app.core.chunked.trunk_outputs`).
    """

    def __init__(
        self,
        transport: Transport,
        arch: Architecture,
        seed: int = 0,
        n_critic: int = 5,
        sampler: str = "shuffle",
        lambda_gp: float | None = None,
        device: str | torch.device = "cpu",
        expected_parties: int | None = None,
        critic_rule: ServerCriticGradients | None = None,
        shuffle_negatives: float = 0.0,
        generator_trunk: int = 0,
    ) -> None:
        self.shuffle_negatives = float(shuffle_negatives)
        self.generator_trunk = int(generator_trunk)
        self.trunk: torch.nn.Module | None = None
        self.opt_T: torch.optim.Optimizer | None = None
        self.transport = transport
        self.critic_rule = critic_rule or ServerCriticGradients()
        self.arch = arch
        self.seed = seed
        self.n_critic = n_critic
        self.sampler = sampler
        self.lambda_gp = arch.lambda_gp if lambda_gp is None else lambda_gp
        self.device = torch.device(device)
        self.expected_parties = expected_parties
        # {party_id: schema JSON} the parties must report (e.g. from a checkpoint)
        self.expected_schemas: dict[int, str] | None = None
        self.step = 0
        self.history = History()
        self.hellos: dict[int, dict] = {}
        self.D_S: torch.nn.Module | None = None
        self.opt_S: torch.optim.Optimizer | None = None
        self._pending: dict[int, list[Call]] = {}
        self._server_loss: dict[int, float] = {}  # chunked mode: L_D server part by step
        # DP / accounting hooks: called before each step (may raise to stop training)
        self.before_step: list[Callable[[int], None]] = []
        # plug-ins: extra progress-bar fields, and state saved with the server's
        # (objects with state_dict/load_state_dict, e.g. the DP accountant)
        self.postfix_providers: list[Callable[[], dict[str, str]]] = []
        self.extra_state: dict[str, Any] = {}

    # -- start-up ---------------------------------------------------------------------
    def handshake(self) -> None:
        """Ask every party to describe itself and refuse to start on any mismatch.

        Raises:
            HandshakeError: fewer than 2 parties, duplicate or missing party ids, a
                different number of rows or a different id-list hash (misaligned rows).
        """
        pids = self.transport.party_ids()
        replies = self.transport.exchange({pid: [Call("hello")] for pid in pids})
        hellos = [r[-1] for r in replies.values()]
        ids = [h["party_id"] for h in hellos]
        if len(ids) != len(set(ids)):
            dup = sorted({i for i in ids if ids.count(i) > 1})
            raise HandshakeError(f"party ids {dup} are claimed by more than one node; expected unique ids")
        want = self.expected_parties or max(len(ids), 2)
        missing = sorted(set(range(want)) - set(ids))
        if missing or len(ids) < 2:
            raise HandshakeError(
                f"parties {missing or ids} missing: got party ids {sorted(ids)}, expected "
                f"0..{want - 1}"
            )
        extra = sorted(set(ids) - set(range(want)))
        if extra:
            raise HandshakeError(f"unexpected party ids {extra}; expected 0..{want - 1}")
        by_id = {h["party_id"]: h for h in hellos}
        ref = by_id[0]
        for pid, h in sorted(by_id.items()):
            if h["n_rows"] != ref["n_rows"]:
                raise HandshakeError(
                    f"party {pid} holds {h['n_rows']} rows but party 0 holds {ref['n_rows']}; "
                    "expected the same aligned rows at every party"
                )
            if h["id_hash"] != ref["id_hash"]:
                raise HandshakeError(
                    f"record ids of party {pid} do not match party 0 (id-list hashes "
                    f"{h['id_hash'][:12]} vs {ref['id_hash'][:12]}): the rows are misaligned"
                )
            if h["if_dim"] != self.arch.if_dim:
                raise HandshakeError(
                    f"party {pid} has IF width {h['if_dim']}; expected {self.arch.if_dim}"
                )
            if int(h.get("trunk", 0)) != self.generator_trunk:
                raise HandshakeError(
                    f"party {pid} expects a generator trunk of {h.get('trunk', 0)} blocks; "
                    f"this server holds {self.generator_trunk} (generator_trunk differs)"
                )
        self._check_schemas(by_id)
        self.hellos = by_id
        self.D_S = build_top_critic(self.arch, [by_id[p]["if_dim"] for p in sorted(by_id)],
                                    self.seed).to(self.device)
        self.opt_S = torch.optim.Adam(self.D_S.parameters(), lr=self.arch.lr, betas=ADAM_BETAS)
        if self.generator_trunk:
            self.trunk = build_trunk(self.arch, self.generator_trunk, self.seed).to(self.device)
            self.opt_T = torch.optim.Adam(self.trunk.parameters(), lr=self.arch.lr,
                                          betas=ADAM_BETAS)

    def _check_schemas(self, by_id: dict[int, dict]) -> None:
        """Refuse a column held by two parties, or a party whose schema is not expected."""
        import json

        owner: dict[str, int] = {}
        for pid, h in sorted(by_id.items()):
            cols = [c["name"] for c in json.loads(h["schema"])]
            for c in cols:
                if c in owner:
                    raise HandshakeError(
                        f"column {c!r} is held by party {owner[c]} and party {pid}; expected "
                        "each column at exactly one party (schema mismatch)"
                    )
                owner[c] = pid
            want = (self.expected_schemas or {}).get(pid)
            if want is not None and want != h["schema"]:
                raise HandshakeError(
                    f"party {pid} reports another column schema than expected (columns "
                    f"{cols[:4]}...); refusing to start (schema mismatch)"
                )

    @property
    def party_ids(self) -> list[int]:
        """Party ids in concatenation order."""
        return sorted(self.hellos)

    @property
    def n_rows(self) -> int:
        """Rows every party holds."""
        return int(self.hellos[0]["n_rows"])

    # -- the Algorithm box ------------------------------------------------------------
    def train_step(self) -> float:
        """Run iteration ``self.step`` and return its critic loss L_D."""
        if self.D_S is None:
            raise RuntimeError("call handshake() before training")
        t = self.step
        for hook in self.before_step:
            hook(t)
        B = self.arch.batch_size
        # 1. the batch: row indices only
        idx = batch_indices(self.seed, t, self.n_rows, B, self.sampler)
        # 2. parties: IFs of real, fake and interpolated rows (+ last step's gradients)
        args = {"step": t, "idx": idx}
        if self.trunk is not None:
            with torch.no_grad():  # the critic step does not train the generator
                args["t"] = self.trunk(self._latent(t, B)).cpu()
        feats = self._round_trip(lambda pid: Call("critic_forward", args))
        self._check_features(feats, CRITIC_FEATURES, B, t)
        # 3. server: D_S loss and GP term, step D_S, dL_D/dIF per party
        grads, server_loss = self.server_critic_step(feats)
        check_server_loss("critic", t, server_loss)
        d_loss = server_loss + sum(f["loss"] for f in feats.values())
        self.history.d_loss.append(d_loss)
        # 4. parties apply the critic gradients (fused into the next round trip)
        backward = {pid: Call("critic_backward", {"step": t, "grads": grads[pid]}) for pid in grads}
        if t % self.n_critic == 0:
            # 5. generator step, after the critic update
            for pid, call in backward.items():
                self._pending.setdefault(pid, []).append(call)
            gen_args: dict[str, Any] = {"step": t, "batch_size": B}
            if self.trunk is not None:
                t_out = self.trunk(self._latent(t, B))  # (B, width), in the graph
                gen_args["t"] = t_out.detach().cpu()
            gen = self._round_trip(lambda pid: Call("generator_forward", gen_args))
            self._check_features(gen, ("h_gen",), B, t)
            ggrads, gserver = self.server_generator_grads(gen)
            check_server_loss("generator", t, gserver)
            self.history.g_loss[t] = gserver + sum(f["loss"] for f in gen.values())
            backward = {pid: Call("generator_backward", {"step": t, "grads": ggrads[pid]})
                        for pid in ggrads}
            if self.trunk is None:
                for pid, call in backward.items():
                    self._pending.setdefault(pid, []).append(call)
            else:  # the next step's fakes need the stepped trunk: no fusing here
                self._step_trunk(t, t_out, self._round_trip(lambda pid: backward[pid]))
        else:
            for pid, call in backward.items():
                self._pending.setdefault(pid, []).append(call)
        self.step += 1
        return d_loss

    def train_chunk(self, k: int) -> list[float]:
        """Chunked mode: steps ``self.step .. self.step + k - 1`` in one round trip.

        An approximation of the Algorithm box (:func:`vflgan_app.core.chunked.train_chunk`).
        """
        from vflgan_app.core import chunked

        return chunked.train_chunk(self, k)

    def server_critic_step(self, feats: dict[int, dict]) -> tuple[dict[int, dict], float]:
        """D_S's part of L_D and the per-party dL_D/dIF, by the critic rule; steps D_S."""
        return self.critic_rule.step(self, feats)

    def server_generator_grads(self, feats: dict[int, dict]) -> tuple[dict[int, dict], float]:
        """D_S's part of L_G and dL_G/dIF per party (D_S is not stepped)."""
        pids = self.party_ids
        leaves = [torch.as_tensor(feats[p]["h_gen"]).to(self.device).detach().requires_grad_(True)
                  for p in pids]  # (B, if_dim) each
        loss = wasserstein_generator_loss(self.D_S(torch.cat(leaves, dim=1)))
        grads = torch.autograd.grad(loss, leaves)
        return {p: {"h_gen": g.detach()} for p, g in zip(pids, grads, strict=True)}, float(loss.detach())

    def _latent(self, step: int, B: int) -> torch.Tensor:
        """The shared z of ``(seed, step)``, as every party derives it, on the server's device."""
        return shared_latent(self.seed, step, B, self.arch.latent_dim).to(self.device)

    def _step_trunk(self, step: int, t_out: torch.Tensor, replies: dict[int, dict]) -> None:
        """Backpropagate the sum of the parties' dL_G/dt through the trunk and step it."""
        want = tuple(t_out.shape)
        total = torch.zeros_like(t_out)
        for pid, reply in replies.items():
            if reply_step(reply) != step or "t" not in reply:
                raise ReplyError(f"party {pid}: generator reply has no trunk gradient t for "
                                 f"step {step}; expected {{'step': {step}, 't': ...}}")
            g = torch.as_tensor(reply["t"]).to(self.device)
            if not g.is_floating_point() or tuple(g.shape) != want:
                raise ReplyError(f"party {pid}: trunk gradient t has dtype {g.dtype} and "
                                 f"shape {tuple(g.shape)}; expected float {want}")
            if not abs_peak(g) <= IF_LIMIT:
                raise ReplyError(f"party {pid}: trunk gradient t holds NaN, inf or values "
                                 f"beyond {IF_LIMIT:g}")
            total = total + g.to(t_out.dtype)
        self.opt_T.zero_grad(set_to_none=True)
        t_out.backward(total)
        self.opt_T.step()

    # -- loop ---------------------------------------------------------------------------
    def fit(self, steps: int, progress: bool = False, log_every: int = 100,
            steps_per_round: int = 1) -> History:
        """Train until ``self.step == steps`` with :func:`vflgan_app.core.loop.fit`."""
        from vflgan_app.core import loop

        return loop.fit(self, steps, steps_per_round=steps_per_round, progress=progress,
                        log_every=log_every)

    def flush(self) -> None:
        """Deliver pending gradients (one round trip) so every party is up to date."""
        if self._pending:
            from vflgan_app.core import chunked

            pending, self._pending = self._pending, {}
            replies = self.transport.exchange(pending)
            chunked.absorb_apply_losses(self, pending, replies)

    def sample(self, n: int, seed: int, independent: bool = False) -> list[np.ndarray]:
        """Ask every party to generate ``n`` rows from the shared publication seed.

        Returns:
            Per-party encoded arrays in party order (concatenate for the joint table).
        """
        self.flush()
        if self.trunk is not None:
            return self._sample_with_trunk(n, seed, independent)
        replies = self.transport.exchange(
            {p: [Call("sample", {"n": n, "seed": seed, "independent": independent})]
             for p in self.party_ids}
        )
        return self._check_samples({p: replies[p][-1] for p in self.party_ids}, n)

    #: rows per publication message with a shared trunk (its output travels with them)
    TRUNK_SAMPLE_ROWS = 4096

    @torch.no_grad()
    def _sample_with_trunk(self, n: int, seed: int, independent: bool) -> list[np.ndarray]:
        """Publication with a shared trunk: the trunk's output travels in slices of rows."""
        n = int(n)
        latents = {p: publication_latent(seed, n, self.arch.latent_dim,
                                         p if independent else None)
                   for p in self.party_ids}
        was_training = self.trunk.training
        self.trunk.eval()
        parts: dict[int, list[np.ndarray]] = {p: [] for p in self.party_ids}
        try:
            for start in range(0, n, self.TRUNK_SAMPLE_ROWS):
                stop = min(n, start + self.TRUNK_SAMPLE_ROWS)
                calls = {p: [Call("sample", {
                    "n": stop - start, "seed": seed, "independent": independent,
                    "t": self.trunk(latents[p][start:stop].to(self.device)).cpu(),
                    "offset": start})] for p in self.party_ids}
                replies = self.transport.exchange(calls)
                got = self._check_samples({p: replies[p][-1] for p in self.party_ids},
                                          stop - start)
                for p, x in zip(self.party_ids, got, strict=True):
                    parts[p].append(x)
        finally:
            self.trunk.train(was_training)
        return [np.concatenate(parts[p]) for p in self.party_ids]

    def _check_samples(self, replies: dict[int, dict], n: int) -> list[np.ndarray]:
        """Every party's sample: float ``(n, width)`` and finite, in party order."""
        out = []
        for p in self.party_ids:
            x = np.asarray(replies[p].get("x") if isinstance(replies[p], dict) else None)
            want = (n, int(self.hellos[p]["width"]))
            if x.dtype.kind != "f" or x.shape != want:
                raise ReplyError(f"party {p}: sample has dtype {x.dtype} and shape {x.shape}; "
                                 f"expected float {want}")
            if not np.isfinite(x).all():
                raise ReplyError(f"party {p}: sample contains NaN or inf values; nothing "
                                 "is published")
            out.append(x)
        return out

    # -- helpers ----------------------------------------------------------------------
    def _round_trip(self, make_call: Callable[[int], Call]) -> dict[int, dict]:
        calls = {p: [*self._pending.pop(p, []), make_call(p)] for p in self.party_ids}
        replies = self.transport.exchange(calls)
        missing = sorted(set(self.party_ids) - set(replies))
        if missing:
            raise ReplyError(f"parties {missing} did not reply")
        return {p: replies[p][-1] for p in self.party_ids}

    def _check_features(self, feats: dict[int, dict], names: tuple[str, ...], B: int,
                        step: int | None = None) -> None:
        for pid, reply in feats.items():
            if step is not None and reply_step(reply) != step:
                raise ReplyError(f"party {pid}: reply is for step {reply.get('step')!r}; "
                                 f"expected step {step}")
            for name in (*names, "loss"):
                if name not in reply:
                    raise ReplyError(f"party {pid}: reply has no {name!r}; expected keys {names}")
            for name in names:
                h = torch.as_tensor(reply[name])
                want = (B, self.hellos[pid]["if_dim"])
                if tuple(h.shape) != want:
                    raise ReplyError(
                        f"party {pid}: {name} has shape {tuple(h.shape)}; expected {want}"
                    )
                if not h.is_floating_point():
                    raise ReplyError(f"party {pid}: {name} has dtype {h.dtype}; expected float")
                peak = abs_peak(h)
                if not math.isfinite(peak):
                    raise ReplyError(f"party {pid}: {name} contains NaN or inf values")
                if peak > IF_LIMIT:
                    raise ReplyError(f"party {pid}: {name} holds values up to {peak:.3g}; "
                                     f"expected |IF| <= {IF_LIMIT:g} (a poisoned or "
                                     "diverged party)")
            loss = reply["loss"]
            if isinstance(loss, bool) or not isinstance(loss, int | float | np.floating) \
                    or not math.isfinite(float(loss)) or abs(float(loss)) > LOSS_LIMIT:
                raise ReplyError(f"party {pid}: loss is {loss!r}; expected a finite number "
                                 f"with |loss| <= {LOSS_LIMIT:g}")

    # -- persistence ------------------------------------------------------------------
    def state_dict(self) -> dict:
        """The server's own state: D_S, its optimizer, progress (no party weights)."""
        return {
            "step": self.step,
            "D_S": self.D_S.state_dict(),
            "opt_S": self.opt_S.state_dict(),
            "d_loss": list(self.history.d_loss),
            "g_loss": dict(self.history.g_loss),
            "extra": {name: obj.state_dict() for name, obj in self.extra_state.items()},
            **({"trunk": self.trunk.state_dict(), "opt_T": self.opt_T.state_dict()}
               if self.trunk is not None else {}),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore from :meth:`state_dict` (after :meth:`handshake`)."""
        self.step = int(state["step"])
        self.D_S.load_state_dict(state["D_S"])
        self.opt_S.load_state_dict(state["opt_S"])
        self.history = History(list(state["d_loss"]), dict(state["g_loss"]))
        if ("trunk" in state) != (self.trunk is not None):
            raise ValueError(f"server state: {'a' if 'trunk' in state else 'no'} generator "
                             f"trunk saved, this run has generator_trunk = "
                             f"{self.generator_trunk}; expected the same setting")
        if self.trunk is not None:
            self.trunk.load_state_dict(state["trunk"])
            self.opt_T.load_state_dict(state["opt_T"])
        extra = state.get("extra", {})
        for name, obj in self.extra_state.items():
            if name not in extra:
                raise ValueError(f"server state: no {name!r} state; expected one (this run "
                                 f"has {name!r} installed and cannot resume without it)")
            obj.load_state_dict(extra[name])
