"""Flower app without Ray: codec round trips, ClientApp state restore, FlowerTransport.

``FakeGrid`` implements the four ``Grid`` methods FlowerTransport uses and delivers each
message to ``client_app.serve`` with one ``Context`` per node, exactly as a SuperNode
would (``cache=False`` also drops the live party after every message, as a fresh
``flwr-clientapp`` process per message does). The `flwr run` tests are in
``tests/e2e``.
"""

import itertools
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from flwr.app import Context, RecordDict

from tests.vflgan_app.conftest import TINY_DOMAIN, make_table
from vflgan_app import client_app, federation
from vflgan_app.api import build_federation
from vflgan_app.config import VFLGANConfig
from vflgan_app.core.coordinator import Coordinator
from vflgan_app.core.protocol import Call
from vflgan_app.data.partition import prepare_parties, split_vertical
from vflgan_app.errors import HandshakeError, PartyTimeout
from vflgan_app.flower import codec
from vflgan_app.flower import node as flower_node
from vflgan_app.flower.transport import FlowerTransport

SPLIT = [["a", "color", "count"], ["b", "c", "kind"]]
CATS = ["color", "kind"]
RUN_CONFIG = {"dataset": "custom", "architecture": "wine_red", "batch-size": 8, "seed": 3,
              "n-critic": 3, "progress": False}


def write_party_csvs(tmp_path, n=40, split=SPLIT, seed=0):
    paths = []
    for k, t in enumerate(split_vertical(make_table(n, seed), split, "record_id")):
        p = tmp_path / f"party{k}.csv"
        t.to_csv(p, index=False)
        paths.append(p)
    return paths


def node_configs(paths, **extra):
    return [{"partition-id": k, "num-partitions": len(paths), "data-path": str(p),
             "categorical": ",".join(CATS), "checkpoint-dir": str(p.parent / f"ckpt{k}"),
             "delivery-dir": str(p.parent / f"delivered{k}"),
             **extra} for k, p in enumerate(paths)]


class FakeGrid:
    """Delivers messages to the real ClientApp code, one Context per node."""

    def __init__(self, node_configs, run_config, cache=True, fault=None):
        self.contexts = {
            1000 + i: Context(run_id=7, node_id=1000 + i, node_config=dict(nc),
                              state=RecordDict(), run_config=dict(run_config))
            for i, nc in enumerate(node_configs)
        }
        self.cache = cache
        self.fault = fault  # f(node, message_type, reply_content) -> content | None | raise
        self.ids = itertools.count()
        self.replies = {}
        self.messages = 0

    def get_node_ids(self):
        return list(self.contexts)

    def create_message(self, content, message_type, dst_node_id, group_id, ttl=None):
        return SimpleNamespace(content=content, metadata=SimpleNamespace(
            message_type=message_type, dst_node_id=dst_node_id, group_id=group_id))

    def push_messages(self, msgs):
        ids = []
        for m in msgs:
            mid = f"m{next(self.ids)}"
            ids.append(mid)
            node, mtype = m.metadata.dst_node_id, m.metadata.message_type
            self.messages += 1
            err = content = None
            try:
                content = client_app.serve(m.content, self.contexts[node], mtype)
                if self.fault is not None:
                    content = self.fault(node, mtype, content)
            except Exception as e:  # the runtime turns handler exceptions into error replies
                err = f"{type(e).__name__}: {e}"
            if not self.cache:
                flower_node._LIVE.clear()
            if content is None and err is None:
                continue  # dropped: never answers
            self.replies[mid] = SimpleNamespace(
                content=content, has_error=lambda e=err: e is not None,
                error=SimpleNamespace(reason=err),
                metadata=SimpleNamespace(reply_to_message_id=mid, src_node_id=node))
        return ids

    def pull_messages(self, ids):
        return [self.replies.pop(i) for i in list(ids) if i in self.replies]


def flower_coordinator(grid, cfg, timeout=5.0):
    transport = FlowerTransport(grid, cfg.num_parties, round_timeout=timeout,
                                connect_timeout=2.0, poll_interval=0.001,
                                message_factory=grid.create_message)
    transport.connect()
    # the server side the ServerApp builds (objective, trunk, DP rules of the config)
    return federation.connect(transport, cfg).coordinator


def in_process(paths, cfg):
    import pandas as pd

    tables = [pd.read_csv(p) for p in paths]
    return build_federation(prepare_parties(tables, "record_id", CATS), cfg)


