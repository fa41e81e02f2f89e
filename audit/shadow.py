"""Train shadow generators through the caller's callables, in parallel, with a cache.

Each trial (target, world, seed) is fitted once: its synthetic table (and intermediate
features, for ASIF) is written to ``<cache>/<trial>.npz`` as plain arrays (no pickle)
the moment it arrives, so an interrupted audit resumes where it stopped. A cached file
records the world's rows, the fit seed and a hash of the real table; a file made for a
different audit is refused rather than reused.
"""

from __future__ import annotations

import io
import logging
import pickle
import zipfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pandas as pd

from audit.game import Trial
from audit.schema import TableSchema, frame_from_arrays
from audit.worker import fit_one
from trainkit import atomic_write_bytes, progress_bar

logger = logging.getLogger(__name__)

FitAndSample = Callable[[pd.DataFrame, int], object]
FitAndFeatures = Callable[[pd.DataFrame, int], Sequence[np.ndarray]]


@dataclass
class ShadowOutput:
    """What one shadow released.

    Attributes:
        synthetic: its normalised synthetic table.
        intermediate: for ASIF, each party's intermediate features (arrays of shape
            (n_rows, d_k)), or ``None``.
    """

    synthetic: pd.DataFrame
    intermediate: list[np.ndarray] | None


class ShadowCache:
    """One ``.npz`` per trial under ``root`` (``None``: no cache)."""

    def __init__(self, root: Path | None, schema: TableSchema, data_hash: str) -> None:
        """Cache under ``root`` for the real table with fingerprint ``data_hash``."""
        self.root, self.schema, self.data_hash = root, schema, data_hash

    def path(self, trial: Trial) -> Path:
        """The file of one trial."""
        assert self.root is not None
        return self.root / f"{trial.name}.npz"

    def load(self, trial: Trial) -> ShadowOutput | None:
        """Return the cached output of ``trial``, or ``None`` if there is none.

        Raises:
            ValueError: the file is unreadable, or was made for another audit (other
                rows, seed or real table).
        """
        if self.root is None or not self.path(trial).exists():
            return None
        path = self.path(trial)
        try:
            with np.load(path, allow_pickle=False) as z:
                data = {k: z[k] for k in z.files}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
            raise ValueError(
                f"shadow cache file {path} cannot be read ({type(e).__name__}: {e}); "
                "expected an .npz written by the audit: delete it to refit that shadow"
            ) from e
        made_for = (str(data["data"]), int(data["fit_seed"]), data["rows"].tolist())
        expected = (self.data_hash, trial.fit_seed, trial.rows.tolist())
        if made_for != expected:
            raise ValueError(
                f"shadow cache file {path} was made for another audit (other real table, "
                f"world rows or fit seed: got fit seed {made_for[1]}, expected "
                f"{expected[1]}); expected a fresh out_dir or this audit's own cache"
            )
        names = [str(c) for c in data["columns"]]
        synthetic = frame_from_arrays(names, [data[f"c{i}"] for i in range(len(names))])
        n_parties = int(data["n_parties"])
        intermediate = (
            [data[f"if{k}"] for k in range(n_parties)] if n_parties >= 0 else None
        )
        return ShadowOutput(synthetic, intermediate)

    def save(self, trial: Trial, output: ShadowOutput) -> None:
        """Write one trial's output atomically (temp file, then rename)."""
        if self.root is None:
            return
        arrays = {
            "columns": np.asarray(self.schema.names, dtype=str),
            "data": np.asarray(self.data_hash),
            "fit_seed": np.asarray(trial.fit_seed, dtype=np.int64),
            "rows": trial.rows.astype(np.int64),
            "n_parties": np.asarray(
                -1 if output.intermediate is None else len(output.intermediate)
            ),
        }
        for i, name in enumerate(self.schema.names):
            arrays[f"c{i}"] = _storable(output.synthetic[name].to_numpy())
        for k, x in enumerate(output.intermediate or ()):
            arrays[f"if{k}"] = x
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        atomic_write_bytes(self.path(trial), buf.getvalue())


