"""Fast tests of the unlearning package (tiny models, a few steps each)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel

from tests.unlearning.conftest import tiny_mlp_pipeline
from unlearning.checkpoint import META_FILE, load_pipeline, save_pipeline
from unlearning.config import (
    METHODS,
    EvalConfig,
    PretrainConfig,
    RelearnConfig,
    UnlearnConfig,
    config_from_dict,
)
from unlearning.data import ImageData, assert_no_class, auxiliary_set, read_idx
from unlearning.evaluate import frechet_distance, parameter_change_norms
from unlearning.relearn import run_relearning_attack
from unlearning.unlearn import unlearn, unlearn_with_log


def _sample(pipe, seed=0, labels=(0, 3, 7, 9), steps=4):
    g = torch.Generator().manual_seed(seed)
    return pipe(list(labels), generator=g, num_inference_steps=steps).images


def _params(pipe):
    return [p.detach().clone() for p in pipe.unet.parameters()]


def _changed(before, pipe):
    return any(not torch.equal(a, b) for a, b in zip(before, pipe.unet.parameters()))


# ---------------------------------------------------------------- pipeline


@pytest.mark.parametrize("which", ["tiny_unet", "tiny_mlp"])
def test_save_load_round_trip_gives_identical_samples(which, request, tmp_path):
    # Prepare
    pipe = request.getfixturevalue(which)
    before = _sample(pipe)
    # Execute
    save_pipeline(pipe, tmp_path / "m", {"method": "pretrain", "seed": 0})
    loaded = load_pipeline(tmp_path / "m")
    # Assert
    assert torch.equal(before, _sample(loaded))
    for f in (
        "model_index.json",
        "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors",
        "scheduler/scheduler_config.json",
        META_FILE,
    ):
        assert (tmp_path / "m" / f).exists(), f
    meta = json.loads((tmp_path / "m" / META_FILE).read_text())
    assert meta["method"] == "pretrain" and "git_commit" in meta
    # Samples are not trivially constant: another seed gives other images.
    assert not torch.equal(before, _sample(loaded, seed=1))


def test_plain_diffusers_can_load_the_components(tiny_unet, tmp_path):
    tiny_unet.save_pretrained(tmp_path)
    unet = UNet2DModel.from_pretrained(tmp_path, subfolder="unet")
    sched = DDPMScheduler.from_pretrained(tmp_path, subfolder="scheduler")
    assert sched.config.num_train_timesteps == 1000
    assert sched.config.beta_schedule == "linear"
    assert unet.config.num_class_embeds == 11
    x = torch.randn(2, 1, 8, 8)
    t = torch.tensor([10, 500])
    y = torch.tensor([1, 10])  # 10 is the null label
    ref = tiny_unet.unet(x, t, class_labels=y).sample
    assert torch.allclose(unet(x, t, class_labels=y).sample, ref)


def test_pipeline_equals_handwritten_diffusers_ddim_loop(tiny_unet):
    # Reference: DDIMScheduler with clip_sample and use_clipped_model_output (clip x0,
    # re-derive eps), CFG (1 + w) eps_c - w eps_null done by hand.
    w, steps, labels = 2.0, 5, torch.tensor([2, 5])
    ours = tiny_unet(
        labels,
        generator=torch.Generator().manual_seed(3),
        num_inference_steps=steps,
        guidance_scale=w,
    ).images
    ddim = DDIMScheduler.from_config(
        tiny_unet.scheduler.config, clip_sample=True, set_alpha_to_one=True
    )
    ddim.set_timesteps(steps)
    x = torch.randn((2, 1, 8, 8), generator=torch.Generator().manual_seed(3))
    null = torch.full_like(labels, 10)
    with torch.no_grad():
        for t in ddim.timesteps:
            tt = torch.full_like(labels, int(t))
            e_c = tiny_unet.unet(x, tt, class_labels=labels).sample
            e_n = tiny_unet.unet(x, tt, class_labels=null).sample
            eps = (1 + w) * e_c - w * e_n
            x = ddim.step(eps, t, x, eta=0.0, use_clipped_model_output=True).prev_sample
    diff = (ours - x.clamp(-1, 1)).abs().max().item()
    assert diff < 1e-4, diff


def test_pipeline_rejects_out_of_range_labels(tiny_mlp):
    with pytest.raises(ValueError, match=r"class_labels.*\[0, 9\]"):
        tiny_mlp([3, 10], num_inference_steps=2)


# ---------------------------------------------------------------- methods


@pytest.mark.parametrize("method", METHODS)
def test_each_method_runs_and_changes_the_model(method, forget_retain):
    # Prepare
    forget, retain = forget_retain
    pipe = tiny_mlp_pipeline()
    before = _params(pipe)
    cfg = UnlearnConfig(
        method=method,
        steps=3,
        batch_size=16,
        progress=False,
        device="cpu",
        retrain_steps=3,
        retrain_batch_size=16,
        sa_samples_per_class=2,
        sa_fisher_timesteps=4,
        sample_steps=2,
        dimum_alt_size=8,
        ga_stop_loss=1e9,
    )
    # Execute
    out, log = unlearn_with_log(pipe, forget, retain, cfg)
    # Assert: a new model that differs; the input pipeline is untouched
    assert _changed(before, out)
    assert not _changed(before, pipe)
    assert log.steps_run == 3


def test_salun_moves_only_the_masked_half(forget_retain):
    forget, retain = forget_retain
    pipe = tiny_mlp_pipeline()
    cfg = UnlearnConfig(
        method="salun",
        steps=3,
        batch_size=16,
        progress=False,
        device="cpu",
        mask_ratio=0.5,
    )
    out = unlearn(pipe, forget, retain, cfg)
    moved = sum(
        int((a != b).sum())
        for a, b in zip(pipe.unet.parameters(), out.unet.parameters())
    )
    total = sum(p.numel() for p in pipe.unet.parameters())
    assert 0.3 * total < moved <= 0.5 * total + 1


def test_dimum_alternative_data_is_another_class_under_the_forget_label(
    forget_retain,
):
    from unlearning.unlearn import DiMUM

    forget, retain = forget_retain
    pipe = tiny_mlp_pipeline()
    ones = retain.images[retain.labels == 1]
    for alt, n in (("real", len(ones)), ("fixed", 8), ("generated", 8)):
        cfg = UnlearnConfig(
            method="dimum",
            dimum_alt=alt,
            dimum_alt_size=8,
            sample_steps=2,
            progress=False,
            device="cpu",
        )
        obj = DiMUM(pipe, forget, retain, cfg, torch.Generator().manual_seed(0))
        assert len(obj.alt) == n
        assert set(obj.alt.labels.tolist()) == {0}  # taught under c_f
        is_real_one = [(ones == img).flatten(1).all(1).any() for img in obj.alt.images]
        if alt == "generated":  # samples of the model, not copies of real images
            assert not any(is_real_one)
        else:  # class-1 retain images, never forget images
            assert all(is_real_one)


def test_external_stop_fn_ends_the_run(forget_retain):
    forget, retain = forget_retain
    seen = []

    def stop(pipe):
        seen.append(pipe)
        return len(seen) == 2

    cfg = UnlearnConfig(
        method="finetune", steps=50, batch_size=16, progress=False, device="cpu", stop_every=3
    )
    _, log = unlearn_with_log(tiny_mlp_pipeline(), forget, retain, cfg, stop_fn=stop)
    assert log.stopped_early and log.steps_run == 6


def test_gradient_ascent_stops_early_on_its_loss_threshold(forget_retain):
    forget, retain = forget_retain
    cfg = UnlearnConfig(
        method="ga",
        steps=50,
        batch_size=16,
        progress=False,
        device="cpu",
        ga_stop_loss=0.0,
    )
    _, log = unlearn_with_log(tiny_mlp_pipeline(), forget, retain, cfg)
    assert log.stopped_early and log.steps_run == 1


# ---------------------------------------------------------------- DiMRA


def test_dimra_refuses_data_with_the_forgotten_class(tiny_mlp, digits):
    with pytest.raises(ValueError, match="forgotten class 0"):
        run_relearning_attack(tiny_mlp, digits.train, 0, RelearnConfig(steps=1))


def test_dimra_data_sets_hold_no_forgotten_class(digits, forget_retain):
    _, retain = forget_retain
    aux = auxiliary_set(digits.holdout, 0)
    assert len(aux) > 0 and (aux.labels == 0).sum() == 0
    assert (retain.labels == 0).sum() == 0
    assert_no_class(aux, 0, "aux")  # does not raise
    # D_au is disjoint from D_r (different rows of the digits data)
    r = {tuple(x.flatten().tolist()) for x in retain.images}
    overlap = sum(tuple(x.flatten().tolist()) in r for x in aux.images)
    assert overlap < 0.02 * len(aux)  # sklearn digits has a few duplicate images


def test_dimra_returns_a_curve_and_changes_a_copy(tiny_mlp, forget_retain):
    _, retain = forget_retain
    before = _params(tiny_mlp)
    calls = []

    def probe(p):
        calls.append(1)
        return {"forget_rate": 0.5, "p_forget": 0.25}

    cfg = RelearnConfig(
        steps=4, batch_size=8, eval_every=2, progress=False, device="cpu"
    )
    attacked, curve = run_relearning_attack(tiny_mlp, retain, 0, cfg, probe)
    assert curve.steps == [0, 2, 4] and len(calls) == 3
    assert len(curve.losses) == 4
    assert _changed(before, attacked) and not _changed(before, tiny_mlp)


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


@pytest.mark.slow
def test_cli_end_to_end_writes_models_grids_and_curves(tmp_path):
    from unlearning.__main__ import main

    base, unl, att = tmp_path / "base", tmp_path / "unl", tmp_path / "att"
    common = ["--progress", "false", "--device", "cpu"]
    assert (
        main(
            ["pretrain", "--out", str(base), "--arch", "mlp", "--steps", "20", *common]
        )
        == 0
    )
    assert (base / "model" / "model_index.json").exists()
    assert (base / "judge.pt").exists() and (base / "samples.png").exists()
    assert (
        main(
            [
                "unlearn",
                "--model",
                str(base / "model"),
                "--out",
                str(unl),
                "--method",
                "dimum",
                "--steps",
                "2",
                "--forget-class",
                "3",
                *common,
            ]
        )
        == 0
    )
    meta = json.loads((unl / "model" / META_FILE).read_text())
    assert meta["method"] == "dimum" and meta["forgotten_classes"] == [3]
    assert (unl / "samples_after.png").exists()
    assert (unl / "parameter_change.json").exists()
    assert (
        main(
            [
                "relearn",
                "--model",
                str(unl / "model"),
                "--out",
                str(att),
                "--judge",
                str(base / "judge.pt"),
                "--steps",
                "4",
                "--eval-every",
                "2",
                "--eval-samples",
                "8",
                "--attack-data",
                "aux",
                *common,
            ]
        )
        == 0
    )
    curve = json.loads((att / "curve.json").read_text())
    assert curve["steps"] == [0, 2, 4]
    assert (att / "curve.png").exists() and (att / "samples_attacked.png").exists()
    assert (
        main(
            [
                "evaluate",
                "--model",
                str(att / "model"),
                "--judge",
                str(base / "judge.pt"),
                "--forget-samples",
                "10",
                "--retain-samples-per-class",
                "3",
                "--num-inference-steps",
                "5",
                "--reference-model",
                str(base / "model"),
                "--out",
                str(att),
            ]
        )
        == 0
    )
    metrics = json.loads((att / "metrics.json").read_text())["metrics"]
    assert 0.0 <= metrics["forget_rate"] <= 1.0
    assert metrics["parameter_change"]["total"] > 0


@pytest.mark.slow
def test_pilot_direction_swap_label_relearns_and_dimum_does_not(digits, forget_retain):
    """dimum.md section 9.3 at reduced scale (one seed, MLP, about 2-3 min on CPU)."""
    from unlearning import pretrain, train_judge
    from unlearning.evaluate import forget_metrics

    forget, retain = forget_retain
    judge, _ = train_judge("digits", digits.train, digits.holdout)
    base = pretrain(
        digits.train,
        PretrainConfig(arch="mlp", steps=2000, progress=False, device="cpu"),
    )
    base.set_progress_bar_config(disable=True)
    ev = EvalConfig(forget_samples=100)
    assert forget_metrics(base, judge, 0, 100, ev)["forget_rate"] > 0.9
    rates = {}
    for method in ("swap_label", "dimum"):
        u = unlearn(
            base,
            forget,
            retain,
            UnlearnConfig(method=method, progress=False, device="cpu"),
        )
        after = forget_metrics(u, judge, 0, 100, ev)["forget_rate"]
        attacked, _ = run_relearning_attack(
            u, retain, 0, RelearnConfig(progress=False, device="cpu")
        )
        rates[method] = (
            after,
            forget_metrics(attacked, judge, 0, 100, ev)["forget_rate"],
        )
    assert rates["swap_label"][0] < 0.2 and rates["dimum"][0] < 0.05
    assert rates["swap_label"][1] > rates["swap_label"][0] + 0.3
    assert rates["dimum"][1] < 0.1
