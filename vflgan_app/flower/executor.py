"""A long-running ClientApp executor for one party's SuperNode (flwr 1.42 only).

A stock SuperNode starts a fresh ``flwr-clientapp`` process for every message: the
interpreter, flwr, torch and this app are imported again and the party is restored
from ``context.state`` each time. With ``flower-supernode --isolation process`` the
SuperNode leaves task execution to whoever claims the tasks on its Runtime API; this
module is that claimer:

* :class:`ClientAppExecutor` claims a ClientApp task (``AcquireTask``), pulls its
  message and context, runs the app (imported once per process) in this process,
  pushes the reply and the new context, and sends heartbeats while the app runs. When
  the app raises, the reply is an error naming the exception, as with the stock
  ``flwr-clientapp``, and the executor keeps serving.
* The party's live modules stay in memory between messages through
  :mod:`vflgan_app.flower.node`'s cache, keyed by (run, node) and reused only when
  ``context.state`` still holds the version it stored; a restarted executor has an
  empty cache and restores the party from ``context.state``.
* :class:`PollSchedule`: short polls while a run is active, growing back to the stock
  3 s when idle. :func:`patch_supernode` applies it to the SuperNode's own waits (the
  3 s sleep after an empty pull, the 0.5 s waits for a reply, the 1 s object-pull
  backoff), which flwr 1.42 does not expose as settings.

Both touch flwr internals, so :func:`check_flwr_version` refuses any flwr other than
:data:`FLWR_SERIES`. The party runs the app installed on its own machine (not the code
in the run's FAB); restart the node after updating it.

Entry points (``scripts/deploy/party_node.py`` starts both, one process each)::

    python -m vflgan_app.flower.executor supernode <flower-supernode args>
    python -m vflgan_app.flower.executor executor --runtime-api-address 127.0.0.1:9094
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from functools import partial

logger = logging.getLogger("vflgan_app.flower.executor")  # also when run with -m

FLWR_SERIES = "1.42."  # the flwr release series this module was written against
CLIENT_APP_TASK = "flwr-clientapp"  # flwr.supercore.constant.TaskType.CLIENT_APP
DEFAULT_APP = "vflgan_app.client_app:app"


def check_flwr_version(version: str | None = None) -> str:
    """Return flwr's version; raise unless it is of :data:`FLWR_SERIES`.

    Raises:
        RuntimeError: another flwr (the patched internals may have moved).
    """
    if version is None:
        import flwr

        version = flwr.__version__
    if not version.startswith(FLWR_SERIES):
        raise RuntimeError(
            f"flwr {version}: the party node launcher (vflgan_app/flower/executor.py) was "
            f"written against flwr {FLWR_SERIES}x and patches its internals; install "
            f"flwr=={FLWR_SERIES}* or use the stock flower-supernode (start_supernode.sh)")
    return version


@dataclass
class PollSchedule:
    """How long to wait after an empty poll: short while active, backing off when idle.

    Args:
        busy: seconds between polls right after work (a message, a task).
        busy_cap: within ``active_window``, the wait grows by ``growth`` per empty poll
            from ``busy`` up to this (default ``busy``: constant). Fewer polls leave the
            2-core machine's SuperLink and SuperNodes more CPU for the real requests.
        idle: the longest wait (flwr's own 3 s once a run is long over).
        active_window: seconds after the last work during which polls stay at ``busy``.
        growth: factor by which the wait grows per empty poll after the window.
        clock: the monotonic clock (tests pass a fake).
    """

    busy: float = 0.02
    idle: float = 3.0
    active_window: float = 15.0
    growth: float = 2.0
    clock: object = time.monotonic
    busy_cap: float | None = None
    _last_work: float = field(default=float("-inf"), init=False)
    _wait: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        if not 0 < self.busy <= self.idle:
            raise ValueError(f"poll busy={self.busy}, idle={self.idle}; expected "
                             "0 < busy <= idle")
        if self.busy_cap is None:
            self.busy_cap = self.busy
        if not self.busy <= self.busy_cap <= self.idle:
            raise ValueError(f"poll busy={self.busy}, busy_cap={self.busy_cap}, idle="
                             f"{self.idle}; expected busy <= busy_cap <= idle")
        if self.growth < 1 or self.active_window < 0:
            raise ValueError(f"poll growth={self.growth}, active_window="
                             f"{self.active_window}; expected growth >= 1, window >= 0")
        self._wait = self.idle

    def work(self) -> None:
        """Note that a poll found work (a message, a task)."""
        self._last_work = self.clock()
        self._wait = self.busy

    def active(self) -> bool:
        """Whether the last work is within ``active_window``."""
        return self.clock() - self._last_work < self.active_window

    def next_wait(self) -> float:
        """Seconds to wait after an empty poll."""
        if self.active():
            wait, self._wait = self._wait, min(self.busy_cap, self._wait * self.growth)
            return wait
        self._wait = min(self.idle, max(self._wait, self.busy_cap) * self.growth)
        return self._wait


# -- the SuperNode's own waits ----------------------------------------------------------
class _SleepShim:
    """Stands in for the ``time`` module inside ``start_client_internal``.

    flwr 1.42 sleeps 3 s there after an empty pull and 0.5 s while it waits for a
    reply or an object; those become the schedule's waits. Everything else is ``time``.
    """

    def __init__(self, schedule: PollSchedule) -> None:
        self.schedule = schedule

    def sleep(self, seconds: float) -> None:
        if seconds >= 3:  # after an empty pull
            time.sleep(self.schedule.next_wait())
        else:  # waiting for the ClientApp's reply or its objects
            time.sleep(min(seconds, self.schedule.busy))

    def __getattr__(self, name: str):
        return getattr(time, name)


def patch_supernode(schedule: PollSchedule, object_backoff: float = 0.01) -> None:
    """Make this process's SuperNode loop follow ``schedule`` (call before it starts).

    Raises:
        RuntimeError: flwr is not of :data:`FLWR_SERIES`, or the patched names moved.
    """
    check_flwr_version()
    from flwr.supercore.inflatable import inflatable_utils
    from flwr.supernode import start_client_internal as sci

    for name in ("time", "_pull_and_store_message", "pull_objects"):
        if not hasattr(sci, name):
            raise RuntimeError(f"flwr.supernode.start_client_internal has no {name!r}; "
                               "the launcher does not fit this flwr")
    pull_and_store = sci._pull_and_store_message

    def pull_and_note(*args, **kwargs):
        run_id = pull_and_store(*args, **kwargs)
        if run_id is not None:
            schedule.work()
        return run_id

    sci._pull_and_store_message = pull_and_note
    sci.time = _SleepShim(schedule)
    sci.pull_objects = partial(inflatable_utils.pull_objects, initial_backoff=object_backoff,
                               backoff_cap=1.0)


def patch_task_pulls(object_backoff: float = 0.01) -> None:
    """Retry a task's message objects after ``object_backoff`` s (flwr: 1 s, doubling).

    The SuperNode offers a task before it has pulled the message's objects from the
    SuperLink, so the first pull of a task regularly misses and waits.
    """
    check_flwr_version()
    from flwr.supercore.inflatable import inflatable_utils
    from flwr.supernode.runtime import run_clientapp

    if not hasattr(run_clientapp, "pull_and_inflate_object_from_tree"):
        raise RuntimeError("flwr.supernode.runtime.run_clientapp has no "
                           "'pull_and_inflate_object_from_tree'; the launcher does not "
                           "fit this flwr")
    run_clientapp.pull_and_inflate_object_from_tree = partial(
        inflatable_utils.pull_and_inflate_object_from_tree, initial_backoff=object_backoff,
        backoff_cap=1.0)


def run_supernode(argv: list[str], schedule: PollSchedule) -> None:
    """``flower-supernode`` with :func:`patch_supernode` applied (``--isolation process``)."""
    patch_supernode(schedule)
    from flwr.supernode.cli.flower_supernode import flower_supernode

    if "--isolation" not in argv:
        argv = [*argv, "--isolation", "process"]
    sys.argv = ["flower-supernode", *argv]
    flower_supernode()


# -- the executor ----------------------------------------------------------------------
def load_app(ref: str = DEFAULT_APP):
    """Import ``module:attribute`` (the ClientApp) once."""
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr or "app")


class ClientAppExecutor:
    """Claim the SuperNode's ClientApp tasks and run them in this process, one at a time.

    Args:
        runtime_address: the SuperNode's Runtime API (``--host``/``--port`` of the
            SuperNode; keep it on 127.0.0.1).
        load: a zero-argument callable returning the ClientApp (called once, before
            the first poll; default: import :data:`DEFAULT_APP`).
        schedule: polling of ``AcquireTask``.
        input_timeout: seconds to retry a task whose message is not stored yet.
    """

    def __init__(self, runtime_address: str, load=None, schedule: PollSchedule | None = None,
                 input_timeout: float = 30.0) -> None:
        self.runtime_address = runtime_address
        self._load = load or partial(load_app, DEFAULT_APP)
        self._app = None
        self.schedule = schedule or PollSchedule()
        self.input_timeout = input_timeout
        self.tasks_run = 0
        self.tasks_failed = 0
        self._claimer = None

    # -- the Runtime API (overridden by the fakes in tests) ------------------------
    def _client(self, token: str | None):
        from flwr.supercore.interceptors import (
            RuntimeTokenHttpInterceptor,
            RuntimeVersionHttpInterceptor,
        )
        from flwr.supercore.retry import make_simple_http_retry_invoker
        from flwr.supercore.runtime import RuntimeHttpClient

        interceptors = [RuntimeVersionHttpInterceptor(
            component_name="flwr-clientapp" if token else "SuperExec")]
        if token:
            interceptors.append(RuntimeTokenHttpInterceptor(token))
        return RuntimeHttpClient.from_server_address(
            server_address=self.runtime_address, insecure=True, root_certificates=None,
            interceptors=interceptors, retry_invoker=make_simple_http_retry_invoker())

    def acquire(self) -> tuple[str, object] | None:
        """Claim one ClientApp task: ``(token, task)``, or None when there is none."""
        from flwr.proto.runtime_pb2 import AcquireTaskRequest

        if self._claimer is None:
            self._claimer = self._client(None)
        res = self._claimer.AcquireTask(
            AcquireTaskRequest(supported_task_types=[CLIENT_APP_TASK]))
        if res.HasField("task") and res.token:
            return res.token, res.task
        return None

    def pull_input(self, client):
        """The task's message and context; retried while the message is not stored."""
        from flwr.supernode.runtime.run_clientapp import pull_task_input

        deadline = time.monotonic() + self.input_timeout
        while True:
            try:
                message, context, _run, _fab = pull_task_input(client)
                return message, context
            except RuntimeError:  # "No messages received": claimed before it was stored
                if time.monotonic() > deadline:
                    raise
                time.sleep(self.schedule.busy)

    def push_reply(self, client, reply, context) -> None:
        """Push the reply message (and its objects) to the SuperNode."""
        from flwr.supernode.runtime.run_clientapp import push_message

        push_message(client, reply, context)

    def push_output(self, client, context, sub_status: str, details: str) -> None:
        """End the task: its status and the new context (``context.state``)."""
        from flwr.supernode.runtime.run_clientapp import push_task_output

        push_task_output(client=client, context=context, sub_status=sub_status,
                         details=details)

    def heartbeat(self, client):
        """A started heartbeat sender for one task (stopped by :meth:`run_task`)."""
        from flwr.supercore.heartbeat import HeartbeatSender

        def beat() -> bool:
            # unlike flwr's own, a refused heartbeat does not SIGINT this process: the
            # task ends on its own and the executor serves the next one
            try:
                res = client.SendTaskHeartbeat(_heartbeat_request())
            except Exception:  # transport errors are retried by the sender
                return False
            if not res.success:
                logger.warning("heartbeat refused: the SuperNode gave up this task")
            return True

        sender = HeartbeatSender(beat)
        sender.start()
        return sender

    # -- one task ---------------------------------------------------------------------
    def app(self):
        """The ClientApp, loaded once and kept."""
        if self._app is None:
            t0 = time.monotonic()
            self._app = self._load()
            logger.info("ClientApp loaded in %.1f s", time.monotonic() - t0)
        return self._app

    def run_task(self, token: str, task=None) -> bool:
        """Run one claimed task; True when the app answered without raising."""
        from flwr.app import Error, Message
        from flwr.common.constant import ErrorCode, SubStatus

        client = self._client(token)
        sender = self.heartbeat(client)
        context, ok, mtype = None, False, "?"
        sub_status, details = SubStatus.FAILED, "ClientApp task failed"
        t = [time.monotonic()]
        try:
            message, context = self.pull_input(client)
            mtype = message.metadata.message_type
            t.append(time.monotonic())
            try:
                reply = self.app()(message=message, context=context)
                sub_status, details, ok = SubStatus.COMPLETED, "", True
            except Exception as e:  # the app's failure becomes the reply, named
                reason = f"{type(e).__name__}: {e}"
                logger.error("ClientApp raised on %s: %s", message.metadata.message_type,
                             reason, exc_info=e)
                reply = Message(Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION,
                                      reason=reason), reply_to=message)
                details = reason
            t.append(time.monotonic())
            self.push_reply(client, reply, context)
            t.append(time.monotonic())
        except Exception as e:  # the Runtime API failed us: the SuperNode times it out
            logger.error("task failed outside the app: %s", e, exc_info=e)
            details = f"executor: {type(e).__name__}: {e}"
            ok = False
        finally:
            if sender.is_running:
                sender.stop()
            self.push_output(client, context, sub_status, details)
            if hasattr(client, "close"):
                client.close()
        t.append(time.monotonic())
        logger.info("task %s: %s s (pull, app, push reply, push state)", mtype,
                    " ".join(f"{b - a:.2f}" for a, b in zip(t, t[1:])))
        self.tasks_run += 1
        self.tasks_failed += not ok
        return ok

    def poll_once(self) -> bool:
        """Claim and run one task if there is one; True if one ran."""
        got = self.acquire()
        if got is None:
            return False
        self.schedule.work()
        self.run_task(*got)
        self.schedule.work()
        return True

    def serve(self, stop: threading.Event | None = None) -> None:
        """Poll until ``stop`` is set; a failed poll (SuperNode not up yet) is retried."""
        stop = stop or threading.Event()
        self.app()  # import before the first message, not while it waits
        while not stop.is_set():
            try:
                if self.poll_once():
                    continue
            except Exception as e:  # e.g. the SuperNode is still starting
                logger.debug("AcquireTask failed: %s", e)
                self._claimer = None
            stop.wait(self.schedule.next_wait())


