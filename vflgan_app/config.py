"""Configuration: frozen dataclasses, read once at each entry point by one parser.

* :class:`VFLGANConfig`: the run (data, model, training, outputs), with
* :class:`DPConfig`: differential privacy (run-config keys ``dp.*``), and
* :class:`FlowerSettings`: the Flower runtime (run-config keys ``flower.*``).

Defaults run a small CPU job on the embedded sklearn digits; ``None`` means "the
preset's value" (the dataset's architecture, research/vflgan.md 2.2 and 3, or the DP
mode's sampler). Every value from TOML, the command line or a dict goes through
:func:`parse_fields`, which converts by the field's declared type with one rule for
booleans and ``None`` and refuses anything else; ``__post_init__`` validates and never
changes a value the user gave.

This module imports nothing of the package but :mod:`vflgan_app.checks` and
:mod:`vflgan_app.architectures` (both plain Python), so reading a config is cheap.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from vflgan_app.architectures import ARCHITECTURES, Architecture, get_architecture
from vflgan_app.checks import check_delta, check_positive

#: Model families a run can train.
MODELS = ("vflgan", "vertigan", "centralized")
#: Built-in datasets (loaders in :mod:`vflgan_app.data.sources`).
DATASETS = ("digits", "breast_cancer", "mnist", "adult", "wine_red", "wine_white")
#: Batch samplers (:func:`vflgan_app.core.sampling.batch_indices`).
SAMPLERS = ("shuffle", "wor")
#: DP modes (:mod:`vflgan_app.dp`).
DP_MODES = ("none", "paper", "strict")
#: Critic objectives: the paper's per-module penalties, or one penalty through the whole
#: split critic (:mod:`vflgan_app.core.joint`).
OBJECTIVES = ("paper", "joint")
#: How the joint objective's penalty crosses the wire in exact mode
#: (:mod:`vflgan_app.core.joint`): a mid-step exchange, or Gram matrices with the IFs.
JOINT_EXCHANGES = ("penalty", "gram")

#: A run name is a plain folder name (never a path): parties and the server join it
#: under their own folders, so it must not climb out of them.
RUN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,99}")

#: Devices a run can ask for (:func:`trainkit.select_device`).
DEVICE = re.compile(r"cpu|auto|cuda(:[0-9]+)?")

_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")
_NONE = ("", "none", "null")


# ---------------------------------------------------------------------------------
# the one parser


def parse_fields(cls: type, values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Convert ``{key: value}`` to constructor arguments of the dataclass ``cls``.

    Keys may be snake_case or kebab-case and may carry ``prefix`` (e.g. ``"dp."``).
    Each value is converted by the field's type: ``"", "none", "null"`` -> None for an
    optional field; booleans from ``true/false/1/0/yes/no/on/off``; integers from
    integral numbers or strings; floats from numbers or strings.

    Raises:
        ValueError: an unknown key, or a value that does not convert (the message names
            the key, the value and what was expected).
    """
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = key.removeprefix(prefix).replace("-", "_")
        if name not in names:
            known = sorted(prefix + n.replace("_", "-") for n in names)
            raise ValueError(f"config: unknown key {key!r}; expected one of {known}")
        out[name] = _convert(prefix + name.replace("_", "-"), value, hints[name])
    return out


def _convert(key: str, value: Any, hint: Any) -> Any:
    args = typing.get_args(hint)
    optional = type(None) in args and (
        typing.get_origin(hint) in (typing.Union, types.UnionType)
    )
    kind = next((a for a in args if a is not type(None)), hint) if optional else hint
    if value is None or isinstance(value, str) and value.strip().lower() in _NONE:
        if optional:
            return None
        if value is None or kind is not str:  # a string field keeps "none" (dp.mode)
            raise ValueError(f"config: {key} got {value!r}, expected {_what(kind)}")
    if kind not in (bool, int, float, str):
        return value  # nested configs and tuples are handled by their owner
    try:
        return _CONVERTERS[kind](value)
    except (TypeError, ValueError):
        raise ValueError(f"config: {key} got {value!r}, expected {_what(kind)}") from None


