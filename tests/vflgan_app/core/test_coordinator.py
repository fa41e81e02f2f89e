"""Coordinator: handshake refusals, round-trip schedule, reply checks, state, sampling."""

import io
from dataclasses import replace

import numpy as np
import pytest
import torch

from tests.vflgan_app.conftest import TINY
from tests.vflgan_app.core.conftest import make_federation
from vflgan_app.errors import HandshakeError, ReplyError

B = TINY.batch_size


# -- handshake -----------------------------------------------------------------------
def _shift_ids(ds):
    return [ds[0], replace(ds[1], ids=ds[1].ids + 100)]


def _drop_last_row(ds):
    return [ds[0], replace(ds[1], ids=ds[1].ids[:-1], x=ds[1].x[:-1])]


def _same_columns_twice(ds):
    return [ds[0], replace(ds[0], party_id=1)]


def _one_party(ds):
    return ds[:1]


def _gap_in_ids(ds):
    return [ds[0], replace(ds[1], party_id=2)]


@pytest.mark.parametrize(
    ("edit", "expected", "match"),
    [
        (_shift_ids, None, r"record ids of party 1 do not match party 0 .* misaligned"),
        (_drop_last_row, None, r"party 1 holds 31 rows but party 0 holds 32"),
        (_same_columns_twice, None, r"column 'a' is held by party 0 and party 1"),
        (_one_party, None, r"parties \[1\] missing: got party ids \[0\]"),
        (_gap_in_ids, None, r"parties \[1\] missing: got party ids \[0, 2\]"),
        (None, 3, r"parties \[2\] missing: got party ids \[0, 1\], expected 0..2"),
    ],
    ids=["misaligned-ids", "row-count", "column-at-two-parties", "one-party",
         "gap-in-party-ids", "fewer-than-expected"],
)
def test_handshake_refuses_parties_that_cannot_train_together(edit, expected, match):
    # Prepare
    fed = make_federation(edit_data=edit, expected_parties=expected, handshake=False)
    # Execute / Assert: a clear refusal, and no training without a handshake
    with pytest.raises(HandshakeError, match=match):
        fed.coordinator.handshake()
    with pytest.raises(RuntimeError, match="handshake"):
        fed.coordinator.train_step()


def test_handshake_accepts_aligned_parties():
    # Prepare
    fed = make_federation(n_parties=3, handshake=False)
    # Execute
    fed.coordinator.handshake()
    # Assert: one round trip of hello calls; the coordinator knows the parties
    assert fed.transport.calls == [{p: [("hello", None)] for p in (0, 1, 2)}]
    assert fed.coordinator.party_ids == [0, 1, 2]
    assert fed.coordinator.n_rows == 32


# -- the round-trip schedule ---------------------------------------------------------
def test_exact_steps_fuse_gradients_into_the_next_message():
    # Prepare: n_critic = 2, so steps 0 and 2 are generator steps
    fed = make_federation(n_critic=2)
    # Execute
    for _ in range(4):
        fed.coordinator.train_step()
    fed.coordinator.flush()
    # Assert: every party gets the same messages; critic gradients ride with the
    # generator forward, generator gradients with the next critic forward
    messages = fed.transport.calls[1:]  # after the handshake
    assert all(m[0] == m[1] for m in messages)
    assert [m[0] for m in messages] == [
        [("critic_forward", 0)],
        [("critic_backward", 0), ("generator_forward", 0)],
        [("generator_backward", 0), ("critic_forward", 1)],
        [("critic_backward", 1), ("critic_forward", 2)],
        [("critic_backward", 2), ("generator_forward", 2)],
        [("generator_backward", 2), ("critic_forward", 3)],
        [("critic_backward", 3)],  # the flush
    ]
    assert len(fed.coordinator.history.d_loss) == 4
    assert sorted(fed.coordinator.history.g_loss) == [0, 2]


@pytest.mark.parametrize(("n_critic", "steps"), [(1, 4), (5, 10), (5, 11)])
def test_exact_mode_costs_one_round_trip_per_step_plus_one_per_generator_step(
    n_critic, steps
):
    # Prepare
    fed = make_federation(n_critic=n_critic)
    start = fed.transport.round_trips
    # Execute
    fed.coordinator.fit(steps)
    # Assert: steps + ceil(steps / n_critic) generator round trips + the final flush
    generator_steps = len(range(0, steps, n_critic))
    assert fed.transport.round_trips - start == steps + generator_steps + 1
    assert sorted(fed.coordinator.history.g_loss) == list(range(0, steps, n_critic))


