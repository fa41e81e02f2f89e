"""Summary statistics of relearning curves and of per-seed results (issue 15, item 2).

A DiMRA curve on a toy model does not settle: the forget rate of one endpoint is one
random phase of the trajectory. Each curve is therefore reported by three numbers,

* ``endpoint``: the value at the last checkpoint,
* ``peak``: the largest value over all checkpoints after step 0 (what the attacker can
  reach if they keep the best checkpoint, judged with c_f samples),
* ``late_mean``: the mean of the last ``k`` checkpoints (where the attack settles),

and a set of per-seed values by its mean with a confidence interval: Student's t
(``t_interval``) or a percentile bootstrap (``bootstrap_interval``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats as _st


def _as_array(values: Sequence[float], name: str) -> np.ndarray:
    a = np.asarray(list(values), dtype=float)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"{name}: got {a.size} values, expected at least one")
    if not np.isfinite(a).all():
        raise ValueError(f"{name}: got non-finite values {a.tolist()}, expected finite")
    return a


def curve_peak(values: Sequence[float], skip_first: bool = True) -> float:
    """Largest value of a curve; ``skip_first`` leaves out step 0 (the unlearned model).

    A one-point curve (only step 0) returns that point.
    """
    a = _as_array(values, "curve")
    if skip_first and a.size > 1:
        a = a[1:]
    return float(a.max())


def curve_late_mean(values: Sequence[float], k: int) -> float:
    """Mean of the last ``k`` checkpoints (all of them if the curve is shorter)."""
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k: got {k!r}, expected an integer >= 1")
    a = _as_array(values, "curve")
    return float(a[-k:].mean())


def curve_summary(
    steps: Sequence[int], values: Sequence[float], k: int
) -> dict[str, float]:
    """``endpoint``, ``peak`` (after step 0), ``peak_step`` and ``late_mean`` (last k)."""
    a = _as_array(values, "curve")
    s = list(steps)
    if len(s) != a.size:
        raise ValueError(
            f"steps: got {len(s)} steps for {a.size} values, expected equal"
        )
    start = 1 if a.size > 1 else 0
    i = start + int(np.argmax(a[start:]))
    return {
        "endpoint": float(a[-1]),
        "peak": float(a[i]),
        "peak_step": int(s[i]),
        "late_mean": curve_late_mean(a, k),
    }


def t_interval(values: Sequence[float], confidence: float = 0.95) -> dict[str, float]:
    """Mean and Student-t interval mean +- t_{n-1, (1+c)/2} * sd / sqrt(n).

    One value: the interval is that value with half-width ``nan`` (no spread known).
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence: got {confidence!r}, expected in (0, 1)")
    a = _as_array(values, "values")
    n, mean = a.size, float(a.mean())
    if n == 1:
        return {"n": 1, "mean": mean, "lo": mean, "hi": mean, "half": math.nan}
    sd = float(a.std(ddof=1))
    half = float(_st.t.ppf((1 + confidence) / 2, n - 1)) * sd / math.sqrt(n)
    return {"n": n, "mean": mean, "lo": mean - half, "hi": mean + half, "half": half}


def bootstrap_interval(
    values: Sequence[float],
    confidence: float = 0.95,
    n_boot: int = 10000,
    seed: int = 0,
) -> dict[str, float]:
    """Mean and percentile-bootstrap interval of the mean (resampling the values)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence: got {confidence!r}, expected in (0, 1)")
    if n_boot < 1:
        raise ValueError(f"n_boot: got {n_boot!r}, expected >= 1")
    a = _as_array(values, "values")
    rng = np.random.default_rng(seed)
    means = a[rng.integers(0, a.size, size=(n_boot, a.size))].mean(1)
    lo, hi = np.quantile(means, [(1 - confidence) / 2, (1 + confidence) / 2])
    return {"n": int(a.size), "mean": float(a.mean()), "lo": float(lo), "hi": float(hi)}


def format_interval(ci: dict[str, float], digits: int = 3) -> str:
    """``mean [lo, hi]`` (or just the mean for a single value)."""
    if ci["n"] == 1:
        return f"{ci['mean']:.{digits}f} (n=1)"
    return f"{ci['mean']:.{digits}f} [{ci['lo']:.{digits}f}, {ci['hi']:.{digits}f}]"
