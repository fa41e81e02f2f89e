"""The party node launcher's pure parts, without processes: the polling schedule, the
executor's handling of one task against a fake Runtime API, the flwr pin, the ServerApp's
object back-off, publication of party CSVs under the default run config, and
``add_connection.sh`` run twice."""

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from flwr.app import Message, RecordDict

from vflgan_app.flower import executor as ex

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def task_identity():
    """What ``pull_task_input`` sets in a real task (a Message needs its run id)."""
    from flwr.supercore.task_identity import TaskIdentity

    saved = (TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id)
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 11, 5, 1
    yield
    TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id = saved


class FakeClock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_poll_schedule_short_while_active_then_backs_off_to_idle():
    clock = FakeClock()
    s = ex.PollSchedule(busy=0.02, idle=3.0, active_window=10.0, clock=clock)
    assert s.next_wait() == 3.0  # idle from the start: flwr's own 3 s
    s.work()
    clock.t += 9.9
    assert [s.next_wait() for _ in range(3)] == [0.02] * 3  # within the window
    clock.t += 0.2
    waits = [s.next_wait() for _ in range(10)]
    assert waits[:3] == pytest.approx([0.04, 0.08, 0.16])  # doubling after it
    assert waits[-1] == 3.0 and max(waits) == 3.0
    s.work()  # work again: short at once
    assert s.next_wait() == 0.02


def test_poll_schedule_grows_to_busy_cap_while_active():
    clock = FakeClock()
    s = ex.PollSchedule(busy=0.01, busy_cap=0.05, idle=3.0, active_window=10.0,
                        growth=2.0, clock=clock)
    s.work()
    assert [s.next_wait() for _ in range(5)] == pytest.approx([0.01, 0.02, 0.04, 0.05, 0.05])
    s.work()  # work resets to busy at once
    assert s.next_wait() == 0.01
    clock.t += 10.1  # after the window: doubling from the cap up to idle
    assert [s.next_wait() for _ in range(2)] == pytest.approx([0.1, 0.2])
    with pytest.raises(ValueError, match="busy_cap"):
        ex.PollSchedule(busy=0.05, busy_cap=0.01)


def test_poll_schedule_rejects_bad_settings():
    with pytest.raises(ValueError, match="busy"):
        ex.PollSchedule(busy=5.0, idle=3.0)
    with pytest.raises(ValueError, match="growth"):
        ex.PollSchedule(growth=0.5)


def test_sleep_shim_maps_supernode_waits():
    clock = FakeClock()
    s = ex.PollSchedule(busy=0.001, idle=0.005, active_window=10.0, clock=clock)
    shim = ex._SleepShim(s)
    slept = []
    real_sleep = ex.time.sleep
    ex.time.sleep = slept.append
    try:
        shim.sleep(3)  # empty pull, idle
        s.work()
        shim.sleep(3)  # empty pull, active
        shim.sleep(0.5)  # waiting for the reply
    finally:
        ex.time.sleep = real_sleep
    assert slept == [0.005, 0.001, 0.001]
    assert shim.monotonic is ex.time.monotonic  # everything else is time's


def test_flwr_version_is_pinned():
    assert ex.check_flwr_version().startswith("1.42.")
    with pytest.raises(RuntimeError, match=r"flwr 1\.43\.0.*1\.42\.x"):
        ex.check_flwr_version("1.43.0")


class FakeRuntimeExecutor(ex.ClientAppExecutor):
    """The Runtime API replaced by lists: tasks to hand out, what was pushed."""

    def __init__(self, app, tasks):
        self.loads = 0

        def load():
            self.loads += 1
            return app

        super().__init__("fake:0", load=load, schedule=ex.PollSchedule(busy=0.001))
        self.tasks = list(tasks)  # (token, message) pairs
        self.inputs = {}
        self.replies, self.outputs, self.beats = [], [], []

    def _client(self, token):
        return SimpleNamespace(token=token)

    def acquire(self):
        if not self.tasks:
            return None
        token, msg = self.tasks.pop(0)
        self.inputs[token] = msg
        return token, None

    def pull_input(self, client):
        msg = self.inputs[client.token]
        if msg is None:
            raise RuntimeError("No messages received from Runtime API")
        return msg, SimpleNamespace(state=RecordDict(), token=client.token)

    def push_reply(self, client, reply, context):
        self.replies.append((client.token, reply))

    def push_output(self, client, context, sub_status, details):
        self.outputs.append((client.token, sub_status, details))

    def heartbeat(self, client):
        self.beats.append(client.token)
        return SimpleNamespace(is_running=False)


