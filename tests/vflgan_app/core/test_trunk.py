"""The shared generator trunk (config ``generator_trunk``): what travels, what is refused.

Exactness against the single-process reference is in test_exactness.py, the Flower
equality in tests/vflgan_app/flower/test_flower.py and the wire audit in
test_wire_audit.py; this file holds the party's and the server's checks, the round-trip
count, publication in slices, and the config's refusals.
"""

import dataclasses

import numpy as np
import pytest
import torch

from tests.vflgan_app.conftest import TINY
from tests.vflgan_app.core.conftest import make_federation
from vflgan_app.config import VFLGANConfig
from vflgan_app.core.coordinator import Coordinator
from vflgan_app.core.model import GeneratorTrunk, build_party_modules, build_trunk
from vflgan_app.core.sampling import batch_indices
from vflgan_app.errors import HandshakeError, ProtocolError, ReplyError

B, N, SEED = TINY.batch_size, 32, 3
WIDTH = TINY.gen_hidden[0]  # trunk of 1 block


def test_trunk_and_head_compose_to_the_whole_generator():
    # the split changes where blocks live, not what the network is: with every weight
    # copied, trunk + head compute what the unsplit generator computes
    from vflgan_app.data.schema import OutputSpan

    spans = [OutputSpan("tanh", 0, 3)]
    whole, _, _ = build_party_modules(TINY, spans, 3, SEED, 0)
    head, _, _ = build_party_modules(TINY, spans, 3, SEED, 0, trunk=1)
    trunk = build_trunk(TINY, 1, SEED)
    params = iter(whole.body.state_dict().values())  # trunk's tensors first, in order
    for part in (trunk.net, head.body):
        part.load_state_dict({k: next(params) for k in part.state_dict()})
    assert next(params, None) is None
    whole.eval(), trunk.eval(), head.eval()  # BatchNorm on running statistics
    z = torch.randn(6, TINY.latent_dim)
    torch.testing.assert_close(head(trunk(z)), whole(z))
    with pytest.raises(ValueError, match="generator_trunk: got 3, expected 1..2"):
        GeneratorTrunk(TINY, 3)


def test_trunk_round_trips_one_more_per_generator_step():
    plain = make_federation(seed=SEED)
    shared = make_federation(seed=SEED, trunk=1)
    for fed in (plain, shared):
        for _ in range(10):
            fed.coordinator.train_step()
    # handshake + 10 steps + 2 generator steps (steps 0 and 5), twice with the trunk
    assert plain.transport.round_trips == 1 + 10 + 2
    assert shared.transport.round_trips == 1 + 10 + 2 * 2
    # the trunk's gradient comes back alone, before the next step's forward
    backward = [c[0] for c in shared.transport.calls
                if any(m == "generator_backward" for m, _ in c[0])]
    assert backward == [[("generator_backward", 0)], [("generator_backward", 5)]]


def test_trunk_is_trained_and_parties_get_its_output():
    fed = make_federation(seed=SEED, trunk=1)
    before = {k: v.clone() for k, v in fed.coordinator.trunk.state_dict().items()}
    for _ in range(6):
        fed.coordinator.train_step()
    after = fed.coordinator.trunk.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    # the parties derive no z: their generators read WIDTH features
    assert fed.parties[0].G.body[0].in_features == WIDTH


@pytest.mark.parametrize(("t", "match"), [
    (None, "has no trunk output t"),
    (torch.zeros(B, WIDTH + 1), r"shape \(8, 9\); expected float \(8, 8\)"),
    (torch.zeros(B, WIDTH, dtype=torch.long), "dtype torch.int64"),
    (torch.full((B, WIDTH), float("nan")), "NaN, inf or values beyond"),
    (torch.full((B, WIDTH), 1e9), "NaN, inf or values beyond"),
])
@pytest.mark.parametrize("method", ["critic_forward", "generator_forward"])
def test_a_trunk_party_refuses_a_missing_or_malformed_trunk_output(t, match, method):
    fed = make_federation(seed=SEED, trunk=1)
    party = fed.parties[0]
    before = {k: v.clone() for k, v in party.G.state_dict().items()}
    args = ({"idx": batch_indices(SEED, 0, N, B, "shuffle")} if method == "critic_forward"
            else {"batch_size": B})
    with pytest.raises(ProtocolError, match=match):
        getattr(party, method)(0, **args, t=t)
    assert party.pending_forwards() == {}
    assert all(torch.equal(before[k], v) for k, v in party.G.state_dict().items())


def test_a_party_without_trunk_refuses_a_trunk_output():
    fed = make_federation(seed=SEED)
    with pytest.raises(ProtocolError, match="this run has no shared trunk"):
        fed.parties[0].critic_forward(0, batch_indices(SEED, 0, N, B, "shuffle"),
                                      t=torch.zeros(B, TINY.latent_dim))
    with pytest.raises(ProtocolError, match="no shared trunk"):
        fed.parties[0].sample(4, 0, t=torch.zeros(4, TINY.latent_dim))


