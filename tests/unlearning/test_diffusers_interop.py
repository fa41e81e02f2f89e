"""diffusers interoperability: plain-diffusers loading, foreign UNets, image folders.

Issue 14 item 8. Everything runs offline on tiny models (a UNet with
``block_out_channels=(4, 8)``, 8x8 images) and images written into ``tmp_path``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from diffusers import UNet2DModel

from tests.unlearning.conftest import tiny_mlp_pipeline, tiny_unet_pipeline
from unlearning.checkpoint import load_pipeline, save_pipeline
from unlearning.data import check_class_count, load_dataset, load_image_folder
from unlearning.model import build_scheduler
from unlearning.pipeline import ClassConditionalDDPMPipeline

LABELS = [0, 3, 7]


def _images(pipe, labels=LABELS) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return pipe(labels, generator=g, num_inference_steps=2).images


def _tiny_unet(**overrides) -> UNet2DModel:
    """A UNet2DModel as someone else would build it (not our build_unet)."""
    kwargs = dict(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        block_out_channels=(4, 8),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
        num_class_embeds=4,  # 3 classes + the null label
    )
    torch.manual_seed(0)
    return UNet2DModel(**{**kwargs, **overrides})


def _write_image_folder(root, classes=("cat", "dog", "eel"), per_class=4) -> None:
    """``per_class`` 8x8 grayscale PNGs per class; the last one RGB at 12x12."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            if i == per_class - 1:
                arr = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
            else:
                arr = rng.integers(0, 256, (8, 8), dtype=np.uint8)
            Image.fromarray(arr).save(root / name / f"{i}.png")


# ---------------------------------------------------------------- plain diffusers

# Run in a fresh interpreter where `unlearning` cannot be imported, offline: the saved
# folder alone must be enough. This is the snippet of docs/unlearning.md.
_PLAIN_DIFFUSERS = """
import sys
sys.modules["unlearning"] = None  # importing our package now raises ImportError
import torch
from diffusers import DiffusionPipeline

for name in sys.argv[1:]:
    pipe = DiffusionPipeline.from_pretrained(name, trust_remote_code=True)
    pipe.set_progress_bar_config(disable=True)
    g = torch.Generator().manual_seed(0)
    images = pipe([0, 3, 7], generator=g, num_inference_steps=2).images
    torch.save({"images": images, "cls": type(pipe).__name__}, name + ".pt")
"""


