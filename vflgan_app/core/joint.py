"""The joint objective: one gradient penalty through the whole split critic, exact over the wire.

The paper's objective penalises each module's input gradient on its own (per party
``D_Ck`` and ``D_pk``, and ``D_S`` on the concatenated IFs: 2K + 1 terms). The joint
objective penalises the gradient of the whole critic ``D(x) = D_S(D_C1(x_1), ...,
D_CK(x_K))`` with respect to the whole interpolated row ``x^ = (x^_1, ..., x^_K)``, as
WGAN-GP does for one network, plus each private head's end-to-end penalty
``||d D_pk(D_Ck(x^_k)) / d x^_k||``:

    L_D = W_S + sum_k lambda_p W_pk + lambda_gp [ mean_i (||g_i|| - 1)^2
                                                  + sum_k pen(D_pk o D_Ck) ]

where ``g_i = (J_1i^T u_1i, ..., J_Ki^T u_Ki)``, ``J_ki = d h^_ki / d x^_ki`` is the bottom
critic's Jacobian at row i and ``u_k = d D_S / d h^_k`` at the interpolates. So
``||g_i||^2 = sum_k s_ki`` with ``s_ki = ||J_ki^T u_ki||^2``: each party can compute its
own part, and nothing but IF-sized vectors and per-row scalars crosses the wire.

Message sequence of one critic step (2 round trips; the third rides with the next step):

1. parties -> server: ``h_real, h_fake, h^`` (``critic_forward``, as the paper objective).
2. server: ``u = d D_S(h^) / d h^`` (kept in the graph); -> each party ``u_k``
   (``critic_penalty``). Party k: ``g_k = J_k^T u_k`` (in the graph), ``s_k = ||g_k||^2``
   per row and ``a_k = J_k g_k`` (``= (1/2) d s_k / d u_k``); -> server ``s_k, a_k``.
3. server: ``P = mean_i (sqrt(sum_k s_ki) - 1)^2``, ``w = lambda_gp dP/ds`` (one weight per
   row, the same for every party), ``v_k = 2 w a_k`` (``= d lambda_gp P / d u_k``);
   backward of ``W_S`` and of ``u`` with ``v``: D_S's gradient (first and second order)
   and ``r_k = d/d h^_k <u, v>`` (the penalty's path through D_S's Hessian). Step D_S.
   -> each party ``dW/dh_real, dW/dh_fake, r_k`` and ``w`` (``critic_backward``, fused
   with the next step's forward). Party k backpropagates its local terms, the three IF
   gradients and ``sum_i w_i s_ki`` (the second-order term through its own Jacobian).

Chunked mode (``flower.steps-per-round = K``) has no room for step 2's exchange: there
each party sends, with the IFs of every step of the chunk, each interpolated row's
Jacobian Gram matrix ``G_ki = J_ki J_ki^T`` (at the chunk's weights; its upper triangle,
``(B, if_dim (if_dim + 1) / 2)``, :meth:`JointCriticGradients.chunk_features` and
:func:`gram_unpack`), from which the server forms
``s_ki = u_ki^T G_ki u_ki`` and ``a_ki = G_ki u_ki`` itself, and sends ``u_k`` back with
the step's gradients; the party rebuilds its penalty term from ``u_k`` at its current
weights when it applies them (:meth:`~vflgan_app.core.party.Party.critic_apply`). With
K = 1 that is the exact critic update; for K > 1 the party-side Jacobians are up to K
steps stale, as the IFs are. It moves ``if_dim (if_dim + 1) / 2`` numbers per row instead of
``if_dim + 1``, so it suits small IF widths (digits: 64).

Every term is the exact gradient of the loss above: ``tests/vflgan_app/core/
test_exactness.py`` checks it against :class:`~vflgan_app.core.reference.ReferenceVFLGAN`
(``objective="joint"``), which computes the loss with one autograd graph. It relies on
critics without batch-coupled layers (no BatchNorm in D_C, D_p, D_S), as the DP modes do.
"""

