"""Loopback deployment: SuperLink + 2 SuperNodes as real processes, a few steps of
`flwr run`, the published output, and every started process stopped by PID. The TLS
variant runs the production layout: SuperLink on 127.0.0.1, parties through the nginx
proxy (test_control_api.py checks what that proxy keeps out)."""

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts" / "deploy"))

HAS_NGINX = bool(shutil.which("nginx")) or os.access("/usr/sbin/nginx", os.X_OK)
NEEDS_NGINX = pytest.mark.skipif(not HAS_NGINX, reason="nginx is not installed (Debian/"
                                 "Ubuntu: apt-get install -y nginx-light); the TLS "
                                 "deployment's public proxy needs it")


@pytest.mark.slow
@pytest.mark.parametrize("launcher", [False, True], ids=["stock", "launcher"])
@pytest.mark.parametrize("tls", [False, pytest.param(True, marks=NEEDS_NGINX)],
                         ids=["http", "tls-auth"])
def test_loopback_deployment_publishes_outputs(tmp_path, tls, launcher):
    """Stock SuperNodes, or the party node launcher (scripts/deploy/party_node.py)."""
    from loopback import Loopback

    out = tmp_path / "runs"
    rc = (f'steps=4 flower.steps-per-round=2 flower.evaluate=false flower.run-name="deploy" '
          f'max-rows=300 output-dir="{out}"')
    fed = Loopback(tmp_path / "fed", max_rows=300, tls=tls, launcher=launcher)
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
        ck = tmp_path / "fed" / f"party{k}-checkpoints" / "deploy" / "checkpoint-4"
        assert [p.name for p in ck.iterdir()] == [f"party-{k}"]
    if tls:
        # the parties reached the SuperLink only through the proxy
        access = (fed.proxy_dir / "access.log").read_text()
        assert '"POST /v1/fleet/push-messages HTTP/1.1" 200' in access
        # the folder handed to parties holds only the CA certificate; the CA key sits
        # apart in a folder only its owner can open
        assert [p.name for p in fed.ca_cert.parent.iterdir()] == ["ca.crt"]
        ca_private = tmp_path / "fed" / "ca-private"
        assert (ca_private / "ca.key").exists() and ca_private.stat().st_mode & 0o777 == 0o700
    for k in (0, 1):
        log = (tmp_path / "fed" / f"supernode{k}.log").read_text()
        # with the launcher, one executor ran every message (no flwr-clientapp process)
        assert ("executor serving ClientApp tasks" in log) == launcher
        if launcher:
            assert log.count("task train.step:") >= 2 and "ClientApp loaded" in log
            assert log.count("ClientApp loaded") == 1
    print(f"loopback ({'tls' if tls else 'http'}, {'launcher' if launcher else 'stock'}): "
          f"{r['wall_s']:.1f} s, "
          f"round trips {report['timings_s']['round_trips']}, "
          f"train {report['timings_s']['train_s']:.1f} s")
