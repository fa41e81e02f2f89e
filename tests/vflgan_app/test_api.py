import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from tests.vflgan_app.conftest import make_table
from vflgan_app import api
from vflgan_app.config import VFLGANConfig
from vflgan_app.data.partition import prepare_parties, split_vertical
from vflgan_app.eval.dependence import mean_cross_party_correlation_error
from vflgan_app.eval.quality import frechet_distance

SPLIT = [["a", "color", "count"], ["b", "c", "kind"]]
CFG = VFLGANConfig(dataset="custom", architecture="breast_cancer", steps=12, batch_size=8,
                   progress=False)


def tables():
    return split_vertical(make_table(48), SPLIT, "record_id")


def test_fit_and_sample_dataframe():
    model = api.fit(tables(), CFG, id_column="record_id", categorical=["color", "kind"])
    df = model.sample(20, seed=1)
    assert list(df.columns) == ["a", "color", "count", "b", "c", "kind"]
    assert len(df) == 20 and set(df["color"]) <= {"red", "green", "blue"}
    assert set(df["kind"]) <= {"pos", "neg"} and df["count"].dtype.kind == "i"
    # same seed -> same rows; different seed -> different rows
    pd.testing.assert_frame_equal(df, model.sample(20, seed=1))
    assert not df.equals(model.sample(20, seed=2))
    # the control draws each party from its own latent
    a = np.concatenate(model.sample_parts(20, 1), 1)
    b = np.concatenate(model.sample_parts(20, 1, independent=True), 1)
    assert not np.allclose(a, b)


def test_save_load_round_trip(tmp_path):
    model = api.fit(tables(), CFG, categorical=["color", "kind"])
    model.save(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        "config.json", "party-0", "party-1", "server"]
    parties = prepare_parties(tables(), "record_id", ["color", "kind"])
    fresh = api.build_federation(parties, CFG)
    assert not fresh.sample(5).equals(model.sample(5))
    fresh.load(tmp_path / "m")
    pd.testing.assert_frame_equal(fresh.sample(10, seed=3), model.sample(10, seed=3))
    # a party refuses another party's state
    with pytest.raises(ValueError, match="party 0 cannot be loaded into party 1"):
        fresh.parties[1].load_state_dict(fresh.parties[0].state_dict())


def test_config_errors_name_field_and_value():
    with pytest.raises(ValueError, match="steps: got -1, expected an integer >= 0"):
        VFLGANConfig(steps=-1)
    with pytest.raises(ValueError, match="sampler: got 'poisson'"):
        VFLGANConfig(sampler="poisson")
    with pytest.raises(ValueError, match="unknown key 'stepz'"):
        VFLGANConfig.from_dict({"stepz": 3})
    with pytest.raises(ValueError, match="batch-size got 'big', expected an integer"):
        VFLGANConfig.from_dict({"batch-size": "big"})
    cfg = VFLGANConfig.from_run_config({"num-steps": 3} | {"dp.mode": "paper"}) if False else \
        VFLGANConfig.from_run_config({"steps": 3, "batch-size": 16, "dp.mode": "paper"})
    assert cfg.steps == 3 and cfg.batch_size == 16


@pytest.mark.parametrize("kind", ["vertigan", "centralized"])
def test_baselines_train_and_sample(kind):
    parties = prepare_parties(tables(), "record_id", ["color", "kind"])
    model = api.fit_baseline(kind, parties, CFG.__class__(**{**CFG.to_dict(), "steps": 0}))
    before = np.concatenate(model.sample_parts(16, 0), 1)
    model.fit(10)
    after = np.concatenate(model.sample_parts(16, 0), 1)
    assert before.shape == after.shape == (16, parties[0].schema.width + parties[1].schema.width)
    assert not np.allclose(before, after)  # training changed the generator
    assert list(model.sample(4).columns) == ["a", "color", "count", "b", "c", "kind"]


def test_cross_party_metrics_planted():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(2000, 2))
    joint = np.concatenate([a, a @ np.array([[1.0], [0.5]])], 1)
    shuffled = joint.copy()
    shuffled[:, 2:] = joint[rng.permutation(2000), 2:]
    sl = [slice(0, 2), slice(2, 3)]
    assert mean_cross_party_correlation_error(joint, joint[::-1], sl) < 1e-9
    assert mean_cross_party_correlation_error(joint, shuffled, sl) > 0.5
    # FD: 0 for identical samples, ~ ||mu||^2 for a shift
    assert frechet_distance(joint, joint) < 1e-6
    assert abs(frechet_distance(joint, joint + np.array([1.0, 0, 0])) - 1.0) < 1e-3


def test_core_does_not_import_flwr():
    code = ("import sys; import vflgan_app.api, vflgan_app.core.coordinator, vflgan_app.core.party, "
            "vflgan_app.run; print('flwr' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_cli_train_publishes_outputs(tmp_path):
    cmd = [sys.executable, "-m", "vflgan_app", "train", "--dataset", "breast_cancer", "--steps", "6",
           "--output-dir", str(tmp_path), "--run-name", "r", "--no-eval", "--progress", "false"]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    run = tmp_path / "r"
    df = pd.read_csv(run / "synthetic.csv")
    assert len(df) == 569 and "diagnosis" in df.columns and "worst radius" in df.columns
    assert set(df["diagnosis"]) <= {"benign", "malignant"}
    report = json.loads((run / "report.json").read_text())
    assert report["seed"] == 0 and "git_commit" in report and report["model"] == "vflgan"
    assert (run / "model" / "party-0" / "state.safetensors").exists()
    # generate re-samples the saved run
    subprocess.run([sys.executable, "-m", "vflgan_app", "generate", str(run), "--n", "7"],
                   check=True, capture_output=True)
    assert len(pd.read_csv(run / "generated-1" / "synthetic.csv")) == 7
    # bad input -> exit code 2 and a clear message
    bad = subprocess.run([sys.executable, "-m", "vflgan_app", "train", "--steps", "-3",
                          "--output-dir", str(tmp_path)], capture_output=True, text=True)
    assert bad.returncode == 2 and "steps: got -3" in bad.stderr


def test_torch_default_untouched():
    assert torch.get_default_dtype() == torch.float32
