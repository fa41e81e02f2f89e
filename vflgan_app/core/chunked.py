"""Chunked mode (``flower.steps-per-round = K``): one round trip carries K steps.

The communication-efficient approximation of the Algorithm box: parties compute the IFs
of K batches with the weights at the chunk's start, the server runs the K critic
iterations in order on them (D_S stays exact), and each party applies the K gradient
sets in the next round trip with a fresh local forward. Party-side gradients are up
to K steps stale; for K = 1 the critic updates equal the exact algorithm's. The
quality cost against K is measured in simulations/README.md (Flower section).
"""

from __future__ import annotations

import math

import torch

from vflgan_app.core.coordinator import check_server_loss, reply_step
from vflgan_app.core.protocol import CRITIC_FEATURES, Call
from vflgan_app.core.sampling import batch_indices
from vflgan_app.errors import ReplyError


def train_chunk(coord, k: int) -> list[float]:
    """Chunked mode: run steps ``coord.step .. coord.step + k - 1`` in one round trip.

    Each party computes the IFs of all k critic batches (and of the chunk's generator
    steps) with its weights at the chunk's start. The server then runs the k
    iterations in order on those IFs (D_S stays exact) and queues k gradient sets,
    which ride with the next round trip; each party applies them in order with a
    fresh local forward (current weights, same rows, z, alpha and noise). Party-side
    gradients are therefore up to k steps stale: an approximation that equals the
    exact algorithm's critic updates for k = 1 (generator IFs are taken before the
    critic update of their step, not after it).

    Returns:
        The k critic losses L_D.
    """
    if coord.D_S is None:
        raise RuntimeError("call handshake() before training")
    B = coord.arch.batch_size
    steps = list(range(coord.step, coord.step + k))
    for t in steps:
        for hook in coord.before_step:
            hook(t)
    idx = {t: batch_indices(coord.seed, t, coord.n_rows, B, coord.sampler) for t in steps}
    gen_steps = [t for t in steps if t % coord.n_critic == 0]
    trunk = trunk_outputs(coord, steps, B)  # {} without a shared trunk
    forwards = [Call("critic_features", {"step": t, "idx": idx[t], **trunk.get(t, {})})
                for t in steps] + [
        Call("generator_features", {"step": t, "batch_size": B, **trunk.get(t, {})})
        for t in gen_steps]
    pending = {p: coord._pending.pop(p, []) for p in coord.party_ids}
    calls = {p: [*pending[p], *forwards] for p in coord.party_ids}
    replies = coord.transport.exchange(calls)
    missing = sorted(set(coord.party_ids) - set(replies))
    if missing:
        raise ReplyError(f"parties {missing} did not reply")
    for p in coord.party_ids:
        if len(replies[p]) != len(calls[p]):
            raise ReplyError(f"party {p}: {len(replies[p])} replies; expected "
                             f"{len(calls[p])}")
    absorb_apply_losses(coord, pending, replies)
    tail = {p: replies[p][len(pending[p]):] for p in coord.party_ids}
    losses = []
    for i, t in enumerate(steps):
        feats = {p: tail[p][i] for p in coord.party_ids}
        coord._check_features(feats, CRITIC_FEATURES, B, t)
        grads, server_loss = coord.server_critic_step(feats)
        check_server_loss("critic", t, server_loss)
        # L_D's party terms arrive with the critic_apply replies (_absorb_apply_losses)
        coord._server_loss[t] = server_loss
        coord.history.d_loss.append(math.nan)
        losses.append(server_loss)
        for p in coord.party_ids:
            coord._pending.setdefault(p, []).append(Call("critic_apply", {
                "step": t, "idx": idx[t], "grads": grads[p], **trunk.get(t, {})}))
        if t in gen_steps:
            j = len(steps) + gen_steps.index(t)
            gen = {p: tail[p][j] for p in coord.party_ids}
            coord._check_features(gen, ("h_gen",), B, t)
            ggrads, gserver = coord.server_generator_grads(gen)
            check_server_loss("generator", t, gserver)
            coord.history.g_loss[t] = gserver + sum(f["loss"] for f in gen.values())
            for p in coord.party_ids:
                coord._pending[p].append(Call("generator_apply", {
                    "step": t, "batch_size": B, "grads": ggrads[p], **trunk.get(t, {})}))
    coord.step += k
    return losses


def trunk_outputs(coord, steps: list[int], B: int) -> dict[int, dict]:
    """The shared trunk's outputs for a chunk, at the trunk's weights at its start.

    ``{t: {"t": output for step t's z}}`` (a step's critic and generator forwards share
    its z, as in exact mode), or ``{}`` without a trunk. The trunk, like the parties, is
    stepped later (:func:`absorb_apply_losses`): its outputs are up to K steps stale.
    """
    if coord.trunk is None:
        return {}
    with torch.no_grad():
        return {t: {"t": coord.trunk(coord._latent(t, B)).cpu()} for t in steps}


def absorb_apply_losses(coord, pending: dict[int, list[Call]],
                        replies: dict[int, list[dict]]) -> None:
    """Complete L_D of chunked steps with the party terms their applies report.

    With a shared trunk, the generator applies' ``dL_G/dt`` are summed over parties and
    the trunk is stepped once per generator step, in order, by a fresh forward of its
    z at the trunk's current weights (as each party re-forwards at its own).
    """
    got: dict[int, dict[int, float]] = {}
    trunk_replies: dict[int, dict[int, dict]] = {}  # generator step -> party -> reply
    for p, plist in pending.items():
        for call, reply in zip(plist, replies.get(p, []), strict=False):
            if call.method == "generator_apply" and coord.trunk is not None:
                trunk_replies.setdefault(int(call.args["step"]), {})[p] = reply
            if call.method == "critic_apply":
                t = int(call.args["step"])
                if reply_step(reply) != t:
                    raise ReplyError(f"party {p}: reply is for step {reply['step']}; "
                                     f"expected step {t}")
                got.setdefault(t, {})[p] = float(reply["loss"])
    for t, by_party in got.items():
        server = coord._server_loss.pop(t, None)
        if server is not None and len(by_party) == len(coord.party_ids):
            coord.history.d_loss[t] = server + sum(by_party[p] for p in coord.party_ids)
    for t in sorted(trunk_replies):
        if len(trunk_replies[t]) != len(coord.party_ids):
            raise ReplyError(f"generator step {t}: trunk gradients from parties "
                             f"{sorted(trunk_replies[t])}; expected {coord.party_ids}")
        B = coord.arch.batch_size
        coord._step_trunk(t, coord.trunk(coord._latent(t, B)), trunk_replies[t])