def _to_bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, int) and v in (0, 1):
        return bool(v)
    if isinstance(v, str) and v.strip().lower() in _TRUE + _FALSE:
        return v.strip().lower() in _TRUE
    raise ValueError


def _to_int(v: Any) -> int:
    if isinstance(v, bool):
        raise TypeError
    if isinstance(v, float):
        if not v.is_integer():
            raise ValueError
        return int(v)
    if isinstance(v, int):
        return v
    return int(str(v).strip())


def _to_float(v: Any) -> float:
    if isinstance(v, bool):
        raise TypeError
    return float(v.strip() if isinstance(v, str) else v)


def _to_str(v: Any) -> str:
    if not isinstance(v, str):
        raise TypeError
    return v


_CONVERTERS = {bool: _to_bool, int: _to_int, float: _to_float, str: _to_str}


def _what(kind: Any) -> str:
    return {bool: "true or false", int: "an integer", float: "a number",
            str: "a string"}.get(kind, str(kind))


def _check_types(obj: Any, prefix: str = "") -> None:
    """Every scalar field holds a value of its declared type (before any range check).

    A dataclass built in Python skips :func:`parse_fields`, so ``steps=True``,
    ``batch_size=2.5``, ``seed="x"`` or ``lr=inf`` would otherwise fail much later with
    a raw error. Booleans are not integers here; floats must be finite.
    """
    for f in dataclasses.fields(obj):
        hint = typing.get_type_hints(type(obj))[f.name]
        args = typing.get_args(hint)
        optional = type(None) in args
        kind = next((a for a in args if a is not type(None)), hint) if optional else hint
        if kind not in (bool, int, float, str):
            continue
        value = getattr(obj, f.name)
        if value is None and optional:
            continue
        ok = {bool: lambda v: isinstance(v, bool),
              int: _is_int,
              float: lambda v: _is_int(v) or isinstance(v, float) and math.isfinite(v),
              str: lambda v: isinstance(v, str)}[kind](value)
        if not ok:
            key = prefix + f.name.replace("_", "-")
            what = _what(kind) + (" (finite)" if kind is float else "")
            raise ValueError(f"{key}: got {value!r} of type {type(value).__name__}, "
                             f"expected {what}{' or none' if optional else ''}")


def _need(obj: Any, cond: bool, name: str, expected: str, prefix: str = "") -> None:
    if not cond:
        key = prefix + name.replace("_", "-")
        raise ValueError(f"{key}: got {getattr(obj, name)!r}, expected {expected}")


# ---------------------------------------------------------------------------------
# differential privacy


