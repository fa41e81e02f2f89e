"""DP integrated into VFLGAN: config, paper mode, strict mode, accounting, outputs."""

import json
import math
import warnings

import pytest
import torch
from scipy import stats

from tests.vflgan_app.conftest import TINY, TINY_DOMAIN, make_table
from vflgan_app import api
from vflgan_app.config import DPConfig, VFLGANConfig
from vflgan_app.core.losses import (
    bottom_critic_penalty,
    head_penalty,
    wasserstein_critic_loss,
)
from vflgan_app.core.party import Party, PartySettings
from vflgan_app.data.partition import prepare_parties, split_vertical
from vflgan_app.dp.mechanisms import clip_per_sample_and_noise
from vflgan_app.dp.plan import resolve_plan
from vflgan_app.dp.processors import StrictPartyDP, first_linear
from vflgan_app.errors import PrivacyBudgetExceeded

ALPHA = 1e-6  # tail probability of the statistical bounds (fixed seeds: deterministic)
SPLIT = [["a", "color", "count"], ["b", "c", "kind"]]
#: The tiny table's domain, declared public (64 rows are too few for a DP release).
DOMAIN = TINY_DOMAIN


def parties_data(n=64):
    return prepare_parties(
        split_vertical(make_table(n), SPLIT, "record_id"),
        "record_id",
        categorical=["color", "kind"],
    )