def test_train_chunk_is_one_round_trip_per_chunk():
    # Prepare: chunks of k = 3, n_critic = 2
    fed = make_federation(n_critic=2)
    start = fed.transport.round_trips
    # Execute
    first = fed.coordinator.train_chunk(3)
    after_first = fed.transport.round_trips
    fed.coordinator.train_chunk(3)
    after_second = fed.transport.round_trips
    fed.coordinator.flush()
    # Assert: one exchange per chunk; the chunk's forwards follow the previous chunk's
    # applies, in step order
    assert (after_first - start, after_second - after_first) == (1, 1)
    chunk1, chunk2, flush = (m[0] for m in fed.transport.calls[1:])
    assert chunk1 == [("critic_features", 0), ("critic_features", 1),
                      ("critic_features", 2), ("generator_features", 0),
                      ("generator_features", 2)]
    assert chunk2 == [("critic_apply", 0), ("generator_apply", 0), ("critic_apply", 1),
                      ("critic_apply", 2), ("generator_apply", 2),
                      ("critic_features", 3), ("critic_features", 4),
                      ("critic_features", 5), ("generator_features", 4)]
    assert flush == [("critic_apply", 3), ("critic_apply", 4), ("generator_apply", 4),
                     ("critic_apply", 5)]
    # L_D of every step is complete once its applies have reported the party terms
    assert len(first) == 3 and fed.coordinator.step == 6
    assert len(fed.coordinator.history.d_loss) == 6
    assert all(np.isfinite(fed.coordinator.history.d_loss))


def test_fit_in_chunks_counts_round_trips_per_chunk():
    # Prepare
    fed = make_federation()
    start = fed.transport.round_trips
    # Execute: 7 steps as chunks of 3, 3, 1
    fed.coordinator.fit(7, steps_per_round=3)
    # Assert: 3 chunks + the final flush
    assert fed.transport.round_trips - start == 4
    assert fed.coordinator.step == 7


# -- malformed replies ---------------------------------------------------------------
def _rewrite(method, change, party=1):
    """A tamper that applies ``change`` to ``party``'s replies to ``method``."""

    def tamper(calls, replies):
        out = {p: list(r) for p, r in replies.items()}
        for i, call in enumerate(calls.get(party, [])):
            if call.method == method:
                out[party][i] = change(dict(out[party][i]))
        return out

    return tamper


def _nan(r):
    r["h_real"] = r["h_real"].clone()
    r["h_real"][0, 0] = float("nan")
    return r


def _narrow(r):
    r["h_fake"] = r["h_fake"][:, :-1]
    return r


def _short_batch(r):
    r["h_hat"] = r["h_hat"][:-1]
    return r


def _int_dtype(r):
    r["h_hat"] = r["h_hat"].to(torch.int32)
    return r


def _wrong_step(r):
    r["step"] += 1
    return r


def _no_key(r):
    del r["h_hat"]
    return r


def _inf_loss(r):
    r["loss"] = float("inf")
    return r


REPLY_FAULTS = {
    "nan": (_nan, r"party 1: h_real contains NaN or inf values"),
    "narrow": (_narrow, r"party 1: h_fake has shape \(8, 7\); expected \(8, 8\)"),
    "short-batch": (_short_batch, r"party 1: h_hat has shape \(7, 8\); expected \(8, 8\)"),
    "int-dtype": (_int_dtype, r"party 1: h_hat has dtype torch.int32; expected float"),
    "wrong-step": (_wrong_step, r"party 1: reply is for step 1; expected step 0"),
    "missing-key": (_no_key, r"party 1: reply has no 'h_hat'"),
    "inf-loss": (_inf_loss, r"party 1: loss is inf; expected a finite number"),
}


