"""Cross-party correlation errors (all cross pairs, and the top-decile real pairs).

The one home of the cross-party correlation error: ``cross_party_correlation_error``
gives both the mean over all cross-party pairs and the focused (top-decile) mean, and
``mean_cross_party_correlation_error`` is its "all" entry as one float, checked at the
boundary (the Evaluator's ``cross_party_corr_error`` keys).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from vflgan_app.eval.dependence.inputs import validate_party_slices

TOP_FRACTION = 0.1  # share of cross-party pairs kept by the focused correlation error


def cross_party_correlations(
    x: np.ndarray, party_slices: Sequence[slice]
) -> np.ndarray:
    """Pearson correlations of every cross-party column pair, flattened.

    A constant (zero-variance) column has no defined correlation; it is treated as
    uncorrelated (0.0) with every column rather than producing NaN.

    Args:
        x: Encoded table, shape (N, D).
        party_slices: Each party's contiguous columns.

    Returns:
        Shape (P,), P = sum over party pairs i < j of D_i * D_j, in the order
        (i, j) blocks, row-major within each block.
    """
    # float32 inputs (PartyData.x) would lose ~1e-7 here; float64 input is untouched
    x = np.asarray(x, dtype=np.float64)
    xc = x - x.mean(axis=0)
    std = np.sqrt((xc**2).mean(axis=0))  # (D,)
    constant = std <= 1e-12 * np.maximum(1.0, np.abs(x).max(axis=0))
    z = np.where(constant, 0.0, xc / np.where(constant, 1.0, std))
    corr = np.clip(z.T @ z / x.shape[0], -1.0, 1.0)  # (D, D)
    blocks = [
        corr[si, sj].ravel()
        for i, si in enumerate(party_slices)
        for sj in party_slices[i + 1 :]
    ]
    return np.concatenate(blocks)


def cross_party_correlation_error(
    reference: np.ndarray,
    other: np.ndarray,
    party_slices: Sequence[slice],
    top_fraction: float = TOP_FRACTION,
) -> dict[str, float]:
    """Mean |corr_reference - corr_other| over cross-party pairs: all, and focused.

    The focused error keeps the ceil(top_fraction * P) cross-party pairs with the
    largest |correlation| in ``reference`` (the dependence that actually exists), so it
    is not diluted by the many pairs whose correlation is ~0 in every dataset. Constant
    columns count as correlation 0 (see ``cross_party_correlations``).

    Args:
        reference: Real table that defines the target correlations, shape (N, D).
        other: Table to compare, shape (M, D).
        party_slices: Each party's contiguous columns.
        top_fraction: Share of pairs in the focused set, in (0, 1].

    Returns:
        ``all``, ``focused`` (mean absolute errors), ``n_pairs``, ``n_focused``.

    Raises:
        ValueError: If ``top_fraction`` is outside (0, 1].
    """
    if not 0.0 < top_fraction <= 1.0:
        raise ValueError(f"top_fraction={top_fraction}, expected a value in (0, 1]")
    c_ref, err = _cross_party_abs_errors(reference, other, party_slices)
    n_focused = max(1, math.ceil(top_fraction * c_ref.size))
    top = np.argsort(-np.abs(c_ref), kind="stable")[:n_focused]
    return {
        "all": float(err.mean()),
        "focused": float(err[top].mean()),
        "n_pairs": int(c_ref.size),
        "n_focused": int(n_focused),
    }


def mean_cross_party_correlation_error(
    reference: np.ndarray, other: np.ndarray, party_slices: Sequence[slice]
) -> float:
    """Mean |corr_reference - corr_other| over every cross-party column pair.

    The same number as ``cross_party_correlation_error(...)["all"]``, for callers that
    want one float and no focused subset; each unordered pair of columns held by two
    different parties counts once, and constant columns count as correlation 0.

    Args:
        reference: Real table that defines the target correlations, shape (N, D).
        other: Table to compare, shape (M, D).
        party_slices: Each party's contiguous columns, party 0 first, covering all D.

    Returns:
        The mean absolute correlation error, in [0, 2].

    Raises:
        ValueError: If the column counts differ or ``party_slices`` do not tile D.
    """
    reference, other = np.asarray(reference), np.asarray(other)
    if reference.ndim != 2 or other.ndim != 2 or reference.shape[1] != other.shape[1]:
        raise ValueError(
            f"reference has shape {reference.shape} but other has {other.shape}, "
            "expected 2-D tables with equal column counts"
        )
    slices = validate_party_slices(party_slices, reference.shape[1])
    return float(_cross_party_abs_errors(reference, other, slices)[1].mean())


def _cross_party_abs_errors(
    reference: np.ndarray, other: np.ndarray, party_slices: Sequence[slice]
) -> tuple[np.ndarray, np.ndarray]:
    """Return the reference's cross-party correlations and |c_ref - c_other|, (P,)."""
    c_ref = cross_party_correlations(reference, party_slices)
    c_other = cross_party_correlations(other, party_slices)
    return c_ref, np.abs(c_ref - c_other)
