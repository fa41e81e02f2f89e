"""Formula-pinning tests: each baseline's loss equals its official formula, by hand.

The references are written from the official DDPM code of each method (pinned in
docs/unlearning.md): SalUn ``saliency_unlearn`` / ``generate_mask``, EraseDiff
``train_ours``, Selective Amnesia ``train_forget`` / ``save_fim``. Each test records
the batches an objective draws (a spy on ``diffusion_inputs``), recomputes the loss
from those tensors with plain torch, and compares. Tiny MLP, batch 8, CPU, seconds.
"""

from __future__ import annotations

import math

import pytest
import torch
from diffusers import DDPMScheduler

import unlearning.objectives as objectives
from tests.unlearning.conftest import tiny_mlp_pipeline
from unlearning.config import UnlearnConfig
from unlearning.unlearn import unlearn_with_log

B = 8  # batch size of every test
D = 64  # pixels of an 8x8x1 digit


def _cfg(method: str, **overrides) -> UnlearnConfig:
    values = dict(
        method=method,
        batch_size=B,
        steps=1,
        progress=False,
        device="cpu",
        sample_steps=2,
        sa_samples_per_class=1,
        sa_fisher_timesteps=4,
    )
    values.update(overrides)
    return UnlearnConfig(**values)


def _objective(cls, forget_retain, cfg, seed=0):
    forget, retain = forget_retain
    pipe = tiny_mlp_pipeline()
    obj = cls(pipe, forget, retain, cfg, torch.Generator().manual_seed(seed))
    return obj, pipe.unet


def _record(monkeypatch, name: str) -> list:
    """Wrap ``objectives.<name>`` so that every return value is appended to a list."""
    calls = []
    real = getattr(objectives, name)

    def wrapper(*args, **kwargs):
        out = real(*args, **kwargs)
        calls.append(out)
        return out

    monkeypatch.setattr(objectives, name, wrapper)
    return calls


@pytest.fixture
def spy(monkeypatch):
    """Record the (x_t, t, eps, labels) of every diffusion_inputs call in objectives."""
    return _record(monkeypatch, "diffusion_inputs")


def _eps(model, x_t, t, y):
    return model(x_t, t, class_labels=y).sample


def _pixel_sum(sq):
    """Official noise_estimation_loss: sum over (C, H, W), mean over the batch."""
    return sq.sum(dim=(1, 2, 3)).mean(dim=0)


# ---------------------------------------------------------------- reductions


def test_sum_reduction_is_the_pixel_count_times_the_mean(tiny_mlp):
    from unlearning.losses import denoising_loss

    g = torch.Generator().manual_seed(0)
    x_t, eps = (
        torch.randn(4, 1, 8, 8, generator=g),
        torch.randn(4, 1, 8, 8, generator=g),
    )
    t, y = torch.tensor([1, 200, 500, 999]), torch.tensor([0, 3, 7, 10])
    mean = denoising_loss(tiny_mlp.unet, x_t, t, eps, y, reduction="mean")
    total = denoising_loss(tiny_mlp.unet, x_t, t, eps, y, reduction="sum")
    sq = (eps - _eps(tiny_mlp.unet, x_t, t, y)).pow(2)
    assert torch.allclose(mean, sq.mean())
    assert torch.allclose(total, _pixel_sum(sq))
    assert torch.allclose(total, D * mean)
    with pytest.raises(ValueError, match="reduction: got 'max'"):
        denoising_loss(tiny_mlp.unet, x_t, t, eps, y, reduction="max")


def test_defaults_follow_the_official_code():
    cfg = UnlearnConfig()
    assert (cfg.salun_forget_reduction, cfg.salun_retain_reduction) == ("mean", "sum")
    assert cfg.salun_alpha == 1e-3 and cfg.salun_pseudo_label == "next"
    assert cfg.erasediff_reduction == "mean" and cfg.erasediff_optimizer == "shared"
    assert cfg.sa_reduction == "sum" and cfg.sa_lambda == 10.0


# ---------------------------------------------------------------- SalUn


