"""simulations/gpu_check.py and the paper-scale GPU configs (simulations/configs/gpu/)."""

import json
import tomllib
from pathlib import Path

import pytest

from simulations import gpu_check
from vflgan_app.config import parse_run_config

ROOT = Path(__file__).resolve().parents[2]
GPU = ROOT / "simulations" / "configs" / "gpu"
# epochs x critic iterations per epoch of the paper's runs (research notes, VFLGAN section)
PAPER_STEPS = {"vflgan-mnist-300ep.toml": 300 * 938, "vflgan-adult-75ep.toml": 75 * 671,
               "vflgan-wine-red-150ep.toml": 150 * 100,
               "vflgan-wine-white-400ep.toml": 400 * 77}


def flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


@pytest.mark.parametrize("name", sorted(PAPER_STEPS))
def test_each_vflgan_gpu_config_is_a_valid_run_config_at_the_papers_length(name):
    defaults = flat(tomllib.loads((ROOT / "pyproject.toml").read_text())
                    ["tool"]["flwr"]["app"]["config"])
    over = flat(tomllib.loads((GPU / name).read_text()))
    assert set(over) <= set(defaults), f"keys the SuperLink would refuse: {set(over) - set(defaults)}"
    cfg, flower = parse_run_config({**defaults, **over})
    assert cfg.device == "cuda" and cfg.objective == "paper"
    assert cfg.steps == PAPER_STEPS[name]
    assert flower.steps_per_round == 1  # the exact algorithm
    assert 0 < flower.checkpoint_every <= cfg.steps


def test_gpu_check_runs_nothing_and_exits_0_without_a_gpu(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(gpu_check.torch.cuda, "is_available", lambda: False)
    out = tmp_path / "gpu.json"
    assert gpu_check.main(["--out", str(out)]) == 0
    assert "no CUDA device here; nothing was run" in capsys.readouterr().out
    assert not out.exists()


def test_gpu_check_cpu_smoke_times_every_run_and_estimates_every_config(tmp_path):
    out = tmp_path / "gpu.json"
    assert gpu_check.main(["--device", "cpu", "--vfl-steps", "1", "--unet-steps", "1",
                           "--unet-batch", "2", "--warmup", "0", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    runs = {r["run"]: r for r in res["rows"]}
    assert set(runs) == {"vflgan-mnist-joint", "vflgan-mnist-paper", "unet-cifar10-fp32"}
    assert all(r["steps_per_s"] > 0 for r in runs.values())
    est = {e["config"]: e for e in res["estimates"]}
    assert set(est) == {*PAPER_STEPS, "unlearning-cifar10.toml"}
    mnist = est["vflgan-mnist-300ep.toml"]
    assert mnist["hours"] == pytest.approx(
        281400 / runs["vflgan-mnist-paper"]["steps_per_s"] / 3600)


def test_gpu_unlearning_reads_its_config_and_the_command_line_wins():
    from simulations import gpu_unlearning

    cfg = str(GPU / "unlearning-cifar10.toml")
    args = gpu_unlearning.parse_args(["--config", cfg, "--attack-steps", "5"])
    assert (args.dataset, args.pretrain_steps, args.attack_steps) == ("cifar10", 80000, 5)
    assert "erasediff" in args.methods


def test_gpu_unlearning_refuses_an_unknown_config_key(tmp_path):
    from simulations import gpu_unlearning

    bad = tmp_path / "bad.toml"
    bad.write_text('dataset = "cifar10"\npretrain_stepz = 3\n')
    with pytest.raises(SystemExit):
        gpu_unlearning.parse_args(["--config", str(bad)])


def test_gpu_unlearning_runs_end_to_end_on_the_cpu_and_says_why_fid_is_skipped(
    tmp_path, monkeypatch
):
    """The GPU script's own code path, shrunk to seconds (--device cpu): a report with
    every method's numbers, and the Inception FID's skip reason when no weights."""
    pytest.importorskip("diffusers")
    import torch

    from simulations import gpu_unlearning

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rc = gpu_unlearning.main([
            "--device", "cpu", "--pretrain-steps", "3", "--unlearn-steps", "2",
            "--attack-steps", "2", "--forget-samples", "4", "--probe-samples", "4",
            "--retain-per-class", "2", "--judge-steps", "10", "--sample-steps", "2",
            "--grid-per-class", "0", "--methods", "swap_label", "dimum",
            "--out", str(tmp_path / "out"),
        ])
    finally:
        torch.set_num_threads(n)
    assert rc == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["device"] == "cpu" and report["pretrain"]["steps"] == 3
    for m in ("swap_label", "dimum"):
        for key in ("after_unlearn", "after_dimra_retain", "after_dimra_aux"):
            row = report[m][key]
            assert 0.0 <= row["forget_rate"] <= 1.0
            assert row["inception_fid"] is None
            assert "pt_inception-2015-12-05" in row["inception_fid_skipped"]
    assert report["inception_fid"].startswith(("Inception weights not found",
                                               "pytorch_fid not installed"))