from __future__ import annotations

import math

import torch

from vflgan_app.core.coordinator import (
    IF_LIMIT,
    ServerCriticGradients,
    feature_leaves,
    reply_step,
    shuffled_negatives_loss,
)
from vflgan_app.core.losses import (
    gradient_norm_penalty,
    input_gradient,
    wasserstein_critic_loss,
)
from vflgan_app.core.party import CriticGradients
from vflgan_app.core.protocol import CRITIC_FEATURES, Call, abs_peak
from vflgan_app.errors import ProtocolError, ReplyError


class JointCriticGradients(CriticGradients):
    """A party's part of the joint objective (see the module doc).

    Args:
        gram: send each interpolated row's Jacobian Gram matrix with the IFs of every
            critic forward (config ``joint_exchange = "gram"``): the server then forms
            the penalty without the mid-step exchange.
    """

    def __init__(self, gram: bool = False) -> None:
        self.gram = gram

    def forward(self, party, x_real, x_fake, x_hat) -> tuple[dict, object]:
        """IFs, and the private head's Wasserstein and end-to-end penalty terms."""
        s = party.settings
        h_real, h_fake, h_hat = party.D_C(x_real), party.D_C(x_fake), party.D_C(x_hat)
        local = s.lambda_p * wasserstein_critic_loss(party.D_p(h_real), party.D_p(h_fake))
        local = local + s.lambda_gp * gradient_norm_penalty(
            input_gradient(party.D_p(h_hat), x_hat))
        reply = {"h_real": h_real.detach(), "h_fake": h_fake.detach(),
                 "h_hat": h_hat.detach(), "loss": float(local.detach())}
        if self.gram:
            reply.update(self.chunk_features(party, x_hat))
        return reply, {"local": local, "feats": [h_real, h_fake, h_hat], "x_hat": x_hat,
                       "s": None}

    def chunk_features(self, party, x_hat: torch.Tensor) -> dict:
        """Chunked mode: each row's Jacobian Gram matrix ``G_i = J_i J_i^T`` of D_Ck at x^.

        Returns:
            ``{"G": (B, if_dim (if_dim + 1) / 2)}``, the upper triangle of each row's
            (symmetric) matrix row by row (:func:`gram_unpack` rebuilds it), computed
            without touching any state.
        """
        J = input_jacobian(party.D_C, x_hat.detach())  # (B, if_dim, width)
        G = J @ J.transpose(1, 2)
        i, j = torch.triu_indices(G.shape[1], G.shape[1])
        return {"G": G[:, i, j].detach()}

    def penalty(self, party, pending: dict, u: torch.Tensor) -> dict:
        """``s_k = ||J_k^T u_k||^2`` per row (kept in the graph) and ``a_k = J_k J_k^T u_k``.

        Returns:
            ``{"s": (B,), "a": (B, if_dim)}``.
        """
        h_hat, x_hat = pending["feats"][2], pending["x_hat"]
        u = torch.as_tensor(u).to(h_hat).detach().requires_grad_(True)  # (B, if_dim)
        (g,) = torch.autograd.grad(h_hat, x_hat, grad_outputs=u, create_graph=True)
        s = g.pow(2).sum(dim=1)  # (B,)
        # g is linear in u (g = J^T u), so d<g, c>/du = J c: with c = g, a = J g
        (a,) = torch.autograd.grad(g, u, grad_outputs=g.detach(), retain_graph=True)
        pending["s"] = s
        return {"s": s.detach(), "a": a.detach()}

    def backward(self, party, step, pending, upstream, grads=None) -> None:
        """Local terms, the three IF gradients, and ``sum_i w_i s_ki``."""
        if pending["s"] is None:
            raise ProtocolError(f"party {party.party_id}: critic gradients for step {step} "
                                "before its critic_penalty (objective 'joint')")
        w = torch.as_tensor(grads["w"]).to(pending["s"])
        local = pending["local"]
        torch.autograd.backward([local, *pending["feats"], pending["s"]],
                                [torch.ones_like(local), *upstream, w])