def test_salun_loss_is_mean_forget_plus_alpha_times_pixel_sum_retain(
    forget_retain, spy
):
    # Prepare
    obj, model = _objective(objectives.SalUn, forget_retain, _cfg("salun"))
    spy.clear()  # drop the mask's batches
    # Execute
    loss, _ = obj.loss(1)
    # Assert: official loss = MSELoss()(pseudo, output) + alpha * noise_estimation_loss
    (x_f, t_f, _, y_f), (x_r, t_r, e_r, y_r) = spy
    assert (y_f == 0).all() and not (y_r == 0).any()
    with torch.no_grad():
        pseudo = _eps(model, x_f, t_f, torch.full_like(y_f, 1))  # (c_f + 1) % 10
        forget = (_eps(model, x_f, t_f, y_f) - pseudo).pow(2).mean()
        retain = _pixel_sum((e_r - _eps(model, x_r, t_r, y_r)).pow(2))
        ref = forget + 1e-3 * retain
    assert torch.allclose(loss.detach(), ref, rtol=1e-5), (loss.item(), ref.item())


def test_salun_mask_is_top_half_of_abs_summed_clipped_gradients(forget_retain, spy):
    # Prepare / Execute: the mask is built in the constructor
    obj, model = _objective(objectives.SalUn, forget_retain, _cfg("salun"))
    # Assert: generate_mask = |sum_b clip(grad of pixel-sum CFG loss)|, top 50%
    params = list(model.parameters())
    total = [torch.zeros_like(p) for p in params]
    for x_t, t, eps, y in spy:
        e_c = _eps(model, x_t, t, y)
        e_n = _eps(model, x_t, t, torch.full_like(y, 10))
        loss = _pixel_sum((eps - (3.0 * e_c - 2.0 * e_n)).pow(2))
        grads = torch.autograd.grad(loss, params)
        norm = torch.sqrt(sum(g.pow(2).sum() for g in grads))
        coef = min(1.0, 1.0 / (norm.item() + 1e-6))
        for acc, g in zip(total, grads, strict=True):
            acc += coef * g
    flat = torch.cat([a.abs().flatten() for a in total])
    k = round(0.5 * flat.numel())
    threshold = torch.topk(flat, k).values[-1]
    ref = torch.cat([(a.abs() >= threshold).float().flatten() for a in total])
    ours = torch.cat([m.flatten() for m in obj.mask])
    assert (ours != ref).float().mean().item() < 1e-3
    assert len(spy) == math.ceil(len(forget_retain[0]) / B)  # one pass over D_f


# ---------------------------------------------------------------- Selective Amnesia


def _perturb(model, seed=1, scale=0.05):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))


def test_sa_loss_is_pixel_sums_plus_lambda_ewc(forget_retain, spy):
    # Prepare: move theta away from theta_o so that the EWC term is not zero
    obj, model = _objective(objectives.SelectiveAmnesia, forget_retain, _cfg("sa"))
    _perturb(model)
    spy.clear()
    # Execute
    loss, _ = obj.loss(1)
    # Assert: train_forget: loss(noise | c_f) + gamma loss(replay) + lmbda sum F d^2
    (x_f, t_f, e_f, y_f), (x_r, t_r, e_r, y_r) = spy
    assert (y_f == 0).all() and not (y_r == 0).any()
    with torch.no_grad():
        l_f = _pixel_sum((e_f - _eps(model, x_f, t_f, y_f)).pow(2))
        l_r = _pixel_sum((e_r - _eps(model, x_r, t_r, y_r)).pow(2))
        ewc = sum(
            (f * (p - p0).pow(2)).sum()
            for f, p, p0 in zip(obj.fisher, model.parameters(), obj.theta_o)
        )
        ref = l_f + 1.0 * l_r + 10.0 * ewc
    assert ewc > 0
    assert torch.allclose(loss.detach(), ref, rtol=1e-5), (loss.item(), ref.item())