@dataclass(frozen=True)
class DPConfig:
    """Differential privacy of a VFLGAN run (run-config keys ``dp.*``).

    Attributes:
        mode: ``"none"``, ``"paper"`` (the published first-layer mechanism) or
            ``"strict"`` (per-sample DP-SGD on every critic block; docs/privacy.md).
        target_epsilon: the budget; training stops before a step that would exceed it,
            and sigma is calibrated to reach it after ``steps`` when not given.
        delta: the delta of (epsilon, delta)-DP; warned about when >= 1/N.
        noise_multiplier: sigma (noise std / replace-one sensitivity), per noised block;
            None = calibrate from ``target_epsilon``, ``delta`` and the run's steps.
        clip: the clip bound C; None = the paper's ``1.5 / B`` (paper mode, on the batch
            gradient of the first-layer weight) or 1.0 (strict mode, per sample and block).
        noise_seed: fixed seed of the parties' and server's noise generators. For tests
            only: None (default) seeds them from ``secrets``.
        public_domain: the declared public domain of columns, as JSON text (an object)
            or the path of a JSON file: ``{"col": {"categories": [...], "other": v}}``
            for a categorical column, ``{"col": {"low": a, "high": b, "integer": true}}``
            for a numeric one (docs/privacy.md, "The decoding schema"). Under DP these
            columns are encoded from the declaration alone (values outside it are
            mapped/clipped at the party); None = nothing declared.
        schema_epsilon_fraction: share of ``target_epsilon`` for releasing, with DP,
            the domain of every column that has none declared (noisy counts with a
            threshold; composed with training under RDP). None = 0.1 when
            ``public_domain`` is None, else 0 (then every column must be declared, or be
            a bounded column, and a missing one is an error that names it).
    """

    mode: str = "none"
    target_epsilon: float = 10.0
    delta: float = 1e-5
    noise_multiplier: float | None = None
    clip: float | None = None
    noise_seed: int | None = None
    public_domain: str | None = None
    schema_epsilon_fraction: float | None = None

    def __post_init__(self) -> None:
        _need(self, self.mode in DP_MODES, "mode", f"one of {list(DP_MODES)}", "dp.")
        check_positive("target_epsilon", self.target_epsilon)
        check_delta(self.delta)
        if self.noise_multiplier is not None:
            check_positive("noise_multiplier", self.noise_multiplier)
        if self.clip is not None:
            check_positive("clip", self.clip)
        if self.noise_seed is not None and (
            isinstance(self.noise_seed, bool) or not isinstance(self.noise_seed, int)
        ):
            raise TypeError(f"dp.noise-seed: got {self.noise_seed!r}, expected an integer "
                            "or none")
        if self.public_domain is not None and not isinstance(self.public_domain, str):
            raise TypeError(f"dp.public-domain: got {type(self.public_domain).__name__}, "
                            "expected JSON text or the path of a JSON file (json.dumps a "
                            "dict)")
        if self.schema_epsilon_fraction is not None:
            f = self.schema_epsilon_fraction
            _need(self, not isinstance(f, bool) and isinstance(f, int | float)
                  and 0 <= f < 1, "schema_epsilon_fraction", "0 <= fraction < 1", "dp.")

    @property
    def enabled(self) -> bool:
        """Whether any DP mechanism is on."""
        return self.mode != "none"

    @property
    def schema_fraction(self) -> float:
        """``schema_epsilon_fraction`` resolved: 0.1 without a public domain, else 0."""
        if self.schema_epsilon_fraction is not None:
            return float(self.schema_epsilon_fraction)
        return 0.1 if self.public_domain is None else 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> DPConfig:
        """Build from ``{field: value}``: snake or kebab keys, with or without ``dp.``."""
        plain = {k.removeprefix("dp_"): v for k, v in values.items()}
        return cls(**parse_fields(cls, {_dp_key(k): v for k, v in plain.items()}, "dp."))

    @classmethod
    def from_run_config(cls, run_config: Mapping[str, Any]) -> DPConfig:
        """Read the flattened ``dp.*`` keys of a Flower run config (others ignored)."""
        return cls.from_dict({k: v for k, v in run_config.items() if k.startswith("dp.")})


def _dp_key(key: str) -> str:
    return key if key.startswith("dp.") else "dp." + key


# ---------------------------------------------------------------------------------
# the run


