"""Faults stop the run with a clear error and a resumable checkpoint; resume is exact."""

import numpy as np
import pytest
import torch

from tests.vflgan_app.flower.test_flower import (
    RUN_CONFIG,
    FakeGrid,
    flower_coordinator,
    in_process,
    node_configs,
    write_party_csvs,
)
from vflgan_app.config import VFLGANConfig
from vflgan_app.core import loop
from vflgan_app.core.checkpoint import latest_step
from vflgan_app.core.loop import resume
from vflgan_app.core.protocol import Transport
from vflgan_app.errors import PartyTimeout, ReplyError, RunInterrupted
from vflgan_app.flower import codec

STEPS, EVERY = 24, 8


class CrashAt(Transport):
    """Wraps a transport; the round trip that carries step ``crash_step`` fails."""

    def __init__(self, inner, coord_ref, crash_step):
        self.inner, self.coord_ref, self.crash_step = inner, coord_ref, crash_step

    @property
    def round_trips(self):
        return self.inner.round_trips

    def party_ids(self):
        return self.inner.party_ids()

    def exchange(self, calls):
        if self.coord_ref[0].step == self.crash_step:
            raise ConnectionError("party 1 went away")
        return self.inner.exchange(calls)


def with_checkpoint_dirs(model, root):
    for p in model.parties:
        p.checkpoint_dir = str(root / f"party{p.party_id}-disk")  # party-local folders
    return model


def final_state(model):
    return ({f"{p.party_id}.{k}": v.clone() for p in model.parties
             for m in (p.G, p.D_C, p.D_p) for k, v in m.state_dict().items()},
            {k: v.clone() for k, v in model.coordinator.D_S.state_dict().items()})


@pytest.mark.parametrize("k", [1, 4])
def test_resume_after_interruption_reproduces_uninterrupted_run(tmp_path, k):
    paths = write_party_csvs(tmp_path)
    cfg = VFLGANConfig.from_run_config(RUN_CONFIG | {"steps": STEPS})
    # Prepare: the uninterrupted run
    a = in_process(paths, cfg)
    loop.fit(a.coordinator, STEPS, steps_per_round=k)
    # Execute: the same run, interrupted at step 19 (checkpoints every 8 steps)
    server = tmp_path / "server"
    b = with_checkpoint_dirs(in_process(paths, cfg), tmp_path)
    b.coordinator.transport = CrashAt(b.coordinator.transport, [b.coordinator], 20)
    with pytest.raises(RunInterrupted, match=r"stopped at step 20: ConnectionError: party 1 "
                       r"went away; resume from checkpoint-16") as err:
        loop.fit(b.coordinator, STEPS, checkpoint_root=server, checkpoint_every=EVERY, steps_per_round=k)
    assert err.value.resume_step == 16 == latest_step(server)
    # each party saved only its own state, in its own folder
    assert sorted(x.name for x in (tmp_path / "party0-disk" / "checkpoint-16").iterdir()) == \
        ["party-0"]
    assert sorted(x.name for x in (server / "checkpoint-16").iterdir()) == ["server"]
    # ... then a fresh federation (new processes) resumes
    c = with_checkpoint_dirs(in_process(paths, cfg), tmp_path)
    assert resume(c.coordinator, server) == 16
    loop.fit(c.coordinator, STEPS, checkpoint_root=server, checkpoint_every=EVERY, steps_per_round=k)
    # Assert: identical to the uninterrupted run
    assert c.coordinator.history.d_loss == a.coordinator.history.d_loss
    assert c.coordinator.history.g_loss == a.coordinator.history.g_loss
    (pa, sa), (pc, sc) = final_state(a), final_state(c)
    for key in pa:
        assert torch.equal(pa[key], pc[key]), key
    for key in sa:
        assert torch.equal(sa[key], sc[key]), key
    for x, y in zip(a.coordinator.sample(16, 5), c.coordinator.sample(16, 5), strict=True):
        np.testing.assert_array_equal(x, y)


def test_resume_refuses_without_checkpoint(tmp_path):
    paths = write_party_csvs(tmp_path)
    cfg = VFLGANConfig.from_run_config(RUN_CONFIG)
    with pytest.raises(FileNotFoundError, match="no complete checkpoint"):
        resume(in_process(paths, cfg).coordinator, tmp_path / "nothing")


