"""CLI: ``python -m unlearning {pretrain,unlearn,relearn,evaluate}``.

Each subcommand converts its flags to a frozen config once, then calls the Python API.
Outputs: a diffusers-format model folder (``model/``, loadable with plain diffusers)
with ``unlearning_meta.json``, ``config.json`` (config, seed, commit), PNG sample grids
(not with ``--no-grids``) and, for ``relearn``, the relearning curve (JSON + PNG; no
points with ``--no-judge``).
"""

from __future__ import annotations

import argparse
import logging
import sys

from unlearning.config import (
    DATA_SOURCES,
    EvalConfig,
    PretrainConfig,
    RelearnConfig,
    UnlearnConfig,
    add_config_arguments,
)


def _add_model_args(
    p: argparse.ArgumentParser, need_forget: bool, judge_optional: bool = False
) -> None:
    p.add_argument(
        "--model",
        required=True,
        help="saved model folder (model_index.json), or a class-conditional "
        "UNet2DModel folder (config.json)",
    )
    p.add_argument(
        "--num-classes",
        type=int,
        default=None,
        help="number of classes K of a class_embed_type='timestep' UNet2DModel, "
        "whose config has no class count (labels 0..K-1, K the guidance null label); "
        "saved into the output model (default: read from the model)",
    )
    p.add_argument(
        "--dataset",
        default=None,
        choices=DATA_SOURCES,
        help="data; 'folder' reads --data-root as one subfolder of images per class "
        "(default: the one in unlearning_meta.json)",
    )
    p.add_argument(
        "--data-root",
        default=None,
        help="folder with MNIST/CIFAR-10 files, or the image folder for --dataset "
        "folder (default: the one in unlearning_meta.json)",
    )
    if need_forget:
        p.add_argument(
            "--forget-class",
            type=int,
            default=None,
            help="forgotten class (default: from unlearning_meta.json)",
        )
        group = p.add_mutually_exclusive_group() if judge_optional else p
        group.add_argument(
            "--judge",
            default=None,
            help="judge checkpoint (judge.pt) (default: train one)",
        )
        if judge_optional:
            _add_no_judge(group, "no relearning curve (curve.json lists no points)")


def _add_no_judge(p, what: str) -> None:
    p.add_argument(
        "--no-judge",
        action="store_true",
        help=f"skip the judge (the classifier behind the metrics): {what} "
        "(default: use one)",
    )


def _add_no_grids(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--no-grids",
        action="store_true",
        help="skip the per-class sample grid PNGs (default: write them)",
    )


def _add_common_args(
    p: argparse.ArgumentParser, argparse_default: bool = False
) -> None:
    """``--threads`` and ``-v``, accepted before or after the subcommand.

    On the subcommands their default is SUPPRESS, so a value given before the
    subcommand is not reset by the subparser (argparse's usual pitfall).
    """
    dflt = (lambda v: v) if argparse_default else (lambda v: argparse.SUPPRESS)
    p.add_argument(
        "--threads",
        type=int,
        default=dflt(None),
        help="torch CPU threads (default: torch's choice)",
    )
    p.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=dflt(False),
        help="debug logging",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argparse tree of all subcommands."""
    parser = argparse.ArgumentParser(prog="python -m unlearning", description=__doc__)
    _add_common_args(parser, argparse_default=True)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("pretrain", help="pre-train the class-conditional DDPM + judge")
    _add_common_args(p)
    add_config_arguments(p, PretrainConfig)
    p.add_argument("--out", required=True, help="output folder")
    _add_no_judge(p, "no judge.pt is trained")
    _add_no_grids(p)
    p.set_defaults(func="cmd_pretrain")

    p = sub.add_parser("unlearn", help="unlearn a class from a saved model")
    _add_common_args(p)
    _add_model_args(p, need_forget=False)
    add_config_arguments(p, UnlearnConfig)
    p.add_argument("--out", required=True, help="output folder")
    _add_no_grids(p)
    p.set_defaults(func="cmd_unlearn")

    p = sub.add_parser("relearn", help="DiMRA relearning attack on a saved model")
    _add_common_args(p)
    _add_model_args(p, need_forget=True, judge_optional=True)
    add_config_arguments(p, RelearnConfig)
    p.add_argument("--out", required=True, help="output folder")
    _add_no_grids(p)
    p.set_defaults(func="cmd_relearn")

    p = sub.add_parser("evaluate", help="score a saved model with the judge")
    _add_common_args(p)
    _add_model_args(p, need_forget=True)
    add_config_arguments(p, EvalConfig)
    p.add_argument(
        "--reference-model",
        default=None,
        help="model to compare parameters against (e.g. the pre-trained one)",
    )
    p.add_argument("--out", default=None, help="folder for metrics.json")
    p.set_defaults(func="cmd_evaluate")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (2 with a message on bad input)."""
    parser = build_parser()
    ns = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if ns.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    # torch and diffusers load only now: a bad command line was answered above at once
    from trainkit import set_cpu_threads
    from unlearning import commands

    set_cpu_threads(ns.threads)
    try:
        getattr(commands, ns.func)(ns)
    except (ValueError, FileNotFoundError) as e:
        parser.exit(2, f"error: {e}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
