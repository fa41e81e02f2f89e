"""Inputs of the dependence metrics: utility targets, party slices, table checks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np


@dataclass(frozen=True)
class Target:
    """A column (or one-hot span) predicted from another party's columns.

    Attributes:
        name: Label used in reports, e.g. ``"income"``.
        party: Index of the party that holds the target columns.
        columns: The target's columns in the encoded array; one column for ``numeric``,
            a one-hot span of at least two columns for ``categorical``.
        kind: ``"numeric"`` (scored by R^2) or ``"categorical"`` (class index = argmax
            of the span, scored by accuracy).
    """

    name: str
    party: int
    columns: slice
    kind: Literal["numeric", "categorical"]

    def __post_init__(self) -> None:
        if self.kind not in ("numeric", "categorical"):
            raise ValueError(
                f"Target {self.name!r}: kind={self.kind!r}, expected 'numeric' or "
                "'categorical'"
            )
        if not isinstance(self.columns, slice) or self.columns.step not in (None, 1):
            raise ValueError(
                f"Target {self.name!r}: columns={self.columns!r}, "
                "expected a slice with step 1"
            )
        start, stop = self.columns.start or 0, self.columns.stop
        if stop is None or stop <= start:
            raise ValueError(
                f"Target {self.name!r}: columns={self.columns!r}, expected a non-empty "
                "slice with an explicit stop"
            )
        width = stop - start
        if self.kind == "numeric" and width != 1:
            raise ValueError(
                f"Target {self.name!r}: a numeric target spans {width} columns, "
                "expected exactly 1"
            )
        if self.kind == "categorical" and width < 2:
            raise ValueError(
                f"Target {self.name!r}: a categorical target spans {width} column, "
                "expected a one-hot span of at least 2"
            )


def targets_from_spans(
    party_slices: Sequence[slice],
    spans: Sequence[slice],
    names: Sequence[str] | None = None,
) -> list[Target]:
    """Build targets from encoded column spans (e.g. the dataset's per-attribute spans).

    A span of width 1 becomes a numeric target, a wider span a categorical (one-hot)
    target; the owning party is the one whose slice contains the span.

    Args:
        party_slices: Each party's contiguous columns, party 0 first.
        spans: One slice per attribute in the encoded array.
        names: Optional names, one per span; default ``"cols<start>:<stop>"``.

    Returns:
        One ``Target`` per span, in the given order.

    Raises:
        ValueError: If ``names`` has the wrong length or a span crosses parties.
    """
    if names is not None and len(names) != len(spans):
        raise ValueError(
            f"names has {len(names)} entries but spans has {len(spans)}, expected equal"
        )
    targets = []
    for i, span in enumerate(spans):
        start, stop = span.start or 0, span.stop
        name = names[i] if names is not None else f"cols{start}:{stop}"
        owner = [
            p
            for p, s in enumerate(party_slices)
            if s.start <= start and stop is not None and stop <= s.stop
        ]
        if not owner:
            raise ValueError(
                f"span {name!r}={span!r} is not inside any party's columns "
                f"{list(party_slices)!r}, expected each span within one party"
            )
        kind = "numeric" if stop - start == 1 else "categorical"
        targets.append(Target(name, owner[0], slice(start, stop), kind))
    return targets


def validate_party_slices(party_slices: Sequence[slice], n_columns: int) -> list[slice]:
    """Check that ``party_slices`` tile ``[0, n_columns)`` contiguously, in order.

    Args:
        party_slices: Each party's columns, party 0 first.
        n_columns: Number of encoded columns D.

    Returns:
        The slices with explicit integer start/stop.

    Raises:
        ValueError: Fewer than two parties, a non-slice or stepped slice, an empty
            party, a gap or overlap, or slices that do not end at ``n_columns``.
    """
    if len(party_slices) < 2:
        raise ValueError(
            f"party_slices has {len(party_slices)} part(s), expected at least 2 parties"
        )
    out, expected_start = [], 0
    for p, s in enumerate(party_slices):
        if not isinstance(s, slice) or s.step not in (None, 1):
            raise ValueError(f"party_slices[{p}]={s!r}, expected a slice with step 1")
        start = 0 if s.start is None else s.start
        stop = s.stop
        if stop is None or stop <= start:
            raise ValueError(
                f"party_slices[{p}]={s!r} is empty or open-ended, expected start < stop"
            )
        if start != expected_start:
            what = (
                "overlaps the previous party"
                if start < expected_start
                else "leaves a gap"
            )
            raise ValueError(
                f"party_slices[{p}] starts at column {start}, "
                f"expected {expected_start} "
                f"(it {what}); slices must be contiguous and in party order"
            )
        out.append(slice(start, stop))
        expected_start = stop
    if expected_start != n_columns:
        raise ValueError(
            f"party_slices cover columns [0, {expected_start}) but the data has "
            f"{n_columns} columns, expected them to cover every column exactly once"
        )
    return out


def validate_table(name: str, x: Any, n_columns: int | None = None) -> np.ndarray:
    """Return ``x`` as a finite float64 (N, D) array or raise naming ``name``."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} is a {type(x).__name__}, expected a numpy array")
    if x.ndim != 2:
        raise ValueError(f"{name} has shape {x.shape}, expected a 2-D (N, D) array")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(
            f"{name} has shape {x.shape}, expected at least one row/column"
        )
    if n_columns is not None and x.shape[1] != n_columns:
        raise ValueError(
            f"{name} has {x.shape[1]} columns but real_train has {n_columns}, "
            "expected the same encoded columns"
        )
    x = x.astype(np.float64, copy=False)
    if not np.isfinite(x).all():
        bad = int((~np.isfinite(x)).sum())
        raise ValueError(f"{name} has {bad} NaN/inf entries, expected finite values")
    return x


def validate_labels(name: str, labels: Any, n_rows: int) -> np.ndarray:
    """Return ``labels`` as a 1-D array of ``n_rows`` finite values or raise."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] != n_rows:
        raise ValueError(
            f"{name} has shape {labels.shape}, expected ({n_rows},) to match the rows "
            "of its table"
        )
    if labels.dtype.kind == "f" and not np.isfinite(labels).all():
        raise ValueError(f"{name} contains NaN/inf, expected finite labels")
    return labels


def subsample_rows(
    x: np.ndarray, labels: np.ndarray | None, max_rows: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray | None]:
    """Keep ``max_rows`` rows of ``x`` (and ``labels``), drawn without replacement.

    The kept rows stay in their original order; a table that already fits is returned
    as is and draws nothing from ``rng``.
    """
    if x.shape[0] <= max_rows:
        return x, labels
    rows = np.sort(rng.choice(x.shape[0], size=max_rows, replace=False))
    return x[rows], None if labels is None else labels[rows]


def validate_targets(targets: Sequence[Target], party_slices: Sequence[slice]) -> None:
    """Check that each target's party exists and its columns lie inside that party.

    Raises:
        ValueError: Naming the target, on a bad party index or columns outside it.
    """
    for t in targets:
        if not 0 <= t.party < len(party_slices):
            raise ValueError(
                f"Target {t.name!r}: party={t.party}, "
                f"expected 0..{len(party_slices) - 1}"
            )
        s = party_slices[t.party]
        if not (s.start <= (t.columns.start or 0) and t.columns.stop <= s.stop):
            raise ValueError(
                f"Target {t.name!r}: columns={t.columns!r} are not inside party "
                f"{t.party}'s columns {s!r}"
            )
