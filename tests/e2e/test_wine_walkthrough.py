"""docs/federation.md's Wine red walkthrough, run as written (slow).

The test reads the ``<!-- wine:NAME -->`` bash blocks from the docs and runs them in a
copy of this checkout (tracked files, the same ``.venv``), as the terminals of the
walkthrough would: the server block, each party's key, the registration, both party
nodes (long-running) and the run. Only the download is replaced by a copy of the
offline file. It needs nginx, the offline wine file and the walkthrough's fixed ports.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.e2e.test_deployment import NEEDS_NGINX
from vflgan_app.data.sources import read_csv_any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts" / "deploy"))
from loopback import group_pids  # noqa: E402

DOC = ROOT / "docs" / "federation.md"
BLOCK = re.compile(r"<!-- wine:(?P<name>[\w-]+) -->\n```bash\n(?P<body>.*?)```", re.S)
PORTS = (8000, 8443, 9094, 9095)  # SuperLink, proxy, the two SuperNodes' local APIs


def walkthrough_blocks() -> dict[str, str]:
    return {m["name"]: m["body"] for m in BLOCK.finditer(DOC.read_text())}


def wine_file() -> Path | None:
    roots = [os.environ.get("VFLGAN_DATA_ROOT"), str(ROOT.parent / "shared" / "data")]
    for r in filter(None, roots):
        p = Path(r) / "wine" / "winequality-red.csv"
        if p.exists():
            return p
    return None


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_the_walkthrough_has_every_block():
    assert list(walkthrough_blocks()) == ["download", "split", "server", "party0-key",
                                          "party1-key", "register", "party0", "party1",
                                          "run"]


@pytest.mark.slow
@NEEDS_NGINX
def test_wine_walkthrough_runs_as_written(tmp_path):
    wine = wine_file()
    if wine is None:
        pytest.skip("no offline wine/winequality-red.csv (VFLGAN_DATA_ROOT)")
    busy = [p for p in PORTS if not port_free(p)]
    if busy:
        pytest.skip(f"the walkthrough's ports {busy} are in use")
    blocks = walkthrough_blocks()
    # a copy of the checkout (tracked files) with this checkout's .venv
    repo = tmp_path / "repo"
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                           check=True).stdout.decode().split("\0")
    for f in filter(None, files):
        if (ROOT / f).is_file():
            (repo / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, repo / f)
    (repo / ".venv").symlink_to(ROOT / ".venv")
    venv_bin = str(ROOT / ".venv" / "bin")
    env = dict(os.environ, PATH=f"{venv_bin}{os.pathsep}{os.environ['PATH']}",
               VIRTUAL_ENV=str(ROOT / ".venv"), FLWR_HOME=str(tmp_path / "flwr-home"),
               FLWR_TELEMETRY_ENABLED="0", FLWR_DISABLE_UPDATE_CHECK="1")
    groups: list[subprocess.Popen] = []

    def run(name: str, timeout: float = 300) -> str:
        p = subprocess.run(["bash", "-ec", blocks[name]], cwd=repo, env=env, text=True,
                           capture_output=True, timeout=timeout, start_new_session=True)
        assert p.returncode == 0, f"block {name}: {p.stdout[-2000:]}\n{p.stderr[-2000:]}"
        return p.stdout + p.stderr

    def start(name: str) -> None:
        log = open(tmp_path / f"{name}.log", "w")  # noqa: SIM115 (closed at exit)
        groups.append(subprocess.Popen(["bash", "-ec", blocks[name]], cwd=repo, env=env,
                                       stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True))

    try:
        shutil.copy(wine, repo / "winequality-red.csv")  # instead of "download"
        run("split")
        # the server block leaves the SuperLink running in its process group
        server = subprocess.Popen(["bash", "-ec", blocks["server"]], cwd=repo, env=env,
                                  stdout=open(tmp_path / "server.log", "w"),  # noqa: SIM115
                                  stderr=subprocess.STDOUT, start_new_session=True)
        groups.append(server)
        assert server.wait(timeout=300) == 0, (tmp_path / "server.log").read_text()[-3000:]
        run("party0-key")
        run("party1-key")
        run("register", timeout=120)
        start("party0")
        start("party1")
        out = run("run", timeout=1200)
        # the run's final status, from the block's own `flwr ls`
        listing, _ = json.JSONDecoder().raw_decode(out[out.rindex('{\n  "success"'):])
        statuses = [r["status"] for r in listing["runs"]]
        assert statuses == ["finished:completed"], (statuses, out[-3000:])
        assert re.search(r"step 320/320 \(100%\)", out), out[-3000:]
    finally:
        for p in groups:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in groups:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pass
        # the groups' other members (nginx, SuperLink, executors) too, until none is left
        ids = {p.pid for p in groups}
        for _ in range(100):
            if not group_pids(ids):
                break
            for g in ids:
                try:
                    os.killpg(g, signal.SIGKILL if _ > 25 else signal.SIGTERM)
                except ProcessLookupError:
                    pass
            time.sleep(0.2)
    # the operator's outputs
    run_dir = repo / "runs" / "wine"
    real = read_csv_any(wine)  # UCI's file is ;-separated, the offline copy comma-separated
    synth = pd.read_csv(run_dir / "synthetic.csv")
    assert list(synth.columns) == list(real.columns) and len(synth) == len(real)
    assert set(synth["quality"]) <= set(real["quality"])  # categorical: real levels only
    assert (run_dir / "summary.md").exists() and list(run_dir.glob("plot_*.png"))
    # each party received the same table, checked against its checksum
    report = json.loads((run_dir / "report.json").read_text())
    assert report["delivered"]["parties"] == [0, 1]
    for k in (0, 1):
        got = repo / f"party-{k}-delivered" / "wine"
        assert (got / "synthetic.csv").read_bytes() == (run_dir / "synthetic.csv").read_bytes()
        assert json.loads((got / "manifest.json").read_text())["sha256"] == \
            report["delivered"]["sha256"]
