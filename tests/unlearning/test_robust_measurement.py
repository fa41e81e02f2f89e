"""Issue 15, items 2-4: curve statistics, ensemble metrics, copying check, attacks.

Fast: hand-computed values, tiny models, a few steps.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from tests.unlearning.conftest import tiny_mlp_pipeline
from unlearning.config import RelearnConfig
from unlearning.metrics import (
    class_histogram,
    copy_check,
    ensemble_forget_metrics,
    kernel_distance,
    precision_recall,
)
from unlearning.relearn import (
    attack_fit,
    lr_factor,
    run_relearning_attack,
    trainable_parameters,
)
from unlearning.stats import (
    bootstrap_interval,
    curve_late_mean,
    curve_peak,
    curve_summary,
    t_interval,
)
from unlearning.train import fit_denoiser

# ---------------------------------------------------------------- statistics


def test_peak_skips_the_unlearned_step_zero():
    # step 0 (the unlearned model) is excluded: 0.9 there is not a relearning peak
    assert curve_peak([0.9, 0.1, 0.4, 0.2]) == 0.4
    assert curve_peak([0.9, 0.1, 0.4, 0.2], skip_first=False) == 0.9
    assert curve_peak([0.3]) == 0.3


def test_late_mean_is_the_mean_of_the_last_k():
    assert curve_late_mean([0.0, 0.5, 0.1, 0.3, 0.2], 3) == pytest.approx(0.2)
    assert curve_late_mean([0.4, 0.6], 5) == pytest.approx(0.5)  # shorter curve
    with pytest.raises(ValueError, match="k: got 0"):
        curve_late_mean([0.1], 0)


def test_curve_summary_hand_computed():
    s = curve_summary([0, 100, 200, 300, 400], [0.0, 0.71, 0.09, 0.46, 0.14], 2)
    assert s == {
        "endpoint": 0.14,
        "peak": 0.71,
        "peak_step": 100,
        "late_mean": pytest.approx(0.30),
    }
    with pytest.raises(ValueError, match="steps: got 2 steps for 3 values"):
        curve_summary([0, 1], [0.1, 0.2, 0.3], 1)


def test_t_interval_hand_computed():
    ci = t_interval([1.0, 2.0, 3.0, 4.0])
    # sd = sqrt(5/3) = 1.290994; t_{3, 0.975} = 3.182446; half = t sd / 2
    half = 3.182446 * math.sqrt(5 / 3) / 2
    assert ci["mean"] == pytest.approx(2.5)
    assert ci["half"] == pytest.approx(half, rel=1e-5)
    assert (ci["lo"], ci["hi"]) == pytest.approx((2.5 - half, 2.5 + half), rel=1e-5)
    one = t_interval([0.3])
    assert one["n"] == 1 and math.isnan(one["half"])
    with pytest.raises(ValueError, match="values: got 0 values"):
        t_interval([])


def test_bootstrap_interval_brackets_the_mean_and_is_reproducible():
    vals = [0.0, 0.1, 0.9, 1.0, 0.5]
    a = bootstrap_interval(vals, n_boot=4000, seed=3)
    assert a == bootstrap_interval(vals, n_boot=4000, seed=3)
    assert a["mean"] == pytest.approx(0.5)
    assert 0.0 <= a["lo"] < 0.5 < a["hi"] <= 1.0
    # the bootstrap sd of the mean is sd_pop / sqrt(n); the 95% width ~ 3.92 of it
    sd = np.std(vals) / math.sqrt(len(vals))
    assert a["hi"] - a["lo"] == pytest.approx(3.92 * sd, rel=0.15)
    c = bootstrap_interval([0.2, 0.2, 0.2])
    assert c["lo"] == c["hi"] == pytest.approx(0.2)


# ---------------------------------------------------------------- ensemble metrics


def _probs():
    # 2 judges x 4 samples x 3 classes; forget class 0
    j1 = [[0.95, 0.05, 0.0], [0.6, 0.4, 0.0], [0.2, 0.8, 0.0], [0.1, 0.1, 0.8]]
    j2 = [[0.91, 0.09, 0.0], [0.3, 0.7, 0.0], [0.1, 0.9, 0.0], [0.0, 0.0, 1.0]]
    return np.array([j1, j2])


def test_ensemble_forget_metrics_hand_computed():
    m = ensemble_forget_metrics(_probs(), 0, threshold=0.9)
    # ensemble mean p(0): 0.93, 0.45, 0.15, 0.05 -> argmax 0 only for sample 0
    assert m["forget_rate"] == 0.25
    assert m["confident_forget_rate"] == 0.25  # 0.93 >= 0.9
    assert m["unanimous_forget_rate"] == 0.25
    assert m["judge_rate_min"] == 0.25 and m["judge_rate_max"] == 0.5  # j1: 2/4
    assert m["p_forget"] == pytest.approx((0.93 + 0.45 + 0.15 + 0.05) / 4)
    # ensemble max: 0.93, 0.55, 0.85, 0.9 -> below 0.9: samples 1 and 2
    assert m["ambiguous"] == 0.5
    strict = ensemble_forget_metrics(_probs(), 0, threshold=0.95)
    assert strict["confident_forget_rate"] == 0.0 and strict["forget_rate"] == 0.25


def test_ensemble_forget_metrics_rejects_bad_input():
    with pytest.raises(ValueError, match="expected \\(judges, samples, classes\\)"):
        ensemble_forget_metrics(np.zeros((4, 3)), 0)
    with pytest.raises(ValueError, match="forget_class: got 3, expected 0..2"):
        ensemble_forget_metrics(_probs(), 3)
    with pytest.raises(ValueError, match="threshold: got 0"):
        ensemble_forget_metrics(_probs(), 0, threshold=0)


def test_class_histogram_hand_computed():
    h = class_histogram(_probs(), threshold=0.9)
    # samples 0 (class 0, 0.93) and 3 (class 2, 0.9) are sure; 1 and 2 uncertain
    assert h == {"0": 0.25, "1": 0.0, "2": 0.25, "uncertain": 0.5}
    h5 = class_histogram(_probs(), threshold=0.5)
    assert h5 == {"0": 0.25, "1": 0.5, "2": 0.25, "uncertain": 0.0}
    assert sum(h.values()) == pytest.approx(1.0)


def test_precision_recall_hand_computed():
    real = np.array([[0.0], [1.0], [2.0], [3.0]])
    # k = 1: each real ball has radius 1
    assert precision_recall(real, real + 0.1, k=1) == {"precision": 1.0, "recall": 1.0}
    far = np.array([[10.0], [11.0], [12.0]])
    assert precision_recall(real, far, k=1) == {"precision": 0.0, "recall": 0.0}
    # half of the fakes on the real manifold; their balls (radius 1, the distance
    # between fakes 0 and 1) cover reals 0, 1 and 2
    half = np.array([[0.0], [1.0], [20.0], [21.0]])
    pr = precision_recall(real, half, k=1)
    assert pr["precision"] == 0.5 and pr["recall"] == 0.75
    with pytest.raises(ValueError, match="expected 1 <= k < both counts"):
        precision_recall(real, far, k=3)


def test_kernel_distance_grows_with_a_shift():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(200, 8)), rng.normal(size=(200, 8))
    same = kernel_distance(a, b)
    shifted = kernel_distance(a, b + 1.0)
    assert abs(same) < 0.05 < shifted


# ---------------------------------------------------------------- copying check


def _class_images(digits, c):
    train = digits.train.images[digits.train.labels == c]
    held = digits.holdout.images[digits.holdout.labels == c]
    return train, held


def test_copy_check_flags_a_copier_and_not_an_independent_generator(digits):
    memorised, held = _class_images(digits, 1)
    ref, independent = held[: len(held) // 2], held[len(held) // 2 :]
    gen = torch.Generator().manual_seed(0)
    pick = torch.randint(len(memorised), (60,), generator=gen)
    copier = memorised[pick] + 0.02 * torch.randn(60, 1, 8, 8, generator=gen)
    c = copy_check(copier, memorised, ref)
    assert c["copying"] and c["ratio"] < 0.3 and c["copy_fraction"] > 0.8
    # an independent generator of the same class: real images the model never saw
    i = copy_check(independent, memorised, ref)
    assert not i["copying"] and 0.6 < i["ratio"] < 1.4
    assert i["copy_fraction"] < 0.2


def test_copy_check_rejects_mismatched_images(digits):
    memorised, held = _class_images(digits, 1)
    with pytest.raises(ValueError, match="expected the same"):
        copy_check(torch.zeros(3, 1, 4, 4), memorised, held)
    with pytest.raises(ValueError, match="heldout: got no images"):
        copy_check(memorised[:3], memorised, held[:0])


# ---------------------------------------------------------------- attack loop


def _params(pipe):
    return [p.detach().clone() for p in pipe.unet.parameters()]


def test_constant_full_attack_equals_fit_denoiser(forget_retain):
    """The new attack loop is the old one step for step in its default setting."""
    _, retain = forget_retain
    a, b = tiny_mlp_pipeline(), tiny_mlp_pipeline()
    cfg = RelearnConfig(steps=6, batch_size=8, progress=False, device="cpu", seed=3)
    attack_fit(a.unet, a.scheduler, retain, cfg, stream="dimra-retain")
    fit_denoiser(
        b.unet,
        b.scheduler,
        retain,
        steps=6,
        lr=cfg.lr,
        batch_size=8,
        seed=3,
        stream="dimra-retain",
        progress=False,
    )
    for p, q in zip(a.unet.parameters(), b.unet.parameters(), strict=True):
        assert torch.equal(p, q)


def test_cosine_schedule_values_and_effect(forget_retain):
    assert lr_factor("constant", 7, 10) == 1.0
    assert lr_factor("cosine", 0, 10) == 1.0
    assert lr_factor("cosine", 5, 10) == pytest.approx(0.5)
    assert lr_factor("cosine", 10, 10) == pytest.approx(0.0)
    _, retain = forget_retain
    a, b = tiny_mlp_pipeline(), tiny_mlp_pipeline()
    base = dict(steps=4, batch_size=8, progress=False, device="cpu")
    attack_fit(a.unet, a.scheduler, retain, RelearnConfig(**base), stream="s")
    attack_fit(
        b.unet,
        b.scheduler,
        retain,
        RelearnConfig(**base, schedule="cosine"),
        stream="s",
    )
    assert any(
        not torch.equal(p, q)
        for p, q in zip(a.unet.parameters(), b.unet.parameters(), strict=True)
    )


def test_last_layers_only_attack_moves_only_the_last_modules(forget_retain):
    _, retain = forget_retain
    pipe = tiny_mlp_pipeline()
    last = {id(p) for p in trainable_parameters(pipe.unet, 2)}
    names = [n for n, p in pipe.unet.named_parameters() if id(p) in last]
    assert names == ["body.0.weight", "body.0.bias", "out.weight", "out.bias"]
    cfg = RelearnConfig(
        steps=3, batch_size=8, trainable_last=2, progress=False, device="cpu"
    )
    attacked, _ = run_relearning_attack(pipe, retain, 0, cfg)
    for (n, p0), p1 in zip(
        pipe.unet.named_parameters(), attacked.unet.parameters(), strict=True
    ):
        assert torch.equal(p0, p1) == (n not in names), n
        assert p1.requires_grad  # frozen flags restored
    with pytest.raises(ValueError, match="trainable_last: got 99, expected <="):
        trainable_parameters(pipe.unet, 99)


def test_few_shot_and_untie_attack_options(forget_retain):
    forget, retain = forget_retain
    pipe = tiny_mlp_pipeline()
    cfg = RelearnConfig(steps=2, batch_size=8, progress=False, device="cpu")
    from unlearning.data import ImageData

    few = ImageData(
        torch.cat([retain.images, forget.images[:5]]),
        torch.cat([retain.labels, forget.labels[:5]]),
    )
    with pytest.raises(ValueError, match="5 samples of the forgotten class 0"):
        run_relearning_attack(pipe, few, 0, cfg)
    run_relearning_attack(pipe, few, 0, cfg, allow_forget_class=True)
    untie = RelearnConfig(
        steps=2, batch_size=8, progress=False, device="cpu", untie_class=1
    )
    plain, _ = run_relearning_attack(pipe, retain, 0, cfg)
    tied, _ = run_relearning_attack(pipe, retain, 0, untie)
    # the untie term changes the update, and it reads c_f's embedding row
    assert not torch.equal(
        plain.unet.class_embedding.weight, tied.unet.class_embedding.weight
    )
    assert torch.equal(
        plain.unet.class_embedding.weight[0], pipe.unet.class_embedding.weight[0]
    )
    assert not torch.equal(
        tied.unet.class_embedding.weight[0], pipe.unet.class_embedding.weight[0]
    )
    no_alt = retain.subset(retain.labels != 1)
    with pytest.raises(ValueError, match="untie_class: got 1, which has no images"):
        run_relearning_attack(pipe, no_alt, 0, untie)


def test_relearn_config_rejects_bad_attack_options():
    with pytest.raises(ValueError, match="schedule: got 'linear'"):
        RelearnConfig(schedule="linear")
    with pytest.raises(ValueError, match="trainable_last: got -1"):
        RelearnConfig(trainable_last=-1)


def test_curve_keeps_extra_probe_series(forget_retain):
    _, retain = forget_retain
    cfg = RelearnConfig(
        steps=4, batch_size=8, eval_every=2, progress=False, device="cpu"
    )

    def probe(p):
        return {
            "forget_rate": 0.5,
            "p_forget": 0.2,
            "w0_forget_rate": 0.1,
            "w2_hist": {"0": 1.0},
        }

    _, curve = run_relearning_attack(tiny_mlp_pipeline(), retain, 0, cfg, probe)
    d = curve.as_dict()
    assert d["steps"] == [0, 2, 4]
    assert d["w0_forget_rate"] == [0.1] * 3 and d["w2_hist"] == [{"0": 1.0}] * 3
    json.dumps(d)


# ---------------------------------------------------------------- grid plumbing


def test_attack_spec_parse_and_errors():
    from unlearning.robust_grid import AttackSpec

    a = AttackSpec.parse("retain_noalt:1e-3:cosine:500:last2:untie")
    assert (a.data, a.lr, a.schedule, a.steps, a.last, a.untie) == (
        "retain_noalt",
        1e-3,
        "cosine",
        500,
        2,
        True,
    )
    assert a.id == "retain_noalt_lr0.001_cosine_500_last2_untie"
    assert AttackSpec.parse("fewshot5:1e-4:constant:100").few_shot == 5
    with pytest.raises(ValueError, match="attack data: got 'forget'"):
        AttackSpec.parse("forget:1e-3:constant:10")
    with pytest.raises(ValueError, match="schedule: got 'step'"):
        AttackSpec.parse("retain:1e-3:step:10")
    with pytest.raises(ValueError, match="attack option: got 'lora', expected lastN, loraN"):
        AttackSpec.parse("retain:1e-3:constant:10:lora")
    lora = AttackSpec.parse("retain:3e-3:constant:1000:lora16")
    assert (lora.lora, lora.last, lora.id) == (16, 0, "retain_lr0.003_constant_1000_lora16")
    with pytest.raises(ValueError, match="trainable_last: got 2, expected 0 with lora_rank"):
        AttackSpec.parse("retain:1e-3:constant:10:last2:lora4")
    with pytest.raises(ValueError, match="expected DATA:LR:SCHEDULE:STEPS"):
        AttackSpec.parse("retain:1e-3")


def test_judge_ensemble_shapes_and_round_trip(digits, tmp_path):
    from unlearning.judge import (
        load_judge_ensemble,
        save_judge_ensemble,
        train_judge_ensemble,
    )

    ens = train_judge_ensemble(
        "digits", digits.train, digits.holdout, (0, 1), steps=30, min_accuracy=0.0
    )
    x = digits.holdout.images[:7]
    p = ens.probs(x)
    assert p.shape == (2, 7, 10) and np.allclose(p.sum(2), 1.0, atol=1e-5)
    assert not np.allclose(p[0], p[1])  # different seeds, different judges
    assert ens.features(x).shape == (7, 64)
    save_judge_ensemble(ens, tmp_path / "j.pt")
    back = load_judge_ensemble(tmp_path / "j.pt")
    assert np.allclose(back.probs(x), p) and back.accuracies == ens.accuracies
    with pytest.raises(ValueError, match="expected distinct seeds"):
        train_judge_ensemble("digits", digits.train, digits.holdout, (1, 1))


def _tiny_spec(tmp_path, **kw):
    from unlearning.robust_grid import AttackSpec, GridSpec

    base = dict(
        seeds=[0],
        classes=[0],
        methods=["swap_label", "dimum"],
        attacks=[AttackSpec.parse("retain:1e-3:constant:4")],
        out=tmp_path / "out",
        cache=tmp_path / "cache",
        eval_every=2,
        curve_samples=12,
        forget_samples=12,
        retain_per_class=5,
        late_k=2,
        judge_seeds=(0, 1),
        guidances=(2.0, 0.0),
        pretrain_steps=3,
        unlearn_steps=2,
        judge_steps=20,
        judge_min_accuracy=0.0,
    )
    base.update(kw)
    return GridSpec(**base)


def test_robust_grid_writes_cells_and_skips_them_on_rerun(tmp_path, monkeypatch):
    import unlearning.robust_grid as rg

    monkeypatch.setattr(rg, "EvalConfig", _fast_eval)
    spec = _tiny_spec(tmp_path)
    rg.RobustGrid(spec).run()
    cells = sorted(p.name for p in (spec.out / "cells").glob("*.json"))
    assert cells == [
        "attack_s0_c0_dimum_retain_lr0.001_constant_4.json",
        "attack_s0_c0_swap_label_retain_lr0.001_constant_4.json",
        "unlearn_s0_c0_base.json",
        "unlearn_s0_c0_dimum.json",
        "unlearn_s0_c0_swap_label.json",
    ]
    row = json.loads((spec.out / "cells" / cells[0]).read_text())
    assert row["curve"]["steps"] == [0, 2, 4]
    assert set(row["summary"]) >= {"w2_forget_rate", "w0_confident_forget_rate"}
    assert "copy_check" in row and "ratio" in row["copy_check"]
    assert len(row["curve"]["w2_hist"]) == 3

    # A rerun touches no model: every cell is read back from its JSON.
    def boom(*a, **k):
        raise AssertionError("recomputed a finished cell")

    monkeypatch.setattr(rg, "unlearn_with_log", boom)
    monkeypatch.setattr(rg, "run_relearning_attack", boom)
    rg.RobustGrid(spec).run()
    # a new attack reuses the cached unlearned models (no unlearning again)
    spec2 = _tiny_spec(
        tmp_path, attacks=[rg.AttackSpec.parse("retain:1e-4:cosine:2:last2")]
    )
    monkeypatch.setattr(rg, "run_relearning_attack", _real_attack)
    rg.RobustGrid(spec2).run()
    assert (
        spec.out / "cells" / "attack_s0_c0_dimum_retain_lr0.0001_cosine_2_last2.json"
    ).exists()


def test_a_variant_gets_its_own_models_and_cells(tmp_path, monkeypatch):
    """``--set`` overrides with ``--label``: cells, cached models and summary rows are the
    variant's own (a variant that reused the default's cached model would measure it)."""
    import unlearning.robust_grid as rg

    with pytest.raises(ValueError, match="expected a label"):
        _tiny_spec(tmp_path, overrides={"dimum_alt": "generated"})
    monkeypatch.setattr(rg, "EvalConfig", _fast_eval)
    rg.RobustGrid(_tiny_spec(tmp_path, methods=["dimum"], attacks=[])).run()
    seen = []
    real = rg.unlearn_with_log
    monkeypatch.setattr(rg, "unlearn_with_log",
                        lambda base, f, r, cfg, **kw: seen.append(cfg)
                        or real(base, f, r, cfg, **kw))
    spec = _tiny_spec(tmp_path, methods=["dimum"], attacks=[],
                      overrides={"dimum_alt_class": 7}, label="-alt7")
    rg.RobustGrid(spec).run()
    assert [c.dimum_alt_class for c in seen] == [7]  # trained anew, with the override
    assert (spec.cache / "seed0" / "c0" / "dimum-alt7" / "model_index.json").exists()
    row = json.loads((spec.out / "cells" / "unlearn_s0_c0_dimum-alt7.json").read_text())
    assert row["method"] == "dimum-alt7" and row["overrides"] == {"dimum_alt_class": 7}
    assert row["copy_check"]["alt_class"] == 7
    assert (spec.out / "cells" / "unlearn_s0_c0_dimum.json").exists()  # untouched
    assert not list((spec.out / "cells").glob("*base-*"))  # the base model is shared


def _fast_eval(**kw):
    from unlearning.config import EvalConfig

    return EvalConfig(**kw, num_inference_steps=2)


def _real_attack(*a, **k):
    from unlearning.relearn import run_relearning_attack as real

    return real(*a, **k)


def test_robust_summary_tables(tmp_path, monkeypatch):
    import sys
    from pathlib import Path

    import unlearning.robust_grid as rg

    monkeypatch.setattr(rg, "EvalConfig", _fast_eval)
    spec = _tiny_spec(tmp_path, seeds=[0, 1])
    rg.RobustGrid(spec).run()
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "simulations"))
    try:
        from unlearning_grid_summary import write_robust_summary
    finally:
        sys.path.pop(0)
    md = write_robust_summary(spec.out)
    assert "## Attack retain_lr0.001_constant_4, pooled over forget classes" in md
    assert "| dimum | 2 |" in md and "Copying check" in md
    csv_text = (spec.out / "summary.csv").read_text()
    assert csv_text.startswith("table,attack,method,forget_class,metric,n,mean,lo,hi")
    assert (
        "attack_pooled,retain_lr0.001_constant_4,swap_label,,peak (w=2),2," in csv_text
    )


def test_the_unet_grid_runs_and_keeps_its_own_directories(tmp_path, monkeypatch):
    """``arch="unet"``: the models are diffusers UNet2DModels, the cells say so, the
    judge file can be shared, and a directory of one arch's grid refuses the other."""
    from diffusers import UNet2DModel

    import unlearning.robust_grid as rg

    monkeypatch.setattr(rg, "EvalConfig", _fast_eval)
    mlp = _tiny_spec(tmp_path, methods=["swap_label"], attacks=[])
    rg.RobustGrid(mlp).run()
    unet = _tiny_spec(
        tmp_path,
        methods=["swap_label"],
        out=tmp_path / "out-unet",
        cache=tmp_path / "cache-unet",
        judges=mlp.cache / "judges.pt",
        arch="unet",
    )
    grid = rg.RobustGrid(unet)
    grid.run()
    assert isinstance(grid.base(0).unet, UNet2DModel)
    assert not (unet.cache / "judges.pt").exists()  # the shared file was used
    row = json.loads((unet.out / "cells" / "unlearn_s0_c0_swap_label.json").read_text())
    assert row["arch"] == "unet"
    for crossed in (
        dict(out=mlp.out, cache=unet.cache),  # an MLP cell directory
        dict(out=unet.out, cache=mlp.cache),  # an MLP model cache
    ):
        with pytest.raises(ValueError, match="holds a grid of arch 'mlp'"):
            rg.RobustGrid(_tiny_spec(tmp_path, arch="unet", **crossed))
    # a directory filled before grid.json existed counts as the MLP grid's
    legacy = tmp_path / "legacy"
    (legacy / "cells").mkdir(parents=True)
    (legacy / "cells" / "unlearn_s0_c0_base.json").write_text("{}")
    with pytest.raises(ValueError, match="arch 'mlp'"):
        rg.RobustGrid(_tiny_spec(tmp_path, arch="unet", out=legacy, cache=unet.cache))
    with pytest.raises(ValueError, match="arch: got 'vit'"):
        _tiny_spec(tmp_path, arch="vit")