@pytest.mark.parametrize(("parties", "server"), [(1, 0), (0, 1), (1, 2)])
def test_handshake_refuses_a_different_trunk_setting(parties, server):
    fed = make_federation(seed=SEED, trunk=parties, server_trunk=server, handshake=False)
    with pytest.raises(HandshakeError, match=f"trunk of {parties} blocks; this server "
                                             f"holds {server}"):
        fed.coordinator.handshake()


@pytest.mark.parametrize(("reply", "match"), [
    ({"step": 0}, "has no trunk gradient t"),
    ({"step": 1, "t": torch.zeros(B, WIDTH)}, "has no trunk gradient t for step 0"),
    ({"step": 0, "t": torch.zeros(B, 3)}, r"shape \(8, 3\); expected float \(8, 8\)"),
    ({"step": 0, "t": torch.full((B, WIDTH), float("inf"))}, "NaN, inf or values"),
])
def test_the_server_refuses_a_malformed_trunk_gradient(reply, match):
    fed = make_federation(seed=SEED, trunk=1)
    before = {k: v.clone() for k, v in fed.coordinator.trunk.state_dict().items()}

    def tamper(calls, replies):
        if any(c.method == "generator_backward" for c in calls[1]):
            replies[1][-1] = reply
        return replies

    fed.transport.tamper = tamper
    with pytest.raises(ReplyError, match=match):
        fed.coordinator.train_step()
    after = fed.coordinator.trunk.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # not stepped


def test_publication_travels_in_slices_with_the_trunks_output(monkeypatch):
    fed = make_federation(seed=SEED, trunk=2)
    for _ in range(3):
        fed.coordinator.train_step()
    whole = fed.coordinator.sample(10, seed=7)
    monkeypatch.setattr(Coordinator, "TRUNK_SAMPLE_ROWS", 4)
    trips = fed.transport.round_trips
    sliced = fed.coordinator.sample(10, seed=7)
    assert fed.transport.round_trips - trips == 3  # rows 0-3, 4-7, 8-9
    # the trunk's output is a function of z alone: slicing changes only the Gumbel
    # noise of categorical columns (keyed by the slice's offset)
    for k, (a, b) in enumerate(zip(whole, sliced, strict=True)):
        spans = fed.parties[k].data.schema.output_spans()
        for s in spans:
            if s.kind != "onehot":
                np.testing.assert_allclose(a[:, s.start:s.end], b[:, s.start:s.end],
                                           rtol=1e-6, atol=1e-6)
        assert a.shape == b.shape == (10, fed.parties[k].data.schema.width)
    # the independent-latent control gets each party its own z
    shared, control = fed.coordinator.sample(64, 1), fed.coordinator.sample(64, 1, True)
    assert not np.allclose(shared[0], control[0]) and not np.allclose(shared[1], control[1])
    assert fed.coordinator.trunk.training  # back in training mode after publication


def test_trunk_state_is_saved_and_restored():
    a = make_federation(seed=SEED, trunk=1)
    for _ in range(6):
        a.coordinator.train_step()
    a.coordinator.flush()
    state = a.coordinator.state_dict()
    b = make_federation(seed=SEED, trunk=1)
    b.coordinator.load_state_dict(state)
    for k, v in a.coordinator.trunk.state_dict().items():
        assert torch.equal(v, b.coordinator.trunk.state_dict()[k])
    plain = make_federation(seed=SEED)
    with pytest.raises(ValueError, match="a generator trunk saved, this run has "
                                         "generator_trunk = 0"):
        plain.coordinator.load_state_dict(state)


def test_chunked_mode_steps_the_trunk_once_per_generator_step():
    fed = make_federation(seed=SEED, trunk=1, n_critic=2)
    stepped = []
    real = fed.coordinator._step_trunk
    fed.coordinator._step_trunk = lambda t, out, replies: (stepped.append(t),
                                                           real(t, out, replies))
    before = {k: v.clone() for k, v in fed.coordinator.trunk.state_dict().items()}
    fed.coordinator.fit(8, steps_per_round=4)
    # handshake, 2 chunks, flush; the trunk's gradients ride with the next exchange
    assert fed.transport.round_trips == 1 + 2 + 1
    assert stepped == [0, 2, 4, 6]
    after = fed.coordinator.trunk.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    # every request that generates carried the trunk's output
    methods = {m for c in fed.transport.calls for ms in c.values() for m, _ in ms}
    assert {"critic_features", "generator_features", "critic_apply",
            "generator_apply"} <= methods


def test_config_refuses_a_trunk_deeper_than_the_generator():
    with pytest.raises(ValueError, match="generator-trunk: got -1"):
        VFLGANConfig(generator_trunk=-1)
    cfg = VFLGANConfig(dataset="digits", generator_trunk=4)
    with pytest.raises(ValueError, match=r"generator-trunk: got 4, expected 0..3 "
                                         r"\(architecture 'digits' has 3"):
        cfg.resolve_architecture()
    assert dataclasses.replace(cfg, generator_trunk=3).resolve_architecture()
