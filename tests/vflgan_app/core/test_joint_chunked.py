"""The joint objective in chunked mode: Gram matrices instead of the mid-step exchange.

With K = 1 a chunk's critic update is the exact one (the Gram matrices are taken at the
weights the exact mode's critic_penalty would use); for K > 1 it is the chunked
approximation, as for the paper objective.
"""

import pytest
import torch

from tests.vflgan_app.conftest import TINY
from tests.vflgan_app.core.conftest import make_federation
from vflgan_app.core.joint import JointCriticGradients, JointServerCritic
from vflgan_app.core.sampling import batch_indices
from vflgan_app.errors import ReplyError

B, N, SEED = TINY.batch_size, 32, 3


def joint_federation(**kw):
    fed = make_federation(seed=SEED, **kw)
    for p in fed.parties:
        p.critic_rule = JointCriticGradients()
    fed.coordinator.critic_rule = JointServerCritic()
    return fed


def test_gram_matrices_give_the_exact_penalty_replies():
    # the server's s = u^T G u and a = G u equal the party's own critic_penalty reply
    fed = joint_federation()
    party = fed.parties[0]
    idx = batch_indices(SEED, 0, N, B, "shuffle")
    from vflgan_app.core.joint import gram_unpack, input_jacobian

    d = TINY.if_dim
    packed = party.critic_features(0, idx)["G"]  # upper triangles, (B, d (d + 1) / 2)
    assert packed.shape == (B, d * (d + 1) // 2)
    G = gram_unpack(packed, d)
    torch.testing.assert_close(G, G.transpose(1, 2))
    J = input_jacobian(party.D_C, party.critic_inputs(0, idx)[2])  # the same x^
    torch.testing.assert_close(G, J @ J.transpose(1, 2))
    party.critic_forward(0, idx)
    u = torch.randn(B, TINY.if_dim, generator=torch.Generator().manual_seed(1))
    reply = party.critic_penalty(0, u)
    torch.testing.assert_close(torch.einsum("bi,bij,bj->b", u, G, u), reply["s"])
    torch.testing.assert_close(torch.einsum("bij,bj->bi", G, u), reply["a"])


def test_chunked_joint_with_k1_makes_the_exact_critic_updates():
    # float64: the only differences left are summation orders. The generator step of
    # step 0 comes after the critic update in exact mode and before it in chunked mode
    # (chunked.train_chunk), so the comparison is of the critic's first step alone.
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        exact, chunked = joint_federation(n_critic=1000), joint_federation(n_critic=1000)
        d_exact = exact.coordinator.train_step()
        chunked.coordinator.train_chunk(1)
        exact.coordinator.flush(), chunked.coordinator.flush()
        assert chunked.coordinator.history.d_loss[0] == pytest.approx(d_exact, rel=1e-9)
        for a, b in zip(exact.parties, chunked.parties, strict=True):
            for (name, x), y in zip(a.D_C.state_dict().items(), b.D_C.state_dict().values()):
                torch.testing.assert_close(x, y, rtol=0, atol=1e-10, msg=name)
        for x, y in zip(exact.coordinator.D_S.parameters(),
                        chunked.coordinator.D_S.parameters(), strict=True):
            torch.testing.assert_close(x, y, rtol=0, atol=1e-10)
        # no mid-step exchange: 1 round trip for the chunk (+1 flush), not 2
        methods = {m for c in chunked.transport.calls for ms in c.values() for m, _ in ms}
        assert "critic_penalty" not in methods
    finally:
        torch.set_default_dtype(old)


def test_chunked_joint_trains_k_steps_per_round_trip():
    fed = joint_federation(n_critic=5)
    fed.coordinator.fit(12, steps_per_round=4)
    assert fed.transport.round_trips == 1 + 3 + 1  # handshake, 3 chunks, flush
    assert len(fed.coordinator.history.d_loss) == 12
    assert all(torch.isfinite(torch.tensor(fed.coordinator.history.d_loss)))


@pytest.mark.parametrize(("G", "match"), [
    (None, "have no Gram matrices 'G'"),
    (torch.zeros(B, 3, 3), r"G has shape \(8, 3, 3\)"),
    (torch.zeros(B, TINY.if_dim, TINY.if_dim), r"the upper triangle"),  # unpacked
    (torch.full((B, TINY.if_dim * (TINY.if_dim + 1) // 2), float("nan")), "G contains NaN"),
    (-torch.eye(TINY.if_dim)[tuple(torch.triu_indices(TINY.if_dim, TINY.if_dim))]
     .expand(B, -1).clone(), "s has negative entries"),
])
def test_the_server_refuses_bad_gram_matrices(G, match):
    fed = joint_federation()

    def tamper(calls, replies):
        for i, c in enumerate(calls[1]):
            if c.method == "critic_features":
                if G is None:
                    replies[1][i].pop("G")
                else:
                    replies[1][i]["G"] = G
        return replies

    fed.transport.tamper = tamper
    with pytest.raises(ReplyError, match=match):
        fed.coordinator.train_chunk(2)


def test_input_jacobian_equals_autograd():
    from vflgan_app.core.joint import input_jacobian
    from vflgan_app.core.model import BottomCritic

    critic = BottomCritic(TINY, 5)
    x = torch.randn(6, 5, generator=torch.Generator().manual_seed(0))
    want = torch.func.vmap(torch.func.jacrev(lambda xi: critic(xi[None])[0]))(x)
    torch.testing.assert_close(input_jacobian(critic, x), want)
    # a module that is not a Linear/LeakyReLU stack takes the generic path
    other = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Tanh())
    torch.testing.assert_close(
        input_jacobian(other, x),
        torch.func.vmap(torch.func.jacrev(lambda xi: other(xi[None])[0]))(x))