@dataclass(frozen=True)
class VFLGANConfig:
    """Everything a VFLGAN run needs.

    Attributes:
        dataset: built-in dataset name, or ``"custom"`` (tables given to the API or
            party CSVs in a deployment).
        architecture: architecture preset; default the dataset's own.
        steps: critic iterations (the generator steps every ``n_critic``).
        batch_size: B; None = preset.
        lr: Adam learning rate; None = preset.
        latent_dim: d; None = preset.
        lambda_gp: gradient-penalty weight; None = preset.
        lambda_p: weight of the private critic heads (paper: 1.0).
        n_critic: critic steps per generator step (paper: 5).
        objective: ``"paper"`` (the published 5-term per-module gradient penalty) or
            ``"joint"`` (one penalty on the whole split critic's input gradient plus each
            private head's end-to-end penalty, exact over the wire with one more round
            trip per critic step; :mod:`vflgan_app.core.joint`).
        joint_exchange: how the joint objective's penalty crosses the wire in exact mode:
            ``"penalty"`` (a mid-step exchange of IF-sized vectors: one more round trip
            per critic step) or ``"gram"`` (each interpolated row's Jacobian Gram matrix
            with the IFs, ``if_dim (if_dim + 1) / 2`` numbers per row, no extra round trip; chunked mode
            always uses it). Both are exact.
        generator_trunk: generator blocks shared by every party as one trunk held by the
            server (0 = none, the paper; at most the preset's number of generator
            blocks): the server computes the trunk's features of each step's z, each
            party's generator is the rest of the network; one more round trip per
            generator step in exact mode; in chunked mode the trunk's outputs are up to K
            steps stale, as the parties' IFs are (:class:`vflgan_app.core.model.GeneratorTrunk`).
        shuffle_negatives: beta >= 0, weight of an extra critic term at the server: real
            IFs re-paired across parties scored against the joint real IFs (0 = off, the
            paper;
            :func:`vflgan_app.core.coordinator.shuffled_negatives_loss`).
        sampler: ``"shuffle"`` (epochs, the non-DP paper) or ``"wor"`` (fixed-size
            batches drawn without replacement each step, the DP paper); None = the
            mode's own (``"wor"`` under DP, else ``"shuffle"``). DP refuses ``"shuffle"``:
            the accountant describes ``"wor"`` only.
        seed: run seed.
        num_parties: parties for image data (2 = top/bottom halves).
        max_rows: use only the first rows of the dataset (quick runs).
        n_samples: rows to publish; None = as many as the real table.
        data_root: folder with offline datasets (or ``VFLGAN_DATA_ROOT``).
        output_dir: where run folders go.
        device: ``"cpu"``, ``"cuda"`` or ``"auto"``.
        threads: torch CPU threads; None = torch default.
        progress: show progress bars.
        log_every: steps between log lines / progress updates.
        dp: differential privacy (:class:`DPConfig`); with ``dp.mode`` paper or strict
            every linear layer is bias-free (the paper's DP models).
    """

    dataset: str = "digits"
    architecture: str | None = None
    steps: int = 2000
    batch_size: int | None = None
    lr: float | None = None
    latent_dim: int | None = None
    lambda_gp: float | None = None
    lambda_p: float = 1.0
    n_critic: int = 5
    objective: str = "paper"
    joint_exchange: str = "penalty"
    shuffle_negatives: float = 0.0
    generator_trunk: int = 0
    sampler: str | None = None
    seed: int = 0
    num_parties: int = 2
    max_rows: int | None = None
    n_samples: int | None = None
    data_root: str | None = None
    output_dir: str = "runs"
    device: str = "cpu"
    threads: int | None = None
    progress: bool = True
    log_every: int = 100
    dp: DPConfig = field(default_factory=DPConfig)

    def __post_init__(self) -> None:
        if isinstance(self.dp, Mapping):
            object.__setattr__(self, "dp", DPConfig.from_dict(self.dp))
        if not isinstance(self.dp, DPConfig):
            raise TypeError(f"dp: got {type(self.dp).__name__}, expected a DPConfig")
        _check_types(self)
        need = lambda cond, name, expected: _need(self, cond, name, expected)  # noqa: E731
        need(self.dataset in DATASETS or self.dataset == "custom", "dataset",
             f"one of {list(DATASETS)} or 'custom'")
        need(self.architecture is None or self.architecture in ARCHITECTURES,
             "architecture", f"one of {list(ARCHITECTURES)}")
        need(_is_int(self.steps) and self.steps >= 0, "steps", "an integer >= 0")
        need(self.batch_size is None or self.batch_size >= 2, "batch_size", ">= 2")
        need(self.lr is None or self.lr > 0, "lr", "> 0")
        need(self.latent_dim is None or self.latent_dim >= 1, "latent_dim", ">= 1")
        need(self.lambda_gp is None or self.lambda_gp >= 0, "lambda_gp", ">= 0")
        need(math.isfinite(self.lambda_p) and self.lambda_p >= 0, "lambda_p", ">= 0")
        need(_is_int(self.n_critic) and self.n_critic >= 1, "n_critic", "an integer >= 1")
        need(self.objective in OBJECTIVES, "objective", f"one of {list(OBJECTIVES)}")
        need(self.joint_exchange in JOINT_EXCHANGES, "joint_exchange",
             f"one of {list(JOINT_EXCHANGES)}")
        need(self.joint_exchange == "penalty" or self.objective == "joint", "joint_exchange",
             "'penalty' with objective='paper' (the exchange carries the joint penalty)")
        need(math.isfinite(self.shuffle_negatives) and self.shuffle_negatives >= 0,
             "shuffle_negatives", ">= 0")
        need(not (self.shuffle_negatives and self.dp.mode == "strict"), "shuffle_negatives",
             "0 with dp.mode=strict (the per-sample decomposition does not cover the "
             "re-paired rows)")
        need(_is_int(self.generator_trunk) and self.generator_trunk >= 0, "generator_trunk",
             "an integer >= 0 (0 = no shared trunk)")
        need(self.sampler is None or self.sampler in SAMPLERS, "sampler",
             f"one of {list(SAMPLERS)}")
        need(not self.dp.enabled or self.sampler in (None, "wor"), "sampler",
             f"'wor' or none with dp.mode={self.dp.mode} (the accountant describes "
             "fixed-size batches drawn without replacement at every step)")
        need(self.num_parties >= 2, "num_parties", ">= 2")
        need(self.max_rows is None or self.max_rows >= 2, "max_rows", ">= 2")
        need(self.n_samples is None or self.n_samples >= 1, "n_samples", ">= 1")
        need(self.log_every >= 1, "log_every", ">= 1")
        need(self.seed >= 0, "seed", "an integer >= 0")
        need(self.threads is None or self.threads >= 1, "threads", "an integer >= 1 or none")
        need(DEVICE.fullmatch(self.device) is not None, "device",
             "'cpu', 'cuda', 'cuda:N' or 'auto'")
        if self.sampler is None:  # an unset preset value, filled in (not a change)
            object.__setattr__(self, "sampler", "wor" if self.dp.enabled else "shuffle")

    def resolve_architecture(self) -> Architecture:
        """The architecture preset with this config's overrides applied.

        Under DP every linear layer is bias-free (the paper's DP models).
        """
        name = self.architecture or (self.dataset if self.dataset in ARCHITECTURES else "adult")
        arch = get_architecture(
            name, batch_size=self.batch_size, lr=self.lr, latent_dim=self.latent_dim,
            lambda_gp=self.lambda_gp, bias=False if self.dp.enabled else None,
        )
        if self.generator_trunk > len(arch.gen_hidden):
            raise ValueError(f"generator-trunk: got {self.generator_trunk}, expected 0.."
                             f"{len(arch.gen_hidden)} (architecture {name!r} has "
                             f"{len(arch.gen_hidden)} generator blocks)")
        return arch

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-serialisable) of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> VFLGANConfig:
        """Build from a dict with snake_case or kebab-case keys; reject unknown keys.

        DP settings come as a nested ``dp`` dict (or :class:`DPConfig`), as flattened
        ``dp.<key>`` keys (run config) or as ``dp_<key>`` (CLI flags).

        Raises:
            ValueError: unknown key or a value of the wrong type.
        """
        own: dict[str, Any] = {}
        dp: dict[str, Any] = {}
        for key, value in values.items():
            if key == "dp":
                dp.update(value.to_dict() if isinstance(value, DPConfig) else dict(value))
            elif key.startswith(("dp.", "dp_", "dp-")):
                dp[key[3:]] = value
            else:
                own[key] = value
        kwargs = parse_fields(cls, own)
        if dp:
            kwargs["dp"] = DPConfig.from_dict(dp)
        return cls(**kwargs)

    @classmethod
    def from_run_config(cls, run_config: Mapping[str, Any]) -> VFLGANConfig:
        """Build from a Flower ``context.run_config`` (kebab-case keys; ``flower.*`` ignored)."""
        return cls.from_dict({k: v for k, v in run_config.items()
                              if not k.startswith("flower.")})


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# ---------------------------------------------------------------------------------
# the Flower runtime