@pytest.mark.parametrize("fault", list(REPLY_FAULTS))
def test_malformed_critic_reply_stops_the_step_before_d_s_moves(fault):
    # Prepare
    change, match = REPLY_FAULTS[fault]
    fed = make_federation()
    d_s = {k: v.clone() for k, v in fed.coordinator.D_S.state_dict().items()}
    fed.transport.tamper = _rewrite("critic_forward", change)
    # Execute / Assert
    with pytest.raises(ReplyError, match=match):
        fed.coordinator.train_step()
    assert fed.coordinator.step == 0
    assert fed.coordinator.history.d_loss == []
    for k, v in fed.coordinator.D_S.state_dict().items():
        assert torch.equal(v, d_s[k]), k


def test_malformed_generator_reply_is_refused():
    # Prepare
    fed = make_federation()
    fed.transport.tamper = _rewrite("generator_forward", lambda r: r | {
        "h_gen": torch.full((B, TINY.if_dim), float("nan"))})
    # Execute / Assert
    with pytest.raises(ReplyError, match="party 1: h_gen contains NaN"):
        fed.coordinator.train_step()


def test_malformed_chunk_reply_is_refused():
    # Prepare
    fed = make_federation()
    fed.transport.tamper = _rewrite("critic_features", _narrow)
    # Execute / Assert
    with pytest.raises(ReplyError, match=r"h_fake has shape \(8, 7\)"):
        fed.coordinator.train_chunk(2)


def test_a_party_that_does_not_reply_is_named():
    # Prepare: party 1's replies vanish
    fed = make_federation()
    fed.transport.tamper = lambda calls, replies: {0: replies[0]}
    # Execute / Assert
    with pytest.raises(ReplyError, match=r"parties \[1\] did not reply"):
        fed.coordinator.train_step()


# -- persistence -------------------------------------------------------------------------
def serialised(state):
    """``state`` after ``torch.save`` / ``torch.load`` (as a checkpoint on disk)."""
    buf = io.BytesIO()
    torch.save(state, buf)
    return torch.load(io.BytesIO(buf.getvalue()))


def test_state_dict_restored_in_a_fresh_federation_continues_identically():
    # Prepare: a run paused after 6 steps (mid n_critic cycle), moved to fresh objects
    a = make_federation(n_critic=4)
    a.coordinator.fit(6)
    b = make_federation(n_critic=4)
    for pa, pb in zip(a.parties, b.parties, strict=True):
        pb.load_state_dict(serialised(pa.state_dict()))
    b.coordinator.load_state_dict(serialised(a.coordinator.state_dict()))
    # Execute: both continue to step 14
    a.coordinator.fit(14)
    b.coordinator.fit(14)
    # Assert: identical losses, D_S, party weights and samples
    assert b.coordinator.history.d_loss == a.coordinator.history.d_loss
    assert b.coordinator.history.g_loss == a.coordinator.history.g_loss
    assert len(a.coordinator.history.d_loss) == 14
    for (k, va), vb in zip(a.coordinator.D_S.state_dict().items(),
                           b.coordinator.D_S.state_dict().values(), strict=True):
        assert torch.equal(va, vb), k
    for pa, pb in zip(a.parties, b.parties, strict=True):
        for m in ("G", "D_C", "D_p"):
            for (k, va), vb in zip(getattr(pa, m).state_dict().items(),
                                   getattr(pb, m).state_dict().values(), strict=True):
                assert torch.equal(va, vb), f"party {pa.party_id} {m}.{k}"
    for xa, xb in zip(a.coordinator.sample(16, 2), b.coordinator.sample(16, 2), strict=True):
        np.testing.assert_array_equal(xa, xb)


# -- publication -------------------------------------------------------------------------
def test_sample_flushes_then_returns_one_block_per_party():
    # Prepare: a step whose gradients are still pending
    fed = make_federation(n_parties=3)
    fed.coordinator.train_step()
    # Execute
    parts = fed.coordinator.sample(10, seed=4)
    independent = fed.coordinator.sample(10, seed=4, independent=True)
    # Assert: pending gradients delivered before sampling; (n, width) per party in
    # party order, as each party would publish; the independent control differs
    flush, sample = (m[0] for m in fed.transport.calls[-3:-1])
    assert flush == [("generator_backward", 0)]
    assert sample == [("sample", None)]
    assert [x.shape for x in parts] == [(10, p.x.shape[1]) for p in fed.parties]
    for x, p in zip(parts, fed.parties, strict=True):
        np.testing.assert_array_equal(x, p.sample(10, seed=4)["x"])
    assert not any(np.allclose(x, y) for x, y in zip(parts, independent, strict=True))
