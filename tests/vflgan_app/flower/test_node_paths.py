"""A party decides where it writes; the server's run config cannot (issue 12 item 3)."""

from pathlib import Path
from types import SimpleNamespace

import pytest

from vflgan_app.config import FlowerSettings, VFLGANConfig, parse_run_config
from vflgan_app.flower.node import checkpoint_dir


@pytest.mark.parametrize("name", ["../../escaped-dir", "/srv/elsewhere", "a/b", "a\\b", "..", ".hidden",
                                  "", "-x", "x" * 101, "name with space"])
def test_run_names_that_are_paths_are_refused(name):
    with pytest.raises(ValueError, match="flower.run-name: got .* no path separators"):
        parse_run_config({"flower.run-name": name})


@pytest.mark.parametrize("name", ["flower", "flower-digits", "run_2.v1", "R0"])
def test_plain_run_names_are_accepted(name):
    assert FlowerSettings(run_name=name).run_name == name


def _context(node_config):
    return SimpleNamespace(node_config=node_config)


def test_a_party_with_its_own_data_ignores_the_servers_output_dir():
    cfg = VFLGANConfig(output_dir="/somewhere/the/server/chose")
    got = checkpoint_dir(_context({"partition-id": 0, "data-path": "party0.csv"}), cfg,
                         FlowerSettings(run_name="r1"))
    assert Path(got) == Path("vflgan-checkpoints") / "r1"
    assert not Path(got).is_absolute()


def test_the_node_config_folder_wins_with_one_subfolder_per_run():
    cfg = VFLGANConfig(output_dir="/elsewhere")
    got = checkpoint_dir(_context({"partition-id": 1, "data-path": "p.csv",
                                   "checkpoint-dir": "my-ckpt"}), cfg,
                         FlowerSettings(run_name="r2"))
    assert Path(got) == Path("my-ckpt") / "r2"


def test_a_builtin_data_party_keeps_the_simulation_layout():
    cfg = VFLGANConfig(output_dir="runs")
    got = checkpoint_dir(_context({"partition-id": 0}), cfg, FlowerSettings(run_name="sim"))
    assert Path(got) == Path("runs") / "sim" / "checkpoints"


@pytest.mark.parametrize("text", ["0:0", "16:0", "0-16", "0:inf", "a:b", "0:1:2"])
def test_bad_bounds_in_the_node_config_are_named(text):
    from vflgan_app.flower.node import parse_bounds

    with pytest.raises(ValueError, match=r"party 1: node config bounds=.*expected \"low:high\""):
        parse_bounds(text, 1)
    assert parse_bounds("0:16", 1) == (0.0, 16.0)


@pytest.mark.parametrize("cap", [0, -5, "100", True, 2.5])
def test_bad_sample_caps_in_the_node_config_are_named(cap):
    from vflgan_app.flower.node import sample_cap

    with pytest.raises(ValueError, match="max-sample-rows="):
        sample_cap({"max-sample-rows": cap})
    assert sample_cap({}) is None and sample_cap({"max-sample-rows": 5}) == 5


@pytest.mark.parametrize("sep", [",", ";", "\t", "|"])
def test_party_csvs_of_any_common_dialect_are_read(tmp_path, sep):
    from vflgan_app.data.sources import read_csv_any

    path = tmp_path / "party.csv"
    path.write_text(sep.join(["record_id", "fixed acidity", "pH"]) + "\n"
                    + "\n".join(sep.join([str(i), f"{7 + i / 10}", "3.5"]) for i in range(5)))
    table = read_csv_any(path)
    assert list(table.columns) == ["record_id", "fixed acidity", "pH"]
    assert table["fixed acidity"].tolist() == pytest.approx([7.0, 7.1, 7.2, 7.3, 7.4])


def test_an_empty_party_csv_is_named(tmp_path):
    from vflgan_app.data.sources import read_csv_any

    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ValueError, match="empty.csv: the file is empty"):
        read_csv_any(tmp_path / "empty.csv")