# ------------------------------------------------------------------------------------
def test_codec_round_trip():
    idx = torch.tensor([3, 1, 4], dtype=torch.long)
    grads = {"h_real": torch.randn(3, 2), "h_fake": torch.randn(3, 2)}
    calls = [Call("critic_backward", {"step": 4, "grads": grads}),
             Call("critic_forward", {"step": 5, "idx": idx})]
    back = codec.decode_calls(codec.encode_calls(calls))
    assert [c.method for c in back] == ["critic_backward", "critic_forward"]
    assert back[0].args["step"] == 4 and torch.equal(back[0].args["grads"]["h_fake"],
                                                     grads["h_fake"])
    assert back[1].args["idx"].dtype == torch.long and torch.equal(back[1].args["idx"], idx)
    replies = [{}, {"step": 5, "h_real": torch.ones(3, 2), "loss": 0.5}]
    out = codec.decode_replies(codec.encode_replies(replies))
    assert out[0] == {} and out[1]["loss"] == 0.5 and out[1]["h_real"].shape == (3, 2)
    assert codec.message_type_for(calls) == codec.TRAIN_STEP == "train.step"
    with pytest.raises(ValueError, match="span message types"):
        codec.message_type_for([Call("hello"), Call("sample", {"n": 1, "seed": 0})])
    with pytest.raises(TypeError, match="expected a tensor"):
        codec.encode_values({"obj": object()})


@pytest.mark.parametrize("cache", [False, True])
def test_flower_transport_equals_in_process(tmp_path, cache):
    # Prepare: same tables, same config
    paths = write_party_csvs(tmp_path)
    cfg = VFLGANConfig.from_run_config(RUN_CONFIG | {"steps": 10})
    grid = FakeGrid(node_configs(paths), RUN_CONFIG, cache=cache)
    # Execute
    coord = flower_coordinator(grid, cfg)
    ref = in_process(paths, cfg)
    for _ in range(10):
        assert coord.train_step() == ref.coordinator.train_step()
    # Assert: same losses (exact), same samples, 1 round trip per step (+1 on G steps)
    assert coord.history.g_loss == ref.coordinator.history.g_loss
    a, b = coord.sample(16, 1), ref.coordinator.sample(16, 1)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert coord.transport.round_trips == 2 + 10 + 4 + 1 + 1  # hello x2, steps, G, flush, sample


@pytest.mark.parametrize(("objective", "trunk"), [("paper", 0), ("joint", 0), ("joint", 2)])
def test_chunked_mode_over_flower_equals_in_process(tmp_path, objective, trunk):
    # the joint objective's chunks carry each row's Jacobian Gram matrix (core/joint.py);
    # a shared trunk's outputs travel with the chunk, its gradients with the applies
    rc = RUN_CONFIG | {"objective": objective, "generator-trunk": trunk}
    paths = write_party_csvs(tmp_path)
    cfg = VFLGANConfig.from_run_config(rc | {"steps": 12})
    coord = flower_coordinator(FakeGrid(node_configs(paths), rc, cache=False), cfg)
    ref = in_process(paths, cfg)
    coord.fit(12, steps_per_round=4)
    ref.coordinator.fit(12, steps_per_round=4)
    assert coord.history.d_loss == ref.coordinator.history.d_loss
    assert coord.transport.round_trips == 2 + 3 + 1  # hello x2, 3 chunks, flush
    for x, y in zip(coord.sample(8, 0), ref.coordinator.sample(8, 0), strict=True):
        np.testing.assert_array_equal(x, y)


def test_chunked_k1_close_to_exact(tmp_path):
    paths = write_party_csvs(tmp_path)
    cfg = VFLGANConfig.from_run_config(RUN_CONFIG | {"steps": 6})
    a, b = in_process(paths, cfg), in_process(paths, cfg)
    a.coordinator.fit(6)
    b.coordinator.fit(6, steps_per_round=1 + 0)  # exact path
    assert a.coordinator.history.d_loss == b.coordinator.history.d_loss
    c = in_process(paths, cfg)
    for _ in range(6):
        c.coordinator.train_chunk(1)
    c.coordinator.flush()
    # critic updates are exact for K=1; only the generator IFs come before the critic
    # step (the server's dL_G/dIF is often identical: D_S is piecewise linear)
    assert c.coordinator.history.d_loss[:1] == a.coordinator.history.d_loss[:1]
    assert np.allclose(c.coordinator.history.d_loss, a.coordinator.history.d_loss, rtol=1e-3)


