"""Checkpoints know their run: run id + config fingerprint, checked before any restore.

A fresh run refuses a checkpoint folder that holds checkpoints (unless overwrite); a
resume refuses another run's folder, other settings (naming the field), a missing or
truncated file (naming it), all before the server restores anything; parties prune like
the server; a folder is written atomically, so a kill mid-write leaves nothing a resume
would pick. In-process and over Flower (``FakeGrid`` runs the real ClientApp code).
"""

import dataclasses
import json
import shutil
import warnings

import pytest
import torch

import vflgan_app.core.checkpoint as ckpt_mod
from tests.vflgan_app.flower.test_flower import (
    RUN_CONFIG,
    FakeGrid,
    in_process,
    node_configs,
    write_party_csvs,
)
from trainkit import CheckpointError
from vflgan_app.config import DPConfig, VFLGANConfig
from vflgan_app.core.checkpoint import (
    RESUME_MAY_CHANGE,
    RunIdentity,
    completed_steps,
    config_fingerprint,
    latest_step,
    party_steps,
    server_folder,
)
from vflgan_app.errors import ReplyError
from vflgan_app.flower.transport import FlowerTransport

STEPS, EVERY = 8, 4


def config(**overrides):
    return VFLGANConfig.from_run_config(RUN_CONFIG | {"steps": STEPS} | overrides)