# -- faults over the Flower transport ----------------------------------------------------
def tamper(node_id, when, change):
    """Fault hook: after ``when`` train.step replies of ``node_id``, ``change`` the reply."""
    seen = {"n": 0}

    def fault(node, mtype, content):
        if node != node_id or mtype != codec.TRAIN_STEP:
            return content
        seen["n"] += 1
        if seen["n"] < when:
            return content
        return change(content)

    return fault


def rewrite_last(fn):
    def change(content):
        replies = codec.decode_replies(content)
        fn(replies[-1])
        return codec.encode_replies(replies)

    return change


def _nan(r):
    r["h_real"][0, 0] = float("nan")


def _shape(r):
    r["h_fake"] = r["h_fake"][:, :-1]


def _dtype(r):
    r["h_hat"] = r["h_hat"].to(torch.int32)


def _step(r):
    r["step"] = r["step"] + 3


def _raise(content):
    raise RuntimeError("disk full at the party")


FAULTS = {
    "no answer": (lambda c: None, PartyTimeout,
                  r"party 1 \(node 1001\) did not answer within 0.5 s"),
    "error reply": (_raise, ReplyError,
                    r"party 1 \(node 1001\) answered with an error: RuntimeError: disk full"),
    "NaN": (rewrite_last(_nan), ReplyError, r"party 1: h_real contains NaN"),
    "wrong shape": (rewrite_last(_shape), ReplyError,
                    r"party 1: h_fake has shape \(8, 31\); expected \(8, 32\)"),
    "wrong dtype": (rewrite_last(_dtype), ReplyError,
                    r"party 1: h_hat has dtype torch.int32; expected float"),
    "wrong step": (rewrite_last(_step), ReplyError,
                   r"party 1: reply is for step 1[0-9]; expected step 1[0-9]"),
    "malformed": (lambda c: type(c)(), ReplyError, r"party 1 \(node 1001\) sent a malformed "
                  r"reply: reply has no 'replies' record"),
}


@pytest.mark.parametrize("name", list(FAULTS))
def test_fault_stops_run_with_clear_error_and_checkpoint(tmp_path, name):
    change, exc, pattern = FAULTS[name]
    paths = write_party_csvs(tmp_path)
    cfg = VFLGANConfig.from_run_config(RUN_CONFIG | {"steps": STEPS})
    grid = FakeGrid(node_configs(paths), RUN_CONFIG, cache=False,
                    fault=tamper(1001, 16, change))
    coord = flower_coordinator(grid, cfg, timeout=0.5)
    server = tmp_path / "server"
    with pytest.raises(RunInterrupted, match="resume from checkpoint-8") as err:
        loop.fit(coord, STEPS, checkpoint_root=server, checkpoint_every=EVERY)
    assert isinstance(err.value.__cause__, exc)
    assert err.value.__cause__ is not None
    import re

    assert re.search(pattern, str(err.value.__cause__)), str(err.value.__cause__)


def test_flower_resume_after_timeout_equals_uninterrupted(tmp_path):
    paths = write_party_csvs(tmp_path)
    cfg = VFLGANConfig.from_run_config(RUN_CONFIG | {"steps": STEPS})
    server = tmp_path / "server"
    grid = FakeGrid(node_configs(paths), RUN_CONFIG, cache=False,
                    fault=tamper(1001, 16, lambda c: None))
    coord = flower_coordinator(grid, cfg, timeout=0.5)
    with pytest.raises(RunInterrupted):
        loop.fit(coord, STEPS, checkpoint_root=server, checkpoint_every=EVERY)
    # a new run (fresh node contexts: empty context.state) resumes from the checkpoints
    coord2 = flower_coordinator(FakeGrid(node_configs(paths), RUN_CONFIG, cache=False), cfg)
    assert resume(coord2, server) == 8
    loop.fit(coord2, STEPS, checkpoint_root=server, checkpoint_every=EVERY)
    ref = in_process(paths, cfg)
    loop.fit(ref.coordinator, STEPS)
    assert coord2.history.d_loss == ref.coordinator.history.d_loss
    for x, y in zip(coord2.sample(8, 1), ref.coordinator.sample(8, 1), strict=True):
        np.testing.assert_array_equal(x, y)
