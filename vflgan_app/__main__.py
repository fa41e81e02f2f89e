"""Command line: ``python -m vflgan_app train|generate|check-config``.

``train`` runs the federated protocol in-process on a built-in dataset, then publishes
the synthetic data, a preview (table) or image grid, and ``report.json`` into a run
folder it prints; with ``--checkpoint-every N`` it saves resumable checkpoints into
``<run>/checkpoints``, and ``--resume --run-name <run>`` continues a stopped run
exactly. ``generate`` re-samples a saved run from its folder alone.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from pathlib import Path

from trainkit import CheckpointError, StageTimer, create_run_dir
from vflgan_app.architectures import ARCHITECTURES
from vflgan_app.config import (
    DATASETS,
    DP_MODES,
    JOINT_EXCHANGES,
    MODELS,
    OBJECTIVES,
    RUN_NAME,
    SAMPLERS,
    DPConfig,
    VFLGANConfig,
)

logger = logging.getLogger("vflgan_app")


def _add_config_args(p: argparse.ArgumentParser) -> None:
    helps = {
        "dataset": "built-in dataset (digits, breast_cancer, mnist, adult, wine_red, wine_white)",
        "architecture": "architecture preset (default: the dataset's)",
        "steps": "critic iterations (generator steps every n-critic)",
        "batch_size": "batch size B (default: preset)",
        "lr": "Adam learning rate (default: preset)",
        "latent_dim": "latent size d (default: preset)",
        "lambda_gp": "gradient-penalty weight (default: preset)",
        "lambda_p": "private critic head weight",
        "n_critic": "critic iterations per generator iteration",
        "shuffle_negatives": "weight of shuffled-real negatives at the server (0 = off)",
        "generator_trunk": "generator blocks shared by all parties as one trunk at the "
                           "server (0 = none, the paper)",
        "objective": "critic objective: paper (per-module penalties, the published one) "
                     "or joint (one penalty through the whole split critic)",
        "joint_exchange": "how the joint penalty crosses the wire in exact mode: penalty "
                          "(one more round trip per critic step) or gram (Jacobian Gram "
                          "matrices with the IFs, if_dim (if_dim + 1) / 2 numbers per row)",
        "sampler": "batch sampler: shuffle (epochs) or wor (fixed-size, without replacement) "
                   "(default: wor under DP, else shuffle)",
        "seed": "run seed",
        "num_parties": "parties for image data (pixel-row bands)",
        "max_rows": "use only the first rows of the dataset",
        "n_samples": "rows to publish (default: as many as the real table)",
        "data_root": "folder with offline datasets (or VFLGAN_DATA_ROOT)",
        "output_dir": "where run folders are created",
        "device": "cpu, cuda (or cuda:N) or auto",
        "threads": "torch CPU threads",
        "progress": "show progress bars (true/false)",
        "log_every": "steps between progress-bar updates",
    }
    choices = {"dataset": [*DATASETS, "custom"], "architecture": list(ARCHITECTURES),
               "objective": list(OBJECTIVES),
               "joint_exchange": list(JOINT_EXCHANGES), "sampler": list(SAMPLERS)}
    for f in dataclasses.fields(VFLGANConfig):
        if f.name == "dp":
            continue
        p.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, default=None,
                       choices=choices.get(f.name), metavar=_metavar(f.name, choices),
                       help=_with_default(helps.get(f.name, f.name), f.default))
    dp_helps = {
        "mode": "differential privacy: none, paper (the published first-layer mechanism) or "
                "strict (per-sample DP-SGD on every critic block); DP needs --sampler wor (its default)",
        "target_epsilon": "privacy budget; training stops before exceeding it",
        "delta": "delta of (epsilon, delta)-DP (warned about when >= 1/N)",
        "noise_multiplier": "sigma per noised block (default: calibrated from the target)",
        "clip": "clip bound C (default: 1.5/B in paper mode, 1.0 per sample in strict mode)",
        "noise_seed": "fixed DP noise seed, TESTS ONLY: refused unless "
                      "VFLGAN_ALLOW_FIXED_NOISE_SEED=1 (default: OS randomness)",
        "public_domain": "public column domains, JSON text or a JSON file: "
                         "{\"col\": {\"categories\": [...]}} or {\"col\": {\"low\": a, "
                         "\"high\": b}} (docs/privacy.md, the decoding schema)",
        "schema_epsilon_fraction": "share of the budget spent releasing undeclared column "
                                   "domains with DP (default 0.1; 0 with a public domain)",
    }
    dp_choices = {"mode": list(DP_MODES)}
    for f in dataclasses.fields(DPConfig):
        p.add_argument(f"--dp-{f.name.replace('_', '-')}", dest=f"dp_{f.name}", default=None,
                       choices=dp_choices.get(f.name),
                       metavar=_metavar(f.name, dp_choices, "DP_"),
                       help=_with_default(dp_helps.get(f.name, f.name), f.default))


def _with_default(text: str, default: object) -> str:
    """``text`` with one "(default: ...)": the help's own wording wins over ``None``."""
    if "(default" in text:
        return text
    return f"{text} (default: {'none' if default is None else default})"


