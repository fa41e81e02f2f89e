"""Tests of the DP mechanisms (paper mode clip+noise, sampler, strict-mode DP-SGD)."""

import math
import warnings

import pytest
import torch
from scipy import stats

from vflgan_app.checks import check_delta
from vflgan_app.core.sampling import batch_indices
from vflgan_app.dp.mechanisms import (
    clip_and_noise_,
    clip_per_sample_and_noise,
    gradient_penalty,
    paper_clip_bound,
    per_sample_grads,
    per_sample_norms,
)

# Two-sided tail probability used for all statistical bounds (fixed seeds make the
# tests deterministic; the bounds say how unlikely a correct mechanism is to fail).
ALPHA = 1e-6


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------------
# Paper mode


def test_paper_clip_bound():
    assert paper_clip_bound(64) == 1.5 / 64
    with pytest.raises(ValueError, match="batch_size: got 0, expected >= 1"):
        paper_clip_bound(0)


def test_clip_and_noise_scales_large_gradient_to_clip_before_noise():
    # Prepare
    clip = 1.5 / 64
    g = torch.randn(53, 256, generator=_gen(1), dtype=torch.float64)
    g *= 10 * clip / g.norm()
    direction = g / g.norm()
    # Execute
    pre = clip_and_noise_(g, clip=clip, noise_multiplier=0.0, generator=_gen())
    # Assert
    assert pre == pytest.approx(10 * clip, rel=1e-12)
    assert g.norm().item() == pytest.approx(clip, rel=1e-9)
    torch.testing.assert_close(g / g.norm(), direction, rtol=0, atol=1e-12)


def test_clip_and_noise_leaves_small_gradient_unchanged_without_noise():
    clip = 0.5
    g = torch.full((4, 4), 0.01, dtype=torch.float64)
    before = g.clone()
    clip_and_noise_(g, clip=clip, noise_multiplier=0.0, generator=_gen())
    # min(1, C / (||g|| + 1e-10)) = 1 exactly when ||g|| << C
    torch.testing.assert_close(g, before, rtol=0, atol=0)


def test_clip_and_noise_noise_has_zero_mean_and_std_2_c_sigma():
    # Prepare: a gradient already inside the bound, so only noise is added.
    clip, sigma = 1.5 / 16, 1.39  # red wine: std 0.2606
    std = 2 * clip * sigma
    base = torch.randn(100, 200, generator=_gen(2), dtype=torch.float64)
    base *= 0.5 * clip / base.norm()
    gen = _gen(3)
    draws = []
    for _ in range(10):
        g = base.clone()
        clip_and_noise_(g, clip=clip, noise_multiplier=sigma, generator=gen)
        draws.append((g - base).flatten())
    noise = torch.stack(draws)  # (10 draws, 20000 coordinates)
    n = noise.numel()
    # Assert mean: z-bound on the sample mean of n iid N(0, std^2).
    z = stats.norm.ppf(1 - ALPHA / 2)
    assert abs(noise.mean().item()) < z * std / math.sqrt(n)
    # Assert std: (n-1) s^2 / std^2 ~ chi2(n-1).
    s2 = noise.var(unbiased=True).item()
    lo = stats.chi2.ppf(ALPHA / 2, n - 1) / (n - 1)
    hi = stats.chi2.ppf(1 - ALPHA / 2, n - 1) / (n - 1)
    assert lo * std**2 < s2 < hi * std**2
    # Full-shape noise (not the red-wine scalar bug): within ONE draw the
    # coordinates vary with the same std.
    m = noise.shape[1]
    s2_one = noise[0].var(unbiased=True).item()
    assert stats.chi2.ppf(ALPHA / 2, m - 1) / (m - 1) * std**2 < s2_one
    # Independent draws per call.
    assert not torch.equal(noise[0], noise[1])


def test_clip_and_noise_is_reproducible_from_the_generator():
    a = torch.zeros(3, 5)
    b = torch.zeros(3, 5)
    clip_and_noise_(a, clip=1.0, noise_multiplier=1.0, generator=_gen(7))
    clip_and_noise_(b, clip=1.0, noise_multiplier=1.0, generator=_gen(7))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    expected = 2.0 * torch.randn(3, 5, generator=_gen(7))
    torch.testing.assert_close(a, expected)


@pytest.mark.parametrize(
    ("kwargs", "exc", "message"),
    [
        (
            {"clip": 1.0, "noise_multiplier": -1},
            ValueError,
            "dp.noise-multiplier: got -1, expected >= 0",
        ),
        (
            {"clip": 0, "noise_multiplier": 1.0},
            ValueError,
            "dp.clip: got 0, expected > 0",
        ),
        (
            {"clip": float("nan"), "noise_multiplier": 1.0},
            ValueError,
            "dp.clip: got nan, expected a finite number",
        ),
        ({"clip": "1", "noise_multiplier": 1.0}, TypeError, "dp.clip: got '1'"),
    ],
)
def test_clip_and_noise_rejects_bad_parameters(kwargs, exc, message):
    with pytest.raises(exc, match=message):
        clip_and_noise_(torch.zeros(3), generator=_gen(), **kwargs)


