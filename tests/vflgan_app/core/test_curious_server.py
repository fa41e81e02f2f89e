"""What a party accepts from the server (issue 12 item 4).

A curious or faulty server can send any request. A party answers only the run's own
batches, caps what it publishes, and applies only finite gradients of the right shape
for a step it computed and has not applied yet; every refusal changes nothing.
"""

import math

import numpy as np
import pytest
import torch

from tests.vflgan_app.conftest import TINY
from tests.vflgan_app.core.conftest import make_federation
from vflgan_app.core.sampling import batch_indices
from vflgan_app.errors import ProtocolError, ReplyError

B, N, SEED = TINY.batch_size, 32, 3
STEP = 0


def run_batch(step=STEP):
    return batch_indices(SEED, step, N, B, "shuffle")


def grads(names=("h_real", "h_fake", "h_hat"), seed=0, **override):
    g = torch.Generator().manual_seed(seed)
    out = {n: torch.randn(B, TINY.if_dim, generator=g) for n in names}
    return out | override


def weights(party):
    return {f"{m}.{k}": v.clone() for m in ("G", "D_C", "D_p")
            for k, v in getattr(party, m).state_dict().items()}


def unchanged(before, party):
    after = weights(party)
    return all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize(
    ("idx", "match"),
    [
        (torch.arange(N), "batch_size 32; expected the run's batch size 8"),
        (torch.zeros(B, dtype=torch.long), "repeats rows"),
        (torch.tensor([-1, 1, 2, 3, 4, 5, 6, 7]), r"rows -1\.\.7; expected rows 0\.\.31"),
        (torch.tensor([0, 1, 2, 3, 4, 5, 6, 40]), r"rows 0\.\.40; expected rows 0\.\.31"),
        (torch.arange(B, dtype=torch.float32), "expected a 1-D integer array"),
        # a valid-looking batch of the server's choosing (a membership probe of row 0)
        (torch.tensor([0, *run_batch()[1:].tolist()]) if 0 not in run_batch()
         else torch.tensor([*[i for i in range(N) if i not in run_batch()][:1],
                            *run_batch()[1:].tolist()]),
         "is not the run's batch"),
    ],
    ids=["every-row", "one-row-repeated", "negative", "out-of-range", "float", "chosen-rows"],
)
@pytest.mark.parametrize("method", ["critic_forward", "critic_features"])
def test_a_party_answers_only_the_runs_own_batch(idx, match, method):
    party = make_federation(n_rows=N, seed=SEED).parties[0]
    before = weights(party)
    with pytest.raises(ProtocolError, match=match):
        getattr(party, method)(STEP, idx)
    assert unchanged(before, party) and party.pending_forwards() == {}
    # the run's own batch is answered
    assert getattr(party, method)(STEP, run_batch())["step"] == STEP


@pytest.mark.parametrize(
    ("n", "match"),
    [(10**6, r"n=1000000; expected an integer 1\.\.200000"), (0, "n=0"), (-1, "n=-1"),
     (2.5, "n=2.5"), (True, "n=True")],
)
def test_sample_requests_are_capped_and_typed(n, match):
    party = make_federation(n_rows=N, seed=SEED).parties[0]
    with pytest.raises(ProtocolError, match=match):
        party.sample(n, seed=0)
    assert party.sample(5, seed=0)["x"].shape[0] == 5