def test_sa_fisher_equals_brute_force_per_sample_over_every_timestep(tiny_mlp):
    from unlearning.losses import fisher_diagonal

    # Prepare: a short schedule (T = 6) so that the brute force loops over every t
    sched = DDPMScheduler(num_train_timesteps=6)
    model = tiny_mlp.unet
    g = torch.Generator().manual_seed(0)
    images = torch.rand(3, 1, 8, 8, generator=g) * 2 - 1
    labels = torch.tensor([0, 4, 9])  # one sample of the forget class among them
    # Execute
    ours = fisher_diagonal(
        model,
        images,
        labels,
        sched,
        n_timesteps=6,
        generator=torch.Generator().manual_seed(5),
    )
    # Assert: save_fim: per sample, sum over all t of grad of the pixel-sum loss,
    # squared, averaged over samples (noise drawn per sample as (T, C, H, W))
    params = list(model.parameters())
    ref = [torch.zeros_like(p) for p in params]
    noise_gen = torch.Generator().manual_seed(5)
    for i in range(3):
        eps_all = torch.randn((6, 1, 8, 8), generator=noise_gen)
        g_sum = [torch.zeros_like(p) for p in params]
        for t in range(6):
            tt = torch.tensor([t])
            x_t = sched.add_noise(images[i : i + 1], eps_all[t : t + 1], tt)
            e = _eps(model, x_t, tt, labels[i : i + 1])
            loss = (eps_all[t : t + 1] - e).pow(2).sum()
            for acc, gr in zip(g_sum, torch.autograd.grad(loss, params), strict=True):
                acc += gr
        for r, gs in zip(ref, g_sum, strict=True):
            r += gs.pow(2) / 3
    for a, b in zip(ours, ref, strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-10)


def test_sa_fisher_covers_every_class_and_replay_only_the_remembered(forget_retain):
    obj, model = _objective(objectives.SelectiveAmnesia, forget_retain, _cfg("sa"))
    assert sorted(set(obj.samples.labels.tolist())) == list(range(10))
    assert sorted(set(obj.replay.labels.tolist())) == list(range(1, 10))
    # The c_f row of the class embedding is used only by c_f samples: it has Fisher
    # mass only if the Fisher saw the forget class (SA samples all 10 classes).
    params = dict(model.named_parameters())
    row = list(params).index("class_embedding.weight")
    assert obj.fisher[row][0].abs().sum() > 0
    assert obj.fisher[row][10].abs().sum() == 0  # the null label: no samples


# ---------------------------------------------------------------- EraseDiff


def _outer_grads(obj, model):
    loss, info = obj.loss(1)
    return torch.autograd.grad(loss, list(model.parameters())), info


def test_erasediff_outer_gradient_is_mean_retain_plus_lambda_mean_forget(
    forget_retain, spy, monkeypatch
):
    # Prepare: record the random c' of each swap-label batch too
    labels = []
    real = objectives.random_other_labels

    def record(*args):
        out = real(*args)
        labels.append(out)
        return out

    monkeypatch.setattr(objectives, "random_other_labels", record)
    obj, model = _objective(objectives.EraseDiff, forget_retain, _cfg("erasediff"))
    obj.optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    # Execute (the inner steps draw first; the outer batches are the last two)
    ours, _ = _outer_grads(obj, model)
    # Assert: loss_dr + lambda (loss_du - const), F.mse_loss and MSELoss (means)
    (x_r, t_r, e_r, y_r), (x_u, t_u, _, y_u) = spy[-2:]
    c_prime = labels[-1].expand(B)
    pseudo = _eps(model, x_u, t_u, c_prime).detach()
    ref_loss = (e_r - _eps(model, x_r, t_r, y_r)).pow(2).mean() + 0.1 * (
        _eps(model, x_u, t_u, y_u) - pseudo
    ).pow(2).mean()
    ref = torch.autograd.grad(ref_loss, list(model.parameters()))
    for a, b in zip(ours, ref, strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-8)