# -- handshake refusals ----------------------------------------------------------------
def test_handshake_refuses_duplicate_party(tmp_path):
    paths = write_party_csvs(tmp_path)
    ncs = node_configs(paths)
    ncs[1]["partition-id"] = 0
    ncs[1]["data-path"] = ncs[0]["data-path"]
    cfg = VFLGANConfig.from_run_config(RUN_CONFIG)
    with pytest.raises(HandshakeError, match="party id 0 is claimed by nodes"):
        flower_coordinator(FakeGrid(ncs, RUN_CONFIG), cfg)


def test_handshake_skips_a_silent_extra_node(tmp_path, monkeypatch):
    """A crashed node stays listed until its heartbeat expires; its restarted twin and
    the other parties answer, so the handshake goes on without the silent one."""
    from vflgan_app.flower import transport as transport_mod

    monkeypatch.setattr(transport_mod, "SILENT_GRACE_S", 0.05)
    paths = write_party_csvs(tmp_path)
    ncs = node_configs(paths)
    ncs = [ncs[0], ncs[1], dict(ncs[1])]  # node 1002: party 1 again, the live restart
    dead = 1001
    grid = FakeGrid(ncs, RUN_CONFIG, fault=lambda node, mtype, content:
                    None if node == dead else content)
    transport = FlowerTransport(grid, 2, round_timeout=5.0,
                                message_factory=grid.create_message)
    assert transport.connect() == {0: 1000, 1: 1002}
    # without the handshake's leniency a silent node times the round out
    grid = FakeGrid(ncs, RUN_CONFIG, fault=lambda node, mtype, content:
                    None if node == dead else content)
    transport = FlowerTransport(grid, 2, round_timeout=0.3,
                                message_factory=grid.create_message)
    transport.connect()
    with pytest.raises(PartyTimeout, match="node 1001"):
        transport._round({1000: [Call("hello")], 1001: [Call("hello")]},
                         label=lambda n: f"node {n}")


def test_handshake_refuses_missing_party(tmp_path):
    paths = write_party_csvs(tmp_path)
    cfg = VFLGANConfig.from_run_config(RUN_CONFIG | {"num-parties": 3})
    grid = FakeGrid(node_configs(paths), RUN_CONFIG)
    transport = FlowerTransport(grid, 3, connect_timeout=0.6,
                                message_factory=grid.create_message)
    with pytest.raises(Exception, match="only 2 of 3 parties connected"):
        transport.connect()
    # all nodes up but party 2 absent: the coordinator names it
    grid = FakeGrid(node_configs(paths), RUN_CONFIG)
    transport = FlowerTransport(grid, 2, message_factory=grid.create_message)
    transport.connect()
    coord = Coordinator(transport, cfg.resolve_architecture(), expected_parties=3)
    with pytest.raises(HandshakeError, match=r"parties \[2\] missing"):
        coord.handshake()


def test_handshake_refuses_misaligned_ids(tmp_path):
    paths = write_party_csvs(tmp_path)
    import pandas as pd

    t = pd.read_csv(paths[1])
    t.loc[0, "record_id"] = 999  # one record the other party does not hold
    t.to_csv(paths[1], index=False)
    cfg = VFLGANConfig.from_run_config(RUN_CONFIG)
    with pytest.raises(HandshakeError, match="rows are misaligned"):
        flower_coordinator(FakeGrid(node_configs(paths), RUN_CONFIG), cfg)


def test_handshake_refuses_schema_mismatch(tmp_path):
    # party 1 also holds column "a" (a column at two parties)
    paths = write_party_csvs(tmp_path)
    import pandas as pd

    t0, t1 = pd.read_csv(paths[0]), pd.read_csv(paths[1])
    t1["a"] = t0["a"]
    t1.to_csv(paths[1], index=False)
    cfg = VFLGANConfig.from_run_config(RUN_CONFIG)
    with pytest.raises(HandshakeError, match="column 'a' is held by party 0 and party 1"):
        flower_coordinator(FakeGrid(node_configs(paths), RUN_CONFIG), cfg)
    # a party whose schema differs from the expected one (e.g. a resumed run)
    paths = write_party_csvs(tmp_path)
    grid = FakeGrid(node_configs(paths), RUN_CONFIG)
    transport = FlowerTransport(grid, 2, message_factory=grid.create_message)
    coord = Coordinator(transport, cfg.resolve_architecture(), expected_parties=2)
    coord.expected_schemas = {1: "[]"}
    transport.connect()
    with pytest.raises(HandshakeError, match="party 1 reports another column schema"):
        coord.handshake()


