"""Configuration: one frozen dataclass, converted once at each entry point.

Defaults run a small CPU job on the embedded sklearn digits. ``None`` means "the
dataset's architecture preset" (research/vflgan.md 2.2 and 3).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from vflgan_app.data.sources import DATASETS
from vflgan_app.dp.plan import DPConfig
from vflgan_app.core.model import ARCHITECTURES, Architecture, get_architecture
from vflgan_app.core.sampling import SAMPLERS

MODELS = ("vflgan", "vertigan", "centralized")

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class VFLGANConfig:
    """Everything a VFLGAN run needs.

    Attributes:
        dataset: built-in dataset name (ignored by the Python API's ``fit`` on tables).
        architecture: architecture preset; default the dataset's own.
        steps: critic iterations (the generator steps every ``n_critic``).
        batch_size: B; None = preset.
        lr: Adam learning rate; None = preset.
        latent_dim: d; None = preset.
        lambda_gp: gradient-penalty weight; None = preset.
        lambda_p: weight of the private critic heads (paper: 1.0).
        n_critic: critic steps per generator step (paper: 5).
        sampler: ``"shuffle"`` (epochs, the non-DP paper) or ``"wor"`` (fixed-size
            batches drawn without replacement each step, the DP paper).
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
        dp: differential privacy (:class:`vflgan_app.dp.plan.DPConfig`; run-config keys
            ``dp.mode``, ``dp.target-epsilon``, ``dp.delta``, ``dp.noise-multiplier``,
            ``dp.clip``, ``dp.noise-seed``). With ``dp.mode`` paper or strict the sampler
            is set to ``"wor"`` (with a log line) and every linear layer is bias-free.
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
    sampler: str = "shuffle"
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
        def need(cond: bool, name: str, expected: str) -> None:
            if not cond:
                raise ValueError(f"{name}: got {getattr(self, name)!r}, expected {expected}")

        need(self.dataset in DATASETS or self.dataset == "custom", "dataset",
             f"one of {list(DATASETS)} or 'custom'")
        need(self.architecture is None or self.architecture in ARCHITECTURES,
             "architecture", f"one of {list(ARCHITECTURES)}")
        need(isinstance(self.steps, int) and self.steps >= 0, "steps", "an integer >= 0")
        need(self.batch_size is None or self.batch_size >= 2, "batch_size", ">= 2")
        need(self.lr is None or self.lr > 0, "lr", "> 0")
        need(self.latent_dim is None or self.latent_dim >= 1, "latent_dim", ">= 1")
        need(self.lambda_gp is None or self.lambda_gp >= 0, "lambda_gp", ">= 0")
        need(self.lambda_p >= 0, "lambda_p", ">= 0")
        need(isinstance(self.n_critic, int) and self.n_critic >= 1, "n_critic", "an integer >= 1")
        need(self.sampler in SAMPLERS, "sampler", f"one of {list(SAMPLERS)}")
        need(self.num_parties >= 2, "num_parties", ">= 2")
        need(self.max_rows is None or self.max_rows >= 2, "max_rows", ">= 2")
        need(self.n_samples is None or self.n_samples >= 1, "n_samples", ">= 1")
        need(self.log_every >= 1, "log_every", ">= 1")
        if isinstance(self.dp, Mapping):
            object.__setattr__(self, "dp", DPConfig.from_dict(self.dp))
        if not isinstance(self.dp, DPConfig):
            raise TypeError(f"dp: got {type(self.dp).__name__}, expected a DPConfig")
        if self.dp.enabled and self.sampler != "wor":
            # the accountant describes fixed-size batches drawn without replacement
            logger.info("dp.mode=%s: sampler %r -> 'wor' (fixed-size batches without "
                        "replacement, drawn independently per step, as accounted)",
                        self.dp.mode, self.sampler)
            object.__setattr__(self, "sampler", "wor")

    # -- derived ------------------------------------------------------------------
    def resolve_architecture(self) -> Architecture:
        """The architecture preset with this config's overrides applied."""
        name = self.architecture or (self.dataset if self.dataset in ARCHITECTURES else "adult")
        return get_architecture(
            name, batch_size=self.batch_size, lr=self.lr, latent_dim=self.latent_dim,
            lambda_gp=self.lambda_gp,
            # the paper's DP models have no biases
            bias=False if self.dp.enabled else None,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-serialisable) of every field."""
        return dataclasses.asdict(self)

    # -- conversion at the edges ----------------------------------------------------
    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> VFLGANConfig:
        """Build from a dict with snake_case or kebab-case keys; reject unknown keys.

        Raises:
            ValueError: unknown key or a value of the wrong type.
        """
        fields = {f.name: f for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        dp: dict[str, Any] = {}
        for key, value in values.items():
            name = key.replace("-", "_")
            if name == "dp":
                dp.update(value.to_dict() if isinstance(value, DPConfig) else dict(value))
                continue
            if name.startswith(("dp.", "dp_")):  # flattened dp.* keys / --dp-* flags
                dp[name[3:]] = value
                continue
            if name not in fields:
                raise ValueError(
                    f"config: unknown key {key!r}; expected one of "
                    f"{sorted(k.replace('_', '-') for k in fields)}"
                )
            kwargs[name] = _coerce(name, value, getattr(cls, name, None))
        if dp:
            kwargs["dp"] = DPConfig.from_dict(dp)
        return cls(**kwargs)

    @classmethod
    def from_run_config(cls, run_config: Mapping[str, Any]) -> VFLGANConfig:
        """Build from a Flower ``context.run_config`` (kebab-case keys).

        ``dp.*`` keys go to :class:`~vflgan_app.dp.plan.DPConfig`; keys of other components
        (``flower.*``) are left to them.
        """
        own = {k: v for k, v in run_config.items() if "." not in k or k.startswith("dp.")}
        return cls.from_dict(own)


def _coerce(name: str, value: Any, default: Any) -> Any:
    """Convert TOML/CLI values: "" or "none" -> None; ints where ints are expected."""
    if value is None or isinstance(value, str) and value.lower() in ("", "none", "null"):
        return None
    int_fields = {"steps", "batch_size", "latent_dim", "n_critic", "seed", "num_parties",
                  "max_rows", "n_samples", "threads", "log_every"}
    float_fields = {"lr", "lambda_gp", "lambda_p"}
    try:
        if name in int_fields:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if name in float_fields:
            return float(value)
        if name == "progress":
            if isinstance(value, str):
                return value.lower() in ("1", "true", "yes")
            return bool(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"config: {name.replace('_', '-')} got {value!r}, expected "
            f"{'an integer' if name in int_fields else 'a number'}"
        ) from None
    return value