@pytest.mark.parametrize("k", [1, 3])
def test_erasediff_outer_step_uses_the_inner_steps_adam_moments(forget_retain, k):
    # Prepare: |D_f| = 124 and batch 8 -> 16 inner batches per pass
    obj, model = _objective(
        objectives.EraseDiff, forget_retain, _cfg("erasediff", erasediff_k=k)
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    obj.optimizer = opt
    n_inner = k * math.ceil(len(forget_retain[0]) / B)
    # Execute: one outer step, as the unlearning loop does it
    loss, _ = obj.loss(1)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    grads = [p.grad.clone() for p in model.parameters()]
    opt.step()
    # Assert: the same Adam took the inner steps and the outer one (official
    # train_ours keeps one optimizer); its first moment is not that of a fresh Adam
    p0 = next(model.parameters())
    state = opt.state[p0]
    assert int(state["step"]) == n_inner + 1
    assert not torch.allclose(state["exp_avg"], 0.1 * grads[0])


def _erasediff_params(forget_retain, k, optimizer):
    forget, retain = forget_retain
    cfg = _cfg(
        "erasediff",
        steps=2,
        erasediff_k=k,
        erasediff_optimizer=optimizer,
        seed=3,
    )
    out, log = unlearn_with_log(tiny_mlp_pipeline(), forget, retain, cfg)
    return [p.detach() for p in out.unet.parameters()], log


def test_erasediff_update_depends_on_k_only_through_the_shared_optimizer(
    forget_retain,
):
    shared1, log1 = _erasediff_params(forget_retain, 1, "shared")
    shared3, log3 = _erasediff_params(forget_retain, 3, "shared")
    fresh1, _ = _erasediff_params(forget_retain, 1, "fresh")
    fresh3, _ = _erasediff_params(forget_retain, 3, "fresh")
    assert any(not torch.equal(a, b) for a, b in zip(shared1, shared3))
    # A new Adam per inner loop: theta is restored and f(theta^K) is a constant, so
    # the inner steps leave no trace (the defect this switch reproduces).
    assert all(torch.equal(a, b) for a, b in zip(fresh1, fresh3))
    assert log3.extra["inner_steps"] == 3 * log1.extra["inner_steps"]


def test_erasediff_cycle_has_min_of_forget_batches_and_rem_num_outer_steps(
    forget_retain,
):
    # |D_f| = 124, batch 8: 16 forget batches; rem_num 20 -> 20 // 8 + 1 = 3 outer
    # steps per cycle, so 4 outer steps need 2 cycles of K = 2 passes x 16 batches.
    forget, retain = forget_retain
    cfg = _cfg("erasediff", steps=4, erasediff_rem_num=20)
    _, log = unlearn_with_log(tiny_mlp_pipeline(), forget, retain, cfg)
    assert log.steps_run == 4
    assert log.extra["inner_steps"] == 2 * 2 * 16


def test_sa_mean_reduction_is_the_official_objective_over_the_pixel_count(
    forget_retain,
):
    forget, retain = forget_retain
    losses = {}
    for red in ("sum", "mean"):
        obj, model = _objective(
            objectives.SelectiveAmnesia, forget_retain, _cfg("sa", sa_reduction=red)
        )
        _perturb(model)
        losses[red] = obj.loss(1)[0].item()
    assert losses["sum"] == pytest.approx(D * losses["mean"], rel=1e-5)


# ---------------------------------------------------------------- swap-label


@pytest.mark.parametrize("target", ["random", "next"])
def test_swap_label_loss_is_mean_swap_term_plus_retain_weight_times_mean_retain(
    forget_retain, spy, monkeypatch, target
):
    # Prepare: record the random targets c' the objective draws
    drawn = _record(monkeypatch, "random_other_labels")
    cfg = _cfg("swap_label", swap_label_target=target, retain_weight=0.5)
    obj, model = _objective(objectives.SwapLabel, forget_retain, cfg)
    spy.clear()
    # Execute
    loss, _ = obj.loss(1)
    # Assert: mean((eps(x_t|c_f) - sg eps(x_t|c'))^2) + 0.5 * mean((eps - eps(x_r|y))^2)
    (x_f, t_f, _, y_f), (x_r, t_r, e_r, y_r) = spy
    if target == "next":
        assert not drawn
        c_prime = torch.full_like(y_f, 1)  # (c_f + 1) % 10
    else:
        (c_prime,) = drawn
        assert c_prime.shape == y_f.shape and not (c_prime == 0).any()
        assert len(set(c_prime.tolist())) > 1  # one target per image, not per batch
    with torch.no_grad():
        forget = (_eps(model, x_f, t_f, y_f) - _eps(model, x_f, t_f, c_prime)).pow(2).mean()
        retain = (e_r - _eps(model, x_r, t_r, y_r)).pow(2).mean()
    assert torch.allclose(loss.detach(), forget + 0.5 * retain, rtol=1e-5)


def test_swap_label_target_is_checked():
    with pytest.raises(ValueError, match="swap_label_target"):
        _cfg("swap_label", swap_label_target="nearest")