def run_shadows(
    trials: Sequence[Trial],
    real: pd.DataFrame,
    fit_and_sample: FitAndSample,
    fit_and_features: FitAndFeatures | None,
    schema: TableSchema,
    cache: ShadowCache,
    *,
    workers: int = 1,
    progress: bool = True,
) -> Iterator[tuple[Trial, ShadowOutput, bool]]:
    """Yield (trial, output, was_cached) for every trial, fitting what is not cached.

    Cached trials come first; the rest are fitted in ``workers`` processes (spawned,
    so CUDA-using callables work; the callables must then be picklable) or in-process
    when ``workers == 1``. Each fresh output is validated, then cached, then yielded.

    Raises:
        TypeError: ``workers > 1`` and a callable cannot be pickled.
        ValueError: an output does not match the real table's schema (before it is
            cached), or the intermediate features change shape between shadows.
        Exception: whatever a callable raises, with a note naming the trial.
    """
    checker = _OutputChecker(schema, expect_if=fit_and_features is not None)
    todo = []
    bar = progress_bar(total=len(trials), desc="shadows", disable=not progress)
    n_cached = 0
    try:
        for trial in trials:
            cached = cache.load(trial)
            if cached is None:
                todo.append(trial)
                continue
            checker.check_intermediate(cached.intermediate, trial)
            n_cached += 1
            bar.update(1)
            yield trial, cached, True
        bar.set_postfix(cached=n_cached, to_fit=len(todo))
        for trial, raw in _fit_all(
            todo, real, fit_and_sample, fit_and_features, workers
        ):
            output = checker.check(raw, trial)
            cache.save(trial, output)
            bar.update(1)
            yield trial, output, False
    finally:
        bar.close()


def _fit_all(todo, real, fit_and_sample, fit_and_features, workers):
    def call(trial: Trial) -> tuple:
        rows = real.iloc[trial.rows]
        return (
            fit_and_sample,
            fit_and_features,
            rows,
            trial.fit_seed,
            trial.describe(),
        )

    if workers == 1:
        for trial in todo:
            yield trial, fit_one(*call(trial))
        return
    for fn in (fit_and_sample, fit_and_features):
        if fn is not None:
            _check_picklable(fn, workers)
    # At most 2 * workers worlds are in flight, so memory does not grow with the count.
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        pending: dict[Future, Trial] = {}
        queue = list(todo)[::-1]
        try:
            while queue or pending:
                while queue and len(pending) < 2 * workers:
                    trial = queue.pop()
                    pending[pool.submit(fit_one, *call(trial))] = trial
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in sorted(done, key=lambda f: pending[f].name):
                    yield pending.pop(fut), fut.result()
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise


class _OutputChecker:
    """Validates outputs; remembers the IF shapes of the first shadow."""

    def __init__(self, schema: TableSchema, expect_if: bool) -> None:
        self.schema, self.expect_if = schema, expect_if
        self.if_dims: list[int] | None = None

    def check(self, raw, trial: Trial) -> ShadowOutput:
        synthetic, intermediate = raw
        where = trial.describe()
        if isinstance(synthetic, tuple) and len(synthetic) == 2:
            if intermediate is not None:
                raise ValueError(
                    f"{where}: fit_and_sample returned (synthetic, features) and "
                    "fit_and_features was given too; expected one source of features"
                )
            synthetic, intermediate = synthetic
        table = self.schema.normalize(synthetic, where)
        if intermediate is not None:
            intermediate = [
                self._matrix(x, k, where) for k, x in enumerate(intermediate)
            ]
        self.check_intermediate(intermediate, trial)
        return ShadowOutput(table, intermediate)

    def check_intermediate(self, intermediate, trial: Trial) -> None:
        if self.expect_if and intermediate is None:
            raise ValueError(
                f"{trial.describe()}: no intermediate features (a cache file written "
                "without fit_and_features?); expected them since fit_and_features is set"
            )
        dims = None if intermediate is None else [x.shape[1] for x in intermediate]
        if self.if_dims is None and dims is not None:
            self.if_dims = dims
        if dims != self.if_dims and (dims is not None or self.if_dims is not None):
            raise ValueError(
                f"{trial.describe()}: intermediate features with widths {dims} per "
                f"party; expected {self.if_dims} like the first shadow"
            )

    @staticmethod
    def _matrix(x, k: int, where: str) -> np.ndarray:
        arr = np.asarray(x, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
            raise ValueError(
                f"{where}: party {k}'s intermediate features have shape {arr.shape}; "
                "expected (n_rows, d) with n_rows, d >= 1"
            )
        if not np.isfinite(arr).all():
            raise ValueError(
                f"{where}: party {k}'s intermediate features have non-finite values"
            )
        return arr


def _storable(values: np.ndarray) -> np.ndarray:
    return values.astype(str) if values.dtype.kind in "OUT" else values


def _check_picklable(fn, workers: int) -> None:
    try:
        pickle.dumps(fn)
    except Exception as e:
        raise TypeError(
            f"workers={workers} needs picklable callables (a module-level function, a "
            f"functools.partial of one, or an instance of a module-level class); got "
            f"{fn!r}, which cannot be pickled ({e}); expected workers=1 for closures"
        ) from e