def model_for(paths, cfg, party_dirs=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # DP: the noise-seed / delta warnings
        model = in_process(paths, cfg)
    for p in model.parties:
        if party_dirs is not None:
            p.checkpoint_dir = str(party_dirs / f"party{p.party_id}")
    return model


def run_id(root, step):
    return RunIdentity.read(server_folder(root, step)).run_id


def untouched(model):
    """The server restored nothing: step 0, no history, D_S as freshly built."""
    fresh = model_for(model.paths, model.config)
    return model.coordinator.step == 0 and not model.coordinator.history.d_loss and all(
        torch.equal(a, b) for a, b in zip(model.coordinator.D_S.state_dict().values(),
                                          fresh.coordinator.D_S.state_dict().values(),
                                          strict=True))


@pytest.fixture
def paths(tmp_path):
    return write_party_csvs(tmp_path)


def fresh(paths, cfg=None, **kw):
    model = model_for(paths, cfg or config(), **kw)
    model.paths = paths
    return model


# -- a fresh run ------------------------------------------------------------------------
def test_fresh_run_refuses_a_folder_with_checkpoints_unless_overwrite(tmp_path, paths):
    # Prepare: a run that leaves checkpoints 4 and 8
    ck = tmp_path / "ck"
    fresh(paths).fit(checkpoint_dir=ck, checkpoint_every=EVERY)
    first = run_id(ck, 8)
    # Execute / Assert: a new run in the same folder is refused, the old run intact
    with pytest.raises(FileExistsError, match=r"already holds 2 checkpoint folder\(s\) of a "
                       r"previous run \(newest complete: checkpoint-8\).*overwrite"):
        fresh(paths).fit(checkpoint_dir=ck, checkpoint_every=EVERY)
    assert completed_steps(ck) == [4, 8] and run_id(ck, 8) == first
    assert party_steps(ck, 1) == [4, 8]
    # ... with overwrite it starts over: the old checkpoints go, a new run id
    fresh(paths).fit(2, checkpoint_dir=ck, overwrite=True)
    assert completed_steps(ck) == [2] and party_steps(ck, 0) == party_steps(ck, 1) == [2]
    assert run_id(ck, 2) != first


def test_party_folder_with_checkpoints_is_refused_by_the_party(tmp_path, paths):
    # Prepare: a run whose parties keep their own folders
    fresh(paths, party_dirs=tmp_path).fit(checkpoint_dir=tmp_path / "s1")
    # Execute / Assert: a new run (new server folder) meets the party's old checkpoints
    with pytest.raises(FileExistsError, match=r"party 0: checkpoint folder .*party0 already "
                       r"holds checkpoint-8 of a previous run"):
        fresh(paths, party_dirs=tmp_path).fit(checkpoint_dir=tmp_path / "s2")
    assert party_steps(tmp_path / "party0", 0) == [8]
    assert not (tmp_path / "s2").exists() or completed_steps(tmp_path / "s2") == []


# -- resume: what may and may not change ------------------------------------------------
def test_resume_keeps_the_run_id_and_allows_the_listed_fields_to_change(tmp_path, paths):
    # Prepare: 8 steps with checkpoints; an uninterrupted 12-step run
    ck = tmp_path / "ck"
    fresh(paths).fit(checkpoint_dir=ck, checkpoint_every=EVERY)
    first = run_id(ck, 8)
    straight = fresh(paths, config(steps=12)).fit()
    # Execute: resume with every field of RESUME_MAY_CHANGE changed
    changed = config(steps=12, **{"n-samples": 7, "data-root": str(tmp_path),
                                  "output-dir": str(tmp_path / "elsewhere"), "threads": 1,
                                  "progress": True, "log-every": 3})
    assert {k for k in RESUME_MAY_CHANGE if getattr(changed, k) != getattr(config(), k)} == \
        set(RESUME_MAY_CHANGE) - {"device"}
    resumed = fresh(paths, changed).fit(checkpoint_dir=ck, checkpoint_every=EVERY,
                                        resume=True)
    # Assert: the same run continued, exactly
    assert run_id(ck, 12) == first and completed_steps(ck) == [8, 12]
    assert resumed.coordinator.history.d_loss == straight.coordinator.history.d_loss


def test_fingerprint_covers_every_config_field_but_the_listed_ones():
    cfg = config()
    fp = config_fingerprint(cfg)
    fields = set(cfg.to_dict()) - {"dp", "architecture"}
    assert fields - set(RESUME_MAY_CHANGE) <= set(fp)
    assert not set(RESUME_MAY_CHANGE) & set(fp)
    assert {f"dp.{k}" for k in cfg.dp.to_dict()} <= set(fp)
    assert fp["batch_size"] == 8 and fp["steps_per_round"] == 1  # presets resolved
    assert {"architecture.gen_hidden", "architecture.bias"} <= set(fp)


def dp_settings() -> dict:
    """A short paper-DP run: sigma given; where DP releases the schema with noise, the
    tables' domain declared public (40 rows are too few for its thresholds)."""
    out = {"dp.mode": "paper", "dp.noise-multiplier": 2.0, "dp.noise-seed": 1,
           "dp.delta": 1e-3}
    if "public_domain" in {f.name for f in dataclasses.fields(DPConfig)}:
        out["dp.public-domain"] = json.dumps({
            "a": {"low": -8, "high": 8}, "b": {"low": -8, "high": 8},
            "c": {"low": -8, "high": 8}, "count": {"low": 0, "high": 4, "integer": True},
            "color": {"categories": ["blue", "green", "red"]},
            "kind": {"categories": ["neg", "pos"]}})
    return out


DP = dp_settings()


@pytest.mark.parametrize(("saved", "now", "message"), [
    ({}, {"seed": 4}, r"seed=3, this run has seed=4"),
    ({}, {"batch-size": 16}, r"batch_size=8, this run has batch_size=16"),
    ({}, {"lr": 1e-3}, r"lr=0.0005, this run has lr=0.001"),
    ({}, {"n-critic": 2}, r"n_critic=3, this run has n_critic=2"),
    (DP, {}, r"dp.mode=paper.*, this run has .*dp.mode=none"),  # the accountant dropped
    ({}, DP, r"dp.mode=none.*, this run has .*dp.mode=paper"),
], ids=["seed", "batch_size", "lr", "n_critic", "dp-dropped", "dp-added"])
def test_resume_refuses_other_settings_naming_the_field(tmp_path, paths, saved, now,
                                                        message):
    # Prepare
    ck = tmp_path / "ck"
    fresh(paths, config(**saved)).fit(checkpoint_dir=ck, checkpoint_every=EVERY)
    # Execute
    other = fresh(paths, config(**now))
    with pytest.raises(ValueError, match=r"checkpoint-8 was written with .*" + message):
        other.fit(checkpoint_dir=ck, resume=True)
    # Assert: nothing restored, nothing deleted
    assert untouched(other) and completed_steps(ck) == [4, 8]


@pytest.mark.parametrize("other_seed", [3, 4], ids=["same-settings", "other-seed"])
def test_resume_refuses_a_party_folder_of_another_run(tmp_path, paths, other_seed):
    # Prepare: two runs; run B's party-1 folder copied into run A's checkpoint
    a, b = tmp_path / "a", tmp_path / "b"
    fresh(paths).fit(checkpoint_dir=a, checkpoint_every=EVERY)
    fresh(paths, config(seed=other_seed)).fit(checkpoint_dir=b, checkpoint_every=EVERY)
    shutil.rmtree(a / "checkpoint-8" / "party-1")
    shutil.copytree(b / "checkpoint-8" / "party-1", a / "checkpoint-8" / "party-1")
    # Execute
    model = fresh(paths)
    with pytest.raises(ValueError, match=rf"party 1: .*checkpoint-8.party-1 belongs to run "
                       rf"{run_id(b, 8)}, this run is {run_id(a, 8)}"):
        model.fit(checkpoint_dir=a, resume=True)
    # Assert: refused before the server restored anything
    assert untouched(model)


def test_resume_refuses_a_folder_holding_checkpoints_of_two_runs(tmp_path, paths):
    # Prepare: the reported bug: another run's newer checkpoint lands in the folder
    a, b = tmp_path / "a", tmp_path / "b"
    fresh(paths).fit(checkpoint_dir=a, checkpoint_every=EVERY)
    fresh(paths).fit(12, checkpoint_dir=b, checkpoint_every=EVERY)
    shutil.copytree(b / "checkpoint-12", a / "checkpoint-12")
    # Execute / Assert
    model = fresh(paths)
    with pytest.raises(ValueError, match=r"holds checkpoints of 2 runs"):
        model.fit(checkpoint_dir=a, resume=True)
    assert untouched(model)


# -- resume: missing and damaged files --------------------------------------------------
def test_resume_fails_before_restoring_when_a_party_folder_is_missing(tmp_path, paths):
    # Prepare: party-local folders; party 1 loses its checkpoint-8
    fresh(paths, party_dirs=tmp_path).fit(checkpoint_dir=tmp_path / "s",
                                          checkpoint_every=EVERY)
    shutil.rmtree(tmp_path / "party1" / "checkpoint-8")
    # Execute
    model = fresh(paths, party_dirs=tmp_path)
    with pytest.raises(FileNotFoundError, match=r"party 1: no checkpoint-8 in its checkpoint "
                       r"folder .*party1 \(missing .*; it holds \[4\]\)"):
        model.fit(checkpoint_dir=tmp_path / "s", resume=True)
    # Assert: neither the server nor party 0 restored anything
    assert untouched(model)
    ref = fresh(paths)
    for k, v in model.parties[0].G.state_dict().items():
        assert torch.equal(v, ref.parties[0].G.state_dict()[k]), k


@pytest.mark.parametrize("who", ["server", "party-1"])
@pytest.mark.parametrize("name", ["state.safetensors", "state.json", "run.json"])
@pytest.mark.parametrize("how", ["empty", "truncated"])
def test_damaged_checkpoint_file_is_named(tmp_path, paths, who, name, how):
    # Prepare
    ck = tmp_path / "ck"
    fresh(paths).fit(checkpoint_dir=ck, checkpoint_every=EVERY)
    path = ck / "checkpoint-8" / who / name
    data = path.read_bytes()
    path.write_bytes(b"" if how == "empty" else data[: len(data) // 2])
    # Execute / Assert: a CheckpointError naming the file, nothing restored
    model = fresh(paths)
    with pytest.raises(CheckpointError) as err:
        model.fit(checkpoint_dir=ck, resume=True)
    assert str(path) in str(err.value)
    assert untouched(model)


# -- pruning and atomic writes ------------------------------------------------------------
def test_party_checkpoints_are_pruned_like_the_servers(tmp_path, paths):
    # Execute: 16 steps, a checkpoint every 4, party-local folders
    fresh(paths, config(steps=16), party_dirs=tmp_path).fit(
        checkpoint_dir=tmp_path / "s", checkpoint_every=EVERY)
    # Assert: every side keeps the newest 2
    assert completed_steps(tmp_path / "s") == [12, 16]
    for k in (0, 1):
        assert party_steps(tmp_path / f"party{k}", k) == [12, 16]
        assert sorted(d.name for d in (tmp_path / f"party{k}").iterdir()) == \
            ["checkpoint-12", "checkpoint-16"]
    assert sorted(d.name for d in (tmp_path / "s").iterdir()) == \
        ["checkpoint-12", "checkpoint-16"]


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs (no except Exception, no clean-up)."""


@pytest.mark.parametrize("victim", [".server.", ".party-1."])
def test_a_kill_mid_write_leaves_no_folder_a_resume_picks(tmp_path, paths, monkeypatch,
                                                          victim):
    # Prepare: the uninterrupted run
    straight = fresh(paths, config(steps=12)).fit()
    # Execute: killed while the tensors of checkpoint-8's server (or party-1) folder are
    # on disk and the rest is not
    ck = tmp_path / "ck"
    real = ckpt_mod.write_state

    def dying(folder, state):
        real(folder, state)
        if folder.name.startswith(victim) and folder.parent.name == "checkpoint-8":
            raise Killed

    monkeypatch.setattr(ckpt_mod, "write_state", dying)
    with pytest.raises(Killed):
        fresh(paths, config(steps=12)).fit(checkpoint_dir=ck, checkpoint_every=EVERY)
    monkeypatch.setattr(ckpt_mod, "write_state", real)
    # Assert: no half folder under its real name; the newest complete one is 4
    part = victim.strip(".")
    assert not (ck / "checkpoint-8" / part).exists()
    assert any(p.name.startswith(victim) for p in (ck / "checkpoint-8").iterdir())
    assert latest_step(ck) == 4
    # ... and the resume from it reproduces the uninterrupted run; leftovers are gone
    resumed = fresh(paths, config(steps=12)).fit(checkpoint_dir=ck, checkpoint_every=EVERY,
                                                 resume=True)
    assert resumed.coordinator.history.d_loss == straight.coordinator.history.d_loss
    assert resumed.coordinator.history.g_loss == straight.coordinator.history.g_loss
    assert sorted(p.name for p in (ck / "checkpoint-8").iterdir()) == ["party-0", "party-1",
                                                                       "server"]


# -- over Flower -----------------------------------------------------------------------------
def flower_run(tmp_path, paths, run_config, settings):
    from vflgan_app.server_app import FlowerSettings, run_federated

    rc = RUN_CONFIG | {"output-dir": str(tmp_path / "out"), "flower.run-name": "r"} | run_config
    cfg = VFLGANConfig.from_run_config(rc)
    grid = FakeGrid(node_configs(paths), rc, cache=False)
    transport = FlowerTransport(grid, 2, round_timeout=30.0, connect_timeout=2.0,
                                poll_interval=0.001, message_factory=grid.create_message)
    run_dir = run_federated(cfg, FlowerSettings(evaluate=False, run_name="r", **settings),
                            transport)
    return json.loads((run_dir / "report.json").read_text())


def test_flower_resume_checks_every_party_before_restoring(tmp_path, paths):
    # Prepare: a Flower run (party folders <checkpoint-dir>/<run-name>: ckpt0/r, ckpt1/r),
    # then a fresh run refused
    first = flower_run(tmp_path, paths, {"steps": STEPS}, {"checkpoint_every": EVERY})
    with pytest.raises(FileExistsError, match="already holds 2 checkpoint folder"):
        flower_run(tmp_path, paths, {"steps": STEPS}, {"checkpoint_every": EVERY})
    # Execute / Assert: a resume with another setting is refused, naming it
    with pytest.raises(ValueError, match="was written with seed=3, this run has seed=5"):
        flower_run(tmp_path, paths, {"steps": 12, "seed": 5}, {"resume": True})
    # ... and so is a resume after party 1 lost its folder: party 1 answers the check
    # message with the error, before the server restored anything
    saved = tmp_path / "ckpt1-saved"
    shutil.copytree(tmp_path / "ckpt1" / "r", saved)
    shutil.rmtree(tmp_path / "ckpt1" / "r" / "checkpoint-8")
    with pytest.raises(ReplyError, match=r"party 1 \(node 1001\) answered with an error: "
                       r"FileNotFoundError: party 1: no checkpoint-8"):
        flower_run(tmp_path, paths, {"steps": 12}, {"resume": True})
    # ... with the folder back, the resume continues the run exactly
    shutil.rmtree(tmp_path / "ckpt1" / "r")
    shutil.copytree(saved, tmp_path / "ckpt1" / "r")
    resumed = flower_run(tmp_path, paths, {"steps": 12}, {"resume": True})
    straight = fresh(paths, config(steps=12)).fit()
    assert resumed["history"]["d_loss"][:STEPS] == first["history"]["d_loss"]
    assert resumed["history"]["d_loss"] == straight.coordinator.history.d_loss
    # ... and overwrite starts over
    flower_run(tmp_path, paths, {"steps": 2}, {"overwrite": True})
    assert completed_steps(tmp_path / "out" / "r" / "checkpoints") == [2]
    assert party_steps(tmp_path / "ckpt1" / "r", 1) == [2]
    assert party_steps(tmp_path / "ckpt0" / "r", 0) == [2]


def test_low_level_resume_refuses_to_drop_the_accountant(tmp_path, paths):
    from vflgan_app.core import loop

    # Prepare: a DP run checkpointed without a config fingerprint (the loop alone)
    a, b = tmp_path / "a", tmp_path / "b"
    loop.fit(fresh(paths, config(**DP), party_dirs=a).coordinator, 4, checkpoint_root=a)
    # Execute / Assert: a run without DP refuses it, and so does the reverse
    plain = fresh(paths, party_dirs=a)
    with pytest.raises(ValueError, match=r"holds plug-in state \['dp'\], this run has \[\]"):
        loop.resume(plain.coordinator, a)
    assert untouched(plain)
    loop.fit(fresh(paths, party_dirs=b).coordinator, 4, checkpoint_root=b)
    with pytest.raises(ValueError, match=r"holds plug-in state \[\], this run has \['dp'\]"):
        loop.resume(fresh(paths, config(**DP), party_dirs=b).coordinator, b)
