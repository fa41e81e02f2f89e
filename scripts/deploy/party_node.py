r"""One party's node: a SuperNode and a long-running ClientApp executor (flwr 1.42).

Takes the same arguments as ``flower-supernode`` (``start_supernode.sh`` passes them
with ``LAUNCHER=1``) and starts two processes:

* the SuperNode (``--isolation process``) with short polls while a run is active and
  flwr's 3 s back-off when idle (:func:`vflgan_app.flower.executor.patch_supernode`);
* the executor, which claims the SuperNode's ClientApp tasks on its Runtime API
  (``--host``:``--port``, 127.0.0.1:9094 by default) and runs them with the app imported
  once and the party kept in memory (:mod:`vflgan_app.flower.executor`).

A dead executor is restarted (``--executor-restarts``, default 3): the party is restored
from ``context.state``, which the SuperNode keeps. When the SuperNode exits, the
executor is stopped and this exits with the SuperNode's status. SIGTERM / SIGINT stop
both. Refuses any flwr but 1.42.x.

    python scripts/deploy/party_node.py --insecure --superlink 127.0.0.1:8000 \\
        --node-config 'partition-id=0 data-path="party0.csv"' --port 9094
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUSY_POLL_CAP = float(os.environ.get("VFLGAN_BUSY_POLL_CAP", "0.02"))


def child_env() -> dict:
    """The environment of both children: this repo importable, no telemetry."""
    env = dict(os.environ, FLWR_TELEMETRY_ENABLED="0", FLWR_DISABLE_UPDATE_CHECK="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def main(argv: list[str] | None = None) -> int:
    """Start the SuperNode and the executor, supervise them; the SuperNode's status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__, add_help=False,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--launcher-help", action="help", help="this help")
    p.add_argument("--executor-restarts", type=int, default=3)
    p.add_argument("--busy-poll", type=float, default=0.02,
                   help="seconds between the executor's task polls right after a task")
    p.add_argument("--busy-poll-cap", type=float, default=BUSY_POLL_CAP,
                   help="the longest wait between polls while a run is active, for the "
                        "SuperNode and the executor (default: %(default)s)")
    # read (and passed on) to find the Runtime API the executor dials
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", default="9094")
    ours, rest = p.parse_known_args(argv)
    sys.path.insert(0, str(ROOT))
    from vflgan_app.flower.executor import check_flwr_version

    try:
        check_flwr_version()
    except RuntimeError as e:
        print(f"party_node.py: {e}", file=sys.stderr)
        return 2
    host = "127.0.0.1" if ours.host in ("0.0.0.0", "::", "") else ours.host
    runtime = f"{host}:{ours.port}"
    env = child_env()
    env["VFLGAN_BUSY_POLL_CAP"] = str(ours.busy_poll_cap)
    module = [sys.executable, "-m", "vflgan_app.flower.executor"]
    node = subprocess.Popen([*module, "supernode", *rest, "--host", ours.host,
                             "--port", ours.port], env=env)
    executor_cmd = [*module, "executor", "--runtime-api-address", runtime,
                    "--busy-poll", str(ours.busy_poll), "--busy-poll-cap",
                    str(ours.busy_poll_cap)]
    executor = subprocess.Popen(executor_cmd, env=env)
    stopping = False

    def stop(signum, _frame):
        nonlocal stopping
        stopping = True
        for proc in (executor, node):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    restarts = 0
    while True:
        if (rc := node.poll()) is not None:
            print(f"party_node.py: SuperNode exited with {rc}; stopping the executor",
                  file=sys.stderr, flush=True)
            break
        if executor.poll() is not None and not stopping:
            if restarts >= ours.executor_restarts:
                print(f"party_node.py: executor exited ({executor.returncode}) "
                      f"{restarts + 1} times; stopping the SuperNode", file=sys.stderr,
                      flush=True)
                node.send_signal(signal.SIGTERM)
                rc = 1
                break
            restarts += 1
            print(f"party_node.py: executor exited ({executor.returncode}); restart "
                  f"{restarts} of {ours.executor_restarts}", file=sys.stderr, flush=True)
            executor = subprocess.Popen(executor_cmd, env=env)
        time.sleep(0.2)
    for proc in (executor, node):
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in (executor, node):
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return rc if isinstance(rc, int) else 1


if __name__ == "__main__":
    sys.exit(main())
