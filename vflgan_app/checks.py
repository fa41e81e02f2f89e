"""Argument checks shared by the config and the DP code: each error names the field.

Imports nothing of the package (it sits below ``config``). ``FIELD_NAMES`` maps an
argument to the run-config key a user would have typed, so a bad value reads as
``dp.clip: got -0.1, expected > 0``.
"""

from __future__ import annotations

import math
import numbers
import warnings

#: Names used in error messages: the run-config key where one exists.
FIELD_NAMES = {
    "noise_multiplier": "dp.noise-multiplier",
    "clip": "dp.clip",
    "delta": "dp.delta",
    "target_epsilon": "dp.target-epsilon",
}


def _field(name: str) -> str:
    return FIELD_NAMES.get(name, name)


def check_real(name: str, value: object) -> float:
    """Return ``value`` as float, or raise if it is not a finite real number."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{_field(name)}: got {value!r} of type {type(value).__name__}, "
            "expected a real number"
        )
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{_field(name)}: got {value}, expected a finite number")
    return value


def check_positive(name: str, value: object) -> float:
    """Return ``value`` as float, or raise if it is not a finite number > 0."""
    v = check_real(name, value)
    if v <= 0:
        raise ValueError(f"{_field(name)}: got {value}, expected > 0")
    return v


def check_non_negative(name: str, value: object) -> float:
    """Return ``value`` as float, or raise if it is not a finite number >= 0."""
    v = check_real(name, value)
    if v < 0:
        raise ValueError(f"{_field(name)}: got {value}, expected >= 0")
    return v


def check_int(name: str, value: object, *, minimum: int) -> int:
    """Return ``value`` as int, or raise if it is not an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"{_field(name)}: got {value!r} of type {type(value).__name__}, "
            f"expected an integer >= {minimum}"
        )
    if value < minimum:
        raise ValueError(f"{_field(name)}: got {value}, expected >= {minimum}")
    return int(value)


def check_sample_size(sample_size: object, population_size: object) -> tuple[int, int]:
    """Validate a batch size against the number of rows it is drawn from."""
    n = check_int("population_size", population_size, minimum=1)
    b = check_int("sample_size", sample_size, minimum=1)
    if b > n:
        raise ValueError(
            f"sample_size: got {b}, expected <= population_size ({n}) for "
            "sampling without replacement"
        )
    return b, n


def check_delta(delta: float, n_rows: int | None = None) -> float:
    """Validate delta; warn when it is not small compared with ``1/n_rows``.

    Args:
        delta: The target delta of (epsilon, delta)-DP.
        n_rows: The number of records protected (rows of the training table);
            None checks the range only.

    Returns:
        ``delta`` as a float.

    Raises:
        ValueError: If ``delta`` is not in the open interval (0, 1).

    Warns:
        UserWarning: If ``delta >= 1 / n_rows``: a mechanism that publishes one
            random record in the clear satisfies such a guarantee.
    """
    d = check_real("delta", delta)
    if not 0.0 < d < 1.0:
        raise ValueError(f"dp.delta: got {delta}, expected 0 < delta < 1")
    if n_rows is None:
        return d
    n = check_int("n_rows", n_rows, minimum=1)
    if d >= 1.0 / n:
        warnings.warn(
            f"dp.delta: got {delta}, which is >= 1/N = 1/{n} = {1.0 / n:.3g}; "
            "a delta this large allows leaking a whole record. Use delta << 1/N "
            "(e.g. 1/N^1.1).",
            UserWarning,
            stacklevel=2,
        )
    return d