def test_clip_and_noise_rejects_non_finite_gradient_and_missing_generator():
    with pytest.raises(ValueError, match="grad: got a gradient of norm nan"):
        clip_and_noise_(
            torch.tensor([float("nan"), 1.0]),
            clip=1.0,
            noise_multiplier=1.0,
            generator=_gen(),
        )
    with pytest.raises(TypeError, match="expected a torch.Generator"):
        clip_and_noise_(torch.zeros(2), clip=1.0, noise_multiplier=1.0, generator=None)


def test_wor_batches_are_a_uniform_subset_each_step():
    # the sampler training uses under DP (batch_indices, "wor"), which the accountant describes
    # Prepare
    n_rows, batch, trials = 10, 4, 20000
    counts = torch.zeros(n_rows)
    pair01 = 0
    overlaps = 0
    prev = None
    # Execute
    for step in range(trials):
        idx = batch_indices(11, step, n_rows, batch, "wor")
        assert idx.dtype == torch.long and idx.shape == (batch,)
        assert len(set(idx.tolist())) == batch and 0 <= idx.min() and idx.max() < n_rows
        counts[idx] += 1
        members = set(idx.tolist())
        pair01 += {0, 1} <= members
        if prev is not None:
            overlaps += bool(members & prev)
        prev = members
    # Assert: each row is included with probability B/N (chi-square on counts).
    expected = trials * batch / n_rows
    chi2 = (((counts - expected) ** 2) / expected).sum().item()
    # Counts of a fixed-size design sum to trials*B: n-1 degrees of freedom, and
    # the without-replacement design has smaller variance, so this is conservative.
    assert chi2 < stats.chi2.ppf(1 - ALPHA, n_rows - 1)
    # Pairwise inclusion B(B-1)/(N(N-1)) = 2/15, as for a uniform random subset.
    p = batch * (batch - 1) / (n_rows * (n_rows - 1))
    z = stats.norm.ppf(1 - ALPHA / 2)
    assert abs(pair01 / trials - p) < z * math.sqrt(p * (1 - p) / trials)
    # Steps are independent draws (not an epoch-wise partition): batches overlap.
    assert overlaps > 0


def test_wor_batches_validate():
    with pytest.raises(ValueError, match="batch size: got 11, expected 1 <= B <= the 10 rows"):
        batch_indices(0, 0, 10, 11, "wor")


def test_check_delta():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_delta(1e-5, 60000) == 1e-5
    with pytest.warns(UserWarning, match=r"dp.delta: got 0.001, which is >= 1/N"):
        check_delta(1e-3, 1000)
    for bad in (0.0, 1.0, -0.1, 2.0):
        with pytest.raises(
            ValueError, match=f"dp.delta: got {bad}, expected 0 < delta < 1"
        ):
            check_delta(bad, 1000)


# ---------------------------------------------------------------------------
# Strict mode: per-sample gradients with a gradient-penalty (double backward) loss

LAMBDA_GP = 10.0


def _critic(dtype):
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(5, 8),
        torch.nn.Tanh(),
        torch.nn.Linear(8, 6),
        torch.nn.LeakyReLU(0.2),
        torch.nn.Linear(6, 3),
    ).to(dtype)


def _batch(dtype, b=7):
    g = _gen(5)
    x_real = torch.randn(b, 5, generator=g, dtype=dtype)
    x_fake = torch.randn(b, 5, generator=g, dtype=dtype)
    a = torch.rand(b, 1, generator=g, dtype=dtype)
    x_hat = a * x_real + (1 - a) * x_fake
    upstream = torch.randn(b, 3, generator=g, dtype=dtype)  # server's dL/dh_i
    return x_real, x_fake, x_hat, upstream


def _vmap_loss(call, x_real, x_fake, x_hat, upstream):
    # A party's per-sample loss: <g_i, h(x_real_i)> - <g_i, h(x_fake_i)> + GP term.
    return (
        (upstream * call(x_real)).sum()
        - (upstream * call(x_fake)).sum()
        + LAMBDA_GP * gradient_penalty(call, x_hat, weight=upstream)
    )


def _loop_reference(module, x_real, x_fake, x_hat, upstream):
    params = [p for _, p in module.named_parameters()]
    out = []
    for i in range(x_real.shape[0]):
        xh = x_hat[i].clone().requires_grad_(True)
        (gx,) = torch.autograd.grad(
            (upstream[i] * module(xh)).sum(), xh, create_graph=True
        )
        gp = (torch.sqrt((gx * gx).sum() + 1e-12) - 1.0) ** 2
        loss = (
            (upstream[i] * module(x_real[i])).sum()
            - (upstream[i] * module(x_fake[i])).sum()
            + LAMBDA_GP * gp
        )
        out.append(torch.autograd.grad(loss, params))
    names = [n for n, _ in module.named_parameters()]
    return {n: torch.stack([o[j] for o in out]) for j, n in enumerate(names)}


