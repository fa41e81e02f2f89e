"""Issue 15 item 3: the LoRA relearning attack (``RelearnConfig.lora_rank``).

Tiny MLP and UNet2DModel, a few attack steps each; nothing is downloaded.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.unlearning.conftest import tiny_mlp_pipeline, tiny_unet_pipeline
from unlearning.checkpoint import load_pipeline, save_pipeline
from unlearning.config import RelearnConfig
from unlearning.relearn import (
    attack_fit,
    has_lora_adapters,
    lora_adapters,
    lora_target_modules,
    run_relearning_attack,
)

RANK = 2
MODELS = {"mlp": tiny_mlp_pipeline, "unet": tiny_unet_pipeline}


def _cfg(**kw) -> RelearnConfig:
    base = dict(
        steps=4,
        batch_size=8,
        lora_rank=RANK,
        lr=1e-2,
        eval_every=2,
        progress=False,
        device="cpu",
    )
    return RelearnConfig(**{**base, **kw})


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _numerical_rank(delta: torch.Tensor) -> int:
    """Rank of a weight difference as (out, in * kh * kw), float32 rounding ignored."""
    s = torch.linalg.svdvals(delta.double().reshape(delta.shape[0], -1))
    return int((s > 1e-4 * s[0]).sum()) if s[0] > 0 else 0


def _eps(pipe) -> torch.Tensor:
    """The noise prediction on fixed inputs (same noise, steps, labels every call)."""
    g = torch.Generator().manual_seed(7)
    x = torch.randn(6, 1, 8, 8, generator=g)
    t = torch.tensor([0, 100, 400, 700, 900, 999])
    y = torch.tensor([0, 1, 2, 3, 10, 0])  # 10: the null label
    with torch.no_grad():
        return pipe.unet(x, t, class_labels=y).sample


def _images(pipe) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return pipe([0, 3, 7], generator=g, num_inference_steps=2).images


# ---------------------------------------------------------------- (a) + (e)


@pytest.mark.parametrize("arch", sorted(MODELS))
def test_only_adapters_train_and_the_merge_is_a_low_rank_update(arch, forget_retain):
    _, retain = forget_retain
    pipe = MODELS[arch]()
    before = _snapshot(pipe.unet)
    targets = lora_target_modules(pipe.unet)
    modules_before = [(n, type(m)) for n, m in pipe.unet.named_modules()]
    seen: list[int] = []

    def probe(p):
        # called at step 0 and every eval_every steps on the adapted model, and at the
        # end on the merged one
        lora = {n: q for n, q in p.unet.named_parameters() if ".lora_" in n}
        base = {n: q for n, q in p.unet.named_parameters() if ".lora_" not in n}
        if has_lora_adapters(p.unet):
            seen.append(len(lora))
            assert len(lora) == 2 * len(targets)  # one A and one B per target
            assert all(q.requires_grad for q in lora.values())
            assert not any(q.requires_grad for q in base.values())
            assert all(q.grad is None for q in base.values())
            if len(seen) > 1:  # after an optimizer step: adapters got gradients
                assert all(q.grad is not None for q in lora.values())
        return {"forget_rate": 0.0, "p_forget": 0.0}

    attacked, curve = run_relearning_attack(pipe, retain, 0, _cfg(), probe)

    assert curve.steps == [0, 2, 4] and len(seen) == 2  # the last point: merged
    # the input pipeline is untouched
    for k, v in pipe.unet.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert not has_lora_adapters(pipe.unet)
    # the attacked one is a plain model again: same modules, keys, flags
    assert not has_lora_adapters(attacked.unet)
    assert not hasattr(attacked.unet, "peft_config")
    assert [(n, type(m)) for n, m in attacked.unet.named_modules()] == modules_before
    after = attacked.unet.state_dict()
    assert list(after) == list(before)
    assert all(q.requires_grad for q in attacked.unet.parameters())
    # each targeted weight moved by a rank-<= r update; everything else bit-identical
    moved = {f"{n}.weight" for n in targets}
    for k, v in after.items():
        if k in moved:
            rank = _numerical_rank(v - before[k])
            assert 1 <= rank <= RANK, (k, rank)
        else:
            assert torch.equal(v, before[k]), k  # biases, embeddings, norms


def test_attack_fit_alone_injects_trains_and_merges(forget_retain):
    _, retain = forget_retain
    pipe = tiny_mlp_pipeline()
    before = _snapshot(pipe.unet)
    attack_fit(pipe.unet, pipe.scheduler, retain, _cfg(), stream="s")
    assert not has_lora_adapters(pipe.unet)
    after = pipe.unet.state_dict()
    assert list(after) == list(before)
    w = "body.0.weight"
    assert 1 <= _numerical_rank(after[w] - before[w]) <= RANK
    assert torch.equal(after["body.0.bias"], before["body.0.bias"])
    assert torch.equal(
        after["class_embedding.weight"], before["class_embedding.weight"]
    )


def test_a_larger_rank_gives_a_larger_rank_update(forget_retain):
    # guards against the rank being ignored (peft's default is 8)
    _, retain = forget_retain
    pipe = tiny_mlp_pipeline()
    w = "body.0.weight"  # 32 x (64 + 2 * 16)
    ranks = {}
    for r in (1, 12):
        attacked, _ = run_relearning_attack(pipe, retain, 0, _cfg(lora_rank=r))
        delta = attacked.unet.state_dict()[w] - pipe.unet.state_dict()[w]
        ranks[r] = _numerical_rank(delta)
    assert ranks == {1: 1, 12: 12}


def test_lora_alpha_scales_the_adapter(forget_retain):
    pipe = tiny_mlp_pipeline()
    x = torch.randn(3, 96)
    lin = pipe.unet.body[0]
    with lora_adapters(pipe.unet, 2, alpha=6.0):
        layer = pipe.unet.body[0]
        assert layer.scaling["default"] == pytest.approx(3.0)
        with torch.no_grad():
            layer.lora_B["default"].weight.fill_(0.1)
            want = lin(x) + 3.0 * layer.lora_B["default"](layer.lora_A["default"](x))
            got = layer(x)
    assert torch.allclose(got, want, atol=1e-6)
    with torch.no_grad():
        assert torch.allclose(pipe.unet.body[0](x), want, atol=1e-5)  # merged
    with lora_adapters(pipe.unet, 4):
        assert pipe.unet.body[0].scaling["default"] == 1.0  # alpha 0: = rank


# ---------------------------------------------------------------- (b)


def _frozen_outputs(pipe) -> tuple[torch.Tensor, torch.Tensor]:
    """``_eps`` and ``_images`` of ``pipe`` with its weights frozen, as under LoRA.

    Frozen weights take another (equally exact) matmul path in torch for the
    attention's non-contiguous 3-D inputs: a few 1e-7 of float rounding on the UNet.
    Comparing frozen with frozen makes the B = 0 check exact.
    """
    flags = [q.requires_grad for q in pipe.unet.parameters()]
    for q in pipe.unet.parameters():
        q.requires_grad_(False)
    try:
        return _eps(pipe), _images(pipe)
    finally:
        for q, f in zip(pipe.unet.parameters(), flags, strict=True):
            q.requires_grad_(f)


@pytest.mark.parametrize("arch", sorted(MODELS))
def test_step_zero_is_the_input_model(arch, forget_retain):
    _, retain = forget_retain
    pipe = MODELS[arch]()
    eps0, images0 = _frozen_outputs(pipe)
    got = {}

    def probe(p):
        if not got:  # step 0, already with the adapters in place
            assert has_lora_adapters(p.unet)
            got["eps"], got["images"] = _eps(p), _images(p)
        return {"forget_rate": 0.0, "p_forget": 0.0}

    attacked, _ = run_relearning_attack(pipe, retain, 0, _cfg(), probe)
    assert torch.equal(got["eps"], eps0)  # B = 0: exactly the unlearned model
    assert torch.equal(got["images"], images0)
    assert torch.allclose(got["eps"], _eps(pipe), rtol=0, atol=1e-5)  # not frozen
    assert not torch.equal(_eps(attacked), eps0)  # and the attack then moved it


# ---------------------------------------------------------------- (c)


@pytest.mark.parametrize("arch", sorted(MODELS))
def test_attacked_pipeline_saves_reloads_and_samples(arch, forget_retain, tmp_path):
    _, retain = forget_retain
    attacked, _ = run_relearning_attack(MODELS[arch](), retain, 0, _cfg())
    save_pipeline(attacked, tmp_path / "m", {"method": "dimra-retain"})
    loaded = load_pipeline(tmp_path / "m")
    assert type(loaded.unet) is type(attacked.unet)
    sd = attacked.unet.state_dict()
    for k, v in loaded.unet.state_dict().items():
        assert torch.equal(v, sd[k]), k
    images = _images(loaded)
    assert images.shape == (3, 1, 8, 8)
    assert torch.isfinite(images).all()
    assert torch.equal(images, _images(attacked))


# ---------------------------------------------------------------- (d)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"lora_rank": -1}, "lora_rank: got -1, expected an integer >= 0"),
        ({"lora_rank": 2.5}, "lora_rank: got 2.5, expected an integer >= 0"),
        ({"lora_rank": 4, "lora_alpha": -1.0}, "lora_alpha: got -1.0, expected >= 0"),
        (
            {"lora_alpha": 8.0},
            r"lora_alpha: got 8.0, expected 0 when lora_rank is 0",
        ),
        (
            {"lora_rank": 4, "trainable_last": 2},
            r"trainable_last: got 2, expected 0 with lora_rank 4",
        ),
    ],
)
def test_bad_lora_options_are_refused(kw, message):
    with pytest.raises(ValueError, match=message):
        RelearnConfig(**kw)


def test_cli_has_the_lora_flags_and_refuses_a_bad_combination(tmp_path, capsys):
    from unlearning.__main__ import build_parser, main
    from unlearning.config import config_from_args

    ns = build_parser().parse_args(
        ["relearn", "--model", "m", "--out", "o", "--lora-rank", "8"]
        + ["--lora-alpha", "16"]
    )
    cfg = config_from_args(RelearnConfig, ns)
    assert (cfg.lora_rank, cfg.lora_alpha) == (8, 16.0)
    argv = ["relearn", "--model", str(tmp_path), "--out", str(tmp_path / "o")]
    with pytest.raises(SystemExit) as e:
        main([*argv, "--lora-rank", "2", "--trainable-last", "1"])
    assert e.value.code == 2
    assert (
        "trainable_last: got 1, expected 0 with lora_rank 2" in capsys.readouterr().err
    )


def test_adapters_are_not_injected_twice_nor_trained_with_rank_zero(forget_retain):
    _, retain = forget_retain
    pipe = tiny_mlp_pipeline()
    with lora_adapters(pipe.unet, 2):
        with pytest.raises(ValueError, match="already carries peft adapters"):
            with lora_adapters(pipe.unet, 2):
                pass
        with pytest.raises(ValueError, match="lora_rank: got 0 for a model carrying"):
            attack_fit(pipe.unet, pipe.scheduler, retain, _cfg(lora_rank=0), stream="s")
    assert not has_lora_adapters(pipe.unet)
    with pytest.raises(ValueError, match="lora_rank: got 0, expected an integer >= 1"):
        with lora_adapters(pipe.unet, 0):
            pass


def test_the_adapters_initialisation_is_seeded_and_leaves_the_global_generator_alone():
    from unlearning.relearn import lora_adapters

    def a_matrices(seed, global_seed):
        model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Linear(5, 4))
        torch.manual_seed(global_seed)  # the global generator's state must not matter
        before = torch.random.get_rng_state()
        with lora_adapters(model, 2, seed=seed):
            a = [p.detach().clone() for n, p in model.named_parameters() if "lora_A" in n]
        assert torch.equal(torch.random.get_rng_state(), before)
        return a

    first, again, other = a_matrices(0, 123), a_matrices(0, 999), a_matrices(1, 123)
    assert all(torch.equal(x, y) for x, y in zip(first, again, strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(first, other, strict=True))
