"""Run `flwr run .` on a job-local simulation SuperLink and check the run's real status.

`flwr run` exits 0 even when the ServerApp fails, and the local SuperLink it auto-starts
is detached and outlives it. This helper (used by the e2e tests and the benchmark):

1. makes a job-local FLWR_HOME, turns telemetry, update checks and runtime dependency
   installation off, and picks free ports for the local SuperLink;
2. runs ``flwr run . --stream`` under a wall-clock timeout;
3. reads the run id and asks ``flwr ls --run-id ID --format json`` for the final status
   (``finished:completed`` or not);
4. stops the local SuperLink it started, by PID (found by its unique FLWR_HOME path).

Usage: python scripts/deploy/flwr_local.py [--timeout S] [-- extra flwr run args]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def flwr_env(home: Path) -> dict[str, str]:
    """Environment for a job-local, offline, quiet Flower CLI."""
    env = dict(os.environ)
    bindir = str(Path(sys.executable).parent)
    env.update({
        "FLWR_HOME": str(home),
        "FLWR_TELEMETRY_ENABLED": "0",
        "FLWR_DISABLE_UPDATE_CHECK": "1",
        "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
        "FLWR_LOCAL_SUPERLINK_HTTP_API_PORT": str(free_port()),
        "FLWR_LOCAL_CONTROL_API_PORT": str(free_port()),
        "PATH": bindir + os.pathsep + env.get("PATH", ""),
        "RAY_DEDUP_LOGS": "0",
    })
    return env


def pids_with(marker: str) -> list[int]:
    """PIDs of processes whose command line contains ``marker`` (a unique path).

    Reads /proc directly: ``ps`` may truncate long command lines to the terminal width.
    """
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            args = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in args:
            pids.append(int(d.name))
    return sorted(pids)


def stop_pids(pids: list[int], grace: float = 5.0) -> None:
    """SIGTERM each PID, then SIGKILL what is left after ``grace`` seconds."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.2)
    for pid in pids:
        if _alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie child counts as gone
    try:
        return "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False


@dataclass
class RunResult:
    """Outcome of one `flwr run`."""

    run_id: str | None
    status: str | None
    wall_s: float
    log: str
    returncode: int

    @property
    def ok(self) -> bool:
        """Whether the run finished with ``finished:completed``."""
        return self.status == "finished:completed"


def run_flwr(app_dir: Path = ROOT, run_config: str | None = None,
             federation_config: str = "num-supernodes=2 client-resources-num-cpus=1",
             timeout: float = 300.0, home: Path | None = None,
             extra: list[str] | None = None) -> RunResult:
    """``flwr run`` with a job-local FLWR_HOME; return the run's real final status."""
    own_home = home is None
    home = Path(tempfile.mkdtemp(prefix="flwr-home-")) if own_home else home
    env = flwr_env(home)
    flwr = str(Path(sys.executable).parent / "flwr")
    cmd = [flwr, "run", str(app_dir), "--stream", "--federation-config", federation_config]
    if run_config:
        cmd += ["--run-config", run_config]
    cmd += extra or []
    t0 = time.monotonic()
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout,
                              cwd=app_dir)
        log, rc = proc.stdout + proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as e:
        log = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) \
            else (e.stdout or "")
        log += f"\n[flwr_local] flwr run timed out after {timeout:.0f} s"
        rc = 124
    wall = time.monotonic() - t0
    m = re.search(r"Successfully started run (\d+)", log)
    run_id = m.group(1) if m else None
    status = None
    try:
        if run_id:
            status = run_status(run_id, env)
    finally:
        stop_pids(pids_with(str(home)))  # the detached local SuperLink (and its children)
    return RunResult(run_id, status, wall, log, rc)


def run_status(run_id: str, env: dict[str, str], wait: float = 30.0) -> str | None:
    """The run's status from ``flwr ls --run-id ID --format json`` (waits for a final one)."""
    flwr = str(Path(sys.executable).parent / "flwr")
    deadline = time.monotonic() + wait
    status = None
    while True:
        out = subprocess.run([flwr, "ls", "--run-id", run_id, "--format", "json"], env=env,
                             capture_output=True, text=True, timeout=60).stdout
        try:
            runs = json.loads(out[out.index("{"):]).get("runs", [])
            status = runs[0]["status"] if runs else None
        except (ValueError, KeyError, IndexError):
            status = None
        if (status and status.startswith("finished")) or time.monotonic() > deadline:
            return status
        time.sleep(1.0)


def main() -> int:
    """CLI: run, print the status, exit non-zero unless finished:completed."""
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run-config", default=None, help="passed to flwr run --run-config")
    p.add_argument("--federation-config", default="num-supernodes=2 client-resources-num-cpus=1")
    p.add_argument("--timeout", type=float, default=300.0, help="wall-clock limit (s)")
    a = p.parse_args()
    r = run_flwr(ROOT, a.run_config, a.federation_config, a.timeout)
    print(r.log)
    print(f"run {r.run_id}: status {r.status} ({r.wall_s:.1f} s)")
    return 0 if r.ok else 1


if __name__ == "__main__":
    sys.exit(main())
