"""Faults of a launcher deployment (scripts/deploy/party_node.py), as real processes.

A frozen-then-killed executor and a killed party node each stop the run with an error
naming the party and the checkpoint to resume from; the launcher restarts the executor
by itself, the operator restarts the node, and ``flower.resume=true`` finishes the run
from that checkpoint."""

import json
import os
import re
import signal
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts" / "deploy"))

TIMEOUT_S = 25  # flower.round-timeout: how long a silent party is waited for


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise TimeoutError(f"{what} not within {timeout:.0f} s")


def checkpoint_written(out: Path, run: str, step: int):
    return lambda: (out / run / "checkpoints" / f"checkpoint-{step}" / "server" /
                    "COMPLETE").exists()


def assert_stopped_naming(r: dict, party: int) -> int:
    """The run failed, naming ``party`` and a checkpoint; that checkpoint's step."""
    assert r["status"] == "finished:failed", (r["status"], r["log"][-3000:])
    assert re.search(rf"party {party} \(node \d+\) did not answer within {TIMEOUT_S} s",
                     r["log"]), r["log"][-3000:]
    m = re.search(r"resume from checkpoint-(\d+)", r["log"])
    assert m, r["log"][-3000:]
    return int(m.group(1))


def assert_resumed(r: dict, out: Path, run: str, step: int, steps: int) -> None:
    assert r["status"] == "finished:completed", r["log"][-3000:]
    assert re.search(rf"steps {step} -> {steps}", r["log"]), r["log"][-3000:]
    report = json.loads((out / run / "report.json").read_text())
    # the loss history came back with the checkpoint: one entry per step of the run
    assert len(report["history"]["d_loss"]) == steps
    assert (out / run / "synthetic.npz").exists()


@pytest.mark.slow
def test_killed_executor_and_node_stop_named_and_resume(tmp_path):
    from loopback import Loopback

    out, steps = tmp_path / "runs", 40
    base = (f'steps={steps} flower.steps-per-round=1 flower.evaluate=false max-rows=300 '
            f'flower.checkpoint-every=10 flower.round-timeout={TIMEOUT_S} '
            f'output-dir="{out}"')
    with Loopback(tmp_path / "fed", max_rows=300, launcher=True) as fed:
        # 1. party 1's executor hangs (SIGSTOP) mid-run, then is killed
        def freeze_executor():
            wait_for(checkpoint_written(out, "ex", 10), 300, "checkpoint-10")
            pid = fed.party_pids(1)["executor"]
            os.kill(pid, signal.SIGSTOP)
            return pid

        r = fed.run(base + ' flower.run-name="ex"', timeout=600, during=freeze_executor)
        step = assert_stopped_naming(r, party=1)
        assert step >= 10
        frozen = r["during"]
        os.kill(frozen, signal.SIGKILL)
        # the launcher starts a new executor, which restores the party from context.state
        wait_for(lambda: fed.party_pids(1).get("executor") not in (None, frozen), 60,
                 "a restarted executor")
        r = fed.run(base + ' flower.run-name="ex" flower.resume=true', timeout=600)
        assert_resumed(r, out, "ex", step, steps)
        log1 = (tmp_path / "fed" / "supernode1.log").read_text()
        assert "restart 1 of 3" in log1

        # 2. party 0's whole node dies (SIGKILL to SuperNode and executor)
        def kill_node():
            wait_for(checkpoint_written(out, "node", 10), 300, "checkpoint-10")
            fed.kill_party(0)

        r = fed.run(base + ' flower.run-name="node"', timeout=600, during=kill_node)
        step = assert_stopped_naming(r, party=0)
        fed.restart_party(0)
        # the dead node is still listed for about a minute; the handshake skips it
        r = fed.run(base + ' flower.run-name="node" flower.resume=true', timeout=600)
        assert_resumed(r, out, "node", step, steps)
    assert fed.alive_pids() == []
