"""The robust DiMRA grid (issue 15, items 2-4): cells cached as JSON, resumable.

A grid is seeds x forget classes x methods x attacks. Every finished piece is one JSON
file under ``out/cells/`` and a rerun skips it:

* ``unlearn_s{seed}_c{c_f}_{method}.json``: the model after unlearning (``method`` =
  ``base`` for the pre-trained model): ensemble forget metrics at w = 2 and w = 0, the
  class histogram of c_f samples, retain quality (:func:`retain_quality`), parameter
  change norms and, for DiMUM and the base model, the copying check;
* ``attack_s{seed}_c{c_f}_{method}_{attack}.json``: one attack on that model: the dense
  curve (``curve_samples`` c_f samples per checkpoint, both w), its peak / late-mean /
  endpoint summaries, retain quality after the attack and the wall time.

Checkpoints (base and unlearned models, the judge ensemble) go to ``cache`` (git-ignored)
so that a rerun with more attacks does not unlearn again.

Attack specs are ``DATA:LR:SCHEDULE:STEPS[:OPTION...]``:

* DATA: ``retain`` (D_r), ``aux`` (D_au), ``retain_noalt`` (D_r without DiMUM's
  alternative class (c_f + 1) mod K), ``fewshotN`` (D_r plus N images of c_f: few-shot
  relearning, not DiMRA);
* SCHEDULE: ``constant`` or ``cosine``;
* OPTIONS: ``lastN`` (only the last N parameterised modules train), ``loraN`` (only
  rank-N LoRA adapters train, merged at the end), ``untie`` (the
  adaptive attacker's untie term on the alternative class, see
  :mod:`unlearning.relearn`).
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from trainkit import atomic_write_text, git_commit, make_generator, state_fingerprint
from unlearning.checkpoint import load_pipeline, save_pipeline
from unlearning.config import (
    ARCHS,
    EvalConfig,
    PretrainConfig,
    RelearnConfig,
    UnlearnConfig,
)
from unlearning.data import DatasetSplits, ImageData, experiment_splits, load_dataset
from unlearning.evaluate import (
    ensemble_forget_probe,
    generate,
    parameter_change_norms,
    retain_quality,
)
from unlearning.judge import (
    JudgeEnsemble,
    load_judge_ensemble,
    save_judge_ensemble,
    train_judge_ensemble,
)
from unlearning.metrics import copy_check
from unlearning.relearn import run_relearning_attack
from unlearning.stats import curve_summary
from unlearning.train import pretrain
from unlearning.unlearn import unlearn_with_log

logger = logging.getLogger(__name__)

ROBUST_METHODS = ("retrain", "swap_label", "salun", "erasediff", "dimum")
_DATA_RE = re.compile(r"^(retain|aux|retain_noalt|fewshot(\d+))$")


@dataclass(frozen=True)
class AttackSpec:
    """One attack setting (see the module docstring for the text form)."""

    data: str
    lr: float
    schedule: str
    steps: int
    last: int = 0
    untie: bool = False
    lora: int = 0

    @classmethod
    def parse(cls, text: str) -> AttackSpec:
        """``DATA:LR:SCHEDULE:STEPS[:lastN|:loraN][:untie]`` -> spec.

        Raises:
            ValueError: naming the part, its value and what was expected.
        """
        parts = text.split(":")
        if len(parts) < 4:
            raise ValueError(
                f"attack: got {text!r}, expected DATA:LR:SCHEDULE:STEPS[:OPTION...]"
            )
        data, lr, schedule, steps, *opts = parts
        if not _DATA_RE.match(data):
            raise ValueError(
                f"attack data: got {data!r}, expected retain, aux, retain_noalt or "
                "fewshotN"
            )
        try:
            lr_v, steps_v = float(lr), int(steps)
        except ValueError as e:
            raise ValueError(
                f"attack: got lr {lr!r} / steps {steps!r}, expected a number / an "
                "integer"
            ) from e
        last, untie, lora = 0, False, 0
        for o in opts:
            if o == "untie":
                untie = True
            elif re.fullmatch(r"last\d+", o):
                last = int(o[4:])
            elif re.fullmatch(r"lora\d+", o):
                lora = int(o[4:])
            else:
                raise ValueError(
                    f"attack option: got {o!r}, expected lastN, loraN or untie"
                )
        # RelearnConfig validates lr, steps, schedule, trainable_last, lora_rank.
        RelearnConfig(
            lr=lr_v, steps=steps_v, schedule=schedule, trainable_last=last, lora_rank=lora
        )
        return cls(data, lr_v, schedule, steps_v, last, untie, lora)

    @property
    def id(self) -> str:
        """File-name-safe identifier."""
        s = f"{self.data}_lr{self.lr:g}_{self.schedule}_{self.steps}"
        if self.last:
            s += f"_last{self.last}"
        if self.lora:
            s += f"_lora{self.lora}"
        if self.untie:
            s += "_untie"
        return s

    @property
    def few_shot(self) -> int:
        """N of ``fewshotN`` (0 otherwise)."""
        m = _DATA_RE.match(self.data)
        return int(m.group(2)) if m and m.group(2) else 0


@dataclass
class GridSpec:
    """What one grid command runs."""

    seeds: list[int]
    classes: list[int]
    methods: list[str]
    attacks: list[AttackSpec]
    out: Path
    cache: Path
    eval_every: int = 100
    curve_samples: int = 300
    forget_samples: int = 500
    retain_per_class: int = 50
    late_k: int = 4
    threshold: float = 0.9
    judge_seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    guidances: tuple[float, ...] = (2.0, 0.0)
    pretrain_steps: int = 3000
    unlearn_steps: int = 600
    relearn_threshold: float = 0.5
    judge_steps: int | None = None
    judge_min_accuracy: float = 0.95
    overrides: dict = field(default_factory=dict)
    #: suffix of the method names (cells, cached models, summary rows) of a variant run
    #: with ``overrides``, e.g. ``"-gen"``: ``dimum-gen``
    label: str = ""
    #: noise predictor of every model in the grid: ``mlp`` (the fast variant) or
    #: ``unet`` (the diffusers UNet2DModel digits preset); one grid directory holds one
    arch: str = "mlp"
    #: the judge ensemble's file (default ``cache/judges.pt``); judges classify images,
    #: so grids of different noise predictors can share one
    judges: Path | None = None

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"arch: got {self.arch!r}, expected one of {ARCHS}")
        if self.overrides and not self.label:
            raise ValueError(f"overrides {self.overrides}: expected a label (--label) too, "
                             "so that the variant's models and cells do not mix with the "
                             "defaults'")


def _write_json(path: Path, obj: dict) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=True) + "\n")


def _claim_arch(directory: Path, arch: str) -> None:
    """Record ``arch`` in ``directory/grid.json``; refuse a directory of another arch.

    Cells and cached models are named by seed, class and method only, so an MLP grid
    and a UNet grid must not share a directory. A directory without the file is taken
    to be the MLP grid's (written before the UNet grid existed) once it holds a cell or
    a cached model.
    """
    path = directory / "grid.json"
    if path.exists():
        have = json.loads(path.read_text()).get("arch")
    elif any((directory / "cells").glob("*.json")) or any(directory.glob("seed*")):
        have = "mlp"
    else:
        have = None
    if have is not None and have != arch:
        raise ValueError(
            f"arch: got {arch!r}, but {directory} holds a grid of arch {have!r}; "
            "expected a separate --robust-out / --cache for each noise predictor"
        )
    if not path.exists():
        _write_json(path, {"arch": arch})


def _loadavg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover - not on every platform
        return []


class RobustGrid:
    """Runs the cells of a :class:`GridSpec`, skipping those already on disk."""

    def __init__(self, spec: GridSpec) -> None:
        self.spec = spec
        self.cells = spec.out / "cells"
        for d in (spec.out, spec.cache):
            d.mkdir(parents=True, exist_ok=True)
            _claim_arch(d, spec.arch)
        self.cells.mkdir(exist_ok=True)
        self.data: DatasetSplits = load_dataset("digits")
        self._ensemble: JudgeEnsemble | None = None
        self.eval_cfg = EvalConfig(forget_samples=spec.forget_samples)

    # ------------------------------------------------------------ shared pieces
    @property
    def ensemble(self) -> JudgeEnsemble:
        """The judge ensemble, from the cache or trained once (seeds judge_seeds)."""
        if self._ensemble is None:
            path = self.spec.judges or self.spec.cache / "judges.pt"
            if path.exists():
                self._ensemble = load_judge_ensemble(path)
            else:
                self._ensemble = train_judge_ensemble(
                    "digits",
                    self.data.train,
                    self.data.holdout,
                    self.spec.judge_seeds,
                    steps=self.spec.judge_steps,
                    min_accuracy=self.spec.judge_min_accuracy,
                )
                save_judge_ensemble(self._ensemble, path)
            logger.info("judge ensemble accuracies %s", self._ensemble.accuracies)
        return self._ensemble

    def base(self, seed: int):
        """The seed's pre-trained model (cached)."""
        d = self.spec.cache / f"seed{seed}" / "base"
        if (d / "model_index.json").exists():
            pipe = load_pipeline(d)
        else:
            t0 = time.perf_counter()
            pipe = pretrain(
                self.data.train,
                PretrainConfig(
                    arch=self.spec.arch,
                    steps=self.spec.pretrain_steps,
                    seed=seed,
                    device="cpu",
                    progress=False,
                ),
            )
            logger.info("seed %d: pretrain %.0f s", seed, time.perf_counter() - t0)
            save_pipeline(
                pipe,
                d,
                {
                    "dataset": "digits",
                    "method": "pretrain",
                    "seed": seed,
                    "arch": self.spec.arch,
                },
            )
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def unlearned(self, seed: int, c_f: int, method: str, splits):
        """The unlearned model (cached) and its log dict."""
        d = self.spec.cache / f"seed{seed}" / f"c{c_f}" / f"{method}{self.spec.label}"
        log_path = d / "log.json"
        if method == "base":
            return self.base(seed), {"steps_run": 0, "unlearn_s": 0.0}
        if (d / "model_index.json").exists() and log_path.exists():
            pipe = load_pipeline(d)
            pipe.set_progress_bar_config(disable=True)
            return pipe, json.loads(log_path.read_text())
        base = self.base(seed)
        s = self.spec
        cfg = UnlearnConfig(
            method=method,
            forget_class=c_f,
            seed=seed,
            steps=s.unlearn_steps,
            retrain_steps=s.pretrain_steps,
            device="cpu",
            progress=False,
            **s.overrides,
        )
        alt_images = self.heldout_alt(seed, c_f)[0] if self.heldout else None
        t0 = time.perf_counter()
        pipe, log = unlearn_with_log(
            base, splits.forget, splits.retain, cfg, alt_images=alt_images
        )
        info = {
            "steps_run": log.steps_run,
            "stopped_early": log.stopped_early,
            "stop_reason": log.extra.get("stop_reason"),
            "unlearn_s": time.perf_counter() - t0,
            "param_change": parameter_change_norms(base.unet, pipe.unet, c_f),
        }
        save_pipeline(
            pipe,
            d,
            {"dataset": "digits", "method": method, "seed": seed, "forget_class": c_f},
        )
        atomic_write_text(log_path, json.dumps(info))
        pipe.set_progress_bar_config(disable=True)
        return pipe, info

    # ------------------------------------------------------------ measurements
    def alt_class(self, c_f: int) -> int:
        """DiMUM's alternative class (the UnlearnConfig default)."""
        alt = self.spec.overrides.get("dimum_alt_class")
        return alt if alt is not None else (c_f + 1) % self.data.num_classes

    @property
    def heldout(self) -> bool:
        """A grid of DiMUM's held-out-alternative variant (``dimum_alt=heldout``)."""
        return self.spec.overrides.get("dimum_alt") == "heldout"

    def heldout_alt(self, seed: int, c_f: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(D_alt, the copy check's reference) for the held-out variant.

        The held-out split's images of the alternative class, shuffled by the seed and
        halved: DiMUM memorises the first half under c_f, the second half stays unseen
        by every model. Neither half is in D_r, the DiMRA attack set.
        """
        alt = self.alt_class(c_f)
        images = self.data.holdout.images[self.data.holdout.labels == alt]
        gen = make_generator(seed, "heldout-alt", c_f)
        order = torch.randperm(len(images), generator=gen)
        half = len(images) // 2
        return images[order[:half]], images[order[half:]]

    def copying(self, pipe, c_f: int, label: int, splits, seed: int) -> dict:
        """Copy check of ``label`` samples against D_alt vs held-out images.

        D_alt: the retain images of the alternative class; held-out: real held-out
        images of that class (never trained on). In the held-out variant D_alt is half
        of those held-out images and the reference the other half.
        """
        alt = self.alt_class(c_f)
        images = generate(
            pipe,
            torch.full((self.spec.curve_samples,), label),
            self.eval_cfg,
            "copy-check",
        )
        if self.heldout:
            memorised, held = self.heldout_alt(seed, c_f)
        else:
            memorised = splits.retain.images[splits.retain.labels == alt]
            held = self.data.holdout.images[self.data.holdout.labels == alt]
        out = copy_check(images, memorised, held)
        out.update(
            {
                "alt_class": alt,
                "sample_label": label,
                "n_memorised": len(memorised),
                "n_heldout": len(held),
            }
        )
        return out

    def forget_probe(self, c_f: int, n: int, stream: str):
        """Ensemble probe of ``n`` c_f samples per guidance weight of the spec."""
        return ensemble_forget_probe(
            self.ensemble,
            c_f,
            n,
            self.eval_cfg,
            self.spec.guidances,
            self.spec.threshold,
            stream,
        )

    def unlearn_cell(self, seed: int, c_f: int, method: str, splits) -> dict:
        """Measure one unlearned (or base) model; cached as JSON."""
        name = method if method == "base" else f"{method}{self.spec.label}"  # base: shared
        path = self.cells / f"unlearn_s{seed}_c{c_f}_{name}.json"
        if path.exists():
            return json.loads(path.read_text())
        t0, load0 = time.perf_counter(), _loadavg()
        pipe, info = self.unlearned(seed, c_f, method, splits)
        row = {
            "kind": "unlearn",
            "seed": seed,
            "forget_class": c_f,
            "method": name,
            "arch": self.spec.arch,
            **({"overrides": self.spec.overrides} if self.spec.overrides else {}),
            **info,
            "forget": self.forget_probe(c_f, self.spec.forget_samples, "forget")(pipe),
            "retain": retain_quality(
                pipe,
                self.ensemble,
                c_f,
                splits.reference,
                self.eval_cfg,
                self.spec.retain_per_class,
                self.spec.threshold,
            ),
            "judge_accuracies": self.ensemble.accuracies,
            "judges_sha256": self.ensemble.fingerprint,
            "model_sha256": state_fingerprint(pipe.unet),
            "commit": git_commit(),
        }
        if method == "dimum":
            row["copy_check"] = self.copying(pipe, c_f, c_f, splits, seed)
        if method == "base":
            row["copy_check"] = self.copying(
                pipe, c_f, self.alt_class(c_f), splits, seed
            )
        row["wall_s"] = time.perf_counter() - t0
        row["loadavg"] = [load0, _loadavg()]
        _write_json(path, row)
        logger.info(
            "unlearn s%d c%d %-10s fr(w2) %.3f conf %.3f | p_correct %.3f KID %.2f "
            "P %.2f R %.2f | %.0f s",
            seed,
            c_f,
            method,
            row["forget"]["forget_rate"],
            row["forget"]["w2_confident_forget_rate"],
            row["retain"]["retain_p_correct"],
            row["retain"]["kid_x1000"],
            row["retain"]["precision"],
            row["retain"]["recall"],
            row["wall_s"],
        )
        return row

    def _matches_unlearn_cell(self, seed: int, c_f: int, name: str, sha: str) -> bool | None:
        """Whether the model about to be attacked is the one its unlearn cell measured.

        None: that cell predates fingerprints, or is missing. A model rebuilt after its
        cache was lost need not be bit-identical; the attack cell then says so.
        """
        path = self.cells / f"unlearn_s{seed}_c{c_f}_{name}.json"
        cell = json.loads(path.read_text()) if path.exists() else {}
        recorded = cell.get("model_sha256")
        if recorded is None:
            return None
        if recorded != sha:
            logger.warning(
                "s%d c%d %s: the model attacked (%s) is not the one its unlearn cell "
                "measured (%s): it was rebuilt; the attack cell records this",
                seed, c_f, name, sha, recorded,
            )
        return recorded == sha

    def attack_data(self, attack: AttackSpec, c_f: int, splits, seed: int):
        """(D_att, untie data or None) for ``attack``."""
        retain = splits.retain
        if attack.data == "aux":
            d = splits.aux
        elif attack.data == "retain_noalt":
            d = retain.subset(retain.labels != self.alt_class(c_f))
        else:
            d = retain
        if attack.few_shot:
            gen = make_generator(seed, "fewshot", c_f)
            pick = torch.randperm(len(splits.forget), generator=gen)[: attack.few_shot]
            shots = ImageData(splits.forget.images[pick], splits.forget.labels[pick])
            d = ImageData(
                torch.cat([d.images, shots.images]), torch.cat([d.labels, shots.labels])
            )
        untie = None
        if attack.untie:
            alt = self.alt_class(c_f)
            untie = retain.subset(retain.labels == alt)
        return d, untie

    def attack_cell(
        self, seed: int, c_f: int, method: str, attack: AttackSpec, splits
    ) -> dict:
        """Run (or load) one attack cell."""
        name = f"{method}{self.spec.label}"
        path = self.cells / f"attack_s{seed}_c{c_f}_{name}_{attack.id}.json"
        if path.exists():
            return json.loads(path.read_text())
        s = self.spec
        pipe, _ = self.unlearned(seed, c_f, method, splits)
        model_sha = state_fingerprint(pipe.unet)
        matches = self._matches_unlearn_cell(seed, c_f, name, model_sha)
        t0, load0 = time.perf_counter(), _loadavg()
        d_att, untie = self.attack_data(attack, c_f, splits, seed)
        cfg = RelearnConfig(
            attack_data="aux" if attack.data == "aux" else "retain",
            steps=attack.steps,
            lr=attack.lr,
            schedule=attack.schedule,
            trainable_last=attack.last,
            lora_rank=attack.lora,
            untie_class=self.alt_class(c_f) if attack.untie else None,
            eval_every=s.eval_every,
            eval_samples=s.curve_samples,
            seed=seed,
            device="cpu",
            progress=False,
        )
        attacked, curve = run_relearning_attack(
            pipe,
            d_att,
            c_f,
            cfg,
            self.forget_probe(c_f, s.curve_samples, "curve"),
            untie_data=untie,
            allow_forget_class=attack.few_shot > 0,
        )
        c = curve.as_dict()
        summary = {}
        for w in s.guidances:
            for m in ("forget_rate", "confident_forget_rate", "unanimous_forget_rate"):
                key = f"w{w:g}_{m}"
                summary[key] = curve_summary(c["steps"], c[key], s.late_k)
        reached = [
            st
            for st, v in zip(c["steps"], c["w2_forget_rate"], strict=True)
            if v >= s.relearn_threshold
        ]
        row = {
            "kind": "attack",
            "seed": seed,
            "forget_class": c_f,
            "method": name,
            "arch": s.arch,
            **({"overrides": s.overrides} if s.overrides else {}),
            "attack": attack.id,
            "attack_spec": attack.__dict__,
            "n_attack_images": len(d_att),
            "curve": c,
            "summary": summary,
            "steps_to_relearn": reached[0] if reached else None,
            "relearn_threshold": s.relearn_threshold,
            "final_loss_mean50": sum(curve.losses[-50:]) / min(50, len(curve.losses)),
            "retain_after": retain_quality(
                attacked,
                self.ensemble,
                c_f,
                splits.reference,
                self.eval_cfg,
                s.retain_per_class,
                s.threshold,
            ),
            "judges_sha256": self.ensemble.fingerprint,
            "model_sha256": model_sha,
            "model_matches_unlearn_cell": matches,
            "commit": git_commit(),
        }
        if method == "dimum":
            row["copy_check"] = self.copying(attacked, c_f, c_f, splits, seed)
        row["wall_s"] = time.perf_counter() - t0
        row["loadavg"] = [load0, _loadavg()]
        _write_json(path, row)
        sm = summary["w2_forget_rate"]
        logger.info(
            "attack s%d c%d %-10s %s: w2 peak %.3f late %.3f end %.3f | w0 peak %.3f"
            " | %.0f s",
            seed,
            c_f,
            method,
            attack.id,
            sm["peak"],
            sm["late_mean"],
            sm["endpoint"],
            summary["w0_forget_rate"]["peak"]
            if "w0_forget_rate" in summary
            else float("nan"),
            row["wall_s"],
        )
        return row

    def run(self) -> None:
        """Every cell of the spec, seed-major (a partial run covers whole seeds)."""
        s = self.spec
        for seed in s.seeds:
            for c_f in s.classes:
                splits = experiment_splits(self.data, c_f)
                self.unlearn_cell(seed, c_f, "base", splits)
                for method in s.methods:
                    self.unlearn_cell(seed, c_f, method, splits)
                    for attack in s.attacks:
                        self.attack_cell(seed, c_f, method, attack, splits)


def with_overrides(spec: GridSpec, **kw) -> GridSpec:
    """A copy of ``spec`` with fields replaced."""
    return replace(spec, **kw)
