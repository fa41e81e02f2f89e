"""Loopback deployment: SuperLink + 2 SuperNodes as real processes, a few steps of
`flwr run`, the published output, and every started process stopped by PID."""

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts" / "deploy"))


@pytest.mark.slow
@pytest.mark.parametrize("tls", [False, True], ids=["http", "tls-auth"])
def test_loopback_deployment_publishes_outputs(tmp_path, tls):
    from loopback import Loopback

    out = tmp_path / "runs"
    rc = (f'steps=4 flower.steps-per-round=2 flower.evaluate=false flower.run-name="deploy" '
          f'max-rows=300 output-dir="{out}"')
    fed = Loopback(tmp_path / "fed", max_rows=300, tls=tls)
    with fed:
        r = fed.run(rc, timeout=480)
        assert r["status"] == "finished:completed", r["log"][-3000:]
        started = [p.pid for p in fed.procs]
    # every process (and its process group) is gone
    assert fed.alive_pids() == [], started
    report = json.loads((out / "deploy" / "report.json").read_text())
    assert report["runtime"] == "flower" and len(report["history"]["d_loss"]) == 4
    assert (out / "deploy" / "samples.png").exists()
    # each party kept its own checkpoint, in its own folder
    for k in (0, 1):
        ck = tmp_path / "fed" / f"party{k}-checkpoints" / "checkpoint-4"
        assert [p.name for p in ck.iterdir()] == [f"party-{k}"]
    print(f"loopback ({'tls' if tls else 'http'}): {r['wall_s']:.1f} s, "
          f"round trips {report['timings_s']['round_trips']}, "
          f"train {report['timings_s']['train_s']:.1f} s")