@dataclass(frozen=True)
class FlowerSettings:
    """The ``flower.*`` run-config keys (Flower runtime only; the core never reads them).

    Attributes:
        steps_per_round: K; 1 = exact mode (one round trip per step, plus one on
            generator steps), K > 1 = chunked mode (one round trip per K steps).
        round_timeout: seconds a round trip may take before the run stops.
        connect_timeout: seconds to wait for all SuperNodes.
        checkpoint_every: steps between resumable checkpoints (0 = only at the end).
        resume: continue from the newest complete checkpoint of ``run_name``.
        overwrite: a fresh run (not ``resume``) deletes the checkpoints it finds in its
            folders; without it, it refuses folders that hold checkpoints.
        run_name: output folder name under ``output-dir``.
        evaluate: score the synthetic data (needs the built-in dataset on the server:
            simulation / demo only; a real server holds no rows).
        cache_party: reuse the live party object between messages in one process
            (only ever when ``context.state`` still holds the state it stored).
        deliver_to: who receives the published synthetic data after the run: ``"all"``
            (every party, into its own ``delivery-dir``), ``"none"``, or party ids
            such as ``"0,2"`` (docs/federation.md, "Delivery").
    """

    steps_per_round: int = 1
    round_timeout: float = 120.0
    connect_timeout: float = 120.0
    checkpoint_every: int = 0
    resume: bool = False
    overwrite: bool = False
    run_name: str = "flower"
    evaluate: bool = True
    cache_party: bool = True
    deliver_to: str = "all"

    def __post_init__(self) -> None:
        p = "flower."
        _check_types(self, p)
        _need(self, self.steps_per_round >= 1, "steps_per_round", ">= 1", p)
        _need(self, self.round_timeout > 0, "round_timeout", "> 0", p)
        _need(self, self.connect_timeout > 0, "connect_timeout", "> 0", p)
        _need(self, self.checkpoint_every >= 0, "checkpoint_every", ">= 0", p)
        _need(self, isinstance(self.run_name, str) and RUN_NAME.fullmatch(self.run_name)
              is not None, "run_name", "a folder name of letters, digits, '.', '_' or "
              "'-' (at most 100, not starting with '.' or '-'; no path separators)", p)
        _need(self, isinstance(self.deliver_to, str)
              and re.fullmatch(r"all|none|\d+(,\d+)*", self.deliver_to.replace(" ", ""))
              is not None, "deliver_to", '"all", "none" or party ids such as "0,2"', p)

    def delivery_parties(self, party_ids: list[int]) -> list[int]:
        """The parties :attr:`deliver_to` names, among ``party_ids``.

        Raises:
            ValueError: a named party id that is not in the run.
        """
        text = self.deliver_to.replace(" ", "")
        if text == "none":
            return []
        if text == "all":
            return sorted(party_ids)
        wanted = sorted({int(x) for x in text.split(",")})
        unknown = [w for w in wanted if w not in party_ids]
        if unknown:
            raise ValueError(f"config: flower.deliver-to={self.deliver_to!r} names parties "
                             f"{unknown}; expected ids of this run's parties {sorted(party_ids)}")
        return wanted

    @classmethod
    def from_run_config(cls, run_config: Mapping[str, Any]) -> FlowerSettings:
        """Read the ``flower.*`` keys; reject unknown ones."""
        mine = {k: v for k, v in run_config.items() if k.startswith("flower.")}
        return cls(**parse_fields(cls, mine, "flower."))


def parse_run_config(run_config: Mapping[str, Any]) -> tuple[VFLGANConfig, FlowerSettings]:
    """Both configs of a Flower run config (what the ServerApp and ClientApp read).

    Raises:
        ValueError: a key of an unknown table (only ``dp.*`` and ``flower.*`` exist),
            an unknown key, or a bad value.
    """
    bad = sorted(k for k in run_config
                 if "." in k and not k.startswith(("dp.", "flower.")))
    if bad:
        raise ValueError(f"config: unknown key(s) {bad}; expected top-level keys, "
                         "dp.* or flower.*")
    return VFLGANConfig.from_run_config(run_config), FlowerSettings.from_run_config(run_config)