@pytest.mark.parametrize(
    ("dtype", "tol"), [(torch.float64, 1e-10), (torch.float32, 1e-5)]
)
def test_per_sample_grads_with_gradient_penalty_equal_a_loop(dtype, tol):
    # Prepare
    module = _critic(dtype)
    batch = _batch(dtype)
    # Execute
    got = per_sample_grads(module, _vmap_loss, *batch)
    ref = _loop_reference(module, *batch)
    # Assert
    assert got.keys() == ref.keys()
    for name in ref:
        assert got[name].shape == (7, *dict(module.named_parameters())[name].shape)
        torch.testing.assert_close(got[name], ref[name], rtol=tol, atol=tol)
    # The GP really contributes second-order terms (non-zero difference).
    no_gp = per_sample_grads(
        module,
        lambda call, xr, xf, xh, up: (up * call(xr)).sum() - (up * call(xf)).sum(),
        *batch,
    )
    assert not torch.allclose(no_gp["0.weight"], got["0.weight"])


def test_per_sample_grads_param_subset_and_validation():
    module = _critic(torch.float64)
    batch = _batch(torch.float64)
    got = per_sample_grads(module, _vmap_loss, *batch, param_names=["0.weight"])
    assert list(got) == ["0.weight"]
    full = per_sample_grads(module, _vmap_loss, *batch)
    torch.testing.assert_close(got["0.weight"], full["0.weight"])
    with pytest.raises(ValueError, match="param_names: got unknown names"):
        per_sample_grads(module, _vmap_loss, *batch, param_names=["nope"])
    with pytest.raises(ValueError, match=r"per_sample_inputs\[1\]: got shape \(3, 5\)"):
        per_sample_grads(module, _vmap_loss, batch[0], batch[1][:3], *batch[2:])


def test_clip_per_sample_and_noise_equals_loop_and_is_reproducible():
    # Prepare
    module = _critic(torch.float64)
    batch = _batch(torch.float64)
    per = per_sample_grads(module, _vmap_loss, *batch)
    b = 7
    norms = per_sample_norms(per)
    clip = float(norms.median())  # some samples clipped, some not
    assert (norms > clip).any() and (norms < clip).any()
    # Reference: loop over samples, flat clip over all parameters jointly.
    ref = {k: torch.zeros_like(v[0]) for k, v in per.items()}
    for i in range(b):
        flat = torch.cat([v[i].flatten() for v in per.values()])
        f = min(1.0, clip / (flat.norm().item() + 1e-10))
        for k, v in per.items():
            ref[k] += f * v[i]
    # Execute (no noise)
    got = clip_per_sample_and_noise(
        per, clip=clip, noise_multiplier=0.0, generator=_gen(), batch_size=b
    )
    # Assert
    for k in per:
        torch.testing.assert_close(got[k], ref[k] / b, rtol=1e-12, atol=1e-12)
    # With noise: out - clipped mean == N(0, (2 C sigma)^2) / B drawn in key order.
    sigma = 1.3
    noisy = clip_per_sample_and_noise(
        per, clip=clip, noise_multiplier=sigma, generator=_gen(9), batch_size=b
    )
    g = _gen(9)
    for k in per:
        expected = torch.randn(ref[k].shape, generator=g, dtype=torch.float64)
        torch.testing.assert_close(
            (noisy[k] - ref[k] / b) * b, 2 * clip * sigma * expected
        )


def test_clipped_sum_has_replace_one_sensitivity_2c():
    # Replacing one sample changes the clipped sum by at most 2C (the documented
    # sensitivity), and by about 2C for opposite large gradients.
    clip = 0.1
    base = {"w": torch.randn(6, 4, 3, generator=_gen(1), dtype=torch.float64)}
    other = {"w": base["w"].clone()}
    other["w"][2] = -base["w"][2] * 1000
    base["w"][2] = base["w"][2] * 1000
    kw = {"clip": clip, "noise_multiplier": 0.0, "generator": _gen(), "batch_size": 6}
    s1 = clip_per_sample_and_noise(base, **kw)["w"] * 6
    s2 = clip_per_sample_and_noise(other, **kw)["w"] * 6
    assert (s1 - s2).norm().item() == pytest.approx(2 * clip, rel=1e-9)


def test_strict_aggregate_equals_batch_gradient_when_nothing_is_clipped():
    # With a huge clip and no noise, DP-SGD's output is the ordinary mean gradient.
    module = _critic(torch.float64)
    batch = _batch(torch.float64)
    per = per_sample_grads(module, _vmap_loss, *batch)
    agg = clip_per_sample_and_noise(
        per, clip=1e9, noise_multiplier=0.0, generator=_gen(), batch_size=7
    )
    ref = _loop_reference(module, *batch)
    for k in ref:
        torch.testing.assert_close(agg[k], ref[k].mean(0), rtol=1e-10, atol=1e-10)


def test_clip_per_sample_and_noise_checks_batch_size():
    per = {"w": torch.zeros(5, 2)}
    with pytest.raises(
        ValueError,
        match=r"per_sample\['w'\]: got shape \(5, 2\), expected batch_size=4",
    ):
        clip_per_sample_and_noise(
            per, clip=1.0, noise_multiplier=1.0, generator=_gen(), batch_size=4
        )
