"""Party: one protocol step per method; replies carry IFs and losses, never rows."""

import io
import json

import numpy as np
import pytest
import torch

from tests.vflgan_app.conftest import TINY
from tests.vflgan_app.core.conftest import PARTY_SPLITS, make_federation
from vflgan_app.core.sampling import batch_indices
from vflgan_app.data.partition import hash_ids
from vflgan_app.errors import ProtocolError

B = TINY.batch_size
# the run's batch of step 3 (make_federation: seed 3, 32 rows): parties refuse any other
IDX = batch_indices(3, 3, 32, B, "shuffle")
FEATURES = ("h_real", "h_fake", "h_hat")


def params(module):
    return {n: p.detach().clone() for n, p in module.named_parameters()}


def changed(before, module):
    """Names of the parameters of ``module`` that differ from ``before``."""
    return {n for n, p in module.named_parameters() if not torch.equal(before[n], p)}


def upstream(names, seed=0):
    """Fixed stand-ins for the server's dL/dIF, ``(B, if_dim)`` each."""
    g = torch.Generator().manual_seed(seed)
    return {n: torch.randn(B, TINY.if_dim, generator=g) for n in names}


def trained_party(steps=3):
    """Party 0 after a few exact steps (Adam has state, BatchNorm stats have moved)."""
    fed = make_federation()
    fed.coordinator.fit(steps)
    return fed.parties[0]


def test_hello_describes_the_party():
    # Prepare
    party = make_federation(handshake=False).parties[0]
    # Execute
    hello = party.hello()
    # Assert: what the coordinator checks, and the schema of party 0's own columns only
    assert hello["party_id"] == 0
    assert hello["n_rows"] == 32
    assert hello["id_hash"] == hash_ids(np.arange(32))
    assert hello["id_hash"] != hash_ids(np.arange(1, 33))
    assert [c["name"] for c in json.loads(hello["schema"])] == PARTY_SPLITS[2][0]
    assert hello["width"] == 1 + 3 + 1  # a, one-hot color (3 categories), count
    assert hello["width"] == party.x.shape[1]
    assert hello["if_dim"] == TINY.if_dim
    json.dumps(hello)  # small and JSON-able: it crosses the wire as is


def test_critic_forward_returns_ifs_and_changes_no_weights():
    # Prepare
    party = trained_party()
    before = {m: params(getattr(party, m)) for m in ("G", "D_C", "D_p")}
    # Execute
    reply = party.critic_forward(3, IDX)
    # Assert: three (B, if_dim) IFs and a finite loss for step 3; no parameter moved
    assert reply["step"] == 3
    for name in FEATURES:
        assert tuple(reply[name].shape) == (B, TINY.if_dim), name
        assert not reply[name].requires_grad
    assert not torch.allclose(reply["h_real"], reply["h_fake"])
    assert np.isfinite(reply["loss"])
    for m, b in before.items():
        assert changed(b, getattr(party, m)) == set(), m


def test_critic_backward_steps_the_critics_and_not_the_generator():
    # Prepare
    party = trained_party()
    party.critic_forward(3, IDX)
    before = {m: params(getattr(party, m)) for m in ("G", "D_C", "D_p")}
    # Execute
    assert party.critic_backward(3, upstream(FEATURES)) == {}
    # Assert: every parameter of D_Ck and the weights of D_pk stepped (D_pk's bias
    # cancels in the Wasserstein difference: zero gradient), nothing of G_k
    assert changed(before["D_C"], party.D_C) == set(before["D_C"])
    weights = {n for n in before["D_p"] if n.endswith("weight")}
    assert weights and changed(before["D_p"], party.D_p) >= weights
    assert changed(before["G"], party.G) == set()


def test_generator_backward_steps_only_the_generator():
    # Prepare
    party = trained_party()
    reply = party.generator_forward(3, B)
    before = {m: params(getattr(party, m)) for m in ("G", "D_C", "D_p")}
    # Execute
    party.generator_backward(3, upstream(["h_gen"]))
    # Assert
    assert reply["step"] == 3 and tuple(reply["h_gen"].shape) == (B, TINY.if_dim)
    assert changed(before["G"], party.G) == set(before["G"])
    assert changed(before["D_C"], party.D_C) == set()
    assert changed(before["D_p"], party.D_p) == set()


def _never_forwarded(party):
    party.critic_backward(3, upstream(FEATURES))


def _other_step(party):
    party.critic_forward(3, IDX)
    party.critic_backward(4, upstream(FEATURES))


def _twice(party):
    party.critic_forward(3, IDX)
    party.critic_backward(3, upstream(FEATURES))
    party.critic_backward(3, upstream(FEATURES))


def _generator_never_forwarded(party):
    party.critic_forward(3, IDX)  # a critic forward does not open a generator step
    party.generator_backward(3, upstream(["h_gen"]))