def test_the_heldout_variant_memorises_half_the_heldout_alternatives(
    tmp_path, monkeypatch
):
    """``--set dimum_alt=heldout``: DiMUM gets half of the held-out split's alternative
    class images (none in D_r, the attack set) and the copy check compares its samples
    with that half against the other half."""
    import unlearning.robust_grid as rg

    monkeypatch.setattr(rg, "EvalConfig", _fast_eval)
    given = []
    real = rg.unlearn_with_log
    monkeypatch.setattr(
        rg,
        "unlearn_with_log",
        lambda base, f, r, cfg, alt_images=None: given.append(alt_images)
        or real(base, f, r, cfg, alt_images=alt_images),
    )
    spec = _tiny_spec(tmp_path, methods=["dimum"], attacks=[],
                      overrides={"dimum_alt": "heldout"}, label="-heldout")
    grid = rg.RobustGrid(spec)
    grid.run()
    memorised, reference = grid.heldout_alt(0, 0)
    holdout_ones = grid.data.holdout.images[grid.data.holdout.labels == 1]
    assert len(memorised) == len(holdout_ones) // 2
    assert len(memorised) + len(reference) == len(holdout_ones)
    assert torch.equal(given[0], memorised)
    cell = spec.out / "cells" / "unlearn_s0_c0_dimum-heldout.json"
    row = json.loads(cell.read_text())
    cc = row["copy_check"]
    assert (cc["n_memorised"], cc["n_heldout"]) == (len(memorised), len(reference))


