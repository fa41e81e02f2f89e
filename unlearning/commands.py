"""The ``python -m unlearning`` subcommands (imported only after the arguments parse).

:mod:`unlearning.__main__` builds the parser from the plain-Python configs and imports
this module (torch, diffusers) only once the command line is valid, so a bad flag is
answered at once.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from trainkit import StageTimer, atomic_write_json, run_metadata
from unlearning.checkpoint import load_meta, load_pipeline, save_pipeline
from unlearning.config import (
    EvalConfig,
    PretrainConfig,
    RelearnConfig,
    UnlearnConfig,
    config_from_args,
    config_to_dict,
)
from unlearning.data import (
    DatasetSplits,
    auxiliary_set,
    check_class_count,
    check_forget_class,
    load_dataset,
    split_forget_retain,
)
from unlearning.evaluate import (
    curve_probe,
    evaluate_pipeline,
    parameter_change_norms,
)
from unlearning.judge import JUDGE_BUDGET, load_judge, save_judge, train_judge
from unlearning.objectives import dimum_alt_class
from unlearning.plots import save_class_grid, save_curves
from unlearning.relearn import run_relearning_attack
from unlearning.train import pretrain
from unlearning.unlearn import check_alt_images, unlearn_with_log

logger = logging.getLogger("unlearning")


def _data_for(model_dir: Path, ns: argparse.Namespace, pipe) -> DatasetSplits:
    """The data of ``--dataset``/``--data-root`` (default: the model's meta).

    Checked against the model: the same number of classes, images in its shape.
    """
    meta = load_meta(model_dir)
    dataset = ns.dataset or meta.get("dataset")
    if dataset is None:
        raise ValueError(
            f"dataset: {model_dir} has no unlearning_meta.json naming it; "
            "pass --dataset"
        )
    data = load_dataset(
        dataset, ns.data_root or meta.get("data_root"), image_shape=pipe.image_shape
    )
    check_class_count(data, pipe.num_classes, f"model {model_dir}")
    return data


def _judge_for(ns: argparse.Namespace, data: DatasetSplits, out: Path, device):
    """The judge of ``--judge``, a freshly trained one, or None for ``--no-judge``."""
    if getattr(ns, "no_judge", False):
        logger.info("judge: skipped (--no-judge)")
        return None
    if ns.judge:
        judge, acc = load_judge(ns.judge, device)
    elif data.name not in JUDGE_BUDGET:
        raise ValueError(
            f"judge: no judge architecture for dataset {data.name!r} (only "
            f"{sorted(JUDGE_BUDGET)}); pass --judge judge.pt"
            + (" or --no-judge" if hasattr(ns, "no_judge") else "")
        )
    else:
        judge, acc = train_judge(
            data.name,
            data.train,
            data.holdout,
            num_classes=data.num_classes,
            device=device,
        )
        save_judge(judge, out / "judge.pt", acc)
    logger.info("judge held-out accuracy %.4f", acc)
    return judge


def _start_run(out_dir: str, cfg) -> Path:
    """Create the output folder and write its ``config.json`` (config, seed, commit)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "config.json", run_metadata(config_to_dict(cfg), cfg.seed))
    return out


def _saved_model_and_forget_class(model_dir: Path, ns: argparse.Namespace):
    """(pipeline, meta, data, c_f) of a saved model; c_f from --forget-class or meta."""
    pipe = load_pipeline(model_dir, num_classes=ns.num_classes)
    meta = load_meta(model_dir)
    c_f = (
        ns.forget_class
        if ns.forget_class is not None
        else ((meta.get("forgotten_classes") or [None])[0])
    )
    if c_f is None:
        raise ValueError(
            "forget_class: not in unlearning_meta.json; pass --forget-class"
        )
    data = _data_for(model_dir, ns, pipe)
    check_forget_class(c_f, data.num_classes)
    return pipe, meta, data, c_f


def cmd_pretrain(ns: argparse.Namespace) -> None:
    """Pre-train the DDPM (and the judge) and publish both."""
    cfg = config_from_args(PretrainConfig, ns)
    out = _start_run(ns.out, cfg)
    timer = StageTimer(logger)
    data = load_dataset(cfg.dataset, cfg.data_root, download=cfg.download)
    with timer("pretrain"):
        pipe = pretrain(data.train, cfg, data.num_classes)
    pipe.set_progress_bar_config(disable=True)
    save_pipeline(
        pipe,
        out / "model",
        {
            "dataset": cfg.dataset,
            "data_root": cfg.data_root,
            "source_model": None,
            "method": "pretrain",
            "forgotten_classes": [],
            "steps": cfg.steps,
            "seed": cfg.seed,
        },
    )
    if not ns.no_judge:
        with timer("judge"):
            judge, acc = train_judge(
                data.name,
                data.train,
                data.holdout,
                device=pipe.unet.device,
                seed=cfg.seed,
            )
            save_judge(judge, out / "judge.pt", acc)
    if not ns.no_grids:
        save_class_grid(pipe, out / "samples.png", seed=cfg.seed, title="pre-trained")
    logger.info("wrote %s", out)


