"""Built-in generators for the CLI and for planted-signal tests.

* ``copy``: returns its training rows in a random order, a planted leak (every
  training row is released verbatim);
* ``independent``: samples every column independently from the *full* real table's
  marginals, fixed at construction; it ignores its training rows, so IN and OUT shadows
  are identically distributed (a planted null);
* ``copula``: a Gaussian copula fitted to the training rows (per-column empirical
  marginals plus a Gaussian correlation of the normal scores), a real non-GAN generator.

Each is a picklable callable ``(rows, seed) -> synthetic table``, so it runs in worker
processes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats


class CopyGenerator:
    """Release the training rows themselves, shuffled (a planted leak)."""

    def __init__(self, n_samples: int | None = None) -> None:
        """``n_samples`` rows per release; ``None`` = as many as the training rows."""
        self.n_samples = n_samples

    def __call__(self, rows: pd.DataFrame, seed: int) -> pd.DataFrame:
        """Return the rows in a random order (with repeats if more are asked for)."""
        rng = np.random.default_rng(seed)
        n = self.n_samples or len(rows)
        order = rng.permutation(len(rows))
        if n > len(rows):
            order = np.append(order, rng.integers(0, len(rows), n - len(rows)))
        return rows.iloc[order[:n]].reset_index(drop=True)


class IndependentGenerator:
    """Sample each column independently from a fixed public table's marginals."""

    def __init__(self, public: pd.DataFrame, n_samples: int | None = None) -> None:
        """Fix the marginals of ``public`` (e.g. the whole real table) once."""
        self.columns = list(public.columns)
        self.values = {c: public[c].to_numpy() for c in self.columns}
        self.n_samples = n_samples

    def __call__(self, rows: pd.DataFrame, seed: int) -> pd.DataFrame:
        """Return a table that does not depend on ``rows`` (only on its length)."""
        rng = np.random.default_rng(seed)
        n = self.n_samples or len(rows)
        return pd.DataFrame(
            {c: rng.choice(self.values[c], size=n, replace=True) for c in self.columns}
        )


class GaussianCopulaGenerator:
    """Gaussian copula: empirical marginals, Gaussian dependence of normal scores.

    Numeric columns map to normal scores through their ranks; a categorical value maps
    to the normal quantile of the middle of its cumulative-frequency interval. Sampling
    draws correlated normals and maps them back through the empirical quantiles (linear
    interpolation between training values) or the category intervals.
    """

    def __init__(
        self, categorical_columns: Sequence[str] = (), n_samples: int | None = None
    ) -> None:
        """Treat ``categorical_columns`` as categorical; the others must be numeric."""
        self.categorical = set(categorical_columns)
        self.n_samples = n_samples

    def __call__(self, rows: pd.DataFrame, seed: int) -> pd.DataFrame:
        """Fit the copula on ``rows`` and sample a table of the same columns."""
        rng = np.random.default_rng(seed)
        n = self.n_samples or len(rows)
        margins, scores = [], []
        for c in rows.columns:
            values = rows[c].to_numpy()
            if c in self.categorical:
                # One original value per category keeps the column's type.
                _, first, inverse, counts = np.unique(
                    values.astype(str) if values.dtype.kind == "O" else values,
                    return_index=True,
                    return_inverse=True,
                    return_counts=True,
                )
                cum = np.cumsum(counts) / len(values)
                mid = cum - counts / len(values) / 2
                margins.append(("cat", values[first], cum))
                scores.append(stats.norm.ppf(mid[inverse]))
            else:
                x = values.astype(np.float64)
                u = stats.rankdata(x) / (len(x) + 1)
                margins.append(("num", np.sort(x), None))
                scores.append(stats.norm.ppf(u))
        z = np.column_stack(scores)  # (n_rows, n_cols)
        corr = _nearest_correlation(z)
        u = stats.norm.cdf(
            rng.standard_normal((n, len(margins))) @ np.linalg.cholesky(corr).T
        )
        out = {}
        for c, (kind, support, cum), u_c in zip(rows.columns, margins, u.T):
            if kind == "num":
                out[c] = np.quantile(support, u_c, method="linear")
            else:
                out[c] = support[
                    np.minimum(np.searchsorted(cum, u_c), len(support) - 1)
                ]
        return pd.DataFrame(out)


GENERATORS = ("copy", "independent", "copula")


def make_generator(
    name: str,
    real: pd.DataFrame,
    categorical_columns: Sequence[str] = (),
    n_samples: int | None = None,
):
    """Return the built-in generator ``name`` (one of ``GENERATORS``).

    Args:
        name: ``"copy"``, ``"independent"`` or ``"copula"``.
        real: the whole real table (the ``independent`` generator's fixed marginals).
        categorical_columns: categorical columns (for ``copula``).
        n_samples: rows per synthetic table; ``None`` = as many as the training rows.

    Raises:
        ValueError: an unknown name.
    """
    if name == "copy":
        return CopyGenerator(n_samples)
    if name == "independent":
        return IndependentGenerator(real, n_samples)
    if name == "copula":
        return GaussianCopulaGenerator(categorical_columns, n_samples)
    raise ValueError(f"generator={name!r}; expected one of {GENERATORS}")


def _nearest_correlation(z: np.ndarray) -> np.ndarray:
    """Correlation of the normal scores, made positive definite (constant -> 0)."""
    std = z.std(axis=0)
    ok = std > 0
    corr = np.eye(z.shape[1])
    if ok.sum() > 1:
        corr[np.ix_(ok, ok)] = np.corrcoef(z[:, ok], rowvar=False)
    w, v = np.linalg.eigh(corr)
    corr = (v * np.maximum(w, 1e-6)) @ v.T
    d = np.sqrt(np.diag(corr))
    return corr / np.outer(d, d)