@pytest.mark.parametrize(
    ("requests", "match"),
    [
        (_never_forwarded, "critic gradients for step 3 but the pending forward is None"),
        (_other_step, "critic gradients for step 4 but the pending forward is 3"),
        (_twice, "critic gradients for step 3 but the pending forward is None"),
        (_generator_never_forwarded, "generator gradients for step 3"),
    ],
    ids=["never-forwarded", "other-step", "applied-twice", "generator-never-forwarded"],
)
def test_gradients_out_of_protocol_order_are_refused(requests, match):
    # Prepare
    party = make_federation().parties[0]
    # Execute / Assert
    with pytest.raises(ProtocolError, match=match):
        requests(party)


def test_refused_gradients_leave_the_pending_forward_usable():
    # Prepare
    party = make_federation().parties[0]
    party.critic_forward(3, IDX)
    before = params(party.D_C)
    # Execute: a stale request, then the right one
    with pytest.raises(ProtocolError):
        party.critic_backward(2, upstream(FEATURES))
    unchanged = changed(before, party.D_C)
    party.critic_backward(3, upstream(FEATURES))
    # Assert: the refusal changed nothing; the in-flight step still completes
    assert unchanged == set()
    assert changed(before, party.D_C) == set(before)


def fresh_process_copy(party):
    """What a new process holds after ``store``/``restore``: serialised, not aliased."""
    buf = io.BytesIO()
    torch.save(party.state_dict(), buf)
    pending = json.loads(json.dumps(party.pending_forwards()))
    fresh = make_federation().parties[party.party_id]
    fresh.load_state_dict(torch.load(io.BytesIO(buf.getvalue())))
    fresh.replay_forwards(pending)
    return fresh


def full_state(party):
    """Weights, BatchNorm buffers and optimizer moments, flattened."""
    out = {}
    for m in ("G", "D_C", "D_p"):
        out |= {f"{m}.{k}": v.clone() for k, v in getattr(party, m).state_dict().items()}
    for o in ("opt_G", "opt_D_C", "opt_D_p"):
        for i, s in getattr(party, o).state_dict()["state"].items():
            out |= {f"{o}.{i}.{k}": v.clone() for k, v in s.items()}
    return out


@pytest.mark.parametrize("in_flight", ["critic", "generator"])
def test_a_restored_party_completes_the_step_in_flight_exactly(in_flight):
    # Prepare: a forward in flight, then the party's state moved to a fresh process
    party = trained_party()
    if in_flight == "critic":
        party.critic_forward(3, IDX)
        complete = lambda p: p.critic_backward(3, upstream(FEATURES))  # noqa: E731
    else:
        party.generator_forward(3, B)
        complete = lambda p: p.generator_backward(3, upstream(["h_gen"]))  # noqa: E731
    assert set(party.pending_forwards()) == {"critic" if in_flight == "critic" else "gen"}
    fresh = fresh_process_copy(party)
    # Execute: the same gradients reach the original and the restored party
    complete(party)
    complete(fresh)
    # Assert: bit-identical weights, BatchNorm statistics and Adam moments
    a, b = full_state(party), full_state(fresh)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert party.pending_forwards() == fresh.pending_forwards() == {}


def test_sample_is_a_function_of_the_publication_seed():
    # Prepare
    party = trained_party()
    buffers = {k: v.clone() for k, v in party.G.state_dict().items()}
    # Execute
    x = party.sample(20, seed=5)["x"]
    again = party.sample(20, seed=5)["x"]
    other_seed = party.sample(20, seed=6)["x"]
    independent = party.sample(20, seed=5, independent=True)["x"]
    # Assert: (n, width) float32 rows, reproducible, seed-dependent; independent z gives
    # other rows of the same shape; G is left in training mode with its BN stats intact
    assert x.shape == (20, party.x.shape[1]) and x.dtype == np.float32
    np.testing.assert_array_equal(x, again)
    assert not np.allclose(x, other_seed)
    assert independent.shape == x.shape and not np.allclose(x, independent)
    assert party.G.training
    for k, v in party.G.state_dict().items():
        assert torch.equal(v, buffers[k]), k


def test_no_reply_carries_the_partys_rows():
    # Prepare: every reply of a handshake, exact steps (n_critic=2), chunked steps, flush
    fed = make_federation(n_critic=2)
    fed.coordinator.fit(4)
    fed.coordinator.train_chunk(3)
    fed.coordinator.flush()
    widths = {p.x.shape[1] for p in fed.parties}
    # values of the encoded rows other than one-hot 0/1 (standardised numbers)
    secrets = {float(v) for p in fed.parties for v in p.x.flatten().tolist()} - {0.0, 1.0}
    allowed = {"party_id", "n_rows", "id_hash", "schema", "width", "if_dim", "trunk", "step",
               "loss", *FEATURES, "h_gen"}
    # Execute: walk every reply
    n_arrays = 0
    for exchange in fed.transport.replies:
        for replies in exchange.values():
            for reply in replies:
                # Assert: only protocol keys; no array of row width; no row value
                assert set(reply) <= allowed, set(reply) - allowed
                for v in reply.values():
                    if isinstance(v, torch.Tensor):
                        n_arrays += 1
                        assert v.shape[-1] not in widths
                        assert not secrets & set(v.flatten().tolist())
    assert n_arrays >= 40  # the walk really saw the IFs (50 today)
