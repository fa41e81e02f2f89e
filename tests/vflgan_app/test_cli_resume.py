"""``python -m vflgan_app train`` checkpoints, survives kill -9 and resumes bit for bit.

A CLI training process (digits, 40 steps, a checkpoint every 10) is killed with SIGKILL
after its checkpoint-20 is on disk, or in the middle of writing checkpoint-30; ``--resume``
then continues it, and the loss history in ``report.json`` equals the uninterrupted
run's exactly. The killed run is a real subprocess; the other two run ``main`` in this
process (same code, no interpreter start-up).
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vflgan_app.__main__ import main
from vflgan_app.core.checkpoint import completed_steps

ROOT = Path(__file__).resolve().parents[2]
TRAIN = ["train", "--dataset", "digits", "--max-rows", "200", "--steps", "40",
         "--threads", "1", "--progress", "false", "--no-eval", "--n-samples", "16"]
RESUMABLE = ["--checkpoint-every", "10", "--run-name", "run"]

# The killed CLI process: ``python -m vflgan_app train`` with one hook that marks the
# moment to kill it (tests only; the training code is the CLI's own).
KILLED = r"""
import os, signal, sys, time
from vflgan_app.core import checkpoint, loop

if os.environ["KILL_AT"] == "after-checkpoint-20":
    real_save = loop.save_checkpoint_now

    def save(coordinator, root, *args, **kwargs):
        step = real_save(coordinator, root, *args, **kwargs)
        if step == 20:
            print("checkpoint-20 written", flush=True)
            time.sleep(600)  # mid-run: the test sends SIGKILL here
        return step

    loop.save_checkpoint_now = save
else:  # "writing-checkpoint-30": the server's tensors are on disk, the rest is not
    real_write = checkpoint.write_state

    def write_state(folder, state):
        real_write(folder, state)
        if folder.name.startswith(".server.") and folder.parent.name == "checkpoint-30":
            os.kill(os.getpid(), signal.SIGKILL)

    checkpoint.write_state = write_state

from vflgan_app.__main__ import main
sys.exit(main(sys.argv[1:]))
"""


def history(run_dir: Path) -> dict:
    return json.loads((run_dir / "report.json").read_text())["history"]


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    out = tmp_path_factory.mktemp("straight")
    assert main([*TRAIN, "--output-dir", str(out), "--run-name", "straight"]) == 0
    return history(out / "straight")


def run_killed(out: Path, kill_at: str) -> int:
    """Start the CLI run, SIGKILL it at ``kill_at``; return its exit status."""
    env = {**os.environ, "KILL_AT": kill_at}
    proc = subprocess.Popen([sys.executable, "-c", KILLED, *TRAIN, *RESUMABLE,
                             "--output-dir", str(out)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        if kill_at == "after-checkpoint-20":
            deadline = time.monotonic() + 240
            for line in proc.stdout:  # training logs, then our marker
                if "checkpoint-20 written" in line:
                    break
                assert time.monotonic() < deadline, "no checkpoint-20 in time"
            assert (out / "run" / "checkpoints" / "checkpoint-20" / "server" /
                    "COMPLETE").exists()
            proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode


# the mid-write kill doubles test_run_identity's in-process one: slow (about 15 s more)
@pytest.mark.parametrize("kill_at", [
    "after-checkpoint-20", pytest.param("writing-checkpoint-30", marks=pytest.mark.slow)])
def test_cli_run_killed_with_sigkill_resumes_bit_for_bit(tmp_path, straight, kill_at):
    # Execute: the checkpointing CLI run, killed mid-run
    out = tmp_path / "runs"
    assert run_killed(out, kill_at) == -signal.SIGKILL
    ckpts = out / "run" / "checkpoints"
    assert completed_steps(ckpts) == [10, 20]  # no half checkpoint-30 is picked
    assert not (out / "run" / "report.json").exists()
    # ... a fresh run in its folder is refused (it would delete the checkpoints)
    assert main([*TRAIN, *RESUMABLE, "--output-dir", str(out)]) == 2
    # ... then resumed
    assert main([*TRAIN, *RESUMABLE, "--output-dir", str(out), "--resume"]) == 0
    # Assert: the losses of every step equal the uninterrupted run's, bit for bit
    resumed = history(out / "run")
    assert len(resumed["d_loss"]) == 40
    assert resumed["d_loss"] == straight["d_loss"]
    assert resumed["g_loss"] == straight["g_loss"]
    assert completed_steps(ckpts) == [30, 40]
    assert sorted(p.name for p in (ckpts / "checkpoint-40").iterdir()) == \
        ["party-0", "party-1", "server"]


def test_cli_checkpoint_flags_are_checked(tmp_path, capsys):
    out = ["--output-dir", str(tmp_path)]
    assert main([*TRAIN, *out, "--resume"]) == 2
    assert "--resume: needs --run-name" in capsys.readouterr().err
    assert main([*TRAIN, *out, "--run-name", "x", "--resume", "--overwrite"]) == 2
    assert "got both" in capsys.readouterr().err
    assert main([*TRAIN, *out, "--run-name", "nothing-here", "--resume"]) == 2
    assert "--resume: no run folder" in capsys.readouterr().err
    assert main([*TRAIN, *out, "--model", "vertigan", "--checkpoint-every", "5"]) == 2
    assert "vflgan only" in capsys.readouterr().err
    # --overwrite starts a used run folder over
    args = [*TRAIN, *out, "--steps", "4", "--checkpoint-every", "2", "--run-name", "r"]
    assert main(args) == 0
    assert main(args) == 2
    assert "already exists" in capsys.readouterr().err
    assert main([*args, "--steps", "2", "--overwrite"]) == 0
    assert completed_steps(tmp_path / "r" / "checkpoints") == [2]
