"""Fast tests of the unlearning package's input checks, CLI, metrics and data I/O."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from unlearning.checkpoint import META_FILE
from unlearning.config import (
    EvalConfig,
    PretrainConfig,
    RelearnConfig,
    UnlearnConfig,
    config_from_dict,
)
from unlearning.data import ImageData, read_idx
from unlearning.evaluate import frechet_distance, parameter_change_norms
from unlearning.unlearn import unlearn

# ---------------------------------------------------------------- bad input


def test_forget_class_out_of_range_is_rejected(tiny_mlp, forget_retain):
    forget, retain = forget_retain
    with pytest.raises(ValueError, match=r"forget_class: got 10, expected .*\[0, 9\]"):
        unlearn(tiny_mlp, forget, retain, UnlearnConfig(forget_class=10, steps=1))


def test_empty_retain_set_is_rejected(tiny_mlp, forget_retain):
    forget, retain = forget_retain
    empty = ImageData(retain.images[:0], retain.labels[:0])
    with pytest.raises(ValueError, match="retain set: got an empty data set"):
        unlearn(tiny_mlp, forget, empty, UnlearnConfig(steps=1))


def test_mismatched_image_size_is_rejected(tiny_mlp, forget_retain):
    forget, retain = forget_retain
    big = ImageData(torch.zeros(len(retain), 1, 16, 16), retain.labels)
    with pytest.raises(ValueError, match=r"\(1, 16, 16\).*expects \(1, 8, 8\)"):
        unlearn(tiny_mlp, forget, big, UnlearnConfig(steps=1))


def test_forget_class_in_retain_set_is_rejected(tiny_mlp, digits, forget_retain):
    forget, _ = forget_retain
    with pytest.raises(ValueError, match="retain set: contains"):
        unlearn(tiny_mlp, forget, digits.train, UnlearnConfig(steps=1))


@pytest.mark.parametrize(
    ("cls", "values", "pattern"),
    [
        (UnlearnConfig, {"steps": 0}, "steps: got 0"),
        (UnlearnConfig, {"method": "esd"}, "method: got 'esd'"),
        (UnlearnConfig, {"dimum_alt": "noise"}, "dimum_alt: got 'noise'"),
        (RelearnConfig, {"attack_data": "forget"}, "attack_data: got 'forget'"),
        (RelearnConfig, {"lr": -1.0}, "lr: got -1.0"),
        (PretrainConfig, {"label_dropout": 1.5}, "label_dropout: got 1.5"),
        (EvalConfig, {"eta": 2.0}, "eta: got 2.0"),
        (UnlearnConfig, {"nonsense": 1}, "unknown keys"),
    ],
)
def test_config_validation_names_field_value_and_expectation(cls, values, pattern):
    with pytest.raises(ValueError, match=pattern):
        config_from_dict(cls, values)


def test_cli_reports_bad_input_with_exit_code_2(tmp_path, capsys):
    from unlearning.__main__ import main

    with pytest.raises(SystemExit) as exc:
        main(["pretrain", "--out", str(tmp_path), "--steps", "0"])
    assert exc.value.code == 2
    assert "steps: got 0, expected an integer >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(
            [
                "unlearn",
                "--model",
                str(tmp_path),
                "--out",
                str(tmp_path),
                "--method",
                "nope",
            ]
        )
    assert "method: got 'nope'" in capsys.readouterr().err


# ---------------------------------------------------------------- metrics


def test_frechet_distance_is_zero_for_same_set_and_mean_shift_squared():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(2000, 4))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(a, a + 3.0) == pytest.approx(4 * 9.0, rel=1e-6)


def test_inception_fid_skips_without_weights_and_never_downloads(tmp_path, monkeypatch):
    from unlearning import evaluate as ev

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    calls = []
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url",
                        lambda *a, **k: calls.append(a))
    x = torch.zeros(4, 1, 8, 8)
    fid, why = ev.inception_fid(x, x)
    assert fid is None and calls == []
    assert str(ev.inception_weights_path()) in why or "pytorch_fid" in why
    if "pytorch_fid" not in why:  # the package is there: the message names the file
        assert ev.INCEPTION_WEIGHTS in why and str(tmp_path) in why


def test_inception_fid_feeds_rgb_in_unit_range_and_measures_a_shift():
    """The plumbing around the network: grey -> RGB, [-1, 1] -> [0, 1], batches, FD."""
    from unlearning.evaluate import inception_fid

    seen = []

    def extractor(b):
        seen.append((tuple(b.shape), float(b.min()), float(b.max())))
        return b.flatten(1)[:, :5]  # 5 pixel "features"

    g = torch.Generator().manual_seed(0)
    a = torch.rand(40, 1, 4, 4, generator=g) - 0.5  # in [-0.5, 0.5]: no clamping
    b = torch.rand(40, 1, 4, 4, generator=g) - 0.5
    same, why = inception_fid(a, a.clone(), batch=16, extractor=extractor)
    assert why == "" and abs(same) < 1e-9
    assert [s[0] for s in seen[:3]] == [(16, 3, 4, 4), (16, 3, 4, 4), (8, 3, 4, 4)]
    assert min(s[1] for s in seen) >= 0.25 and max(s[2] for s in seen) <= 0.75

    def unit(x):  # what the extractor should see of x, as features
        return ((x + 1) / 2).flatten(1)[:, :5].double().numpy()

    for other in (b, b + 0.5):  # a shift of 0.5 in [-1, 1] moves every feature 0.25
        fid, _ = inception_fid(a, other, extractor=extractor)
        assert fid == pytest.approx(frechet_distance(unit(a), unit(other)), abs=1e-9)
    shifted, _ = inception_fid(a, b + 0.5, extractor=extractor)
    assert shifted > inception_fid(a, b, extractor=extractor)[0] + 5 * 0.25**2 * 0.5


def test_parameter_change_norms_localise_a_planted_change(tiny_mlp):
    import copy

    after = copy.deepcopy(tiny_mlp.unet)
    with torch.no_grad():
        after.class_embedding.weight[0] += 2.0  # 16 entries, norm 8
    norms = parameter_change_norms(tiny_mlp.unet, after, forget_class=0)
    assert norms["class_embedding"] == pytest.approx(8.0)
    assert norms["class_embedding[c_f]"] == pytest.approx(8.0)
    assert norms["body.0"] == 0.0 and norms["total"] == pytest.approx(8.0)


def test_digits_judge_reaches_095_held_out(digits):
    from unlearning.judge import train_judge

    _, acc = train_judge("digits", digits.train, digits.holdout, steps=800)
    assert acc >= 0.95


def test_idx_reader_reads_what_it_wrote(tmp_path):
    import gzip

    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    header = bytes([0, 0, 8, 3]) + b"".join(d.to_bytes(4, "big") for d in arr.shape)
    with gzip.open(tmp_path / "x-idx3-ubyte.gz", "wb") as fh:
        fh.write(header + arr.tobytes())
    assert np.array_equal(read_idx(tmp_path / "x-idx3-ubyte.gz"), arr)


def test_mnist_loader_works_with_only_the_test_split(tmp_path):
    import gzip

    from unlearning.data import load_dataset

    n = 50
    imgs = np.random.default_rng(0).integers(0, 255, (n, 28, 28), dtype=np.uint8)
    labels = np.arange(n, dtype=np.uint8) % 10
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name, arr in (
        ("t10k-images-idx3-ubyte.gz", imgs),
        ("t10k-labels-idx1-ubyte.gz", labels),
    ):
        head = bytes([0, 0, 8, arr.ndim]) + b"".join(
            d.to_bytes(4, "big") for d in arr.shape
        )
        with gzip.open(raw / name, "wb") as fh:
            fh.write(head + arr.tobytes())
    data = load_dataset("mnist", str(tmp_path))
    assert data.train.image_shape == (1, 16, 16)
    assert len(data.train) + len(data.holdout) == n
    assert data.train.images.min() >= -1 and data.train.images.max() <= 1
    with pytest.raises(FileNotFoundError, match="t10k-images"):
        load_dataset("mnist", str(tmp_path / "nowhere"))


# ---------------------------------------------------------------- slow end-to-end


def _cli_ok(*argv) -> None:
    """Run ``python -m unlearning`` in-process with ``argv`` (str()-ed); expect 0."""
    from unlearning.__main__ import main

    assert main([str(a) for a in argv]) == 0


@pytest.mark.slow
def test_cli_end_to_end_writes_models_grids_and_curves(tmp_path):
    base, unl, att = tmp_path / "base", tmp_path / "unl", tmp_path / "att"
    common = ["--progress", "false", "--device", "cpu"]
    _cli_ok("pretrain", "--out", base, "--arch", "mlp", "--steps", 20, *common)
    assert (base / "model" / "model_index.json").exists()
    assert (base / "judge.pt").exists() and (base / "samples.png").exists()
    _cli_ok(
        "unlearn",
        *("--model", base / "model", "--out", unl, "--method", "dimum"),
        *("--steps", 2, "--forget-class", 3, *common),
    )
    meta = json.loads((unl / "model" / META_FILE).read_text())
    assert meta["method"] == "dimum" and meta["forgotten_classes"] == [3]
    assert (unl / "samples_after.png").exists()
    assert (unl / "parameter_change.json").exists()
    # the held-out alternative: the held-out split's class-4 images, none of D_r
    held = tmp_path / "held"
    _cli_ok(
        "unlearn",
        *("--model", base / "model", "--out", held, "--method", "dimum"),
        *("--dimum-alt", "heldout", "--steps", 1, "--forget-class", 3, *common),
    )
    meta = json.loads((held / "model" / META_FILE).read_text())
    assert meta["config"]["dimum_alt"] == "heldout"
    _cli_ok(
        "relearn",
        *("--model", unl / "model", "--out", att, "--judge", base / "judge.pt"),
        *("--steps", 4, "--eval-every", 2, "--eval-samples", 8),
        *("--attack-data", "aux", *common),
    )
    curve = json.loads((att / "curve.json").read_text())
    assert curve["steps"] == [0, 2, 4]
    assert (att / "curve.png").exists() and (att / "samples_attacked.png").exists()
    _cli_ok(
        "evaluate",
        *("--model", att / "model", "--judge", base / "judge.pt"),
        *("--forget-samples", 10, "--retain-samples-per-class", 3),
        *("--num-inference-steps", 5, "--reference-model", base / "model"),
        *("--out", att),
    )
    metrics = json.loads((att / "metrics.json").read_text())["metrics"]
    assert 0.0 <= metrics["forget_rate"] <= 1.0
    assert metrics["parameter_change"]["total"] > 0


def test_cli_argument_errors_come_before_torch_and_threads_go_either_side():
    import subprocess
    import sys

    from unlearning.__main__ import build_parser

    p = build_parser()
    assert p.parse_args(["--threads", "2", "pretrain", "--out", "x"]).threads == 2
    assert p.parse_args(["pretrain", "--threads", "1", "--out", "x"]).threads == 1
    assert p.parse_args(["pretrain", "--out", "x"]).threads is None
    # a bad command line is answered without importing torch or diffusers
    code = ("import sys\nfrom unlearning.__main__ import main\n"
            "try:\n    main(['pretrain', '--threads', '1'])\nexcept SystemExit as e:\n"
            "    assert e.code == 2\n"
            "assert 'torch' not in sys.modules and 'diffusers' not in sys.modules, "
            "sorted(m for m in sys.modules if m in ('torch', 'diffusers'))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "required: --out" in r.stderr