def _message(mtype="train.step"):
    m = Message(RecordDict(), dst_node_id=1, message_type=mtype)
    m.metadata.__dict__["_message_id"] = "m-" + mtype
    return m


def test_executor_runs_tasks_and_turns_app_errors_into_error_replies(task_identity):
    calls = []

    def app(message, context):
        calls.append(message.metadata.message_type)
        if message.metadata.message_type == "train.step":
            raise ValueError("bad call")
        return Message(RecordDict(), reply_to=message)

    e = FakeRuntimeExecutor(app, [("t1", _message("query.hello")), ("t2", _message()),
                                  ("t3", _message("query.hello")), ("t4", None)])
    e.app()
    assert [e.poll_once() for _ in range(5)] == [True, True, True, True, False]
    assert e.loads == 1  # imported once, for every task
    assert calls == ["query.hello", "train.step", "query.hello"]
    tokens = [t for t, _ in e.replies]
    assert tokens == ["t1", "t2", "t3"]  # the failing app still answered, the pull did not
    err = e.replies[1][1]
    assert err.has_error() and "ValueError: bad call" in err.error.reason
    assert not e.replies[0][1].has_error() and not e.replies[2][1].has_error()
    status = {t: s for t, s, _ in e.outputs}
    assert status == {"t1": "completed", "t2": "failed", "t3": "completed", "t4": "failed"}
    assert "executor: RuntimeError" in e.outputs[3][2]
    assert e.beats == ["t1", "t2", "t3", "t4"]  # a heartbeat per task
    assert (e.tasks_run, e.tasks_failed) == (4, 2)


def test_executor_keeps_the_live_party_between_tasks(tmp_path, task_identity):
    """Through the real ClientApp: the second message reuses the party built by the
    first, and an executor that lost its memory (a restart) restores from state."""
    from tests.vflgan_app.flower.test_flower import (
        RUN_CONFIG,
        node_configs,
        write_party_csvs,
    )
    from vflgan_app import client_app
    from vflgan_app.flower import codec
    from vflgan_app.flower import node as flower_node

    paths = write_party_csvs(tmp_path)
    from flwr.app import Context

    ctx = Context(run_id=11, node_id=5, node_config=node_configs(paths)[0], state=RecordDict(),
                  run_config=dict(RUN_CONFIG))
    built = []
    real_build = flower_node.federation.build_party

    def counting_build(*a, **k):
        built.append(1)
        return real_build(*a, **k)

    flower_node.federation.build_party = counting_build
    try:
        from vflgan_app.core.protocol import Call

        def send(calls, mtype):
            msg = Message(codec.encode_calls(calls), dst_node_id=5, message_type=mtype)
            return client_app.app(message=msg, context=ctx)

        flower_node._LIVE.clear()
        start = [Call("start_checkpoints")]  # a cheap training call: it stores the party
        assert not send(start, "train.checkpoint").has_error()
        assert codec.stored_version(ctx.state) is not None
        assert not send(start, "train.checkpoint").has_error()
        assert len(built) == 1  # kept in memory between messages
        flower_node._LIVE.clear()  # the executor restarted
        assert not send(start, "train.checkpoint").has_error()
        assert len(built) == 2  # rebuilt, from context.state
    finally:
        flower_node.federation.build_party = real_build
        flower_node._LIVE.clear()