def _attack_cell(method, seed, peak, late=0.0, confident=0.0, attack="a", c_f=0):
    return {"kind": "attack", "attack": attack, "method": method, "seed": seed,
            "forget_class": c_f,
            "summary": {"w2_forget_rate": {"peak": peak, "late_mean": late},
                        "w2_confident_forget_rate": {"peak": confident}}}


def test_excess_over_the_retrain_control_is_paired_by_seed_and_class():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "simulations"))
    try:
        from unlearning_grid_summary import _excess_over_control
    finally:
        sys.path.pop(0)
    cells = [
        _attack_cell("retrain", 0, 0.05), _attack_cell("retrain", 1, 0.02),
        _attack_cell("dimum", 0, 0.17, confident=0.03),  # +0.12: above
        _attack_cell("dimum", 1, 0.06),  # +0.04: not above
        _attack_cell("dimum", 2, 0.90),  # no control on seed 2: not counted
        _attack_cell("dimum", 0, 0.90, c_f=3),  # no control at c_f = 3: not counted
        _attack_cell("dimum", 0, 0.90, attack="b"),  # no control under attack b
    ]
    lines, records = _excess_over_control(cells)
    [row] = [ln for ln in lines if ln.startswith("| a | dimum |")]
    assert row.endswith("| 1/2 |") and "| 2 |" in row
    peak = next(r for r in records if r["metric"] == "peak (w=2)")
    assert peak["n"] == 2 and abs(peak["mean"] - 0.08) < 1e-12
    conf = next(r for r in records if r["metric"] == "confident peak (w=2)")
    assert abs(conf["mean"] - 0.015) < 1e-12
    assert not any(ln.startswith("| b |") for ln in lines)
    assert _excess_over_control([c for c in cells if c["method"] != "retrain"]) == ([], [])


