"""An outsider holding only the public ``ca.crt`` of the TLS + SuperNode-auth federation.

flwr 1.42 serves the Control, Runtime and Fleet APIs on one port and the open-source
SuperLink has no account authentication, so whoever reaches that port can register a node
and start runs. The deployment therefore binds the SuperLink to 127.0.0.1 and puts an nginx
proxy (scripts/deploy/start_proxy.sh) on the public address that forwards only the Fleet
API and /health. This module starts that federation once (scripts/deploy/loopback.py) and
checks:

* the registered parties train through the proxy (``finished:completed``);
* ``entry="proxy"``: an outsider dialing the public address cannot register a node, cannot
  bring an unregistered SuperNode online, cannot list or start runs, the operator's view
  of the SuperLink is unchanged, and raw POSTs to /v1/control/ and /v1/runtime/ get 403;
* ``entry="superlink-port"`` (negative control, so this test is able to fail): the same
  outsider dialing the SuperLink's own port, which is what parties dialled before the
  proxy, succeeds at all of it: their node is registered and comes online, and their own
  ServerApp runs on the SuperLink host (it writes a file there) and sees the parties.
"""

import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts" / "deploy"))

NGINX = shutil.which("nginx") or (
    "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(NGINX is None, reason="nginx is not installed (Debian/Ubuntu: "
                       "apt-get install -y nginx-light); the TLS deployment's public "
                       "proxy needs it"),
]

FLWR = str(Path(sys.executable).parent / "flwr")
SUPERNODE = str(Path(sys.executable).parent / "flower-supernode")
# paths the SuperLink serves but the proxy must not forward (raw POSTs, empty bodies)
# The outsider's own Flower app: its ServerApp writes a file where the run config says,
# so a file on this (the SuperLink) host proves that the outsider's code ran there.
OUTSIDER_PYPROJECT = """\
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "outsider-app"
version = "1.0.0"
description = "An outsider's app"
license = "Apache-2.0"
dependencies = []

[tool.hatch.build.targets.wheel]
packages = ["."]

[tool.flwr.app]
publisher = "outsider"

[tool.flwr.app.components]
serverapp = "outsider_app:server"
clientapp = "outsider_app:client"

[tool.flwr.app.config]
marker = ""
"""
OUTSIDER_APP = """\
from pathlib import Path

from flwr.clientapp import ClientApp
from flwr.serverapp import ServerApp

server = ServerApp()
client = ClientApp()


@server.main()
def main(grid, context):
    nodes = " ".join(str(n) for n in sorted(grid.get_node_ids()))
    Path(context.run_config["marker"]).write_text(nodes)
"""
CLOSED_PATHS = [
    "/v1/control/register-node", "/v1/control/list-runs", "/v1/control/start-run",
    "/v1/runtime/acquire-task", "/v1/runtime/pull-task-input", "/docs",
    "/v1/fleet/%2e%2e/control/list-runs", "/v1/fleet/get-run?x=1",
]


@pytest.fixture(scope="module")
def federation(tmp_path_factory):
    """TLS federation: SuperLink on 127.0.0.1, nginx proxy, 2 SuperNodes via the proxy."""
    from loopback import Loopback

    fed = Loopback(tmp_path_factory.mktemp("fed"), max_rows=300, tls=True)
    t0 = time.monotonic()
    with fed:
        print(f"\nfederation up in {time.monotonic() - t0:.1f} s")
        yield fed
    assert fed.alive_pids() == []