def test_a_party_sets_its_own_sample_cap():
    import dataclasses

    party = make_federation(n_rows=N, seed=SEED).parties[0]
    party.settings = dataclasses.replace(party.settings, max_sample_rows=10)
    with pytest.raises(ProtocolError, match=r"expected an integer 1\.\.10"):
        party.sample(11, seed=0)
    assert party.sample(10, seed=0)["x"].shape[0] == 10


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        ({"h_real": torch.full((B, TINY.if_dim), math.nan)}, "h_real contains NaN or inf"),
        ({"h_fake": torch.full((B, TINY.if_dim), math.inf)}, "h_fake contains NaN or inf"),
        ({"h_hat": torch.ones(B, TINY.if_dim + 1)}, r"h_hat has .* shape \(8, 9\)"),
        ({"h_real": torch.ones(B, TINY.if_dim, dtype=torch.long)}, "dtype torch.int64"),
        ({"h_hat": None}, "h_hat has dtype"),
    ],
    ids=["nan", "inf", "wrong-shape", "integer", "missing-value"],
)
def test_bad_critic_gradients_are_refused_and_change_nothing(bad, match):
    party = make_federation(n_rows=N, seed=SEED).parties[0]
    party.critic_forward(STEP, run_batch())
    before = weights(party)
    g = grads() | bad
    if bad.get("h_hat", 0) is None:
        del g["h_hat"]
        match = "have no 'h_hat'"
    with pytest.raises(ProtocolError, match=match):
        party.critic_backward(STEP, g)
    assert unchanged(before, party)
    # the step in flight still completes with good gradients
    party.critic_backward(STEP, grads())
    assert not unchanged(before, party)


def test_nan_generator_gradients_are_refused():
    party = make_federation(n_rows=N, seed=SEED).parties[0]
    party.generator_forward(STEP, B)
    before = weights(party)
    with pytest.raises(ProtocolError, match="h_gen contains NaN"):
        party.generator_backward(STEP, {"h_gen": torch.full((B, TINY.if_dim), math.nan)})
    assert unchanged(before, party)


def test_generator_requests_use_the_runs_batch_size():
    party = make_federation(n_rows=N, seed=SEED).parties[0]
    with pytest.raises(ProtocolError, match="batch_size 32; expected the run's batch size 8"):
        party.generator_forward(STEP, N)


def test_a_chunked_apply_delivered_twice_is_applied_once():
    party = make_federation(n_rows=N, seed=SEED).parties[0]
    party.critic_apply(STEP, run_batch(), grads())
    after_once = weights(party)
    with pytest.raises(ProtocolError, match="already applied critic step 0"):
        party.critic_apply(STEP, run_batch(), grads())
    assert unchanged(after_once, party)
    party.generator_apply(STEP, B, grads(("h_gen",)))
    with pytest.raises(ProtocolError, match="already applied gen step 0"):
        party.generator_apply(STEP, B, grads(("h_gen",)))


def test_an_applied_step_cannot_be_replayed_after_a_restore():
    # the applied-step marks travel with the party's state (Flower restores it per message)
    fed = make_federation(n_rows=N, seed=SEED)
    fed.coordinator.fit(3)
    fed.coordinator.flush()
    party = fed.parties[0]
    fresh = make_federation(n_rows=N, seed=SEED).parties[0]
    fresh.load_state_dict(party.state_dict())
    assert fresh.done == party.done == {"critic": 2, "gen": 0}
    with pytest.raises(ProtocolError, match="already applied critic step 2"):
        fresh.critic_forward(2, run_batch(2))


def test_a_reply_without_its_step_is_refused_by_the_coordinator():
    fed = make_federation(n_rows=N, seed=SEED)
    real = fed.transport.inner.exchange

    def drop_step(calls):
        replies = real(calls)
        for plist in replies.values():
            for r in plist:
                r.pop("step", None)
        return replies

    fed.transport.inner.exchange = drop_step
    with pytest.raises(ReplyError, match=r"reply is for step None; expected step 0"):
        fed.coordinator.train_step()


def test_the_unmodified_protocol_passes_every_check():
    # every check above is off the path of an honest run: exact and chunked modes train
    fed = make_federation(n_rows=N, seed=SEED, n_critic=2)
    fed.coordinator.fit(6)
    fed.coordinator.train_chunk(4)
    fed.coordinator.flush()
    assert fed.parties[0].done == {"critic": 9, "gen": 8}
    assert all(np.isfinite(fed.coordinator.history.d_loss[:6]))