def _heartbeat_request():
    from flwr.proto.runtime_pb2 import SendTaskHeartbeatRequest

    return SendTaskHeartbeatRequest()


def main(argv: list[str] | None = None) -> None:
    """``supernode <flower-supernode args>`` or ``executor --runtime-api-address A``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
    logging.getLogger("vflgan_app").addHandler(handler)
    logging.getLogger("vflgan_app").setLevel(logging.INFO)
    check_flwr_version()
    if argv[:1] == ["supernode"]:
        cap = os.environ.get("VFLGAN_BUSY_POLL_CAP")  # party_node.py --busy-poll-cap
        run_supernode(argv[1:], PollSchedule(busy_cap=float(cap) if cap else None))
        return
    p = argparse.ArgumentParser(prog="python -m vflgan_app.flower.executor executor")
    p.add_argument("command", choices=["executor"])
    p.add_argument("--runtime-api-address", default="127.0.0.1:9094")
    p.add_argument("--app", default=DEFAULT_APP, help="module:attribute of the ClientApp")
    p.add_argument("--busy-poll", type=float, default=0.02)
    p.add_argument("--busy-poll-cap", type=float, default=None)
    p.add_argument("--idle-poll", type=float, default=3.0)
    a = p.parse_args(argv)
    ex = ClientAppExecutor(a.runtime_api_address, load=partial(load_app, a.app),
                           schedule=PollSchedule(busy=a.busy_poll, idle=a.idle_poll,
                                                 busy_cap=a.busy_poll_cap))
    patch_task_pulls()
    logger.info("executor serving ClientApp tasks of %s", a.runtime_api_address)
    ex.serve()


if __name__ == "__main__":
    main()
