"""Fast tests of the unlearning package (tiny models, a few steps each)."""

from __future__ import annotations

import json
from dataclasses import replace

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
)
from unlearning.data import (
    assert_no_class,
    auxiliary_set,
    experiment_splits,
    split_forget_retain,
)
from unlearning.relearn import run_relearning_attack
from unlearning.unlearn import unlearn, unlearn_with_log


def _sample(pipe, seed=0, labels=(0, 3, 7, 9), steps=4):
    g = torch.Generator().manual_seed(seed)
    return pipe(list(labels), generator=g, num_inference_steps=steps).images


def _params(pipe):
    return [p.detach().clone() for p in pipe.unet.parameters()]


def _changed(before, pipe):
    return any(not torch.equal(a, b) for a, b in zip(before, pipe.unet.parameters()))


def _fast_cfg(method: str, steps: int, **overrides) -> UnlearnConfig:
    """A CPU, no-progress-bar, batch-16 UnlearnConfig for the tiny models."""
    return UnlearnConfig(
        method=method,
        steps=steps,
        batch_size=16,
        progress=False,
        device="cpu",
        **overrides,
    )


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
    cfg = _fast_cfg(
        method,
        3,
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
    cfg = _fast_cfg("salun", 3, mask_ratio=0.5)
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


def test_dimum_heldout_alternative_is_the_given_images_and_must_be_held_out(
    digits, forget_retain
):
    """``dimum_alt="heldout"``: D_alt is exactly the caller's images under c_f, and the
    call is refused when they are missing, unexpected, misshapen or rows of D_r."""
    from unlearning.unlearn import DiMUM, check_alt_images

    forget, retain = forget_retain
    pipe = tiny_mlp_pipeline()
    held = digits.holdout.images[digits.holdout.labels == 1][:6]
    cfg = UnlearnConfig(
        method="dimum", dimum_alt="heldout", progress=False, device="cpu"
    )
    obj = DiMUM(pipe, forget, retain, cfg, torch.Generator().manual_seed(0), held)
    assert torch.equal(obj.alt.images, held)
    assert set(obj.alt.labels.tolist()) == {0}
    check_alt_images(pipe, retain, cfg, held)  # held out: accepted
    ones = retain.images[retain.labels == 1]
    bad = [
        (None, cfg, "got 'heldout' without alt_images"),
        (held, UnlearnConfig(method="dimum"), "expected only with method 'dimum' and"),
        (held, UnlearnConfig(method="swap_label"), "given for method 'swap_label'"),
        (held[:, :, :4], cfg, "alt_images: images have shape"),
        (torch.cat([held, ones[:2]]), cfg, "2 of 8 images are rows of the retain set"),
    ]
    for images, c, match in bad:
        with pytest.raises(ValueError, match=match):
            check_alt_images(pipe, retain, c, images)
    with pytest.raises(ValueError, match="without alt_images"):  # via the public call
        unlearn(pipe, forget, retain, replace(cfg, steps=1))


def test_external_stop_fn_ends_the_run(forget_retain):
    forget, retain = forget_retain
    seen = []

    def stop(pipe):
        seen.append(pipe)
        return len(seen) == 2

    cfg = _fast_cfg("finetune", 50, stop_every=3)
    _, log = unlearn_with_log(tiny_mlp_pipeline(), forget, retain, cfg, stop_fn=stop)
    assert log.stopped_early and log.steps_run == 6


def test_gradient_ascent_guard_fires_only_at_stop_checks(forget_retain):
    forget, retain = forget_retain
    cfg = _fast_cfg("ga", 50, ga_stop_loss=0.0, stop_every=4)
    _, log = unlearn_with_log(tiny_mlp_pipeline(), forget, retain, cfg)
    assert log.stopped_early and log.steps_run == 4
    assert log.extra["stop_reason"] == "guard"


def test_external_stop_is_asked_before_the_gradient_ascent_guard(forget_retain):
    # Prepare: a guard that would fire at once, and a judge stand-in that says "stop"
    forget, retain = forget_retain
    calls = []

    def judge(pipe):
        calls.append(1)
        return True

    cfg = _fast_cfg("ga", 50, ga_stop_loss=0.0, stop_every=3)
    # Execute
    _, log = unlearn_with_log(tiny_mlp_pipeline(), forget, retain, cfg, stop_fn=judge)
    # Assert: the judge was consulted at the first check and it is what stopped GA
    assert log.steps_run == 3 and calls == [1]
    assert log.extra["stop_reason"] == "stop_fn"


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


def test_experiment_splits_are_the_four_sets_of_one_forget_class(digits):
    s = experiment_splits(digits, 3)
    forget, retain = split_forget_retain(digits.train, 3, 10)
    aux = auxiliary_set(digits.holdout, 3)
    for got, want in ((s.forget, forget), (s.retain, retain), (s.aux, aux)):
        assert torch.equal(got.images, want.images)
        assert torch.equal(got.labels, want.labels)
    assert torch.equal(s.reference.labels, aux.labels)  # held out, c_f removed


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


# ---------------------------------------------------------------- slow end-to-end


@pytest.mark.slow
def test_pilot_direction_swap_label_relearns_and_dimum_does_not(digits, forget_retain):
    """dimum.md section 9.3 at reduced scale, over 3 seeds (MLP, ~8 min on 1 core).

    One DiMRA endpoint is one random phase of an unsettled trajectory (issue 15), so
    each attack is traced every 100 steps with 300 samples of c_f and summarised by
    its peak and by the mean of its last 4 checkpoints; the assertions are on those,
    over seeds.
    """
    from unlearning import pretrain, train_judge
    from unlearning.evaluate import curve_probe, forget_metrics
    from unlearning.stats import curve_summary

    forget, retain = forget_retain
    judge, _ = train_judge("digits", digits.train, digits.holdout)
    ev = EvalConfig(forget_samples=300)
    probe = curve_probe(judge, 0, 300, ev)
    stats: dict[str, list] = {"swap_label": [], "dimum": []}
    for seed in (0, 1, 2):
        base = pretrain(
            digits.train,
            PretrainConfig(
                arch="mlp", steps=2000, progress=False, device="cpu", seed=seed
            ),
        )
        base.set_progress_bar_config(disable=True)
        assert forget_metrics(base, judge, 0, 300, ev)["forget_rate"] > 0.9
        for method in stats:
            u = unlearn(
                base,
                forget,
                retain,
                UnlearnConfig(method=method, progress=False, device="cpu", seed=seed),
            )
            after = forget_metrics(u, judge, 0, 300, ev)["forget_rate"]
            _, curve = run_relearning_attack(
                u,
                retain,
                0,
                RelearnConfig(
                    progress=False,
                    device="cpu",
                    seed=seed,
                    eval_every=100,
                    eval_samples=300,
                ),
                probe,
            )
            s = curve_summary(curve.steps, curve.forget_rate, 4)
            stats[method].append((after, s["peak"], s["late_mean"]))
    sl = np.array(stats["swap_label"])
    dm = np.array(stats["dimum"])
    assert sl[:, 0].max() < 0.2 and dm[:, 0].max() < 0.05  # both unlearn
    # swap-label comes back: every seed peaks well above its unlearned rate, and on
    # average the late checkpoints stay above it
    assert (sl[:, 1] > sl[:, 0] + 0.3).all(), sl
    assert sl[:, 2].mean() > sl[:, 0].mean() + 0.15, sl
    # DiMUM does not, on any seed, at any checkpoint
    assert dm[:, 1].max() < 0.1, dm
