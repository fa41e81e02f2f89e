"""Publishing: synthetic CSV / NPZ + PNG grid and report.json, written atomically."""

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tests.vflgan_app.core.conftest import make_federation
from vflgan_app.data.partition import decode_parts
from vflgan_app.publish import image_grid_png, write_report, write_synthetic


def synthetic_table(n=12):
    """A decoded synthetic table as the ServerApp publishes it (party 0's columns first)."""
    fed = make_federation()
    fed.coordinator.fit(2)
    return decode_parts([p.data.schema for p in fed.parties], fed.coordinator.sample(n, 1))


def pixel_table(n, h, w, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(rng.uniform(0, 16, size=(n, h * w)),
                        columns=[f"pixel_{i}" for i in range(h * w)])


def test_table_is_written_as_csv_with_original_names_and_decoded_values(tmp_path):
    # Prepare
    table = synthetic_table()
    # Execute
    files = write_synthetic(tmp_path / "run", table)
    # Assert: the CSV reads back as the same table (names, categories, integers)
    assert files == {"data": "synthetic.csv", "preview": "preview.md"}
    back = pd.read_csv(tmp_path / "run" / files["data"])
    assert list(back.columns) == ["a", "color", "count", "b", "c", "kind"]
    assert set(back["color"]) <= {"red", "green", "blue"}
    assert set(back["kind"]) <= {"pos", "neg"}
    assert back["count"].dtype.kind == "i"
    pd.testing.assert_frame_equal(back, table, check_dtype=False)
    preview = (tmp_path / "run" / files["preview"]).read_text()
    assert "color" in preview and len(preview.splitlines()) >= 10


def test_images_are_written_as_npz_and_png_grid(tmp_path):
    # Prepare: 12 images of 3 x 4 pixels in [0, 16]
    table = pixel_table(12, 3, 4)
    # Execute
    files = write_synthetic(tmp_path, table, image_shape=(3, 4), bounds=(0.0, 16.0))
    # Assert: the array is the table reshaped, values unchanged; the grid is a PNG
    assert files == {"data": "synthetic.npz", "grid": "samples.png"}
    with np.load(tmp_path / files["data"]) as npz:
        assert npz.files == ["images"]
        images = npz["images"]
    assert images.shape == (12, 3, 4)
    np.testing.assert_allclose(images, table.to_numpy().reshape(12, 3, 4), rtol=1e-6)
    with Image.open(tmp_path / files["grid"]) as png:
        assert png.format == "PNG"


def test_outputs_are_atomic_no_temporary_files_remain(tmp_path):
    # Execute: a table and an image run into the same folder, twice (overwrite)
    for _ in range(2):
        write_synthetic(tmp_path, synthetic_table(4))
        write_synthetic(tmp_path, pixel_table(4, 2, 2), image_shape=(2, 2))
        write_report(tmp_path, {}, {}, 0, {})
    # Assert: only the final files, no temp or partial files
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "preview.md", "report.json", "samples.png", "summary.md", "synthetic.csv",
        "synthetic.npz"]


@pytest.mark.parametrize(("n", "rows"), [(10, 1), (25, 3)])
def test_image_grid_png_lays_images_out_in_rows(tmp_path, n, rows):
    # Prepare: black images (0) on the white page
    images = np.zeros((n, 4, 4))
    # Execute
    path = image_grid_png(images, tmp_path / "grid.png", nrow=10)
    # Assert: a decodable PNG, ~10 cells wide and `rows` cells high, mostly black
    with Image.open(path) as png:
        assert png.format == "PNG"
        gray = np.asarray(png.convert("L"))
    height, width = gray.shape
    assert width / height == pytest.approx(10 / rows, rel=0.25)
    dark_rows = (gray < 50).any(axis=1)
    assert 0.2 < (gray < 50).mean() < 0.9
    # the images fill `rows` bands separated by white gaps
    bands = np.count_nonzero(np.diff(dark_rows.astype(int)) == 1) + int(dark_rows[0])
    assert bands == rows


def test_image_grid_png_shows_pixel_values(tmp_path):
    # Execute: the same layout, once black, once white images
    dark = image_grid_png(np.zeros((10, 4, 4)), tmp_path / "dark.png")
    light = image_grid_png(np.ones((10, 4, 4)), tmp_path / "light.png")
    # Assert: values in [0, 1] are drawn in gray scale, 0 black and 1 white
    with Image.open(dark) as a, Image.open(light) as b:
        assert np.asarray(a.convert("L")).mean() < 128 < np.asarray(b.convert("L")).mean()


def test_write_report_records_config_seed_commit_and_metrics(tmp_path):
    # Prepare
    config = {"dataset": "toy", "steps": 3, "dp": {"mode": "none"}}
    metrics = {"dcr": 0.25, "pairwise": [0.1, 0.2]}
    files = {"data": "synthetic.csv"}
    # Execute
    path = write_report(tmp_path, metrics, config, 7, files, extra={"model": "vflgan"})
    # Assert
    assert path == tmp_path / "report.json"
    report = json.loads(path.read_text())
    assert report["config"] == config
    assert report["seed"] == 7
    assert report["metrics"] == metrics
    assert report["files"] == files
    assert report["model"] == "vflgan"
    assert isinstance(report["git_commit"], str) and report["git_commit"]
    assert report["created"]


def test_wrong_image_shape_is_refused(tmp_path):
    # Prepare: 10 pixel columns cannot be 3 x 3 images
    table = pixel_table(5, 2, 5)
    # Execute / Assert: an error, and nothing half-written
    with pytest.raises(ValueError):
        write_synthetic(tmp_path, table, image_shape=(3, 3))
    assert list(tmp_path.iterdir()) == []


def test_wrong_image_shape_error_says_got_versus_expected(tmp_path):
    # Prepare
    table = pixel_table(5, 2, 5)
    # Execute / Assert
    with pytest.raises(ValueError, match=r"10 columns.*\(3, 3\)|\(3, 3\).*10 columns"):
        write_synthetic(tmp_path, table, image_shape=(3, 3))


def test_summary_puts_the_model_beside_its_control_with_the_verdicts(tmp_path):
    import json

    from vflgan_app.publish import write_report

    metrics = {"model": {"fd": 5.9, "cross_party_corr_error": 0.12, "fd_space": "pca"},
               "control": {"fd": 5.5, "cross_party_corr_error": 0.10},
               "dependence": {"summary": "The model beats its control on 0 of 1.",
                              "verdicts": {"agreement": {"sentence": "Not better on agreement."}}}}
    write_report(tmp_path, metrics, {"steps": 3}, 0, {}, {"model": "vflgan", "dataset": "wine_red"})
    text = (tmp_path / "summary.md").read_text()
    assert "| fd | 5.9 | 5.5 |" in text and "| cross_party_corr_error | 0.12 | 0.1 |" in text
    assert "The model beats its control on 0 of 1." in text
    assert "* Not better on agreement." in text and "fd_space" not in text
    assert json.loads((tmp_path / "report.json").read_text())["metrics"] == metrics