def test_message_type_gates_methods(tmp_path):
    paths = write_party_csvs(tmp_path)
    ctx = FakeGrid(node_configs(paths), RUN_CONFIG).contexts[1000]
    content = codec.encode_calls([Call("critic_backward", {"step": 0, "grads": {}})])
    with pytest.raises(ValueError, match="'query.hello' may not run"):
        client_app.serve(content, ctx, codec.QUERY_HELLO)


# N = 40 rows: delta < 1/N, and too few rows for a DP schema release (domain declared)
DP_RUN = {"dp.delta": 1e-3, "dp.noise-seed": 5, "dp.public-domain": TINY_DOMAIN}


def _dp_flower_run(tmp_path, paths, run_config, cache):
    import json

    from vflgan_app.core.checkpoint import latest_step, load_server_checkpoint
    from vflgan_app.server_app import FlowerSettings, run_federated

    cfg = VFLGANConfig.from_run_config(run_config | {"output-dir": str(tmp_path / "out")})
    grid = FakeGrid(node_configs(paths), run_config, cache=cache)
    transport = FlowerTransport(grid, 2, round_timeout=30.0, connect_timeout=2.0,
                                poll_interval=0.001, message_factory=grid.create_message)
    run_dir = run_federated(cfg, FlowerSettings(evaluate=False, run_name="dp"), transport)
    report = json.loads((run_dir / "report.json").read_text())
    # under DP the published report carries no loss history (un-noised losses of private
    # rows); the server's own final checkpoint still holds it, for this comparison
    assert "history" not in report and "omitted under DP" in report["history_omitted"]
    ckpt = run_dir / "checkpoints"
    if latest_step(ckpt) is not None:  # a budget stop writes none
        report["server_d_loss"] = load_server_checkpoint(ckpt, latest_step(ckpt))["d_loss"]
    return cfg, report


@pytest.mark.filterwarnings("ignore:dp.noise-seed")
def test_paper_dp_over_flower_equals_in_process(tmp_path):
    # Prepare: paper mode with a fixed (test-only) noise seed, live parties kept
    paths = write_party_csvs(tmp_path)
    rc = RUN_CONFIG | DP_RUN | {"steps": 6, "dp.mode": "paper", "dp.target-epsilon": 10.0}
    # Execute: the ServerApp's own function over the real ClientApp code
    cfg, report = _dp_flower_run(tmp_path, paths, rc, cache=True)
    ref = in_process(paths, cfg)
    ref.fit(6)
    # Assert: the noised run equals the in-process DP run; metadata is in the report
    assert report["server_d_loss"] == ref.coordinator.history.d_loss
    dp = report["dp"]
    assert dp["mode"] == "paper" and dp["steps"] == 6 and 0 < dp["epsilon"] <= 10.0
    assert dp == ref.dp_metadata() and report["stopped_early"] is None


@pytest.mark.filterwarnings("ignore:dp.noise-seed")
@pytest.mark.parametrize("cache", [True, False])
def test_strict_dp_with_the_joint_objective_over_flower_equals_in_process(tmp_path, cache):
    # the joint penalty's extra exchange (critic_penalty) and w travel over Flower too;
    # cache=False restores each party per message (u is replayed from the stored state)
    paths = write_party_csvs(tmp_path)
    rc = RUN_CONFIG | DP_RUN | {"steps": 4, "dp.mode": "strict", "dp.noise-multiplier": 2.0,
                                "objective": "joint"}
    cfg, report = _dp_flower_run(tmp_path, paths, rc, cache=cache)
    ref = in_process(paths, cfg)
    ref.fit(4)
    assert report["server_d_loss"] == ref.coordinator.history.d_loss
    assert report["dp"] == ref.dp_metadata() and report["dp"]["mode"] == "strict"


@pytest.mark.filterwarnings("ignore:dp.noise-seed")
def test_strict_dp_over_flower_fresh_process_per_message(tmp_path):
    paths = write_party_csvs(tmp_path)
    rc = RUN_CONFIG | DP_RUN | {"steps": 4, "dp.mode": "strict", "dp.noise-multiplier": 2.0}
    _, report = _dp_flower_run(tmp_path, paths, rc, cache=False)
    dp = report["dp"]
    assert dp["mode"] == "strict" and dp["steps"] == 4 and dp["epsilon"] > 0
    assert len(report["server_d_loss"]) == 4