def _metavar(name: str, choices: dict, prefix: str = "") -> str | None:
    if name in choices:
        return "{" + ",".join(choices[name]) + "}"
    return prefix + name.upper()


def _config_from_args(ns: argparse.Namespace) -> VFLGANConfig:
    values = {f.name: getattr(ns, f.name) for f in dataclasses.fields(VFLGANConfig)
              if f.name != "dp" and getattr(ns, f.name) is not None}
    dp = {f.name: getattr(ns, f"dp_{f.name}") for f in dataclasses.fields(DPConfig)
          if getattr(ns, f"dp_{f.name}") is not None}
    if dp:
        values["dp"] = dp
    return VFLGANConfig.from_dict(values)


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(prog="python -m vflgan_app", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train on a built-in dataset and publish")
    _add_config_args(train)
    train.add_argument("--model", choices=MODELS, default="vflgan",
                       help="vflgan (default), or a baseline: vertigan, centralized")
    train.add_argument("--no-eval", action="store_true", help="skip the metrics")
    train.add_argument("--party-csv", action="append", default=None, metavar="NAME=PATH",
                       help="one party's own CSV (its columns + the id column); give it "
                            "once per party to train on your data (--dataset custom)")
    train.add_argument("--id-column", default="record_id",
                       help="the shared record-id column of --party-csv (default: record_id)")
    train.add_argument("--categorical", default="",
                       help="comma-separated categorical columns of --party-csv")
    train.add_argument("--run-name", default=None, help="run folder name (default: timestamp)")
    train.add_argument("--checkpoint-every", type=int, default=0, metavar="N",
                       help="save a resumable checkpoint every N steps, and at the end, "
                            "into <run>/checkpoints (vflgan only; default 0: none)")
    train.add_argument("--resume", action="store_true",
                       help="continue the run --run-name from its newest checkpoint (same "
                            "settings; --steps, --checkpoint-every, logging, --threads, "
                            "--device may change)")
    train.add_argument("--overwrite", action="store_true",
                       help="reuse the run folder --run-name, deleting its checkpoints "
                            "(without it, an existing run folder is refused)")
    gen = sub.add_parser("generate", help="sample a saved run again (from the run folder "
                                          "alone: no data needed)")
    gen.add_argument("run_dir", help="a run folder written by train")
    gen.add_argument("--n", type=int, default=1000, help="rows to generate")
    gen.add_argument("--seed", type=int, default=1, help="publication seed")
    gen.add_argument("--out", default=None, help="output folder (default: <run>/generated-<seed>)")
    chk = sub.add_parser(
        "check-config", help="check `flwr run --run-config` overrides before a run",
        description="Check the overrides of `flwr run . <federation> --run-config '...'` "
        "against this app's run config. The SuperLink refuses a misspelled key with only "
        "'Invalid run configuration.'; this names the key and the expected value.")
    chk.add_argument("overrides", nargs="*", help="the --run-config string(s), e.g. "
                     "'steps=200 flower.run-name=\"r1\"'")
    chk.add_argument("--app", default=".", help="the Flower app folder (default: .)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "train":
            return _train(args)
        if args.command == "check-config":
            return _check_config(args)
        return _generate(args)
    except (ValueError, TypeError, FileNotFoundError, FileExistsError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _train(args: argparse.Namespace) -> int:
    from vflgan_app.run import preflight, prepare_dataset, run_experiment

    cfg = _config_from_args(args)
    # every check before the run folder exists: a refused run leaves nothing behind
    if args.run_name is not None and RUN_NAME.fullmatch(args.run_name) is None:
        raise ValueError(f"--run-name: got {args.run_name!r}, expected a folder name of "
                         "letters, digits, '.', '_' or '-' (no path separators)")
    _check_checkpoint_args(args)
    reuse = args.resume or args.overwrite  # the run folder may (resume: must) exist
    if args.run_name is not None and not reuse \
            and (Path(cfg.output_dir) / args.run_name).exists():
        raise ValueError(f"--run-name: {Path(cfg.output_dir) / args.run_name} already "
                         "exists; choose another name (or --resume it, or --overwrite it)")
    if args.resume and not (Path(cfg.output_dir) / args.run_name).is_dir():
        raise FileNotFoundError(f"--resume: no run folder {Path(cfg.output_dir) / args.run_name}")
    timer = StageTimer(logger)
    with timer("data"):
        if args.party_csv:
            from vflgan_app.run import party_csv_dataset

            if cfg.dataset != "custom":  # own tables; a named dataset lends its preset
                preset = args.dataset if args.dataset in ARCHITECTURES else None
                cfg = dataclasses.replace(cfg, dataset="custom",
                                          architecture=cfg.architecture or preset)
            cats = [c for c in args.categorical.split(",") if c]
            prepared = party_csv_dataset(args.party_csv, args.id_column, cats)
        else:
            prepared = prepare_dataset(cfg)
    preflight(cfg, prepared[1])
    run_dir = create_run_dir(cfg.output_dir, {**cfg.to_dict(), "model": args.model}, cfg.seed,
                             name=args.run_name, exist_ok=reuse)
    t0 = time.perf_counter()
    report = run_experiment(cfg, args.model, run_dir, evaluate=not args.no_eval,
                            timer=timer, prepared=prepared,
                            checkpoint_every=args.checkpoint_every, resume=args.resume,
                            overwrite=args.overwrite,
                            party_names=[s.partition("=")[0] for s in args.party_csv or []]
                            or None)
    print(f"wrote {run_dir} ({time.perf_counter() - t0:.1f} s)")
    from vflgan_app.publish import console_summary

    # each headline metric beside its control and real reference, then the verdicts
    # (summary.md has the same numbers as tables, and links the plots)
    print(console_summary(report))
    return 0


def _check_checkpoint_args(args: argparse.Namespace) -> None:
    if args.checkpoint_every < 0:
        raise ValueError(f"--checkpoint-every: got {args.checkpoint_every}, expected >= 0")
    if args.resume and args.overwrite:
        raise ValueError("--resume and --overwrite: got both; expected one (continue the "
                         "run, or start it over)")
    if (args.resume or args.overwrite) and args.run_name is None:
        flag = "--resume" if args.resume else "--overwrite"
        raise ValueError(f"{flag}: needs --run-name (the run folder to "
                         f"{'continue' if args.resume else 'start over'})")
    if args.model != "vflgan" and (args.checkpoint_every or args.resume):
        raise ValueError(f"--checkpoint-every / --resume: got --model {args.model}; "
                         "resumable checkpoints are for vflgan only")


def _check_config(args: argparse.Namespace) -> int:
    from flwr.common.config import flatten_dict, get_project_config, parse_config_args

    from vflgan_app.config import parse_run_config

    try:
        overrides = parse_config_args(args.overrides or None)
    except Exception as e:  # click.ClickException: the string is not key=value pairs
        raise ValueError(f"--run-config: {getattr(e, 'message', e)}") from None
    defaults = flatten_dict(get_project_config(Path(args.app))["tool"]["flwr"]["app"]
                            .get("config", {}))
    unknown = sorted(set(overrides) - set(defaults))
    if unknown:
        import difflib

        hints = {k: difflib.get_close_matches(k, list(defaults), n=1) for k in unknown}
        near = "; ".join(f"{k!r}: did you mean {v[0]!r}?" for k, v in hints.items() if v)
        raise ValueError(f"--run-config: unknown key(s) {unknown}{'; ' + near if near else ''}"
                         f" (keys of [tool.flwr.app.config]: {sorted(defaults)})")
    cfg, settings = parse_run_config({**defaults, **overrides})
    print(f"ok: {len(overrides)} override(s); steps={cfg.steps}, dataset={cfg.dataset}, "
          f"objective={cfg.objective}, dp.mode={cfg.dp.mode}, "
          f"steps-per-round={settings.steps_per_round}, run-name={settings.run_name}")
    return 0


def _generate(args: argparse.Namespace) -> int:
    from vflgan_app.run import regenerate

    out = regenerate(Path(args.run_dir), args.n, args.seed, args.out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