def test_cells_record_the_weights_they_measured_and_flag_a_rebuilt_model(
    tmp_path, monkeypatch
):
    """Each cell names its judge ensemble and model by fingerprint; an attack on a model
    that is not the one its unlearn cell measured (the cache lost and the model rebuilt
    differently) says so in the cell and in the summary, and mixed judge ensembles are
    called out (planted: a rebuilt model, a second ensemble)."""
    import sys
    from pathlib import Path

    import unlearning.robust_grid as rg
    from trainkit import state_fingerprint
    from unlearning.checkpoint import load_pipeline, save_pipeline

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "simulations"))
    try:
        from unlearning_grid_summary import write_robust_summary
    finally:
        sys.path.pop(0)
    monkeypatch.setattr(rg, "EvalConfig", _fast_eval)
    spec = _tiny_spec(tmp_path, methods=["dimum"])
    grid = rg.RobustGrid(spec)
    grid.run()
    cells = spec.out / "cells"
    unl = json.loads((cells / "unlearn_s0_c0_dimum.json").read_text())
    att_path = cells / "attack_s0_c0_dimum_retain_lr0.001_constant_4.json"
    att = json.loads(att_path.read_text())
    model_dir = spec.cache / "seed0" / "c0" / "dimum"
    assert unl["model_sha256"] == state_fingerprint(load_pipeline(model_dir).unet)
    assert unl["judges_sha256"] == att["judges_sha256"] == grid.ensemble.fingerprint
    assert att["model_sha256"] == unl["model_sha256"]
    assert att["model_matches_unlearn_cell"] is True
    md = write_robust_summary(spec.out)
    assert f"judge ensemble `{grid.ensemble.fingerprint}`: 3 cells" in md
    assert "different judge ensembles" not in md
    assert "measured (a model rebuilt after the cache was lost): 0 of the 1" in md

    # planted: the cached model changes (as a rebuild that is not bit-identical would)
    pipe = load_pipeline(model_dir)
    with torch.no_grad():
        next(pipe.unet.parameters()).add_(1e-3)
    save_pipeline(pipe, model_dir, {"dataset": "digits", "method": "dimum", "seed": 0,
                                    "forget_class": 0})
    att_path.unlink()
    rg.RobustGrid(spec).run()
    att = json.loads(att_path.read_text())
    assert att["model_matches_unlearn_cell"] is False
    assert att["model_sha256"] != unl["model_sha256"]
    # planted: one cell measured by another ensemble
    base = json.loads((cells / "unlearn_s0_c0_base.json").read_text())
    base["judges_sha256"] = "0" * 16
    (cells / "unlearn_s0_c0_base.json").write_text(json.dumps(base))
    md = write_robust_summary(spec.out)
    assert "1 of the 1 that can tell: s0 c0 dimum retain_lr0.001_constant_4" in md
    assert "measured by 2 different judge ensembles" in md


def test_a_grid_without_fingerprints_keeps_its_summary(tmp_path):
    """Cells written before the fingerprints: no provenance section (old summaries
    regenerate unchanged)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "simulations"))
    try:
        from unlearning_grid_summary import _provenance
    finally:
        sys.path.pop(0)
    old = {"kind": "unlearn", "seed": 0, "forget_class": 0, "method": "base"}
    assert _provenance([old], []) == []
    assert _provenance([{**old, "judges_sha256": "ab"}], [])[3] == "* judge ensemble `ab`: 1 cells"
