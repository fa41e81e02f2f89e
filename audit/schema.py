"""The real table's schema: column kinds, normalisation and the encoded audit space.

Every table the audit reads (the real one and each shadow's synthetic one) goes through
:meth:`TableSchema.normalize` first, so a synthetic table read back from the shadow cache
gives exactly the features the freshly sampled one gave. The encoded space (numeric
columns z-scored with the *real* table's mean and std, categorical columns one-hot over
the *real* table's categories) is shared by target selection, the correlation features
and the distance features.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

NUMERIC = "numeric"
CATEGORICAL = "categorical"


@dataclass(frozen=True)
class ColumnSpec:
    """One column: its kind and, for categoricals, the real table's categories.

    Attributes:
        name: column name.
        kind: ``"numeric"`` or ``"categorical"``.
        as_text: categorical values are compared as ``str`` (object/bool/category
            columns); otherwise as float (an integer column declared categorical).
        categories: sorted categories of the real table (categoricals only).
        mean: the real column's mean (numerics only).
        scale: the real column's std, 1.0 when the column is constant (numerics only).
    """

    name: str
    kind: str
    as_text: bool = False
    categories: tuple = ()
    mean: float = 0.0
    scale: float = 1.0


class TableSchema:
    """Column kinds and encodings, fitted once on the real table."""

    def __init__(self, columns: Sequence[ColumnSpec]) -> None:
        """Build a schema from column specs (use :meth:`fit` for a real table)."""
        self.columns: tuple[ColumnSpec, ...] = tuple(columns)
        self.names: tuple[str, ...] = tuple(c.name for c in self.columns)
        self.width = sum(
            len(c.categories) if c.kind == CATEGORICAL else 1 for c in self.columns
        )

    @classmethod
    def fit(
        cls, real: pd.DataFrame, categorical_columns: Sequence[str] | None = None
    ) -> TableSchema:
        """Infer kinds (or take ``categorical_columns``) and fit the encodings.

        Args:
            real: the real table; no missing values.
            categorical_columns: columns to treat as categorical; ``None`` infers
                object, bool and category dtypes as categorical.

        Raises:
            ValueError: a named column is missing, or a column has missing values or
                non-numeric values in a numeric column.
        """
        if categorical_columns is None:
            categorical = [c for c in real.columns if not _is_numeric(real[c])]
        else:
            missing = [c for c in categorical_columns if c not in real.columns]
            if missing:
                raise ValueError(
                    f"categorical_columns {missing} are not columns of the real table; "
                    f"expected a subset of {list(real.columns)}"
                )
            categorical = list(categorical_columns)
        specs = []
        for name in real.columns:
            col, label = real[name], f"real column {name!r}"
            if name in categorical:
                as_text = not _is_numeric(col)
                values = _column_values(col, CATEGORICAL, as_text, label)
                specs.append(
                    ColumnSpec(
                        str(name), CATEGORICAL, as_text, tuple(sorted(set(values)))
                    )
                )
            else:
                values = _column_values(col, NUMERIC, False, label)
                std = float(values.std())
                specs.append(
                    ColumnSpec(
                        str(name),
                        NUMERIC,
                        mean=float(values.mean()),
                        scale=std if std > 0 else 1.0,
                    )
                )
        return cls(specs)

    @property
    def categorical(self) -> tuple[str, ...]:
        """Names of the categorical columns."""
        return tuple(c.name for c in self.columns if c.kind == CATEGORICAL)

    def normalize(self, table: pd.DataFrame, where: str) -> pd.DataFrame:
        """Check the columns and return the table in the schema's storage types.

        Numeric columns become float64; categoricals become ``str`` or float64 (as in
        the real table). Columns are put in the real table's order.

        Args:
            table: a synthetic (or real) table.
            where: what the table is, for error messages (e.g. "shadow (target 3, in,
                seed 7)").

        Raises:
            TypeError: ``table`` is not a DataFrame.
            ValueError: columns are missing or extra, the table is empty, or values are
                missing or not numeric where numbers are expected.
        """
        if not isinstance(table, pd.DataFrame):
            raise TypeError(
                f"{where}: expected a pandas DataFrame, got {type(table).__name__}"
            )
        got = [str(c) for c in table.columns]
        missing = [c for c in self.names if c not in got]
        extra = [c for c in got if c not in self.names]
        if missing or extra or len(got) != len(self.names):
            raise ValueError(
                f"{where}: the synthetic table's columns do not match the real table's: "
                f"missing {missing}, extra {extra}; expected exactly {list(self.names)}"
            )
        if len(table) == 0:
            raise ValueError(f"{where}: the synthetic table has 0 rows; expected >= 1")
        table = table.set_axis(got, axis=1)
        out = {}
        for spec in self.columns:
            label = f"{where}: column {spec.name!r}"
            out[spec.name] = _column_values(
                table[spec.name], spec.kind, spec.as_text, label
            )
        return frame_from_arrays(list(self.names), [out[n] for n in self.names])

    def encode(self, table: pd.DataFrame) -> np.ndarray:
        """Map a normalised table to the audit space, shape (n_rows, width).

        Unseen categories encode as all-zero one-hot blocks.
        """
        blocks = []
        for spec in self.columns:
            values = table[spec.name].to_numpy()
            if spec.kind == CATEGORICAL:
                blocks.append(
                    (values[:, None] == np.asarray(spec.categories)[None, :]).astype(
                        np.float64
                    )
                )
            else:
                blocks.append(((values - spec.mean) / spec.scale)[:, None])
        return np.hstack(blocks) if blocks else np.zeros((len(table), 0))

    def codes(self, table: pd.DataFrame, name: str) -> np.ndarray:
        """Integer codes of a categorical column (index into the real categories).

        Unseen categories get code -1.
        """
        spec = self.columns[self.names.index(name)]
        lookup = {v: i for i, v in enumerate(spec.categories)}
        return np.array([lookup.get(v, -1) for v in table[name].to_numpy()])

    def fingerprint(self, table: pd.DataFrame) -> str:
        """SHA-256 of a normalised table's contents (names, order and values)."""
        h = hashlib.sha256()
        for name in self.names:
            h.update(name.encode())
            values = table[name].to_numpy()
            data = values.astype(str) if values.dtype.kind in "OU" else values
            h.update(np.ascontiguousarray(data).tobytes())
        return h.hexdigest()


