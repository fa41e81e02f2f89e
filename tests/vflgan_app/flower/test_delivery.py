"""Delivery of the published synthetic data to the parties named by flower.deliver-to."""

import hashlib
import json

import numpy as np
import pytest
from flwr.app import Context, RecordDict

from tests.vflgan_app.flower.test_flower import (
    RUN_CONFIG,
    FakeGrid,
    node_configs,
    write_party_csvs,
)
from vflgan_app.config import parse_run_config
from vflgan_app.flower import node
from vflgan_app.flower.transport import FlowerTransport
from vflgan_app.server_app import run_federated


def flower_run(tmp_path, deliver_to: str, run_name: str = "d"):
    paths = write_party_csvs(tmp_path)
    rc = RUN_CONFIG | {"steps": 2, "output-dir": str(tmp_path / "out"),
                       "flower.run-name": run_name, "flower.deliver-to": deliver_to,
                       "flower.evaluate": False}
    cfg, settings = parse_run_config(rc)
    grid = FakeGrid(node_configs(paths), rc)  # the parties read the same run config
    transport = FlowerTransport(grid, 2, round_timeout=30.0, connect_timeout=2.0,
                                poll_interval=0.001, message_factory=grid.create_message)
    return run_federated(cfg, settings, transport), paths


@pytest.mark.parametrize("deliver_to, parties", [("all", [0, 1]), ("1", [1]), ("none", [])])
def test_each_named_party_receives_the_published_table(tmp_path, deliver_to, parties):
    run_dir, paths = flower_run(tmp_path, deliver_to)
    published = (run_dir / "synthetic.csv").read_bytes()
    report = json.loads((run_dir / "report.json").read_text())
    for k in (0, 1):
        folder = paths[k].parent / f"delivered{k}" / "d"
        if k not in parties:
            assert not folder.exists()
            continue
        assert (folder / "synthetic.csv").read_bytes() == published
        manifest = json.loads((folder / "manifest.json").read_text())
        assert manifest["sha256"] == hashlib.sha256(published).hexdigest()
        assert manifest["run"] == "d" and manifest["bytes"] == len(published)
        assert (folder / "synthetic.csv").stat().st_mode & 0o777 == 0o644
    if parties:
        assert report["delivered"]["parties"] == parties
        assert report["delivered"]["sha256"] == hashlib.sha256(published).hexdigest()
    else:
        assert "delivered" not in report


def test_an_unknown_recipient_is_refused_before_training(tmp_path):
    with pytest.raises(ValueError, match=r"deliver-to='5' names parties \[5\]"):
        flower_run(tmp_path, "5")
    assert not (tmp_path / "out" / "d").exists()  # nothing trained, nothing written
    with pytest.raises(ValueError, match="flower.deliver-to: got 'everyone'"):
        parse_run_config({"flower.deliver-to": "everyone"})


def _context(tmp_path, **nc):
    return Context(run_id=1, node_id=2, state=RecordDict(),
                   node_config={"partition-id": 0, "delivery-dir": str(tmp_path / "in"), **nc},
                   run_config={"flower.run-name": "r"})


def _args(payload=b"a,b\n1,2\n", name="synthetic.csv", **over):
    args = {"name": name, "data": np.frombuffer(payload, np.uint8),
            "sha256": hashlib.sha256(payload).hexdigest(), "manifest": "{}"}
    return args | over


@pytest.mark.parametrize("args, nc, match", [
    (_args(name="../../evil.csv"), {}, "expected one of"),
    (_args(name="report.json"), {}, "expected one of"),
    (_args(sha256="0" * 64), {}, "does not match its sha256"),
    (_args(data=np.zeros(3, np.float32)), {}, "expected 1-D uint8"),
    (_args(payload=b"x" * 2048), {"max-delivery-mb": 0.001}, "at most max-delivery-mb"),
    (_args(manifest="[1]"), {}, "not a JSON object"),
], ids=["path", "name", "sha256", "dtype", "size", "manifest"])
def test_a_party_refuses_bad_deliveries_and_writes_nothing(tmp_path, args, nc, match):
    ctx = _context(tmp_path, **nc)
    with pytest.raises(ValueError, match=match):
        node.receive_delivery(ctx, **args)
    assert not (tmp_path / "in").exists() and not (tmp_path / "evil.csv").exists()


def test_a_party_chooses_its_delivery_folder(tmp_path):
    cfg, settings = parse_run_config({"flower.run-name": "r", "output-dir": "o"})
    assert node.delivery_dir(_context(tmp_path), cfg, settings) == tmp_path / "in" / "r"
    own = Context(run_id=1, node_id=2, state=RecordDict(), run_config={},
                  node_config={"partition-id": 1, "data-path": "p.csv"})
    assert str(node.delivery_dir(own, cfg, settings)) == "vflgan-delivery/r"
    sim = Context(run_id=1, node_id=2, state=RecordDict(), run_config={},
                  node_config={"partition-id": 1})
    assert str(node.delivery_dir(sim, cfg, settings)) == "o/r/delivered/party-1"