def test_server_object_backoff_is_shortened_and_idempotent():
    from flwr.superlink.grid import http_grid

    from vflgan_app.flower.transport import shorten_object_backoff

    original = http_grid.pull_objects
    try:
        assert shorten_object_backoff(0.01, cap=0.5)
        assert shorten_object_backoff(0.02, cap=0.5)
        p = http_grid.pull_objects
        assert p.keywords == {"initial_backoff": 0.02, "backoff_cap": 0.5}
        assert p.func is getattr(original, "func", original)  # not a wrapper of a wrapper
    finally:
        http_grid.pull_objects = original


def test_party_csvs_with_the_default_dataset_publish_as_custom(tmp_path):
    """Party CSVs whose columns are not the built-in dataset's publish as tables even
    when the run config keeps ``dataset = "digits"`` (it used to fail reshaping)."""
    from tests.vflgan_app.flower.test_flower import (
        RUN_CONFIG,
        FakeGrid,
        node_configs,
        write_party_csvs,
    )
    from vflgan_app.config import VFLGANConfig
    from vflgan_app.flower.transport import FlowerTransport
    from vflgan_app.server_app import FlowerSettings, run_federated

    paths = write_party_csvs(tmp_path)
    rc = RUN_CONFIG | {"dataset": "digits", "steps": 2}
    cfg = VFLGANConfig.from_run_config(rc | {"output-dir": str(tmp_path / "out")})
    grid = FakeGrid(node_configs(paths), rc)
    transport = FlowerTransport(grid, 2, round_timeout=30.0, connect_timeout=2.0,
                                poll_interval=0.001, message_factory=grid.create_message)
    run_dir = run_federated(cfg, FlowerSettings(evaluate=False, run_name="csv"), transport)
    report = json.loads((run_dir / "report.json").read_text())
    assert report["timings_s"]["round_trip_median_s"] > 0
    files = sorted(p.name for p in run_dir.iterdir())
    assert any(f.endswith(".csv") for f in files), files
    assert "samples.png" not in files
    assert report["dataset"] == "custom"
    assert (run_dir / "summary.md").read_text().splitlines()[0] == "# vflgan on custom"


def test_schemas_match_the_builtin_dataset_only_with_its_columns():
    from vflgan_app.data.schema import TableSchema
    from vflgan_app.data.sources import load_dataset
    from vflgan_app.server_app import schemas_match

    ds = load_dataset("digits", max_rows=50, num_parties=2)
    own = [TableSchema.fit(t.drop(columns="record_id"), bounded={c: (0.0, 16.0) for c in
                                                                t.columns if c != "record_id"})
           for t in ds.party_tables()]
    assert schemas_match(ds, own)
    assert not schemas_match(ds, own[::-1])
    assert not schemas_match(ds, own[:1])


def test_add_connection_twice_keeps_one_table(tmp_path):
    env = {"FLWR_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    script = str(ROOT / "scripts/deploy/add_connection.sh")
    ca = tmp_path / "ca.crt"
    ca.write_text("x")
    for args in (["vfl", "10.0.0.1:8000"], ["other", "10.0.0.2:8000"],
                 ["vfl", "10.0.0.3:8443", str(ca)]):
        subprocess.run(["bash", script, *args], check=True, env=env, capture_output=True)
    text = (tmp_path / "config.toml").read_text()
    assert text.count("[superlink.vfl]") == 1 and text.count("[superlink.other]") == 1
    assert "10.0.0.1" not in text and "insecure" in text  # other's stays insecure
    import tomllib

    conf = tomllib.loads(text)["superlink"]
    assert conf["vfl"] == {"address": "10.0.0.3:8443", "root-certificates": str(ca)}
    assert conf["other"]["address"] == "10.0.0.2:8000" and conf["default"] == "local"
    flwr = Path(sys.executable).parent / "flwr"
    out = subprocess.run([str(flwr), "config", "list"], env={**env, "FLWR_HOME": str(tmp_path)},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "vfl" in out.stdout, out.stdout + out.stderr