@pytest.mark.filterwarnings("ignore:dp.noise-seed")
def test_dp_budget_stop_over_flower_publishes_and_says_so(tmp_path):
    paths = write_party_csvs(tmp_path)
    rc = RUN_CONFIG | DP_RUN | {"steps": 50, "dp.mode": "paper", "dp.noise-multiplier": 0.6,
                                "dp.target-epsilon": 8.0}
    _, report = _dp_flower_run(tmp_path, paths, rc, cache=True)
    assert report["stopped_early"] and "epsilon" in report["stopped_early"]
    assert report["dp"]["epsilon"] <= 8.0 and 0 < report["dp"]["steps"] < 50
    assert (tmp_path / "out" / "dp" / "report.json").exists()


def test_flower_settings_from_run_config():
    from vflgan_app.server_app import FlowerSettings

    s = FlowerSettings.from_run_config({"steps": 3, "flower.steps-per-round": 8,
                                        "flower.resume": "true", "flower.evaluate": False})
    assert (s.steps_per_round, s.resume, s.evaluate) == (8, True, False)
    with pytest.raises(ValueError, match="unknown key 'flower.stepz'"):
        FlowerSettings.from_run_config({"flower.stepz": 1})
    with pytest.raises(ValueError, match="steps-per-round: got 0"):
        FlowerSettings.from_run_config({"flower.steps-per-round": 0})


@pytest.mark.parametrize("cache", [False, True])
@pytest.mark.parametrize(("objective", "trunk"), [("joint", 0), ("paper", 2), ("joint", 3),
                                                 ("joint-gram", 3)])
def test_joint_objective_over_flower_equals_in_process(tmp_path, cache, objective, trunk):
    # Prepare: the joint objective and/or a shared generator trunk; cache=False restores
    # each party per message (the mid-step exchange's u and the trunk's output t travel
    # in the stored state and are replayed)
    gram = objective == "joint-gram"  # the penalty's Gram matrices ride with the IFs
    rc = RUN_CONFIG | {"objective": objective.removesuffix("-gram"), "generator-trunk": trunk,
                       "joint-exchange": "gram" if gram else "penalty"}
    paths = write_party_csvs(tmp_path)
    cfg = VFLGANConfig.from_run_config(rc | {"steps": 7})
    coord = flower_coordinator(FakeGrid(node_configs(paths), rc, cache=cache), cfg)
    ref = in_process(paths, cfg)
    # Execute / Assert: the same losses, step by step, and the same samples
    for _ in range(7):
        assert coord.train_step() == ref.coordinator.train_step()
    assert coord.history.g_loss == ref.coordinator.history.g_loss
    for x, y in zip(coord.sample(16, 1), ref.coordinator.sample(16, 1), strict=True):
        np.testing.assert_array_equal(x, y)
    # per critic step 1 round trip (2 with the joint penalty); per generator step (3 of
    # 7 with n-critic 3) 1 more, 2 with a trunk (its gradient comes back before the
    # next step's fakes); then hello x2, the flush (nothing is left to flush after a
    # trunk's generator step: step 6) and the sample
    per_step = 2 if objective == "joint" else 1  # joint-gram: no extra exchange
    per_gen = 2 if trunk else 1
    flush = 0 if trunk else 1
    assert coord.transport.round_trips == 2 + per_step * 7 + per_gen * 3 + flush + 1


@pytest.mark.filterwarnings("ignore:dp.noise-seed")
def test_a_fresh_process_per_message_releases_the_dp_schema_once(tmp_path, monkeypatch):
    # Prepare: no declared domain, so each party releases its schema with DP; count them
    from vflgan_app.dp import domain

    calls = []
    real = domain.private_schema

    def counted(schema, *args, **kwargs):
        calls.append(tuple(schema.names))
        return real(schema, *args, **kwargs)

    monkeypatch.setattr(domain, "private_schema", counted)
    paths = write_party_csvs(tmp_path, n=3000)
    rc = RUN_CONFIG | {"dp.delta": 1e-5, "dp.noise-seed": 5} | {
        "steps": 2, "dp.mode": "paper", "dp.noise-multiplier": 2.0}
    # Execute: every message restores the party in a "fresh process" (cache off)
    _, report = _dp_flower_run(tmp_path, paths, rc, cache=False)
    # Assert: one release per party for the whole run, and its budget is accounted
    assert sorted(calls) == sorted({c for c in calls}) and len(calls) == 2, calls
    assert report["dp"]["steps"] == 2