def input_jacobian(module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Per-row Jacobian ``d module(x)_i / d x_i``, ``(B, out, in)``, of a row-wise network.

    A stack of ``Linear`` and ``LeakyReLU`` layers (our bottom critics) is multiplied
    out layer by layer, ``J <- W J`` and ``J <- diag(slope) J``: a few batched matmuls.
    Anything else goes through ``torch.func`` (``vmap`` of ``jacrev``, slower).
    """
    layers = list(module.net) if isinstance(getattr(module, "net", None),
                                            torch.nn.Sequential) else None
    if layers is None or not all(isinstance(m, torch.nn.Linear | torch.nn.LeakyReLU)
                                 for m in layers):
        return torch.func.vmap(torch.func.jacrev(lambda xi: module(xi[None])[0]))(x)
    with torch.no_grad():
        h, J = x, None
        for m in layers:
            if isinstance(m, torch.nn.Linear):
                J = m.weight.expand(x.shape[0], -1, -1) if J is None else m.weight @ J
                h = torch.nn.functional.linear(h, m.weight, m.bias)
            else:
                slope = torch.where(h > 0, 1.0, m.negative_slope).to(h.dtype)
                J, h = slope[:, :, None] * J, h * slope
        return J


def gram_unpack(packed: torch.Tensor, d: int) -> torch.Tensor:
    """``(B, d (d + 1) / 2)`` upper triangles (row by row) -> ``(B, d, d)`` symmetric."""
    i, j = torch.triu_indices(d, d)
    G = packed.new_zeros(packed.shape[0], d, d)
    G[:, i, j] = packed
    G[:, j, i] = packed
    return G


class JointServerCritic(ServerCriticGradients):
    """The server's part of the joint objective (see the module doc); one extra round trip.

    When the parties' features carry Gram matrices ``"G"`` (chunked mode, or exact mode
    with ``joint_exchange = "gram"``) the extra round trip is replaced by them, and ``u``
    travels with the gradients.
    """

    def step(self, coord, feats: dict[int, dict]) -> tuple[dict[int, dict], float]:
        """Steps D_S; returns the per-party gradients (with ``w``) and the server's L_D part."""
        pids = coord.party_ids
        leaves = feature_leaves(coord, feats)
        wass = wasserstein_critic_loss(coord.D_S(torch.cat(leaves["h_real"], dim=1)),
                                       coord.D_S(torch.cat(leaves["h_fake"], dim=1)))
        wass = wass + shuffled_negatives_loss(coord, leaves["h_real"], feats)
        h_hat = torch.cat(leaves["h_hat"], dim=1)  # (B, sum of IF widths)
        (u,) = torch.autograd.grad(coord.D_S(h_hat).sum(), h_hat, create_graph=True)
        widths = [leaf.shape[1] for leaf in leaves["h_hat"]]
        u_parts = dict(zip(pids, torch.split(u, widths, dim=1), strict=True))
        step = int(next(iter(feats.values()))["step"])
        gram = any("G" in feats[p] for p in pids)
        if gram:
            s, a = self._from_gram(coord, feats, u_parts, h_hat.shape[0], step)
        else:
            replies = coord._round_trip(lambda p: Call(
                "critic_penalty", {"step": step, "u": u_parts[p].detach()}))
            s, a = self._check(coord, replies, h_hat.shape[0], step)
        # the penalty on the row norms, and its weights w = d(lambda_gp P)/ds
        s_leaves = [s[p].requires_grad_(True) for p in pids]
        norm = torch.stack(s_leaves).sum(dim=0).sqrt()  # (B,)
        penalty = coord.lambda_gp * ((norm - 1.0) ** 2).mean()
        w = torch.autograd.grad(penalty, s_leaves)
        v = torch.cat([2.0 * w_k[:, None] * a[p] for w_k, p in zip(w, pids, strict=True)],
                      dim=1)  # d penalty / du
        coord.opt_S.zero_grad(set_to_none=True)
        torch.autograd.backward([wass, u], [torch.ones_like(wass), v])  # wass: + negatives
        self.update_server(coord, leaves, v)
        coord.opt_S.step()
        grads = {p: {**{name: leaves[name][i].grad.detach() for name in CRITIC_FEATURES},
                     "w": w[i].detach(), **({"u": u_parts[p].detach()} if gram else {})}
                 for i, p in enumerate(pids)}
        return grads, float((wass + penalty).detach())

    def update_server(self, coord, leaves: dict[str, list[torch.Tensor]],
                      v: torch.Tensor) -> None:
        """Turn D_S's exact gradient (in ``.grad``) into its update; exact: keep it.

        Strict DP mode replaces it with a clipped, noised per-sample aggregate
        (:class:`~vflgan_app.dp.processors.StrictJointServerDP`); ``v`` is
        ``d lambda_gp P / d u`` per row.
        """

    @classmethod
    def _from_gram(cls, coord, feats: dict[int, dict], u_parts: dict, B: int, step: int):
        """``s_k = u_k^T G_k u_k`` and ``a_k = G_k u_k`` per row (chunked mode).

        Formed from the parties' Gram matrices, then checked as the exact mode's
        replies are.
        """
        replies = {}
        for p in coord.party_ids:
            d = coord.hellos[p]["if_dim"]
            if "G" not in feats[p]:
                raise ReplyError(f"party {p}: critic features of step {step} have no Gram "
                                 "matrices 'G'; expected them with objective='joint'")
            G = torch.as_tensor(feats[p]["G"]).to(coord.device)
            want = (B, d * (d + 1) // 2)
            if tuple(G.shape) != want or not G.is_floating_point():
                raise ReplyError(f"party {p}: G has shape {tuple(G.shape)} and dtype "
                                 f"{G.dtype}; expected float {want} (the upper triangle "
                                 f"of each row's {d} x {d} Gram matrix)")
            if not math.isfinite(abs_peak(G)):
                raise ReplyError(f"party {p}: G contains NaN or inf values")
            G = gram_unpack(G, d)
            u = u_parts[p].detach().to(G.dtype)
            a = torch.einsum("bij,bj->bi", G, u)
            replies[p] = {"step": step, "s": (u * a).sum(dim=1), "a": a}
        return cls._check(coord, replies, B, step)

    @staticmethod
    def _check(coord, replies: dict[int, dict], B: int, step: int):
        s, a = {}, {}
        for p in coord.party_ids:
            r = replies[p]
            if reply_step(r) != step:
                raise ReplyError(f"party {p}: penalty reply is for step {r.get('step')!r}; "
                                 f"expected step {step}")
            for name, shape in (("s", (B,)), ("a", (B, coord.hellos[p]["if_dim"]))):
                if name not in r:
                    raise ReplyError(f"party {p}: penalty reply has no {name!r}")
                t = torch.as_tensor(r[name]).to(coord.device)
                if tuple(t.shape) != shape or not t.is_floating_point():
                    raise ReplyError(f"party {p}: {name} has shape {tuple(t.shape)} and "
                                     f"dtype {t.dtype}; expected float {shape}")
                peak = abs_peak(t)
                if not math.isfinite(peak):
                    raise ReplyError(f"party {p}: {name} contains NaN or inf values")
                if peak > IF_LIMIT:
                    raise ReplyError(f"party {p}: {name} holds values up to "
                                     f"{peak:.3g}; expected <= {IF_LIMIT:g} "
                                     "(a poisoned or diverged party)")
                if name == "s" and (t < 0).any():
                    raise ReplyError(f"party {p}: s has negative entries; expected squared "
                                     "norms >= 0")
                (s if name == "s" else a)[p] = t.detach()
        return s, a