def frame_from_arrays(
    names: Sequence[str], arrays: Sequence[np.ndarray]
) -> pd.DataFrame:
    """Build a table from column arrays.

    The one constructor of normalised tables, so that a table read back from the cache
    equals the one that was written.
    """
    return pd.DataFrame(dict(zip(names, arrays)), columns=list(names))


def _is_numeric(col: pd.Series) -> bool:
    return ptypes.is_numeric_dtype(col) and not ptypes.is_bool_dtype(col)


def _column_values(col: pd.Series, kind: str, as_text: bool, label: str) -> np.ndarray:
    """A column in storage form: ``str`` for text categoricals, float64 otherwise."""
    if col.isna().any():
        raise ValueError(
            f"{label} has {int(col.isna().sum())} missing values; expected none "
            "(impute or drop them before the audit)"
        )
    if kind == CATEGORICAL and as_text:
        return col.astype(str).to_numpy(dtype=str)
    try:
        values = pd.to_numeric(col, errors="raise").to_numpy(dtype=np.float64)
    except (ValueError, TypeError) as e:
        raise ValueError(
            f"{label} has non-numeric values ({col.dtype}); expected numbers, or "
            "declare the column categorical"
        ) from e
    if not np.isfinite(values).all():
        raise ValueError(f"{label} has non-finite values; expected finite numbers")
    return values
