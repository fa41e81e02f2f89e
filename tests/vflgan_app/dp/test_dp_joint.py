"""Strict per-sample DP with the joint objective (vflgan_app.dp.processors).

The per-row gradients are checked against one-row batches of the joint critic loss
written here with one autograd graph (independently of the federated code), and the
whole mechanism without clipping or noise against the exact joint rule.
"""

import copy
import math
import warnings

import pytest
import torch

from tests.vflgan_app.conftest import TINY
from tests.vflgan_app.dp.test_dp import DOMAIN, params, parties_data
from vflgan_app import api
from vflgan_app.config import DPConfig, VFLGANConfig
from vflgan_app.core.joint import JointCriticGradients, JointServerCritic
from vflgan_app.core.sampling import batch_indices
from vflgan_app.dp import processors
from vflgan_app.dp.processors import StrictJointPartyDP, StrictJointServerDP
from vflgan_app.errors import ProtocolError, ReplyError


@pytest.fixture
def float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def strict_joint(steps=4, n_critic=5, noise_seed=7, joint_exchange="penalty", **dp):
    dp.setdefault("noise_multiplier", 1.0)
    dp.setdefault("target_epsilon", 1e6)  # budgets are tested apart
    cfg = VFLGANConfig(dataset="custom", steps=steps, progress=False, seed=3,
                       objective="joint", n_critic=n_critic, joint_exchange=joint_exchange,
                       dp=DPConfig(mode="strict", noise_seed=noise_seed,
                                   public_domain=DOMAIN, **dp))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the noise-seed warning
        return api.build_federation(parties_data(), cfg, arch=TINY)


def one_graph_joint_loss(rows, D_C, D_p, D_S, lambda_p, lambda_gp):
    """The joint critic loss of a batch, one autograd graph (as ReferenceVFLGAN's)."""
    x_real, x_fake = [r[0] for r in rows], [r[1] for r in rows]
    x_hat = [r[2].clone().requires_grad_(True) for r in rows]
    h_real = [c(x) for c, x in zip(D_C, x_real)]
    h_fake = [c(x) for c, x in zip(D_C, x_fake)]
    h_hat = [c(x) for c, x in zip(D_C, x_hat)]
    loss = D_S(torch.cat(h_fake, 1)).mean() - D_S(torch.cat(h_real, 1)).mean()
    for p, hr, hf in zip(D_p, h_real, h_fake):
        loss = loss + lambda_p * (p(hf).mean() - p(hr).mean())
    g = torch.autograd.grad(D_S(torch.cat(h_hat, 1)).sum(), x_hat, create_graph=True)
    loss = loss + lambda_gp * ((torch.cat(g, 1).norm(dim=1) - 1) ** 2).mean()
    for p, hh, xh in zip(D_p, h_hat, x_hat):
        (gp,) = torch.autograd.grad(p(hh).sum(), xh, create_graph=True)
        loss = loss + lambda_gp * ((gp.norm(dim=1) - 1) ** 2).mean()
    return loss


def test_per_row_gradients_equal_one_row_batches_of_the_joint_loss(float64, monkeypatch):
    # Prepare: spy on the per-sample gradients of the first critic step
    model = strict_joint(steps=1)
    parties, coord = model.parties, model.coordinator
    assert all(isinstance(p.critic_rule, StrictJointPartyDP) for p in parties)
    assert isinstance(coord.critic_rule, StrictJointServerDP)
    D_C = [copy.deepcopy(p.D_C) for p in parties]
    D_p = [copy.deepcopy(p.D_p) for p in parties]
    D_S = copy.deepcopy(coord.D_S)
    seen = []
    real = processors.per_sample_grads

    def spy(module, loss_fn, *inputs, **kw):
        out = real(module, loss_fn, *inputs, **kw)
        seen.append((module, [t.detach().clone() for t in inputs], out))
        return out

    monkeypatch.setattr(processors, "per_sample_grads", spy)
    # Execute
    model.fit()
    # Assert: one per-sample call per party and one for D_S
    by_party = {k: next(s for s in seen if getattr(s[0], "C", None) is p.D_C)
                for k, p in enumerate(parties)}
    server = next(s for s in seen if s[0] is coord.D_S)
    assert len(seen) == len(parties) + 1
    rows = [by_party[k][1][:3] for k in range(len(parties))]
    B = rows[0][0].shape[0]
    s = parties[0].settings
    for i in range(B):
        loss = one_graph_joint_loss([[x[i:i + 1] for x in r] for r in rows], D_C, D_p, D_S,
                                    s.lambda_p, coord.lambda_gp)
        for k in range(len(parties)):
            named = {**{f"C.{n}": t for n, t in D_C[k].named_parameters()},
                     **{f"p.{n}": t for n, t in D_p[k].named_parameters()}}
            ref = torch.autograd.grad(loss, list(named.values()), retain_graph=True)
            for n, g in zip(named, ref, strict=True):
                torch.testing.assert_close(by_party[k][2][n][i], g, rtol=1e-6, atol=1e-9,
                                           msg=lambda m, k=k, i=i, n=n: f"party {k} row {i} {n}: {m}")
        named = dict(D_S.named_parameters())
        for n, g in zip(named, torch.autograd.grad(loss, list(named.values())), strict=True):
            torch.testing.assert_close(server[2][n][i], g, rtol=1e-6, atol=1e-9,
                                       msg=lambda m, i=i, n=n: f"D_S row {i} {n}: {m}")