def federation(mode="paper", steps=20, noise_seed=7, objective="paper", **dp):
    dp.setdefault("noise_multiplier", 1.0)  # calibration (seconds) is tested apart
    dp.setdefault("public_domain", DOMAIN)
    cfg = VFLGANConfig(
        dataset="custom",
        steps=steps,
        progress=False,
        seed=3,
        objective=objective,
        dp=DPConfig(mode=mode, noise_seed=noise_seed, **dp),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the noise-seed warning
        return api.build_federation(parties_data(), cfg, arch=TINY)


def params(model):
    out = {}
    for p in model.parties:
        for name, m in (("G", p.G), ("D_C", p.D_C), ("D_p", p.D_p)):
            for k, v in m.state_dict().items():
                out[f"{p.party_id}.{name}.{k}"] = v.clone()
    out.update(
        {f"S.{k}": v.clone() for k, v in model.coordinator.D_S.state_dict().items()}
    )
    return out


# ---------------------------------------------------------------------------------
# config


def test_dp_config_validation_names_field_value_and_expectation():
    with pytest.raises(ValueError, match=r"dp.mode: got 'loose', expected one of"):
        DPConfig(mode="loose")
    with pytest.raises(ValueError, match=r"dp.target-epsilon: got -1, expected > 0"):
        DPConfig(mode="paper", target_epsilon=-1)
    with pytest.raises(ValueError, match=r"dp.delta: got 1.5, expected 0 < delta < 1"):
        DPConfig(delta=1.5)
    with pytest.raises(ValueError, match=r"dp.noise-multiplier: got 0, expected > 0"):
        DPConfig(noise_multiplier=0)
    with pytest.raises(ValueError, match=r"dp.clip: got -0.1, expected > 0"):
        DPConfig(clip=-0.1)
    with pytest.raises(ValueError, match=r"unknown key 'dp.sigma'"):
        DPConfig.from_run_config({"dp.sigma": 1.0})


def test_run_config_and_cli_keys_reach_dp_config():
    # Prepare: a Flower-style flattened run config
    rc = {
        "steps": 50,
        "dp.mode": "strict",
        "dp.target-epsilon": 5.0,
        "dp.delta": "1e-6",
        "dp.noise-multiplier": "none",
        "dp.clip": 0.5,
        "flower.rounds": 3,
    }
    # Execute
    dp = DPConfig.from_run_config(rc)
    cfg = VFLGANConfig.from_run_config(rc)
    # Assert
    assert dp == DPConfig(mode="strict", target_epsilon=5.0, delta=1e-6, clip=0.5)
    assert cfg.dp == dp and cfg.steps == 50
    assert cfg.sampler == "wor"  # forced by DP
    assert cfg.resolve_architecture().bias is False
    assert VFLGANConfig.from_dict(cfg.to_dict()) == cfg  # config.json round trip
    import argparse

    from vflgan_app.__main__ import _add_config_args, _config_from_args

    parser = argparse.ArgumentParser()
    _add_config_args(parser)
    ns = parser.parse_args(
        [
            "--dp-mode",
            "paper",
            "--dp-target-epsilon",
            "5",
            "--dp-noise-seed",
            "3",
            "--steps",
            "10",
        ]
    )
    cli = _config_from_args(ns)
    assert cli.dp == DPConfig(mode="paper", target_epsilon=5.0, noise_seed=3)
    assert cli.sampler == "wor" and cli.steps == 10


def test_no_dp_keeps_defaults():
    cfg = VFLGANConfig()
    assert cfg.dp.mode == "none" and cfg.sampler == "shuffle"
    assert cfg.resolve_architecture().bias is True


@pytest.mark.slow  # calibration evaluates dp-accounting's WOR RDP ~20 times (10-30 s)
def test_resolve_plan_calibrates_strict_sigma_per_block():
    dp = DPConfig(mode="strict", target_epsilon=3.0, delta=1e-5)
    plan = resolve_plan(dp, n_rows=500, batch_size=10, steps=100, num_parties=2)
    assert plan.blocks == 3 and plan.clip == 1.0 and plan.calibrated
    assert plan.noise_multiplier == pytest.approx(
        plan.accounted_noise_multiplier * math.sqrt(3)
    )
    from vflgan_app.dp.analysis import epsilon_for

    eps = epsilon_for(
        noise_multiplier=plan.accounted_noise_multiplier,
        sample_size=10,
        population_size=500,
        steps=100,
        delta=1e-5,
    )
    assert 2.99 < eps <= 3.0


def test_resolve_plan_warns_and_fixes_clip():
    dp = DPConfig(mode="strict", noise_multiplier=2.0, delta=3e-3)
    with pytest.warns(UserWarning, match="dp.delta: got 0.003, which is >= 1/N"):
        plan = resolve_plan(dp, n_rows=500, batch_size=10, steps=100, num_parties=2)
    assert plan.blocks == 3 and plan.clip == 1.0 and not plan.calibrated
    assert plan.accounted_noise_multiplier == pytest.approx(2.0 / math.sqrt(3))
    paper = resolve_plan(
        DPConfig(mode="paper", noise_multiplier=0.8),
        n_rows=50_000,
        batch_size=64,
        steps=10,
        num_parties=2,
    )
    assert paper.clip == 1.5 / 64 and paper.noise_std == pytest.approx(
        2 * 1.5 / 64 * 0.8
    )
    assert paper.accounted_noise_multiplier == 0.8 and not paper.calibrated
    with pytest.warns(UserWarning, match="dp.noise-seed"):
        resolve_plan(
            DPConfig(mode="paper", noise_seed=1, noise_multiplier=0.8),
            n_rows=50_000,
            batch_size=64,
            steps=10,
            num_parties=2,
        )
    assert (
        resolve_plan(DPConfig(), n_rows=10, batch_size=2, steps=1, num_parties=2)
        is None
    )


# ---------------------------------------------------------------------------------
# paper mode


def test_paper_mode_biases_absent_and_sampler_wor():
    model = federation("paper")
    assert model.coordinator.sampler == "wor"
    for p in model.parties:
        for m in (p.G, p.D_C, p.D_p):
            for layer in m.modules():
                if isinstance(layer, torch.nn.Linear):
                    assert layer.bias is None
    for layer in model.coordinator.D_S.modules():
        if isinstance(layer, torch.nn.Linear):
            assert layer.bias is None


def test_paper_mode_noises_only_the_first_layer_weight_with_std_2_c_sigma():
    # Prepare: record every critic gradient before and after each party's privatization
    sigma = 0.9
    model = federation("paper", steps=40, noise_multiplier=sigma, target_epsilon=1e6)
    clip = model.dp.plan.clip
    residuals, clipped = [], 0
    for p in model.parties:
        hook = p.critic_rule.privatize

        def recording(party, step, hook=hook):
            nonlocal clipped
            before = {
                k: v.grad.clone()
                for k, v in [
                    *party.D_C.named_parameters(),
                    *party.D_p.named_parameters(),
                ]
            }
            hook(party, step)
            after = {
                k: v.grad
                for k, v in [
                    *party.D_C.named_parameters(),
                    *party.D_p.named_parameters(),
                ]
            }
            first = "net.0.weight"
            assert (
                first_linear(party.D_C).weight
                is dict(party.D_C.named_parameters())[first]
            )
            for k in before:
                if k != first:  # nothing else is touched
                    torch.testing.assert_close(after[k], before[k], rtol=0, atol=0)
            g = before[first]
            scale = min(1.0, clip / (g.norm().item() + 1e-10))
            clipped += scale < 1.0
            residuals.append((after[first] - g * scale).flatten().double())

        p.critic_rule.privatize = recording
    # Execute
    model.fit()
    # Assert: the residual is the noise: zero mean, std 2 C sigma (chi2 bound)
    noise = torch.cat(residuals)
    n, std = noise.numel(), 2 * clip * sigma
    assert len(residuals) == 2 * 40 and clipped > 0
    z = stats.norm.ppf(1 - ALPHA / 2)
    assert abs(noise.mean().item()) < z * std / math.sqrt(n)
    s2 = noise.var().item()
    lo, hi = stats.chi2.ppf([ALPHA / 2, 1 - ALPHA / 2], n - 1)
    assert lo * std**2 / (n - 1) < s2 < hi * std**2 / (n - 1)


def test_paper_mode_reproducible_with_noise_seed_and_secret_by_default():
    a = federation("paper", noise_seed=11).fit()
    b = federation("paper", noise_seed=11).fit()
    c = federation("paper", noise_seed=12).fit()
    d = federation("paper", noise_seed=None).fit()
    e = federation("paper", noise_seed=None).fit()
    pa, pb, pc, pd, pe = map(params, (a, b, c, d, e))
    assert all(torch.equal(pa[k], pb[k]) for k in pa)
    assert any(not torch.equal(pa[k], pc[k]) for k in pa)
    # same run seed, default seeding: the noise differs (not derivable from the run seed)
    assert any(not torch.equal(pd[k], pe[k]) for k in pd)


def test_budget_stop_before_exceeding_with_step_count_in_message():
    # Prepare: a fixed sigma that cannot last 200 steps within epsilon 5 (q = 8/64)
    model = federation("paper", steps=200, noise_multiplier=1.0, target_epsilon=5.0)
    # Execute
    with pytest.raises(
        PrivacyBudgetExceeded, match=r"after (\d+) noised steps"
    ) as info:
        model.fit()
    # Assert
    taken = model.dp.accountant.steps
    assert 0 < taken < 200
    assert f"after {taken} noised steps" in str(info.value)
    assert model.coordinator.step == taken
    assert model.dp.accountant.get_epsilon(1e-5) <= 5.0 < info.value.next_epsilon
    model.sample_parts(4)  # still usable


# ---------------------------------------------------------------------------------
# strict mode


def _loop_party_grads(party, x_real, x_fake, x_hat, ups, B):
    """Per-row gradients with the base losses on batches of one row (the reference)."""
    s = party.settings
    block = StrictPartyDP.block(party)
    names = [n for n, _ in block.named_parameters()]
    plist = [p for _, p in block.named_parameters()]
    out = {n: [] for n in names}
    for i in range(B):
        xr, xf = x_real[i : i + 1], x_fake[i : i + 1]
        xh = x_hat[i : i + 1].clone().requires_grad_(True)
        hr, hf, hh = party.D_C(xr), party.D_C(xf), party.D_C(xh)
        local = s.lambda_p * wasserstein_critic_loss(party.D_p(hr), party.D_p(hf))
        local = local + s.lambda_gp * (
            bottom_critic_penalty(hh, xh) + head_penalty(party.D_p(hh), hh)
        )
        up = sum((g[i : i + 1] * h).sum() for g, h in zip(ups, (hr, hf, hh)))
        grads = torch.autograd.grad(local + B * up, plist)
        for n, g in zip(names, grads):
            out[n].append(g)
    return {n: torch.stack(v) for n, v in out.items()}


def test_strict_party_per_sample_grads_equal_loop_and_batch_gradient():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        # Prepare: a strict party and a plain party with identical weights and rows
        data = parties_data()[0]
        settings = PartySettings(seed=5, lambda_gp=TINY.lambda_gp, lambda_p=0.7)
        arch = TINY
        plan = resolve_plan(
            DPConfig(mode="strict", noise_multiplier=1.0),
            n_rows=64,
            batch_size=8,
            steps=10,
            num_parties=2,
        )
        strict = Party(data, arch, settings, critic_rule=StrictPartyDP(plan, data.party_id))
        plain = Party(data, arch, settings)
        idx = torch.tensor([3, 17, 0, 42, 9, 33, 61, 5])
        B = len(idx)
        f_strict = strict.critic_forward(0, idx)
        f_plain = plain.critic_forward(0, idx)
        for k in ("h_real", "h_fake", "h_hat"):
            torch.testing.assert_close(f_strict[k], f_plain[k])
        assert f_strict["loss"] == pytest.approx(f_plain["loss"], rel=1e-9)
        gen = torch.Generator().manual_seed(0)
        ups = {
            k: torch.randn(B, arch.if_dim, generator=gen) / B
            for k in ("h_real", "h_fake", "h_hat")
        }
        # Execute
        per = strict.critic_rule.per_sample_grads(strict, strict._critic[1], list(ups.values()))
        x_real, x_fake, x_hat = strict.critic_inputs(0, idx)
        loop = _loop_party_grads(strict, x_real, x_fake, x_hat, list(ups.values()), B)
        _, (local, feats) = plain._critic
        torch.autograd.backward(
            [local, *feats], [torch.ones_like(local), *ups.values()]
        )
        # Assert: per-sample == loop over single rows (GP included) ...
        for k in per:
            torch.testing.assert_close(per[k], loop[k], rtol=1e-9, atol=1e-11)
        # ... and their mean is the real VFLGAN batch gradient of the plain party
        batch = {f"C.{k}": p.grad for k, p in plain.D_C.named_parameters()}
        batch.update({f"p.{k}": p.grad for k, p in plain.D_p.named_parameters()})
        for k in per:
            torch.testing.assert_close(per[k].mean(0), batch[k], rtol=1e-9, atol=1e-11)
        # ... and the DP aggregate clips each row as the loop does
        clip = 0.3
        agg = clip_per_sample_and_noise(
            per,
            clip=clip,
            noise_multiplier=0.0,
            generator=torch.Generator(),
            batch_size=B,
        )
        norms = torch.stack(
            [sum(loop[k][i].pow(2).sum() for k in loop).sqrt() for i in range(B)]
        )
        assert (norms > clip).any()
        for k in per:
            ref = (
                sum(
                    loop[k][i] * min(1.0, clip / (norms[i].item() + 1e-10))
                    for i in range(B)
                )
                / B
            )
            torch.testing.assert_close(agg[k], ref, rtol=1e-9, atol=1e-12)
    finally:
        torch.set_default_dtype(old)


def test_strict_server_per_sample_grads_equal_loop_and_batch_gradient():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        # Prepare
        model = federation("strict", noise_multiplier=1.0)
        coord = model.coordinator
        from vflgan_app.dp.mechanisms import per_sample_grads
        from vflgan_app.dp.processors import server_sample_loss

        gen = torch.Generator().manual_seed(1)
        B, d = 8, 2 * TINY.if_dim
        h = [torch.randn(B, d, generator=gen) for _ in range(3)]
        # Execute
        per = per_sample_grads(coord.D_S, server_sample_loss(coord.lambda_gp), *h)
        names = [n for n, _ in coord.D_S.named_parameters()]
        plist = list(coord.D_S.parameters())
        loop = {n: [] for n in names}
        for i in range(B):
            hh = h[2][i : i + 1].clone().requires_grad_(True)
            loss = wasserstein_critic_loss(
                coord.D_S(h[0][i : i + 1]), coord.D_S(h[1][i : i + 1])
            )
            loss = loss + coord.lambda_gp * head_penalty(coord.D_S(hh), hh)
            for n, g in zip(names, torch.autograd.grad(loss, plist)):
                loop[n].append(g)
        hh = h[2].clone().requires_grad_(True)
        batch_loss = wasserstein_critic_loss(
            coord.D_S(h[0]), coord.D_S(h[1])
        ) + coord.lambda_gp * head_penalty(coord.D_S(hh), hh)
        batch = dict(zip(names, torch.autograd.grad(batch_loss, plist)))
        # Assert
        for n in names:
            torch.testing.assert_close(
                per[n], torch.stack(loop[n]), rtol=1e-9, atol=1e-11
            )
            torch.testing.assert_close(per[n].mean(0), batch[n], rtol=1e-9, atol=1e-11)
    finally:
        torch.set_default_dtype(old)


def test_strict_run_trains_changes_every_critic_and_accounts_three_blocks():
    # Prepare
    model = federation("strict", steps=12, target_epsilon=20.0)
    before = params(model)
    # Execute
    model.fit()
    after = params(model)
    # Assert
    changed = {
        k.split(".")[0] + "." + k.split(".")[1]
        for k in before
        if not torch.equal(before[k], after[k])
    }
    assert {"0.D_C", "0.D_p", "1.D_C", "1.D_p", "S.net", "0.G", "1.G"} <= changed
    assert all(math.isfinite(x) for x in model.coordinator.history.d_loss)
    meta = model.dp_metadata()
    assert meta["mode"] == "strict" and meta["noised_blocks"] == 3
    assert meta["steps"] == 12 and 0 < meta["epsilon"] <= 20.0
    assert meta["sigma_accounted"] == pytest.approx(meta["sigma"] / math.sqrt(3))
    assert all(p.critic_rule.last_norms is not None for p in model.parties)


# ---------------------------------------------------------------------------------
# checkpoints and outputs


@pytest.mark.parametrize("mode", ["paper", "strict"])
def test_resume_keeps_the_accountant_and_continues_exactly(tmp_path, mode):
    # Prepare: 6 steps, save, resume to 10; and an uninterrupted 10-step run
    first = federation(mode, steps=10, target_epsilon=50.0)
    first.fit(6)
    first.save(tmp_path / "ckpt")
    eps6 = first.dp.accountant.get_epsilon(1e-5)
    # Execute
    resumed = federation(mode, steps=10, target_epsilon=50.0).load(tmp_path / "ckpt")
    # Assert: the budget is restored, then continues
    assert resumed.dp.accountant.steps == 6
    assert resumed.dp.accountant.get_epsilon(1e-5) == pytest.approx(eps6, rel=1e-12)
    assert resumed.dp.accountant.state_dict() == first.dp.accountant.state_dict()
    resumed.fit()
    straight = federation(mode, steps=10, target_epsilon=50.0).fit()
    assert resumed.dp.accountant.steps == 10
    pr, ps = params(resumed), params(straight)
    for k in pr:
        torch.testing.assert_close(pr[k], ps[k], rtol=1e-5, atol=1e-6)
    saved = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert saved["dp"]["mode"] == mode and saved["dp_metadata"]["steps"] == 6


def test_resume_refuses_a_checkpoint_without_accountant_state(tmp_path):
    import dataclasses

    cfg = VFLGANConfig(dataset="custom", steps=3, progress=False, seed=3)
    arch = dataclasses.replace(TINY, bias=False)
    api.build_federation(parties_data(), cfg, arch=arch).fit().save(tmp_path / "plain")
    with pytest.raises(ValueError, match="no 'dp' state"):
        federation("paper").load(tmp_path / "plain")


def test_report_json_records_dp_metadata(tmp_path):
    from vflgan_app.run import run_experiment

    cfg = VFLGANConfig(
        dataset="digits",
        max_rows=300,
        steps=4,
        progress=False,
        dp=DPConfig(
            mode="paper", target_epsilon=10.0, delta=1e-4, noise_multiplier=1.0
        ),
    )
    report = run_experiment(cfg, "vflgan", tmp_path, evaluate=False)
    dp = report["dp"]
    for key in (
        "mode",
        "epsilon",
        "delta",
        "sigma",
        "q",
        "steps",
        "accountant",
        "sampler",
    ):
        assert key in dp, key
    assert dp["mode"] == "paper" and dp["steps"] == 4 and dp["delta"] == 1e-4
    assert dp["q"] == pytest.approx(64 / 300) and 0 < dp["epsilon"] <= 10.0
    assert "RdpAccountant" in dp["accountant"]
    assert (
        report["config"]["dp"]["mode"] == "paper"
        and report["config"]["sampler"] == "wor"
    )
    saved = json.loads((tmp_path / "model" / "config.json").read_text())
    assert saved["dp_metadata"]["epsilon"] == dp["epsilon"]


def test_report_stops_early_on_budget_and_says_so(tmp_path):
    from vflgan_app.run import run_experiment

    cfg = VFLGANConfig(
        dataset="digits",
        max_rows=300,
        steps=400,
        progress=False,
        # one step costs 0.42, ten 1.71: the budget stops the run after a few steps
        dp=DPConfig(mode="paper", target_epsilon=1.0, noise_multiplier=3.0, delta=1e-4),
    )
    report = run_experiment(cfg, "vflgan", tmp_path, evaluate=False)
    assert "privacy budget exhausted" in report["stopped_early"]
    assert 1 <= report["dp"]["steps"] < 400 and report["dp"]["epsilon"] <= 1.0


def test_baselines_refuse_dp():
    cfg = VFLGANConfig(
        dataset="custom", steps=2, progress=False, dp=DPConfig(mode="paper")
    )
    with pytest.raises(
        ValueError, match="dp.mode: got 'paper' for the 'vertigan' baseline"
    ):
        api.fit_baseline("vertigan", parties_data(), cfg)


def test_resumable_checkpoints_carry_the_accountant(tmp_path):
    from vflgan_app.core.loop import resume, save_checkpoint_now

    # Prepare: 5 strict steps, a resumable checkpoint (party-local folders)
    a = federation("strict", steps=8, target_epsilon=50.0)
    for p in a.parties:
        p.checkpoint_dir = str(tmp_path / f"party{p.party_id}")
    a.fit(5)
    save_checkpoint_now(a.coordinator, tmp_path / "server")
    # Execute
    b = federation("strict", steps=8, target_epsilon=50.0)
    for p in b.parties:
        p.checkpoint_dir = str(tmp_path / f"party{p.party_id}")
    resume(b.coordinator, tmp_path / "server")
    # Assert
    assert b.dp.accountant.state_dict() == a.dp.accountant.state_dict()
    assert b.dp.epsilon == pytest.approx(a.dp.epsilon)
    b.fit()
    assert b.dp.accountant.steps == 8


def test_chunked_mode_pays_each_step_once():
    # Prepare: budget for 3 steps at sigma 1, q = 8/64 (epsilon 3.5 after 3 steps)
    model = federation("paper", steps=12, target_epsilon=3.5)
    acc = model.dp.accountant
    # Execute: chunks of 2; the second chunk's second step does not fit
    with pytest.raises(PrivacyBudgetExceeded):
        model.coordinator.fit(12, steps_per_round=2)
    # Assert: the chunk was refused as a whole, but its first step is already paid ...
    assert model.coordinator.step == 2 and acc.steps == 3
    # ... and is not charged again when run step by step
    with pytest.raises(PrivacyBudgetExceeded, match="after 3 noised steps"):
        model.coordinator.fit(12)
    assert model.coordinator.step == 3 and acc.steps == 3


def test_paper_dp_with_the_joint_objective_noises_the_first_layer():
    # Prepare: paper-mode DP over the joint objective's exact rule
    from vflgan_app.core.joint import JointCriticGradients
    from vflgan_app.dp.processors import PaperPartyDP

    model = federation("paper", steps=6, objective="joint", target_epsilon=1e6)
    rules = [p.critic_rule for p in model.parties]
    assert all(isinstance(r, PaperPartyDP) and isinstance(r.base, JointCriticGradients)
               for r in rules)
    # Execute: the same run twice with the same test seed, once with another seed
    model.fit()
    again = federation("paper", steps=6, objective="joint", target_epsilon=1e6).fit()
    other = federation("paper", steps=6, objective="joint", target_epsilon=1e6,
                       noise_seed=8).fit()
    # Assert: every step accounted, noise applied (a norm per step), seeded noise
    assert model.dp.accountant.steps == 6 and all(r.last_norm is not None for r in rules)
    assert model.coordinator.history.d_loss == again.coordinator.history.d_loss
    assert model.coordinator.history.d_loss != other.coordinator.history.d_loss


def test_unknown_objective_is_refused():
    with pytest.raises(ValueError, match="objective: got 'loose', expected one of"):
        VFLGANConfig(objective="loose")
