"""Bad values get a clear error naming the field, the value and what was expected, before
anything is written (issue 12 item 11: the config, CLI and API part)."""

import math
from pathlib import Path

import pytest

from vflgan_app.__main__ import main
from vflgan_app.config import FlowerSettings, VFLGANConfig

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"steps": True}, "steps: got True of type bool, expected an integer"),
        ({"batch_size": 2.5}, "batch-size: got 2.5 of type float, expected an integer or none"),
        ({"seed": "x"}, "seed: got 'x' of type str, expected an integer"),
        ({"seed": -1}, "seed: got -1, expected an integer >= 0"),
        ({"device": "tpu"}, "device: got 'tpu', expected 'cpu', 'cuda', 'cuda:N' or 'auto'"),
        ({"threads": 0}, "threads: got 0, expected an integer >= 1"),
        ({"lr": math.inf}, "lr: got inf of type float, expected a number \\(finite\\)"),
        ({"lambda_p": math.nan}, "lambda-p: got nan"),
        ({"progress": "yes"}, "progress: got 'yes' of type str, expected true or false"),
        ({"n_samples": 10.0}, "n-samples: got 10.0 of type float, expected an integer"),
    ],
)
def test_a_config_built_in_python_refuses_values_of_the_wrong_type(kwargs, match):
    with pytest.raises(ValueError, match=match):
        VFLGANConfig(**kwargs)


def test_integral_numbers_are_accepted_for_float_fields():
    assert VFLGANConfig(lr=1, lambda_p=0).lr == 1


def test_flower_settings_check_their_types():
    with pytest.raises(ValueError, match="flower.round-timeout: got 'x' of type str"):
        FlowerSettings(round_timeout="x")


def _cli(tmp_path, *args):
    return main(["train", "--output-dir", str(tmp_path / "runs"), "--steps", "2",
                 "--no-eval", *args])


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--device", "tpu"], "device: got 'tpu'"),
        (["--max-rows", "40", "--batch-size", "64"],
         "batch_size: got 64, expected at most the 40 rows"),
        (["--run-name", "../escaped"], "--run-name: got '../escaped'"),
        (["--threads", "0"], "threads: got 0"),
    ],
    ids=["device", "batch-larger-than-table", "run-name-path", "threads"],
)
def test_the_cli_refuses_bad_input_before_writing_anything(tmp_path, capsys, args, match):
    rc = _cli(tmp_path, *args)
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and "Traceback" not in err
    assert pytest.importorskip("re").search(match, err), err
    runs = tmp_path / "runs"
    assert not runs.exists() or list(runs.iterdir()) == []
    assert not (tmp_path / "escaped").exists()


def test_a_taken_run_name_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "runs" / "r1").mkdir(parents=True)
    rc = _cli(tmp_path, "--run-name", "r1")
    assert rc == 2 and "r1 already exists; choose another name" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("overrides", "rc", "match"),
    [
        ('steps=4 flower.run-nme="a"', 2, "did you mean 'flower.run-name'"),
        ('flower.round-timeout="x"', 2, "flower.round-timeout got 'x', expected a number"),
        ('flower.run-name="../up"', 2, "flower.run-name: got '../up'"),
        ("steps=4 flower.run-name=\"ok\"", 0, "ok: 2 override"),
    ],
)
def test_check_config_names_the_bad_key(capsys, overrides, rc, match):
    assert main(["check-config", overrides, "--app", str(ROOT)]) == rc
    out = capsys.readouterr()
    assert match in (out.err if rc else out.out)


@pytest.mark.parametrize(("n", "seed"), [(-1, 0), (2.5, 0), (10, -3)])
def test_sampling_arguments_are_checked(n, seed):
    from vflgan_app.api import VFLGANModel

    with pytest.raises(ValueError, match="sample: (n|seed) got"):
        VFLGANModel.sample_parts(object.__new__(VFLGANModel), n, seed)


def test_train_help_has_choices_and_one_default_per_option(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    import re

    # each option's help block (two-space indent, "--flag") carries at most one default
    blocks = re.split(r"\n  (?=-)", text.split("options:", 1)[1])
    assert [b.split()[0] for b in blocks if b.count("(default") > 1] == []
    for flag, choice in [("--dataset", "wine_red"), ("--sampler", "wor"),
                         ("--objective", "joint"), ("--dp-mode", "strict")]:
        assert re.search(rf"{flag} \{{[^}}]*{choice}", text), flag


def test_a_misspelled_choice_is_refused_by_argparse(capsys):
    with pytest.raises(SystemExit) as err:
        main(["train", "--dataset", "digts"])
    assert err.value.code == 2
    assert "invalid choice: 'digts'" in capsys.readouterr().err
