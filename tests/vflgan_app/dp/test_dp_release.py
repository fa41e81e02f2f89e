"""What a DP run releases (issue 12 items 7 and 8): a run that cannot pay for one step
is refused, not published; a DP report carries no un-noised loss history."""

import pytest

from vflgan_app.__main__ import main
from vflgan_app.config import VFLGANConfig
from vflgan_app.run import prepare_dataset, train_model

TOO_SMALL = {"mode": "paper", "noise_multiplier": 0.3, "target_epsilon": 0.01,
             "noise_seed": 0}


def test_the_cli_refuses_a_budget_that_fits_no_step(tmp_path, capsys):
    rc = main(["train", "--output-dir", str(tmp_path / "runs"), "--steps", "5", "--no-eval",
               "--max-rows", "200", "--dp-mode", "paper", "--dp-noise-multiplier", "0.3",
               "--dp-target-epsilon", "0.01", "--dp-noise-seed", "0"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "not one step fits the budget" in err and "dp.target-epsilon=0.01" in err
    assert not (tmp_path / "runs").exists()  # nothing written


def test_train_model_refuses_rather_than_return_an_untrained_model():
    cfg = VFLGANConfig(steps=5, max_rows=200, threads=1, progress=False, dp=TOO_SMALL)
    _, parties = prepare_dataset(cfg)
    with pytest.raises(ValueError, match="not one step fits the budget"):
        train_model(cfg, "vflgan", parties)


def test_a_budget_that_runs_out_later_still_publishes_what_it_paid_for():
    # the honest case is unchanged: stopped early after >= 1 step, with the reason
    cfg = VFLGANConfig(steps=60, max_rows=200, threads=1, progress=False,
                       dp={"mode": "paper", "noise_multiplier": 4.0, "target_epsilon": 2.0,
                           "noise_seed": 0})
    _, parties = prepare_dataset(cfg)
    model = train_model(cfg, "vflgan", parties)
    assert 0 < model.coordinator.step < 60
    assert "privacy budget exhausted" in model.stopped_early


@pytest.mark.parametrize("mode", ["none", "paper"])
def test_a_dp_report_publishes_no_loss_history(tmp_path, mode):
    import json

    from vflgan_app.run import run_experiment

    dp = {"mode": mode} | ({"noise_multiplier": 2.0, "target_epsilon": 50.0, "noise_seed": 0}
                           if mode != "none" else {})
    cfg = VFLGANConfig(steps=3, max_rows=200, threads=1, progress=False, dp=dp)
    run_experiment(cfg, "vflgan", tmp_path, evaluate=False)
    text = (tmp_path / "report.json").read_text()
    report = json.loads(text)
    if mode == "none":
        assert len(report["history"]["d_loss"]) == 3
    else:
        assert "history" not in report and "d_loss" not in text and "g_loss" not in text
        assert "omitted under DP" in report["history_omitted"]


def test_a_fixed_noise_seed_is_refused_outside_a_test_suite(monkeypatch):
    from vflgan_app.config import DPConfig
    from vflgan_app.dp.plan import ALLOW_FIXED_NOISE_SEED, resolve_plan

    dp = DPConfig(mode="paper", noise_multiplier=1.0, noise_seed=3, public_domain="{}")
    monkeypatch.delenv(ALLOW_FIXED_NOISE_SEED, raising=False)
    with pytest.raises(ValueError, match="dp.noise-seed: got 3; expected none"):
        resolve_plan(dp, n_rows=200, batch_size=8, steps=2, num_parties=2)
    assert resolve_plan(dp.__class__(mode="paper", noise_multiplier=1.0, public_domain="{}"),
                        n_rows=200, batch_size=8, steps=2, num_parties=2) is not None
    monkeypatch.setenv(ALLOW_FIXED_NOISE_SEED, "1")
    with pytest.warns(UserWarning, match="dp.noise-seed"):
        resolve_plan(dp, n_rows=200, batch_size=8, steps=2, num_parties=2)