class Outsider:
    """Someone with only ca.crt, an empty FLWR_HOME and a key pair of their own."""

    def __init__(self, workdir: Path, fed, address: str) -> None:
        from flwr_local import flwr_env, free_port

        self.dir = workdir
        self.dir.mkdir(parents=True)
        self.ca = self.dir / "ca.crt"
        shutil.copy(fed.ca_cert, self.ca)
        self.env = flwr_env(self.dir / "flwr-home")
        self.address, self.port = address, free_port()
        subprocess.run(["bash", str(ROOT / "scripts/deploy/add_connection.sh"), "evil",
                        address, str(self.ca)], check=True, env=self.env,
                       capture_output=True)
        self.app = self.dir / "app"
        self.app.mkdir()
        (self.app / "pyproject.toml").write_text(OUTSIDER_PYPROJECT)
        (self.app / "outsider_app.py").write_text(OUTSIDER_APP)
        self.marker = self.dir / "ran-on-the-superlink-host.txt"
        self.key = self.dir / "evil"
        subprocess.run(["ssh-keygen", "-q", "-t", "ecdsa", "-b", "384", "-N", "", "-f",
                        str(self.key)], check=True)
        self.procs: list[subprocess.Popen] = []

    def flwr(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        """Run the flwr CLI as the outsider (default output format: failures exit 1)."""
        return subprocess.run([FLWR, *args], env=self.env, cwd=self.dir,
                              capture_output=True, text=True, timeout=timeout)

    def start_supernode(self, max_retries: int) -> subprocess.Popen:
        """The outsider's own SuperNode, dialing the outsider's address with their key."""
        log = open(self.dir / "supernode.log", "w")  # noqa: SIM115 (closed with the process)
        p = subprocess.Popen([SUPERNODE, "--root-certificates", str(self.ca),
                              "--superlink", self.address, "--auth-supernode-private-key",
                              str(self.key), "--max-retries", str(max_retries),
                              "--max-wait-time", "20", "--port", str(self.port)],
                             env=self.env, stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True)
        self.procs.append(p)
        return p

    def raw_post(self, path: str) -> int:
        """HTTP status of an empty protobuf POST to ``path`` (no flwr client involved)."""
        ctx = ssl.create_default_context(cafile=str(self.ca))
        req = urllib.request.Request(f"https://{self.address}{path}", data=b"",
                                     method="POST",
                                     headers={"Content-Type": "application/protobuf"})
        try:
            with urllib.request.urlopen(req, timeout=30, context=ctx) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code

    def stop(self) -> None:
        """Stop the outsider's SuperNode process groups (SIGTERM, then SIGKILL)."""
        for p in self.procs:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(p.pid, sig)
                    p.wait(timeout=10)
                    break
                except ProcessLookupError:
                    break
                except subprocess.TimeoutExpired:
                    continue
            p.wait()


def operator_json(fed, *args: str) -> dict:
    """``flwr ... --format json`` as the operator, over loopback on the SuperLink host."""
    out = subprocess.run([FLWR, *args, fed.connection, "--format", "json"], env=fed.env,
                         capture_output=True, text=True, timeout=120).stdout
    doc = json.loads(out[out.index("{"):])
    assert doc.get("success", True), doc
    return doc


def operator_view(fed) -> tuple[dict[str, str], set[str]]:
    """Node id -> status, and the set of run ids, as the operator sees them."""
    nodes = {n["node-id"]: n["status"] for n in operator_json(fed, "supernode", "list")["nodes"]}
    runs = {r["run-id"] for r in operator_json(fed, "ls")["runs"]}
    return nodes, runs


def wait_online(fed, node_id: str, proc: subprocess.Popen, timeout: float = 90) -> bool:
    """Whether ``node_id`` shows as online to the operator before ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if operator_view(fed)[0].get(node_id) == "online":
            return True
        time.sleep(2)
    return False


def test_registered_parties_train_through_proxy(federation, tmp_path):
    # Prepare: the parties dialled the proxy, not the SuperLink port
    fed = federation
    assert fed.public_port != fed.port
    out = tmp_path / "runs"
    rc = (f'steps=2 flower.steps-per-round=2 flower.evaluate=false flower.run-name="proxy" '
          f'max-rows=300 output-dir="{out}"')

    # Execute
    r = fed.run(rc, timeout=480)

    # Assert: the run finished and its Fleet traffic went through nginx
    assert r["status"] == "finished:completed", r["log"][-3000:]
    assert (out / "proxy" / "report.json").exists()
    access = (fed.proxy_dir / "access.log").read_text()
    for call in ("activate-node", "pull-messages", "push-messages"):
        assert f'"POST /v1/fleet/{call} HTTP/1.1" 200' in access, access[-2000:]
    print(f"training run through the proxy: {r['wall_s']:.1f} s")


@pytest.mark.parametrize("entry", ["proxy", "superlink-port"])
def test_outsider_with_ca_cert(federation, tmp_path, entry):
    # Prepare: the outsider dials the public proxy, or (negative control) the SuperLink
    # port that parties dialled before the proxy existed
    fed = federation
    port = fed.public_port if entry == "proxy" else fed.port
    evil = Outsider(tmp_path / "outsider", fed, f"127.0.0.1:{port}")
    nodes0, runs0 = operator_view(fed)
    t0 = time.monotonic()
    try:
        # Execute: register a node, bring a SuperNode online, list runs, start a run
        register = evil.flwr("supernode", "register", str(evil.key) + ".pub", "evil")
        nodes1, _ = operator_view(fed)
        new_nodes = set(nodes1) - set(nodes0)
        node = evil.start_supernode(max_retries=1 if entry == "proxy" else 10)
        online = wait_online(fed, next(iter(new_nodes)), node) if new_nodes else False
        if entry == "proxy":
            node.wait(timeout=120)  # an unregistered key: the SuperNode gives up
        ls = evil.flwr("ls", "evil")
        run = evil.flwr("run", str(evil.app), "evil", "--run-config",
                        f'marker="{evil.marker}"')
        run_id = next(iter(set(operator_view(fed)[1]) - runs0), None)
        run_status = fed.status(run_id, wait=120) if run_id else None
        nodes2, runs2 = operator_view(fed)
        statuses = {path: evil.raw_post(path) for path in CLOSED_PATHS}
        fleet_status = evil.raw_post("/v1/fleet/get-run")
        nodes3, runs3 = operator_view(fed)
    finally:
        evil.stop()
        for run_id in set(operator_view(fed)[1]) - runs0:  # the operator stops a rogue run
            subprocess.run([FLWR, "stop", run_id, fed.connection], env=fed.env,
                           capture_output=True, timeout=120)
    log = register.stdout + ls.stdout + run.stdout

    # Assert
    if entry == "proxy":
        # every CLI call fails, at the proxy
        for name, p in (("register", register), ("ls", ls), ("run", run)):
            assert p.returncode != 0 and "403 Forbidden" in p.stdout + p.stderr, (name, p)
        assert node.returncode != 0, (evil.dir / "supernode.log").read_text()[-2000:]
        # the SuperLink's state did not change: no new node, no new run, nothing online
        assert not new_nodes and not online, nodes1
        assert set(nodes2) == set(nodes3) == set(nodes0), (nodes0, nodes2, nodes3)
        assert runs2 == runs3 == runs0, (runs0, runs2, runs3)
        # raw requests to the Control and Runtime APIs never reach the SuperLink
        assert all(s in (403, 404) for s in statuses.values()), statuses
        assert run_id is None and not evil.marker.exists()
        # the Fleet API is forwarded, and the SuperLink rejects the unsigned call
        assert fleet_status == 401
    else:
        # negative control: the same attempts succeed against the SuperLink port
        assert register.returncode == 0 and len(new_nodes) == 1, log
        assert online, (evil.dir / "supernode.log").read_text()[-2000:]
        assert ls.returncode == 0, log
        assert run.returncode == 0 and "Successfully started run" in run.stdout, log
        assert len(runs2 - runs0) == 1, (runs0, runs2)
        # the outsider's ServerApp ran on the SuperLink host and saw the parties' nodes
        assert run_status == "finished:completed", run_status
        parties = {n for n, st in nodes0.items() if st == "online"}
        assert len(parties) == 2 and parties <= set(evil.marker.read_text().split())
        # the Control and Runtime routes answer (415/4xx from FastAPI, not a proxy 403)
        ctl = {p: s for p, s in statuses.items() if p.startswith(("/v1/control/",
                                                                  "/v1/runtime/"))}
        assert all(s not in (403, 404) for s in ctl.values()), ctl
    print(f"outsider via {entry}: register rc {register.returncode}, node online {online},"
          f" ls rc {ls.returncode}, run rc {run.returncode} ({run_status}), raw {statuses},"
          f" {time.monotonic() - t0:.1f} s")