# -- progress in the `flwr run --stream` log ---------------------------------------------
def test_stream_progress_lines_interval_eta_and_no_losses_under_dp(caplog):
    from vflgan_app.core.coordinator import History
    from vflgan_app.server_app import StreamProgress

    t = [0.0]
    hist = History()
    coord = SimpleNamespace(step=0, history=hist, postfix_providers=[lambda: {"eps": "0.42"}])
    caplog.set_level("INFO", logger="vflgan_app.server_app")
    prog = StreamProgress(coord, steps=100, every_s=15.0, clock=lambda: t[0])
    for step in range(1, 101):
        t[0] += 0.1  # 10 steps/s: 5 % of the run (5 steps) comes before 15 s
        hist.d_loss.append(1.0 / step)
        hist.g_loss[step] = 2.0
        prog(step)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 20 and lines[-1].startswith("step 100/100 (100%)")
    assert "step 50/100 (50%)  d_loss 0.020  g_loss 2.000  10.00 steps/s  ETA 5 s  eps 0.42" \
        in lines
    # slow steps: one line per 15 s, not per 5 %
    caplog.clear()
    t[0] = 0.0
    slow = StreamProgress(SimpleNamespace(step=0, history=hist, postfix_providers=[]),
                          steps=10_000, every_s=15.0, clock=lambda: t[0])
    for step in range(1, 61):
        t[0] += 1.0
        slow(step)
    assert len(caplog.records) == 4
    assert "step 15/10000 (0%)" in caplog.records[0].getMessage()
    assert "1.00 steps/s  ETA 2 h 46 min" in caplog.records[0].getMessage()  # 9,985 s
    # under DP the losses stay out of the stream (the report omits them too)
    caplog.clear()
    dp = StreamProgress(coord, steps=10, losses=False, clock=lambda: t[0])
    dp(10)
    msg = caplog.records[0].getMessage()
    assert "loss" not in msg and "eps 0.42" in msg
    # chunked mode: the newest steps' d_loss is NaN until their chunk's applies return;
    # the line shows the newest complete one
    caplog.clear()
    hist.d_loss.extend([0.75, float("nan"), float("nan")])
    StreamProgress(coord, steps=10, clock=lambda: t[0])(10)
    assert "d_loss 0.750" in caplog.records[0].getMessage()


def test_server_app_streams_progress(tmp_path, caplog):
    from vflgan_app.server_app import FlowerSettings, run_federated

    caplog.set_level("INFO", logger="vflgan_app")
    paths = write_party_csvs(tmp_path)
    cfg = VFLGANConfig.from_run_config(RUN_CONFIG | {"steps": 4,
                                                     "output-dir": str(tmp_path / "out")})
    grid = FakeGrid(node_configs(paths), RUN_CONFIG)
    transport = FlowerTransport(grid, 2, round_timeout=30.0, connect_timeout=2.0,
                                poll_interval=0.001, message_factory=grid.create_message)
    run_federated(cfg, FlowerSettings(evaluate=False, run_name="p"), transport)
    steps = [r.getMessage() for r in caplog.records if r.getMessage().startswith("step ")]
    assert steps[-1].startswith("step 4/4 (100%)  d_loss") and len(steps) == 4


def test_reply_polls_back_off_up_to_poll_cap(tmp_path, monkeypatch):
    """poll_cap > poll_interval: the waits between empty pulls grow 1.5x up to the cap."""
    from vflgan_app.flower import transport as transport_mod

    paths = write_party_csvs(tmp_path)
    grid = FakeGrid(node_configs(paths), RUN_CONFIG)
    transport = FlowerTransport(grid, 2, round_timeout=30.0, poll_interval=0.01,
                                poll_cap=0.05, message_factory=grid.create_message)
    transport.connect()
    waits = []
    grid.fault = lambda node, mtype, content: None  # nobody answers
    t = [0.0]
    monkeypatch.setattr(transport_mod.time, "monotonic", lambda: t[0])

    def sleep(s):
        waits.append(s)
        t[0] += s

    monkeypatch.setattr(transport_mod.time, "sleep", sleep)
    with pytest.raises(PartyTimeout):
        transport._round({1000: [Call("hello")]}, label=lambda n: f"node {n}")
    assert waits[:5] == pytest.approx([0.01, 0.015, 0.0225, 0.03375, 0.05])
    assert max(waits) == pytest.approx(0.05) and len(waits) < 30.0 / 0.05 + 10
