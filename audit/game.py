"""The membership game: target records, IN/OUT worlds per shadow seed, seed splits.

For target t and shadow seed s, one random ordering of the other rows gives both worlds:
OUT_s is its first ``world_size`` rows, IN_s its first ``world_size - 1`` rows plus t.
The two worlds have the same size and differ in one record (replace-one neighbours, the
adjacency of VFLGAN's accountant, ``research/vflgan.md`` section 4.3), and each is a
uniformly random subset of its kind. With the default ``world_size = n - 1`` this is the
paper's game: OUT is the real table without t (``*_LOO_<t>.py``), IN the real table
without one random other row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.neighbors import NearestNeighbors

from audit.config import AuditConfig

IN, OUT = "in", "out"


@dataclass(frozen=True)
class Target:
    """One target record.

    Attributes:
        label: its index label in the real table (its id).
        position: its row position in the real table.
        nn_distance: distance to its nearest other real record in the encoded space.
        chosen_by: ``"outlier"`` (picked by distance) or ``"user"``.
    """

    label: object
    position: int
    nn_distance: float
    chosen_by: str

    def to_dict(self) -> dict:
        """Return a JSON-ready dict."""
        label = self.label.item() if hasattr(self.label, "item") else self.label
        return {
            "label": label,
            "position": self.position,
            "nn_distance": self.nn_distance,
            "chosen_by": self.chosen_by,
        }


@dataclass(frozen=True)
class Trial:
    """One shadow model to train: a world (a set of real rows) and a fit seed.

    Attributes:
        target: row position of the target.
        world: ``"in"`` or ``"out"``.
        shadow: shadow index s in [0, n_shadows).
        fit_seed: the seed handed to the fit callable.
        rows: sorted row positions of the world, shape (world_size,).
    """

    target: int
    world: str
    shadow: int
    fit_seed: int
    rows: np.ndarray

    @property
    def name(self) -> str:
        """File-name-safe key, e.g. ``t151-in-s007``."""
        return f"t{self.target}-{self.world}-s{self.shadow:03d}"

    def describe(self) -> str:
        """Human-readable key for error messages."""
        return f"shadow (target position {self.target}, {self.world}, s={self.shadow})"


def nearest_neighbour_distances(encoded: np.ndarray) -> np.ndarray:
    """Distance of every row to its nearest *other* row, shape (n_rows,)."""
    nn = NearestNeighbors(n_neighbors=2).fit(encoded)
    dist, idx = nn.kneighbors(encoded)
    # With exact duplicates the row itself need not come first; take the nearest
    # neighbour that is not the row.
    self_first = idx[:, 0] == np.arange(len(encoded))
    return np.where(self_first, dist[:, 1], dist[:, 0])


def select_targets(
    real: pd.DataFrame, encoded: np.ndarray, config: AuditConfig
) -> list[Target]:
    """Pick the targets: the user's ids/positions, or the strongest outliers.

    Outliers are the rows farthest from their nearest neighbour in the encoded space
    (the usual choice in Stadler et al.-style audits); ties go to the earlier row.

    Raises:
        ValueError: an id is not in the index, a position is out of range, a target is
            repeated, or ``n_targets`` exceeds the number of rows.
    """
    n = len(real)
    nn_dist = nearest_neighbour_distances(encoded)
    if config.targets:
        positions = []
        for label in config.targets:
            if label not in real.index:
                raise ValueError(
                    f"target id {label!r} is not in the real table's index "
                    f"({n} rows, {_describe_index(real.index)}); expected an index label"
                )
            positions.append(int(real.index.get_loc(label)))
        chosen_by = "user"
    elif config.target_positions:
        for p in config.target_positions:
            if not 0 <= p < n:
                raise ValueError(
                    f"target position {p} is out of range; expected 0 <= position < {n}"
                )
        positions, chosen_by = list(config.target_positions), "user"
    else:
        if config.n_targets > n:
            raise ValueError(
                f"n_targets={config.n_targets}; expected at most the {n} real rows"
            )
        order = np.lexsort((np.arange(n), -nn_dist))
        positions, chosen_by = [int(p) for p in order[: config.n_targets]], "outlier"
    if len(set(positions)) != len(positions):
        raise ValueError(f"targets {positions} (positions) repeat; expected distinct")
    return [Target(real.index[p], p, float(nn_dist[p]), chosen_by) for p in positions]


def resolve_world_size(n_rows: int, config: AuditConfig) -> int:
    """The world size: ``config.world_size`` or n_rows - 1, checked against the table.

    Raises:
        ValueError: the world would need more rows than the table has besides the target.
    """
    size = n_rows - 1 if config.world_size is None else config.world_size
    if not 2 <= size <= n_rows - 1:
        raise ValueError(
            f"world_size={size} with {n_rows} real rows; expected "
            f"2 <= world_size <= {n_rows - 1} (an OUT world holds only non-targets)"
        )
    return size


def build_trials(
    n_rows: int, target: int, world_size: int, config: AuditConfig
) -> list[Trial]:
    """All IN and OUT trials of one target, ordered (s=0 in, s=0 out, s=1 in, ...)."""
    others = np.delete(np.arange(n_rows), target)
    trials = []
    for s in range(config.n_shadows):
        rng = np.random.default_rng([config.seed, target, s])
        order = rng.permutation(others)
        worlds = {
            IN: np.sort(np.append(order[: world_size - 1], target)),
            OUT: np.sort(order[:world_size]),
        }
        for world, rows in worlds.items():
            key = [config.seed, target, s] + (
                [] if config.share_seeds else [int(world == IN)]
            )
            fit_seed = int(np.random.SeedSequence(key).generate_state(1)[0] >> 1)
            trials.append(Trial(target, world, s, fit_seed, rows))
    return trials


def seed_splits(
    n_shadows: int, n_train: int, n_splits: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Random train/test splits of the shadow seeds (the paper's 5 x 70/30).

    A split puts IN and OUT shadows of the same seed on the same side.
    """
    rng = np.random.default_rng([seed, 1])
    splits = []
    for _ in range(n_splits):
        perm = rng.permutation(n_shadows)
        splits.append((np.sort(perm[:n_train]), np.sort(perm[n_train:])))
    return splits


def seed_folds(
    n_shadows: int, n_folds: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """K-fold split of the shadow seeds; every seed is in exactly one test fold."""
    perm = np.random.default_rng([seed, 2]).permutation(n_shadows)
    folds = np.array_split(perm, n_folds)
    return [
        (np.sort(np.concatenate(folds[:k] + folds[k + 1 :])), np.sort(folds[k]))
        for k in range(n_folds)
    ]


def _describe_index(index: pd.Index) -> str:
    if isinstance(index, pd.RangeIndex) and len(index):
        return f"labels {index.min()}..{index.max()}"
    head = ", ".join(repr(v) for v in index[:5])
    return f"labels {head}{', ...' if len(index) > 5 else ''}"