def heldout_alternative(data, cfg: UnlearnConfig):
    """The held-out split's images of DiMUM's alternative class (never in D_r)."""
    alt = dimum_alt_class(cfg, data.num_classes)
    images = data.holdout.images[data.holdout.labels == alt]
    if len(images) == 0:
        raise ValueError(
            f"dimum_alt: got 'heldout', but the held-out split has no images of the "
            f"alternative class {alt}; expected at least one"
        )
    return images


def cmd_unlearn(ns: argparse.Namespace) -> None:
    """Unlearn one class from a saved model."""
    cfg = config_from_args(UnlearnConfig, ns)
    model_dir = Path(ns.model)
    # model and data are checked before anything is written
    base = load_pipeline(model_dir, num_classes=ns.num_classes)
    data = _data_for(model_dir, ns, base)
    forget, retain = split_forget_retain(data.train, cfg.forget_class, data.num_classes)
    alt_images = heldout_alternative(data, cfg) if cfg.dimum_alt == "heldout" else None
    check_alt_images(base, retain, cfg, alt_images)
    out = _start_run(ns.out, cfg)
    timer = StageTimer(logger)
    with timer(f"unlearn {cfg.method}"):
        pipe, log = unlearn_with_log(base, forget, retain, cfg, alt_images=alt_images)
    meta = load_meta(model_dir)
    save_pipeline(
        pipe,
        out / "model",
        {
            "dataset": data.name,
            "data_root": ns.data_root or meta.get("data_root"),
            "source_model": str(model_dir),
            "method": cfg.method,
            "forgotten_classes": [cfg.forget_class],
            "steps": log.steps_run,
            "stopped_early": log.stopped_early,
            "seed": cfg.seed,
            "config": config_to_dict(cfg),
        },
    )
    norms = parameter_change_norms(base.unet, pipe.unet.cpu(), cfg.forget_class)
    atomic_write_json(out / "parameter_change.json", norms)
    if not ns.no_grids:
        save_class_grid(base, out / "samples_before.png", title="before unlearning")
        save_class_grid(
            pipe,
            out / "samples_after.png",
            title=f"after {cfg.method} (forget {cfg.forget_class})",
        )
    logger.info("wrote %s (changed: total %.3f)", out, norms["total"])


def cmd_relearn(ns: argparse.Namespace) -> None:
    """Run DiMRA on a saved (unlearned) model and trace the relearning accuracy."""
    cfg = config_from_args(RelearnConfig, ns)
    eval_cfg = EvalConfig(forget_samples=cfg.eval_samples, seed=cfg.seed)
    model_dir = Path(ns.model)
    pipe, meta, data, c_f = _saved_model_and_forget_class(model_dir, ns)
    out = _start_run(ns.out, cfg)
    _, retain = split_forget_retain(data.train, c_f, data.num_classes)
    attack_data = (
        retain if cfg.attack_data == "retain" else auxiliary_set(data.holdout, c_f)
    )
    judge = _judge_for(ns, data, out, pipe.unet.device)
    probe = curve_probe(judge, c_f, cfg.eval_samples, eval_cfg) if judge else None
    attacked, curve = run_relearning_attack(pipe, attack_data, c_f, cfg, probe)
    save_pipeline(
        attacked,
        out / "model",
        {
            **meta,
            "source_model": str(model_dir),
            "method": f"dimra-{cfg.attack_data}",
            "attack": config_to_dict(cfg),
            "seed": cfg.seed,
        },
    )
    atomic_write_json(out / "curve.json", curve.as_dict())
    if judge is not None:
        save_curves(
            {f"DiMRA {cfg.attack_data}": (curve.steps, curve.forget_rate)},
            out / "curve.png",
            title=f"forget class {c_f}",
        )
    if not ns.no_grids:
        save_class_grid(attacked, out / "samples_attacked.png", title="after DiMRA")
    print(json.dumps(curve.as_dict()))


def cmd_evaluate(ns: argparse.Namespace) -> None:
    """Score a saved model: forget rate, p_forget, retain accuracy, Frechet."""
    cfg = config_from_args(EvalConfig, ns)
    model_dir = Path(ns.model)
    pipe, _, data, c_f = _saved_model_and_forget_class(model_dir, ns)
    out = Path(ns.out) if ns.out else model_dir.parent
    judge = _judge_for(ns, data, out, pipe.unet.device)
    reference = data.holdout.subset(data.holdout.labels != c_f)
    metrics = evaluate_pipeline(pipe, judge, c_f, reference, cfg)
    if ns.reference_model:
        ref = load_pipeline(ns.reference_model, num_classes=pipe.num_classes)
        metrics["parameter_change"] = parameter_change_norms(ref.unet, pipe.unet, c_f)
    atomic_write_json(
        out / "metrics.json",
        {"metrics": metrics, **run_metadata(config_to_dict(cfg), cfg.seed)},
    )
    print(json.dumps(metrics, indent=1))