def test_without_clipping_or_noise_strict_equals_the_exact_joint_rule(float64, monkeypatch):
    # Prepare: two identical strict runs; one keeps its rules with clipping and noise
    # replaced by the plain mean, the other gets the exact joint rules swapped in
    def mean_only(per, plan, generator):
        B = next(iter(per.values())).shape[0]
        return {k: v.mean(0) for k, v in per.items()}, torch.zeros(B)

    monkeypatch.setattr(processors, "clip_and_noise_block", mean_only)
    dp_run, exact = strict_joint(steps=6), strict_joint(steps=6)
    for p in exact.parties:
        p.critic_rule = JointCriticGradients()
    exact.coordinator.critic_rule = JointServerCritic()
    # Execute
    dp_run.fit(), exact.fit()
    # Assert: same losses and every parameter (critics and generators)
    assert dp_run.coordinator.history.d_loss == pytest.approx(
        exact.coordinator.history.d_loss, rel=1e-9)
    a, b = params(dp_run), params(exact)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-6, atol=1e-9, msg=k)


def test_strict_joint_trains_noises_and_accounts_three_blocks():
    # Prepare
    model = strict_joint(steps=10, noise_multiplier=None, target_epsilon=20.0)
    before = params(model)
    # Execute
    model.fit()
    again = strict_joint(steps=10, noise_multiplier=None, target_epsilon=20.0).fit()
    other = strict_joint(steps=10, noise_multiplier=None, target_epsilon=20.0,
                         noise_seed=8).fit()
    # Assert: every critic moved, three blocks accounted, the test seed fixes the noise
    after = params(model)
    changed = {".".join(k.split(".")[:2]) for k in before if not torch.equal(before[k], after[k])}
    assert {"0.D_C", "0.D_p", "1.D_C", "1.D_p", "S.net", "0.G", "1.G"} <= changed
    meta = model.dp_metadata()
    assert meta["mode"] == "strict" and meta["noised_blocks"] == 3
    assert meta["steps"] == 10 and 0 < meta["epsilon"] <= 20.0
    assert meta["sigma_accounted"] == pytest.approx(meta["sigma"] / math.sqrt(3))
    assert all(p.critic_rule.last_norms is not None for p in model.parties)
    assert model.coordinator.critic_rule.last_norms is not None
    assert model.coordinator.history.d_loss == again.coordinator.history.d_loss
    assert model.coordinator.history.d_loss != other.coordinator.history.d_loss


def test_chunked_k1_strict_joint_makes_the_exact_mode_update(float64):
    # the first critic step alone (n_critic large), with the same noise seed: the Gram
    # path and u with the gradients give the exact mode's clipped, noised update
    exact, chunked = strict_joint(n_critic=1000), strict_joint(n_critic=1000)
    exact.coordinator.train_step()
    chunked.coordinator.train_chunk(1)
    exact.coordinator.flush(), chunked.coordinator.flush()
    a, b = params(exact), params(chunked)
    for k in a:
        if ".G." not in k:
            torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-10, msg=k)


def test_a_strict_joint_party_refuses_gradients_without_penalty_or_w():
    model = strict_joint(steps=1)
    party = model.parties[0]
    idx = batch_indices(3, 0, 64, TINY.batch_size, "wor")
    B, d = TINY.batch_size, TINY.if_dim
    grads = {k: torch.zeros(B, d) for k in ("h_real", "h_fake", "h_hat")}
    party.critic_forward(0, idx)
    with pytest.raises(ProtocolError, match="before its critic_penalty"):
        party.critic_backward(0, {**grads, "w": torch.zeros(B)})
    party.critic_forward(0, idx)
    party.critic_penalty(0, torch.ones(B, d))
    with pytest.raises(ReplyError, match=r"w of step 0 has shape \(\) and dtype .*; expected 8 finite"):
        party.critic_backward(0, grads)
    with pytest.raises(ReplyError, match=r"w of step 0 has shape \(3,\)"):
        party.critic_backward(0, {**grads, "w": torch.zeros(3)})
    with pytest.raises(ReplyError, match="finite floats"):
        party.critic_backward(0, {**grads, "w": torch.full((B,), float("nan"))})


def test_gram_exchange_gives_the_same_noised_run_in_fewer_round_trips(float64):
    penalty, gram = strict_joint(steps=6), strict_joint(steps=6, joint_exchange="gram")
    penalty.fit(), gram.fit()
    assert gram.coordinator.history.d_loss == pytest.approx(
        penalty.coordinator.history.d_loss, rel=1e-9)
    a, b = params(penalty), params(gram)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-8, atol=1e-10, msg=k)
    # 6 critic steps: the penalty exchange costs one round trip more per step
    assert penalty.coordinator.transport.round_trips - gram.coordinator.transport.round_trips == 6


def test_config_checks_the_joint_exchange_and_every_entry_point_reaches_it():
    import argparse

    from vflgan_app.__main__ import _add_config_args, _config_from_args

    with pytest.raises(ValueError, match="joint-exchange: got 'fast', expected one of "
                                         r"\['penalty', 'gram'\]"):
        VFLGANConfig(objective="joint", joint_exchange="fast")
    with pytest.raises(ValueError, match="joint-exchange: got 'gram', expected 'penalty' "
                                         "with objective='paper'"):
        VFLGANConfig(joint_exchange="gram")
    rc = VFLGANConfig.from_run_config({"objective": "joint", "joint-exchange": "gram"})
    assert rc.joint_exchange == "gram"
    parser = argparse.ArgumentParser()
    _add_config_args(parser)
    ns = parser.parse_args(["--objective", "joint", "--joint-exchange", "gram"])
    assert _config_from_args(ns).joint_exchange == "gram"
