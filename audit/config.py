"""AuditConfig: every setting of the membership-inference audit, validated once."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from audit.metrics import max_resolvable_epsilon, min_trials_for_epsilon

TABLE_FEATURE_SETS = ("correlation", "naive", "knn")
IF_FEATURE_SETS = ("correlation", "naive")


@dataclass(frozen=True)
class AuditConfig:
    """Settings of one audit (the defaults are the paper's scale: 100 shadows per world).

    Attributes:
        n_shadows: shadow models per world (IN and OUT) and target; the paper uses 100.
        world_size: rows in every IN and OUT world; ``None`` = n_rows - 1 (OUT = the
            real table without the target, IN = the real table without one other row).
        n_targets: outlier targets to pick when neither ``targets`` nor
            ``target_positions`` is given.
        targets: target records by index label of the real table (its ids).
        target_positions: target records by row position (``iloc``).
        share_seeds: IN shadow s and OUT shadow s use the same fit seed (common random
            numbers, as the paper's seeds 0-99 for both worlds).
        feature_sets: synthetic-table (ASSD) feature sets, from ``TABLE_FEATURE_SETS``.
        if_feature_sets: intermediate-feature (ASIF) feature sets, from
            ``IF_FEATURE_SETS``; used only when features are returned.
        knn_k: number of nearest synthetic records in the ``knn`` features.
        categorical_columns: categorical columns; ``None`` infers from the dtypes.
        n_estimators: trees of the random-forest attack (paper: 1000).
        max_depth: depth of each tree (paper: 3).
        max_features: features per split (paper: "sqrt"; IF-naive always uses all).
        n_splits: random train/test splits of the shadow seeds (paper: 5).
        train_fraction: fraction of seeds the attack trains on per split (paper: 0.7).
        n_folds: folds of the cross-fit whose out-of-fold scores give the ROC curve,
            TPR at low FPR and the empirical epsilon (every shadow scored once).
        confidence: confidence of the Clopper-Pearson intervals.
        delta: delta of the (epsilon, delta) guarantee the empirical epsilon is for.
        accountant_epsilon: the accountant's epsilon, reported next to the bound.
        seed: base seed of worlds, fit seeds, splits and forests.
        workers: processes that train shadows (and forest jobs); 1 = in-process.
        progress: show a tqdm bar over shadows.
    """

    n_shadows: int = 100
    world_size: int | None = None
    n_targets: int = 2
    targets: tuple = ()
    target_positions: tuple[int, ...] = ()
    share_seeds: bool = True
    feature_sets: tuple[str, ...] = TABLE_FEATURE_SETS
    if_feature_sets: tuple[str, ...] = IF_FEATURE_SETS
    knn_k: int = 5
    categorical_columns: tuple[str, ...] | None = None
    n_estimators: int = 1000
    max_depth: int | None = 3
    max_features: str | float | int | None = "sqrt"
    n_splits: int = 5
    train_fraction: float = 0.7
    n_folds: int = 5
    confidence: float = 0.95
    delta: float = 0.0
    accountant_epsilon: float | None = None
    seed: int = 0
    workers: int = 1
    progress: bool = True

    def __post_init__(self) -> None:
        """Validate every field; errors name the field, the value and the range."""
        for name in ("targets", "target_positions", "feature_sets", "if_feature_sets"):
            _as_tuple(self, name)
        if self.categorical_columns is not None:
            _as_tuple(self, "categorical_columns")
        _check_int(self, "n_shadows", 2)
        _check_int(self, "n_targets", 1)
        _check_int(self, "knn_k", 1)
        _check_int(self, "n_estimators", 1)
        _check_int(self, "n_splits", 1)
        _check_int(self, "n_folds", 2)
        _check_int(self, "seed", 0)
        _check_int(self, "workers", 1)
        if self.world_size is not None:
            _check_int(self, "world_size", 2)
        if self.max_depth is not None:
            _check_int(self, "max_depth", 1)
        self._check_statistics()
        self._check_choices()
        self._check_splits()

    def _check_statistics(self) -> None:
        if not 0 < self.confidence < 1:
            raise ValueError(
                f"confidence={self.confidence}; expected a value in (0, 1)"
            )
        if not 0 <= self.delta < 1:
            raise ValueError(f"delta={self.delta}; expected a value in [0, 1)")
        best = max_resolvable_epsilon(
            self.n_shadows, self.n_shadows, self.confidence, self.delta
        )
        if best <= 0:
            need = min_trials_for_epsilon(0.0, self.confidence, self.delta)
            raise ValueError(
                f"n_shadows={self.n_shadows} is too few for confidence={self.confidence}"
                f" (delta={self.delta}): even a perfect attack on {self.n_shadows} IN "
                f"and {self.n_shadows} OUT trials (half of them choose the test) shows "
                f"no epsilon > 0; expected n_shadows >= {need}"
            )
        if self.accountant_epsilon is not None and not self.accountant_epsilon > 0:
            raise ValueError(
                f"accountant_epsilon={self.accountant_epsilon}; expected > 0 or None"
            )

    def _check_choices(self) -> None:
        if self.targets and self.target_positions:
            raise ValueError(
                f"targets={self.targets} and target_positions={self.target_positions} "
                "are both set; expected at most one of them"
            )
        if any(
            isinstance(p, bool) or not isinstance(p, int) for p in self.target_positions
        ):
            raise TypeError(
                f"target_positions={self.target_positions}; expected integers"
            )
        _check_names(self, "feature_sets", TABLE_FEATURE_SETS, allow_empty=False)
        _check_names(self, "if_feature_sets", IF_FEATURE_SETS, allow_empty=True)
        _check_max_features(self.max_features)

    def _check_splits(self) -> None:
        if not 0 < self.train_fraction < 1:
            raise ValueError(
                f"train_fraction={self.train_fraction}; expected a value in (0, 1)"
            )
        n_train = self.n_train
        if not 2 <= n_train <= self.n_shadows - 1:
            raise ValueError(
                f"train_fraction={self.train_fraction} with n_shadows={self.n_shadows} "
                f"trains on {n_train} seeds and tests on {self.n_shadows - n_train}; "
                "expected at least 2 to train on and 1 to test on"
            )
        if self.n_folds > self.n_shadows:
            raise ValueError(
                f"n_folds={self.n_folds}; expected at most n_shadows={self.n_shadows}"
            )

    @property
    def n_train(self) -> int:
        """Seeds the attack trains on in each random split."""
        return int(round(self.train_fraction * self.n_shadows))

    def to_dict(self) -> dict:
        """Return the resolved config as a JSON-ready dict."""
        return {
            k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()
        }

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """Names of all fields (the CLI maps its flags onto them)."""
        return tuple(f.name for f in fields(cls))


def _as_tuple(cfg: AuditConfig, name: str) -> None:
    value = getattr(cfg, name)
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise TypeError(f"{name}={value!r}; expected a tuple (or list)")
    object.__setattr__(cfg, name, tuple(value))


def _check_int(cfg: AuditConfig, name: str, minimum: int) -> None:
    value = getattr(cfg, name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}={value!r}; expected an integer >= {minimum}")
    if value < minimum:
        raise ValueError(f"{name}={value}; expected an integer >= {minimum}")


def _check_names(
    cfg: AuditConfig, name: str, allowed: tuple[str, ...], allow_empty: bool
) -> None:
    value = getattr(cfg, name)
    unknown = [v for v in value if v not in allowed]
    if unknown or len(set(value)) != len(value) or (not value and not allow_empty):
        raise ValueError(
            f"{name}={value}; expected distinct names from {allowed}"
            + ("" if allow_empty else ", at least one")
        )


def _check_max_features(value) -> None:
    ok = (
        value is None
        or value in ("sqrt", "log2")
        or (isinstance(value, float) and 0 < value <= 1)
        or (isinstance(value, int) and not isinstance(value, bool) and value >= 1)
    )
    if not ok:
        raise ValueError(
            f"max_features={value!r}; expected 'sqrt', 'log2', None, a float in (0, 1] "
            "or an int >= 1"
        )
