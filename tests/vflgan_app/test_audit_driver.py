"""simulations/run_audit.py: the --scale presets (CPU scale, and the paper's audit)."""

import pytest

from simulations.run_audit import parse_dp, scale_settings


def test_cpu_scale_is_the_measured_default_and_paper_scale_is_the_papers_setting():
    cpu = scale_settings("cpu", "wine_red")
    assert cpu == {"steps": 300, "n_shadows": 32, "n_targets": 1, "n_estimators": 200,
                   "targets": (), "delta": 1e-5}
    paper = scale_settings("paper", "wine_red")
    # 150 epochs of ceil(1,599 / 16) = 100 steps; rows 151 and 1235; delta 5e-4
    assert paper == {"steps": 15000, "n_shadows": 100, "n_targets": 2, "n_estimators": 1000,
                     "targets": (151, 1235), "delta": 5e-4}
    assert parse_dp("paper:10", paper["delta"]).delta == 5e-4
    assert not parse_dp("none").enabled


def test_unknown_scales_and_unaudited_datasets_are_refused():
    with pytest.raises(ValueError, match="--scale: got 'huge', expected 'cpu' or 'paper'"):
        scale_settings("huge", "wine_red")
    with pytest.raises(ValueError, match="--scale paper: got --dataset 'digits', expected"):
        scale_settings("paper", "digits")
