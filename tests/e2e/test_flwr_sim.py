"""`flwr run .` simulation: the real entry point, its outputs, and exactness vs in-process.

Runs on a job-local FLWR_HOME with free ports, checks the final status with
`flwr ls --run-id ID --format json` (flwr run exits 0 on failure) and stops the
auto-started local SuperLink by PID (scripts/deploy/flwr_local.py).
"""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STEPS = 7


def _flwr_local():
    spec = importlib.util.spec_from_file_location("flwr_local",
                                                  ROOT / "scripts/deploy/flwr_local.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["flwr_local"] = mod
    spec.loader.exec_module(mod)
    return mod


def in_process_losses(steps):
    from vflgan_app.api import build_federation
    from vflgan_app.config import VFLGANConfig
    from vflgan_app.run import prepare_dataset

    cfg = VFLGANConfig(dataset="digits", steps=steps, threads=1, progress=False)
    _, parties = prepare_dataset(cfg)
    model = build_federation(parties, cfg)
    model.coordinator.fit(steps)
    return model.coordinator.history


# The CI smoke test of `flwr run` (issue 3): ~60-75 s on 2 busy cores (SuperLink + Ray start).
def test_flwr_run_simulation_equals_in_process(tmp_path):
    # Execute: the real `flwr run .`, exact mode, a fresh party restore for every message
    fl = _flwr_local()
    out = tmp_path / "runs"
    rc = (f'steps={STEPS} flower.steps-per-round=1 flower.evaluate=false '
          f'flower.cache-party=false flower.run-name="smoke" output-dir="{out}"')
    home = tmp_path / "flwr-home"
    r = fl.run_flwr(ROOT, rc, timeout=240, home=home)
    assert r.ok, f"status {r.status} (rc {r.returncode}):\n{r.log[-3000:]}"
    assert fl.pids_with(str(home)) == []  # the local SuperLink was stopped
    # Assert: published outputs
    run = out / "smoke"
    report = json.loads((run / "report.json").read_text())
    assert (run / "synthetic.npz").exists() and (run / "samples.png").exists()
    assert report["runtime"] == "flower" and report["config"]["steps"] == STEPS
    assert (run / "checkpoints" / f"checkpoint-{STEPS}" / "party-1" / "state.safetensors").exists()
    # Assert: the same losses as the in-process transport for the same seeds
    ref = in_process_losses(STEPS)
    assert report["history"]["d_loss"] == pytest.approx(ref.d_loss, rel=1e-6, abs=1e-7)
    assert report["history"]["g_loss"] == pytest.approx(
        {str(k): v for k, v in ref.g_loss.items()}, rel=1e-6, abs=1e-7)
    print("exact equal:", report["history"]["d_loss"] == ref.d_loss, f"wall {r.wall_s:.1f} s")


@pytest.mark.slow
def test_flwr_run_failure_is_reported_as_failed(tmp_path):
    fl = _flwr_local()
    r = fl.run_flwr(ROOT, f'steps=2 flower.steps-per-round=0 output-dir="{tmp_path}"',
                    timeout=240)
    assert r.run_id is not None and r.status == "finished:failed", r.log[-2000:]
