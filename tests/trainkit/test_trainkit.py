import json

import pytest
import torch

from trainkit import (
    EMA,
    CheckpointError,
    StageTimer,
    create_run_dir,
    derive_seed,
    load_checkpoint,
    make_generator,
    save_checkpoint,
    select_device,
)


def test_derive_seed_is_stable_and_key_sensitive():
    assert derive_seed(0, "z", 5) == derive_seed(0, "z", 5)
    assert derive_seed(0, "z", 5) != derive_seed(0, "z", 6)
    assert derive_seed(0, "z", 5) != derive_seed(1, "z", 5)
    a = torch.randn(3, generator=make_generator(7, "x"))
    b = torch.randn(3, generator=make_generator(7, "x"))
    assert torch.equal(a, b)


def test_checkpoint_round_trip_and_truncation(tmp_path):
    # Prepare
    obj = {"w": torch.arange(1000.0), "step": 3}
    path = save_checkpoint(obj, tmp_path / "ckpt.pt")
    # Execute / Assert: round trip
    back = load_checkpoint(path)
    assert back["step"] == 3 and torch.equal(back["w"], obj["w"])
    # a truncated file gives a clear error that names the path
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(path)
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_checkpoint(path)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")
    # no temp files are left behind
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


def test_ema_store_copy_restore():
    model = torch.nn.Linear(2, 1)
    ema = EMA(model, decay=0.5)
    start = [p.detach().clone() for p in model.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(2.0)
    ema.update(model)
    ema.store(model)
    ema.copy_to(model)
    for s, p in zip(start, model.parameters()):
        assert torch.allclose(p, s + 1.0)  # halfway with decay 0.5
    ema.restore(model)
    for s, p in zip(start, model.parameters()):
        assert torch.allclose(p, s + 2.0)
    with pytest.raises(ValueError, match="decay"):
        EMA(model, decay=1.5)


def test_run_dir_records_config_seed_commit(tmp_path):
    run = create_run_dir(tmp_path, {"lr": 0.1}, seed=3, name="r")
    meta = json.loads((run / "config.json").read_text())
    assert meta["config"] == {"lr": 0.1} and meta["seed"] == 3
    assert "git_commit" in meta
    with pytest.raises(FileExistsError):
        create_run_dir(tmp_path, {}, seed=0, name="r")


def test_select_device_cpu_and_errors():
    setup = select_device("cpu")
    assert setup.device.type == "cpu" and setup.amp_dtype is None
    with pytest.raises(ValueError, match="device"):
        select_device("tpu")


def test_stage_timer_accumulates():
    timer = StageTimer()
    with timer("a"):
        pass
    with timer("a"):
        pass
    assert "a" in timer.timings and timer.timings["a"] >= 0


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):  # unpickling calls open(marker, "w"): code execution
        return (open, (str(self.marker), "w"))


def test_load_checkpoint_refuses_a_file_that_would_run_code(tmp_path):
    # Prepare: a pickle whose loading would create a file (as os.system would run a shell)
    import pickle

    marker = tmp_path / "pwned"
    path = tmp_path / "state.pt"
    path.write_bytes(pickle.dumps({"w": _RunsCode(marker)}))
    # Execute / Assert: refused, and nothing ran
    with pytest.raises(CheckpointError, match="could not be read"):
        load_checkpoint(path)
    assert not marker.exists()


def test_atomic_writes_get_the_mode_a_plain_open_gives(tmp_path):
    import os
    import stat

    from trainkit.checkpoint import atomic_write_text

    old = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "synthetic.csv", "a,b\n1,2\n")
        (tmp_path / "plain.csv").write_text("x")
    finally:
        os.umask(old)
    mode = stat.S_IMODE(path.stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "plain.csv").stat().st_mode) == 0o644
