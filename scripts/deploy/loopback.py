"""A real federation on one machine: SuperLink + one SuperNode per party, as processes.

Starts ``start_superlink.sh`` and ``start_supernode.sh`` (plain HTTP, or TLS + SuperNode
authentication with ``tls=True``) on free loopback ports, each party with its own CSV
(``export_party_csvs.py``) and its own checkpoint folder, runs ``flwr run . <connection>``,
reads the final status with ``flwr ls``, and stops every process it started by PID
(process groups it created). Used by the slow deployment tests and the benchmark.

With ``tls=True`` the layout is the production one: the SuperLink binds 127.0.0.1:``port``,
the nginx proxy (``start_proxy.sh``) listens on 127.0.0.1:``public_port`` and forwards only
the Fleet API, the parties dial the proxy, and the operator's connection (``connection``,
used for ``flwr supernode register``, ``flwr run`` and ``flwr ls``) dials the SuperLink
over loopback, as an operator on the SuperLink host would.

With ``launcher=True`` each party runs the party node launcher (``party_node.py``: the
SuperNode plus a long-running ClientApp executor) instead of the stock SuperNode.

    python scripts/deploy/loopback.py --run-config 'steps=4 flower.steps-per-round=2' [--tls]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flwr_local import ROOT, flwr_env, free_port  # noqa: E402


def group_pids(groups: set[int]) -> list[int]:
    """PIDs, not zombies, of the processes in the process groups ``groups``."""
    out = subprocess.run(["ps", "-eo", "pid=,pgid=,stat="], capture_output=True,
                         text=True).stdout
    return [int(pid) for pid, pgid, stat in (ln.split() for ln in out.splitlines())
            if int(pgid) in groups and not stat.startswith("Z")]


class Loopback:
    """Context manager owning the SuperLink and SuperNode processes."""

    def __init__(self, workdir: Path, num_parties: int = 2, dataset: str = "digits",
                 max_rows: int | None = None, tls: bool = False,
                 launcher: bool = False) -> None:
        self.dir = Path(workdir)
        self.launcher = launcher
        self.num_parties, self.dataset, self.max_rows, self.tls = num_parties, dataset, \
            max_rows, tls
        self.procs: list[subprocess.Popen] = []
        self.party_procs: dict[int, subprocess.Popen] = {}  # party -> its node's process
        self._party_args: dict[int, tuple[list[str], dict]] = {}
        self.home = self.dir / "flwr-home"
        self.env = flwr_env(self.home)
        self.env["FLWR_BIN"] = str(Path(sys.executable).parent)
        self.port = free_port()  # the SuperLink's own port (operator, loopback)
        # what the parties dial: the proxy with TLS, the SuperLink itself without
        self.public_port = free_port() if tls else self.port
        self.connection = "loopback-tls" if tls else "loopback"
        self.ca_cert = self.dir / "certs" / "ca.crt"  # the only file parties receive
        self.proxy_dir = self.dir / "superlink-state" / "proxy"  # nginx conf and logs

    # -- lifecycle ------------------------------------------------------------------
    def __enter__(self) -> Loopback:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _spawn(self, args: list[str], env: dict, log: str, mode: str = "w") -> subprocess.Popen:
        f = open(self.dir / log, mode)  # noqa: SIM115 (closed with the process)
        p = subprocess.Popen(args, env=env, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT,
                             start_new_session=True)
        self.procs.append(p)
        return p

    def start(self) -> None:
        """Stage data (and certificates), start SuperLink and SuperNodes."""
        self.dir.mkdir(parents=True, exist_ok=True)
        data = self.dir / "party-data"
        cmd = [sys.executable, str(ROOT / "scripts/deploy/export_party_csvs.py"),
               "--dataset", self.dataset, "--num-parties", str(self.num_parties),
               "--out", str(data)]
        if self.max_rows:
            cmd += ["--max-rows", str(self.max_rows)]
        info = subprocess.run(cmd, check=True, capture_output=True, text=True,
                              env=self.env).stdout
        bounds = next((ln.split("=", 1)[1] for ln in info.splitlines() if "BOUNDS=" in ln), "")
        cats = next((ln.split(": ", 1)[1] for ln in info.splitlines()
                     if ln.startswith("categorical columns")), "")
        env = dict(self.env, HOST="127.0.0.1", PORT=str(self.port),
                   STATE_DIR=str(self.dir / "superlink-state"),
                   CERTS_DIR=str(self.dir / "certs"), KEYS_DIR=str(self.dir / "keys"),
                   SERVER_TLS_DIR=str(self.dir / "superlink-tls"),
                   CA_PRIVATE_DIR=str(self.dir / "ca-private"))
        if self.tls:
            # demo party keys on one machine; real parties run gen_party_key.sh themselves
            subprocess.run(["bash", str(ROOT / "scripts/deploy/gen_certs.sh")], check=True,
                           env=dict(env, DEMO_PARTY_KEYS=str(self.num_parties)),
                           capture_output=True)
            env.update(TLS="1", PUBLIC_HOST="127.0.0.1", PUBLIC_PORT=str(self.public_port),
                       PROXY_STATE_DIR=str(self.proxy_dir))
        self._spawn(["bash", str(ROOT / "scripts/deploy/start_superlink.sh")], env,
                    "superlink.log")
        self.wait_health()
        ca = str(self.ca_cert) if self.tls else ""
        subprocess.run(["bash", str(ROOT / "scripts/deploy/add_connection.sh"),
                        self.connection, f"127.0.0.1:{self.port}", *([ca] if ca else [])],
                       check=True, env=self.env, capture_output=True)
        if self.tls:  # allow-list each party's public key before it connects
            for k in range(self.num_parties):
                subprocess.run([env["FLWR_BIN"] + "/flwr", "supernode", "register",
                                str(self.dir / "keys" / f"party{k}.pub"), self.connection],
                               check=True, env=self.env, capture_output=True, text=True,
                               timeout=120)
        for k in range(self.num_parties):
            nenv = dict(env, SUPERLINK=f"127.0.0.1:{self.public_port}", PORT=str(free_port()),
                        NUM_PARTIES=str(self.num_parties), BOUNDS=bounds, CATEGORICAL=cats,
                        CHECKPOINT_DIR=str(self.dir / f"party{k}-checkpoints"),
                        DELIVERY_DIR=str(self.dir / f"party{k}-delivered"),
                        LAUNCHER="1" if self.launcher else "0",
                        FLWR_HOME=str(self.dir / f"supernode{k}-home"))
            self._party_args[k] = (["bash", str(ROOT / "scripts/deploy/start_supernode.sh"),
                                    str(k), str(data / f"party{k}.csv")], nenv)
            self.party_procs[k] = self._spawn(*self._party_args[k], f"supernode{k}.log")

    def wait_health(self, timeout: float = 120.0) -> None:
        """Wait until the SuperLink answers ``/health`` on the parties' address.

        With TLS that is the proxy, so a 200 means nginx and the SuperLink are both up.
        """
        import ssl

        scheme = "https" if self.tls else "http"
        ctx = ssl.create_default_context(cafile=str(self.ca_cert)) if self.tls else None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.procs[0].poll() is not None:
                raise RuntimeError("SuperLink exited: " +
                                   (self.dir / "superlink.log").read_text()[-2000:])
            try:
                with urllib.request.urlopen(f"{scheme}://127.0.0.1:{self.public_port}/health",
                                            timeout=2, context=ctx) as r:
                    if r.status == 200:
                        return
            except Exception:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"SuperLink not healthy after {timeout:.0f} s")

    def stop(self) -> None:
        """Stop every process group this object started (SIGTERM, then SIGKILL)."""
        for p in self.procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        for p in self.procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for p in self.procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()
        # a killed process with a large address space takes a moment to exit
        deadline = time.monotonic() + 10
        while self.alive_pids() and time.monotonic() < deadline:
            time.sleep(0.2)

    def alive_pids(self) -> list[int]:
        """PIDs of this object's processes (and their groups) still running."""
        return group_pids({p.pid for p in self.procs})

    # -- one party's node (fault tests) ------------------------------------------------
    def party_pids(self, k: int) -> dict[str, int]:
        """PIDs of party ``k``'s node: ``supernode`` and, with the launcher, ``executor``."""
        group = self.party_procs[k].pid
        out = subprocess.run(["ps", "-ewwo", "pid=,pgid=,stat=,args="], capture_output=True,
                             text=True).stdout
        pids = {}
        for line in out.splitlines():
            pid, pgid, stat, args = line.split(None, 3)
            if int(pgid) != group or stat.startswith("Z"):
                continue
            if "vflgan_app.flower.executor executor" in args:
                pids["executor"] = int(pid)
            elif "vflgan_app.flower.executor supernode" in args or "flower-supernode" in args:
                pids["supernode"] = int(pid)
        return pids

    def kill_party(self, k: int) -> None:
        """SIGKILL every process of party ``k``'s node (a crashed machine)."""
        try:
            os.killpg(self.party_procs[k].pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.party_procs[k].wait()

    def restart_party(self, k: int) -> None:
        """Start party ``k``'s node again (same data, keys and checkpoint folder)."""
        if self.party_procs[k].poll() is None:
            raise RuntimeError(f"party {k}'s node is still running; kill_party({k}) first")
        self.party_procs[k] = self._spawn(*self._party_args[k], f"supernode{k}.log", "a")

    # -- runs -----------------------------------------------------------------------------
    def run(self, run_config: str, timeout: float = 600.0, during=None) -> dict:
        """``flwr run . <connection>``; return run id, final status, wall time, log.

        ``during``: a function run in a thread while the run goes on (a fault to inject);
        what it returns is ``result["during"]``.
        """
        import threading

        flwr = str(Path(sys.executable).parent / "flwr")
        box: dict = {}
        if during is not None:
            thread = threading.Thread(target=lambda: box.update(during=during()), daemon=True)
            thread.start()
        t0 = time.monotonic()
        try:
            p = subprocess.run([flwr, "run", str(ROOT), self.connection, "--stream",
                                "--run-config", run_config], env=self.env, cwd=ROOT,
                               capture_output=True, text=True, timeout=timeout)
            log = p.stdout + p.stderr
        except subprocess.TimeoutExpired as e:
            log = str(e.stdout or "") + f"\n[loopback] timed out after {timeout:.0f} s"
        wall = time.monotonic() - t0
        import re

        m = re.search(r"Successfully started run (\d+)", log)
        run_id = m.group(1) if m else None
        status = self.status(run_id) if run_id else None
        if during is not None:
            thread.join(timeout=60)
        return {"run_id": run_id, "status": status, "wall_s": wall, "log": log,
                "during": box.get("during")}

    def status(self, run_id: str, wait: float = 60.0) -> str | None:
        """Final status of ``run_id`` from ``flwr ls``."""
        flwr = str(Path(sys.executable).parent / "flwr")
        deadline = time.monotonic() + wait
        status = None
        while time.monotonic() < deadline:
            out = subprocess.run([flwr, "ls", self.connection, "--run-id", run_id,
                                  "--format", "json"], env=self.env, capture_output=True,
                                 text=True, timeout=60).stdout
            try:
                runs = json.loads(out[out.index("{"):]).get("runs", [])
                status = runs[0]["status"] if runs else None
            except (ValueError, KeyError, IndexError):
                status = None
            if status and status.startswith("finished"):
                break
            time.sleep(1.0)
        return status


def main() -> int:
    """CLI: start the loopback federation, run once, stop everything."""
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run-config", default="steps=4 flower.steps-per-round=2")
    p.add_argument("--tls", action="store_true", help="TLS + SuperNode authentication")
    p.add_argument("--launcher", action="store_true",
                   help="parties run party_node.py (long-running ClientApp executor)")
    p.add_argument("--max-rows", type=int, default=None)
    p.add_argument("--timeout", type=float, default=600.0)
    a = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vflgan-loopback-"))
    out = work / "runs"
    with Loopback(work, max_rows=a.max_rows, tls=a.tls, launcher=a.launcher) as fed:
        r = fed.run(f'output-dir="{out}" flower.evaluate=false {a.run_config}', a.timeout)
    print(r["log"][-4000:])
    print(f"run {r['run_id']}: {r['status']} in {r['wall_s']:.1f} s; outputs under {out}")
    return 0 if r["status"] == "finished:completed" else 1


if __name__ == "__main__":
    sys.exit(main())