def test_saved_folders_load_with_plain_diffusers_in_a_fresh_process(tmp_path):
    # Prepare: one UNet and one MLP pipeline, saved; their samples in this process
    pipes = {"unet": tiny_unet_pipeline(), "mlp": tiny_mlp_pipeline()}
    for name, pipe in pipes.items():
        save_pipeline(pipe, tmp_path / name, {"method": "pretrain"})
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_MODULES_CACHE": str(tmp_path / "hf_modules"),
        "OMP_NUM_THREADS": "1",
    }
    # Execute
    r = subprocess.run(
        [sys.executable, "-c", _PLAIN_DIFFUSERS, *(str(tmp_path / n) for n in pipes)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    # Assert: same class, same images (same generator) as our own pipeline
    assert r.returncode == 0, r.stderr[-3000:]
    for name, pipe in pipes.items():
        got = torch.load(tmp_path / f"{name}.pt")
        assert got["cls"] == "ClassConditionalDDPMPipeline"
        assert got["images"].shape == (3, 1, 8, 8)
        assert torch.equal(got["images"], _images(pipe)), name


def test_saved_folder_names_its_own_self_contained_pipeline_code(tmp_path):
    for name, pipe in (("unet", tiny_unet_pipeline()), ("mlp", tiny_mlp_pipeline())):
        pipe.save_pretrained(tmp_path / name)
        index = json.loads((tmp_path / name / "model_index.json").read_text())
        assert index["_class_name"] == ["pipeline", "ClassConditionalDDPMPipeline"]
        code = [tmp_path / name / "pipeline.py"]
        if name == "mlp":
            assert index["unet"] == ["mlp", "ClassConditionalMLP"]
            code.append(tmp_path / name / "unet" / "mlp.py")
        else:
            assert index["unet"] == ["diffusers", "UNet2DModel"]
        for f in code:
            # shipped code must not need our package (the fresh-process test runs it)
            text = f.read_text()
            assert not re.search(r"^\s*(from|import)\s+unlearning", text, re.M), f
        # our own loader still opens it (without running the folder's code)
        loaded = load_pipeline(tmp_path / name)
        assert type(loaded) is ClassConditionalDDPMPipeline
        assert torch.equal(_images(loaded), _images(pipe))


def test_loading_does_not_warn_about_accelerate(tmp_path):
    # diffusers' library logger does not propagate to the root (nor to caplog), so
    # listen on it directly
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    diffusers_logger = logging.getLogger("diffusers")
    tiny_unet_pipeline().save_pretrained(tmp_path)
    diffusers_logger.addHandler(handler)
    try:
        load_pipeline(tmp_path)
    finally:
        diffusers_logger.removeHandler(handler)
    assert not [r for r in records if "accelerate" in r.getMessage()]


# ---------------------------------------------------------------- foreign UNets


def test_a_class_conditional_unet_folder_is_accepted(tmp_path):
    # Prepare: a bare UNet2DModel folder, as `unet.save_pretrained(dir)` writes it
    unet = _tiny_unet()
    unet.save_pretrained(tmp_path / "unet")
    # Execute
    pipe = load_pipeline(tmp_path / "unet")
    # Assert: 3 classes, the default schedule, the same weights
    assert pipe.num_classes == 3 and pipe.image_shape == (1, 8, 8)
    assert pipe.scheduler.config.num_train_timesteps == 1000
    x, t, y = torch.randn(2, 1, 8, 8), torch.tensor([5, 900]), torch.tensor([0, 3])
    assert torch.allclose(pipe.unet(x, t, class_labels=y).sample, unet(x, t, y).sample)
    assert _images(pipe, [0, 1, 2]).shape == (3, 1, 8, 8)


def test_an_unconditional_unet_is_refused_with_the_reason(tmp_path):
    unet = _tiny_unet(num_class_embeds=None)
    with pytest.raises(ValueError, match=r"unconditional \(num_class_embeds=None\)"):
        ClassConditionalDDPMPipeline(unet=unet, scheduler=build_scheduler())
    unet.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="unconditional"):
        load_pipeline(tmp_path)


def _per_class(pipe) -> torch.Tensor:
    """One image per class 0..K-1, all from the same noise (only the label differs)."""
    return torch.cat([_images(pipe, [c]) for c in range(pipe.num_classes)])


def _assert_class_conditional_images(images: torch.Tensor, k: int) -> None:
    assert images.shape == (k, 1, 8, 8) and torch.isfinite(images).all()
    # the same noise for every class, so any difference comes from the label
    for a in range(k):
        for b in range(a + 1, k):
            assert (images[a] - images[b]).abs().max() > 1e-3, (a, b)


def test_a_timestep_embedded_unet_folder_is_accepted_with_its_class_count(tmp_path):
    # Prepare: labels through the sinusoidal timestep projection, no class table
    unet = _tiny_unet(num_class_embeds=None, class_embed_type="timestep")
    unet.save_pretrained(tmp_path / "unet")
    # Execute: load with K given, save as our pipeline, load that without K
    pipe = load_pipeline(tmp_path / "unet", num_classes=3)
    save_pipeline(pipe, tmp_path / "saved", {"method": "pretrain"})
    again = load_pipeline(tmp_path / "saved")
    # Assert: 3 classes, the same weights, K stored in the pipeline config
    assert pipe.num_classes == 3 and pipe.image_shape == (1, 8, 8)
    x, t, y = torch.randn(2, 1, 8, 8), torch.tensor([5, 900]), torch.tensor([0, 2])
    assert torch.allclose(pipe.unet(x, t, class_labels=y).sample, unet(x, t, y).sample)
    index = json.loads((tmp_path / "saved" / "model_index.json").read_text())
    assert index["num_classes"] == 3 and again.num_classes == 3
    images = _per_class(pipe)
    _assert_class_conditional_images(images, 3)
    assert torch.equal(_per_class(again), images)
    with pytest.raises(ValueError, match=r"got values in \[3, 3\], expected \[0, 2\]"):
        _images(pipe, [3])  # label K is the null label, not a class


_PLAIN_DIFFUSERS_PER_CLASS = """
import sys
sys.modules["unlearning"] = None  # importing our package now raises ImportError
import torch
from diffusers import DiffusionPipeline

pipe = DiffusionPipeline.from_pretrained(sys.argv[1], trust_remote_code=True)
pipe.set_progress_bar_config(disable=True)
images = [
    pipe([c], generator=torch.Generator().manual_seed(0), num_inference_steps=2).images
    for c in range(pipe.num_classes)
]
torch.save({"images": torch.cat(images), "k": pipe.config.num_classes}, sys.argv[2])
"""


def test_cli_unlearns_a_timestep_unet_and_plain_diffusers_reloads_it(tmp_path):
    # Prepare: a bare 3-class timestep-embedded UNet folder and a 3-class image folder
    timestep = _tiny_unet(num_class_embeds=None, class_embed_type="timestep")
    timestep.save_pretrained(tmp_path / "unet")
    _write_image_folder(tmp_path / "images", per_class=5)
    common = ["--progress", "false", "--device", "cpu", "--batch-size", 4]
    data = ["--dataset", "folder", "--data-root", tmp_path / "images"]
    # Execute: unlearn with K given; DiMRA on the result without K (it is stored)
    unl = ("--model", tmp_path / "unet", "--out", tmp_path / "unl", "--steps", 2)
    unl += ("--method", "finetune", "--forget-class", 1, "--num-classes", 3)
    assert _cli("unlearn", *unl, *data, "--no-grids", *common) == 0
    att = ("--model", tmp_path / "unl" / "model", "--out", tmp_path / "att")
    assert _cli("relearn", *att, "--steps", 2, "--no-judge", "--no-grids", *common) == 0
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_MODULES_CACHE": str(tmp_path / "hf_modules"),
        "OMP_NUM_THREADS": "1",
    }
    saved = tmp_path / "unl" / "model"
    r = subprocess.run(
        [sys.executable, "-c", _PLAIN_DIFFUSERS_PER_CLASS, saved, tmp_path / "p.pt"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    # Assert: K in both saved configs; the unlearned weights differ from the source
    # and have no per-class row to report; plain diffusers samples every class as we do
    for model in (saved, tmp_path / "att" / "model"):
        assert json.loads((model / "model_index.json").read_text())["num_classes"] == 3
    norms = json.loads((tmp_path / "unl" / "parameter_change.json").read_text())
    assert norms["total"] > 0 and "class_embedding[c_f]" not in norms
    assert r.returncode == 0, r.stderr[-3000:]
    got = torch.load(tmp_path / "p.pt")
    assert got["k"] == 3
    _assert_class_conditional_images(got["images"], 3)
    assert torch.equal(got["images"], _per_class(load_pipeline(saved)))


def test_a_timestep_unet_without_a_valid_class_count_is_refused(tmp_path, capsys):
    timestep = _tiny_unet(num_class_embeds=None, class_embed_type="timestep")
    with pytest.raises(
        ValueError,
        match=r"num_classes: got None for a class_embed_type='timestep' UNet, "
        r"expected the number of classes K \(an integer >= 2\)",
    ):
        ClassConditionalDDPMPipeline(unet=timestep, scheduler=build_scheduler())
    for bad in (1, 0, True, "3", 2.5):
        with pytest.raises(
            ValueError, match=rf"num_classes: got {bad!r}, expected an integer >= 2"
        ):
            ClassConditionalDDPMPipeline(
                unet=timestep, scheduler=build_scheduler(), num_classes=bad
            )
    timestep.save_pretrained(tmp_path / "unet")
    with pytest.raises(ValueError, match="num_classes: got None"):
        load_pipeline(tmp_path / "unet")
    # a K that disagrees with the one stored, or with a class table
    pipe = load_pipeline(tmp_path / "unet", num_classes=3)
    pipe.save_pretrained(tmp_path / "saved")
    with pytest.raises(ValueError, match="got 4, but .* stores num_classes=3"):
        load_pipeline(tmp_path / "saved", num_classes=4)
    with pytest.raises(
        ValueError, match=r"got 5, but the UNet's num_class_embeds=4 gives 3 classes"
    ):
        ClassConditionalDDPMPipeline(_tiny_unet(), build_scheduler(), num_classes=5)
    # the CLI: exit status 2 with the message, and no output folder
    _write_image_folder(tmp_path / "images")
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        _cli(
            "unlearn", "--model", tmp_path / "unet", "--out", tmp_path / "out",
            "--dataset", "folder", "--data-root", tmp_path / "images",
            "--forget-class", 0, "--device", "cpu",
        )  # fmt: skip
    assert exc.value.code == 2
    assert "num_classes: got None" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_identity_and_other_class_embed_types_are_refused_with_the_reason(tmp_path):
    identity = _tiny_unet(num_class_embeds=None, class_embed_type="identity")
    why = (
        r"class_embed_type='identity' is not supported: it takes class_labels as "
        r"continuous embedding vectors .* not integer classes"
    )
    for k in (None, 3):  # a class count does not make it integer-labelled
        with pytest.raises(ValueError, match=why):
            ClassConditionalDDPMPipeline(identity, build_scheduler(), num_classes=k)
    identity.save_pretrained(tmp_path / "identity")
    with pytest.raises(ValueError, match=why):
        load_pipeline(tmp_path / "identity", num_classes=3)
    other = _tiny_unet(num_class_embeds=None, class_embed_type="projection")
    with pytest.raises(
        ValueError,
        match=r"class_embed_type='projection' is not supported, expected None .* "
        r"or 'timestep'",
    ):
        ClassConditionalDDPMPipeline(other, build_scheduler(), num_classes=3)


# ---------------------------------------------------------------- image folders


def test_an_image_folder_is_read_as_labelled_model_sized_tensors(tmp_path):
    _write_image_folder(tmp_path)
    data = load_dataset("folder", str(tmp_path), image_shape=(1, 8, 8))
    assert data.name == "folder" and data.num_classes == 3
    # 4 per class: floor(4 * 0.2) = 0 held out; all 12 (RGB 12x12 ones converted)
    assert len(data.train) == 12 and len(data.holdout) == 0
    assert data.train.image_shape == (1, 8, 8)
    assert data.train.classes() == [0, 1, 2]  # cat, dog, eel in sorted order
    assert data.train.images.min() >= -1 and data.train.images.max() <= 1
    more = load_image_folder(tmp_path, (3, 8, 8), holdout_fraction=0.5)
    assert len(more.holdout) == 6 and more.holdout.image_shape == (3, 8, 8)


def test_bad_image_folders_are_refused_with_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        load_image_folder(tmp_path / "nowhere", (1, 8, 8))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no class subfolders"):
        load_image_folder(tmp_path / "empty", (1, 8, 8))
    _write_image_folder(tmp_path / "one", classes=("cat",))
    with pytest.raises(ValueError, match=r"one class \('cat'\), expected at least 2"):
        load_image_folder(tmp_path / "one", (1, 8, 8))
    (tmp_path / "one" / "dog").mkdir()
    with pytest.raises(ValueError, match=r"no images in class folder\(s\) \['dog'\]"):
        load_image_folder(tmp_path / "one", (1, 8, 8))
    _write_image_folder(tmp_path / "three")
    data = load_image_folder(tmp_path / "three", (1, 8, 8))
    with pytest.raises(ValueError, match="has 3 classes, the model has 10"):
        check_class_count(data, 10, "model m")


# ---------------------------------------------------------------- CLI


def _cli(*argv) -> int:
    from unlearning.__main__ import main

    return main([str(a) for a in argv])


def test_cli_skip_flags_parse_with_defaults_and_conflicts():
    from unlearning.__main__ import build_parser

    p = build_parser()
    ns = p.parse_args(["pretrain", "--out", "x"])
    assert ns.no_judge is False and ns.no_grids is False
    ns = p.parse_args(["relearn", "--model", "m", "--out", "x", "--no-judge"])
    assert ns.no_judge is True and ns.judge is None
    with pytest.raises(SystemExit) as exc:  # a judge file and no judge: one or other
        p.parse_args(
            ["relearn", "--model", "m", "--out", "x", "--no-judge", "--judge", "j"]
        )
    assert exc.value.code == 2
    with pytest.raises(SystemExit):  # evaluate is all judge metrics: no such flag
        p.parse_args(["evaluate", "--model", "m", "--no-judge"])
    unlearn_parser = p._subparsers._group_actions[0].choices["unlearn"]
    help_text = " ".join(unlearn_parser.format_help().split())
    assert "--no-grids skip the per-class sample grid PNGs (default: write" in help_text


def test_cli_pretrain_skips_judge_and_grids(tmp_path):
    common = ["--progress", "false", "--device", "cpu"]
    argv = ("--out", tmp_path, "--arch", "mlp", "--steps", 2, "--batch-size", 8)
    assert _cli("pretrain", *argv, "--no-judge", "--no-grids", *common) == 0
    assert (tmp_path / "model" / "pipeline.py").exists()
    assert not (tmp_path / "judge.pt").exists()
    assert not list(tmp_path.glob("*.png"))


def test_cli_unlearns_a_unet_folder_on_an_image_folder(tmp_path, capsys):
    # Prepare: a bare 3-class UNet folder and a 3-class image folder
    _tiny_unet().save_pretrained(tmp_path / "unet")
    _write_image_folder(tmp_path / "images", per_class=5)  # 1 per class held out
    common = ["--progress", "false", "--device", "cpu", "--batch-size", 4]
    data = ["--dataset", "folder", "--data-root", tmp_path / "images"]
    # Execute: unlearn, then DiMRA without a judge, no grids anywhere
    unl = ("--model", tmp_path / "unet", "--out", tmp_path / "unl", "--steps", 2)
    unl += ("--method", "finetune", "--forget-class", 1)
    assert _cli("unlearn", *unl, *data, "--no-grids", *common) == 0
    att = ("--model", tmp_path / "unl" / "model", "--out", tmp_path / "att")
    assert _cli("relearn", *att, "--steps", 2, "--no-judge", "--no-grids", *common) == 0
    # Assert
    meta = json.loads((tmp_path / "unl" / "model" / "unlearning_meta.json").read_text())
    assert meta["dataset"] == "folder" and meta["forgotten_classes"] == [1]
    assert json.loads((tmp_path / "att" / "curve.json").read_text())["steps"] == []
    assert (tmp_path / "att" / "model" / "model_index.json").exists()
    assert not list(tmp_path.glob("*/*.png")) and not list(tmp_path.glob("*/judge.pt"))
    # a folder whose class count differs from the model's, and a missing judge
    _write_image_folder(tmp_path / "two", classes=("a", "b"))
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        _cli("unlearn", *unl, "--dataset", "folder", "--data-root", tmp_path / "two")
    assert exc.value.code == 2
    assert "has 2 classes, the model has 3" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _cli("relearn", *att, "--steps", 2, *common)  # folder data, no --judge
    assert "no judge architecture for dataset 'folder'" in capsys.readouterr().err
