"""A saved model stands alone: ``VFLGANModel.load(path)`` and ``generate`` need no data.

Issue 14 item 1: the model is rebuilt from its folder (config, architecture, each
party's ``schema.json`` and safetensors weights); training data is not read; a loaded
model samples exactly like the saved one but refuses to train; each party's folder
holds only its own modules and schema.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.vflgan_app.conftest import make_table
from vflgan_app import api
from vflgan_app.config import VFLGANConfig
from vflgan_app.core.checkpoint import read_state
from vflgan_app.data.partition import prepare_parties, split_vertical
from vflgan_app.data.sources import WINE_PARTIES

ROOT = Path(__file__).resolve().parents[2]
SPLIT = [["a", "color", "count"], ["b", "c", "kind"]]
CFG = VFLGANConfig(dataset="custom", architecture="breast_cancer", steps=12, batch_size=8,
                   progress=False)


def fitted():
    return api.fit(split_vertical(make_table(48), SPLIT, "record_id"), CFG,
                   categorical=["color", "kind"])


def test_load_classmethod_in_a_fresh_process_without_data(tmp_path):
    model = fitted()
    model.save(tmp_path / "m")
    want = model.sample(25, seed=4)
    want.to_pickle(tmp_path / "want.pkl")
    code = (
        "import sys, pandas as pd\n"
        "from vflgan_app.api import VFLGANModel\n"
        "m = VFLGANModel.load(sys.argv[1])\n"
        "pd.testing.assert_frame_equal(m.sample(25, seed=4), pd.read_pickle(sys.argv[2]))\n"
        "print('same', m.loaded_from is not None)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "m"),
                          str(tmp_path / "want.pkl")], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "same True" in out.stdout


def test_loaded_model_samples_like_the_saved_one_and_cannot_train(tmp_path):
    model = fitted()
    model.save(tmp_path / "m")
    loaded = api.VFLGANModel.load(tmp_path / "m")
    assert loaded.schemas == model.schemas
    pd.testing.assert_frame_equal(loaded.sample(30, seed=2), model.sample(30, seed=2))
    control = np.concatenate(loaded.sample_parts(10, 2, independent=True), 1)
    np.testing.assert_array_equal(
        control, np.concatenate(model.sample_parts(10, 2, independent=True), 1))
    assert loaded.coordinator.step == model.coordinator.step == 12
    assert loaded.dp_metadata() == {"mode": "none"}
    with pytest.raises(RuntimeError, match="loaded from .* without its training data"):
        loaded.fit(20)
    # the instance method still restores states into a model built on the data
    fresh = api.build_federation(
        prepare_parties(split_vertical(make_table(48), SPLIT, "record_id"),
                            "record_id", ["color", "kind"]), CFG)
    fresh.load(tmp_path / "m")
    pd.testing.assert_frame_equal(fresh.sample(10, seed=3), model.sample(10, seed=3))


def test_each_party_folder_holds_only_its_own_modules_and_schema(tmp_path):
    model = fitted()
    model.save(tmp_path / "m")
    for p in model.parties:
        d = tmp_path / "m" / f"party-{p.party_id}"
        state = read_state(d)
        assert state["party_id"] == p.party_id
        assert set(state) == {"party_id", "G", "D_C", "D_p", "opt_G", "opt_D_C",
                              "opt_D_p", "done"}
        names = [c["name"] for c in json.loads((d / "schema.json").read_text())]
        assert names == p.data.schema.names
        other = {n for q in model.parties if q is not p for n in q.data.schema.names}
        assert not other & set(names)
        assert sorted(f.name for f in d.iterdir() if not f.name.startswith(".")) == sorted(
            f.name for f in (tmp_path / "m" / "party-1").iterdir()
            if not f.name.startswith("."))  # the same files at every party
    assert "D_S" not in read_state(tmp_path / "m" / "party-0")
    assert "D_S" in read_state(tmp_path / "m" / "server")


def test_load_refuses_a_folder_that_is_not_a_saved_model(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        api.VFLGANModel.load(tmp_path)


def fake_wine(root: Path, n: int = 80) -> None:
    rng = np.random.default_rng(0)
    cols = [c for p in WINE_PARTIES for c in p]
    table = pd.DataFrame({c: np.round(rng.uniform(1, 10, n), 2) for c in cols})
    table["quality"] = rng.integers(3, 9, n)
    (root / "wine").mkdir(parents=True)
    table.to_csv(root / "wine" / "winequality-red.csv", sep=";", index=False)


def cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "vflgan_app", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=400)


def test_generate_works_from_the_run_folder_alone(tmp_path):
    data = tmp_path / "data"
    fake_wine(data)
    out = cli("train", "--dataset", "wine_red", "--data-root", str(data), "--steps", "6",
              "--batch-size", "16", "--threads", "1", "--progress", "false", "--no-eval",
              "--n-samples", "20", "--output-dir", str(tmp_path / "runs"), "--run-name", "r",
              cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    shutil.rmtree(data)  # the training data is gone
    run = tmp_path / "runs" / "r"
    out = cli("generate", str(run), "--n", "15", "--seed", "5", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    synth = pd.read_csv(run / "generated-5" / "synthetic.csv")
    assert len(synth) == 15 and "quality" in synth.columns
    report = json.loads((run / "generated-5" / "report.json").read_text())
    assert report["source_run"] == "r"


def test_a_dp_model_loads_with_its_private_schema_and_dp_metadata(tmp_path):
    from vflgan_app.config import DPConfig

    domain = json.dumps({"a": {"low": -3, "high": 3}, "count": {"low": 0, "high": 5,
                                                               "integer": True},
                         "b": {"low": -6, "high": 6}, "c": {"low": -3, "high": 3},
                         "color": {"categories": ["blue", "green", "red"]},
                         "kind": {"categories": ["neg", "pos"]}})
    cfg = VFLGANConfig(dataset="custom", architecture="breast_cancer", steps=3, batch_size=8,
                       progress=False, dp=DPConfig(mode="paper", target_epsilon=50.0,
                                                   public_domain=domain))
    model = api.fit(split_vertical(make_table(48), SPLIT, "record_id"), cfg)
    model.save(tmp_path / "m")
    loaded = api.VFLGANModel.load(tmp_path / "m")
    assert all(s.private for s in loaded.schemas) and loaded.schemas == model.schemas
    assert loaded.dp_metadata() == model.dp_metadata()
    assert loaded.coordinator.arch.bias is False
    pd.testing.assert_frame_equal(loaded.sample(20, seed=1), model.sample(20, seed=1))
