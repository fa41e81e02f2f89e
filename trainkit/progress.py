"""Progress bars for entry-point loops and timers for named stages."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from tqdm.auto import tqdm

logger = logging.getLogger(__name__)


def progress_bar(
    iterable: Iterable | None = None,
    *,
    total: int | None = None,
    desc: str | None = None,
    disable: bool = False,
    **kwargs,
):
    """Return a ``tqdm`` bar (use ``bar.set_postfix(...)`` for live numbers)."""
    return tqdm(
        iterable, total=total, desc=desc, disable=disable, dynamic_ncols=True, **kwargs
    )


class StageTimer:
    """Time named stages and log "<stage> took N s" (the ml_privacy_meter habit).

    Example:
        >>> timer = StageTimer()
        >>> with timer("training"):
        ...     pass
        >>> timer.timings["training"] >= 0
        True
    """

    def __init__(self, log: logging.Logger | None = None) -> None:
        self.timings: dict[str, float] = {}
        self._log = log or logger

    def __call__(self, stage: str) -> _Stage:
        """Return a context manager that times ``stage``."""
        return _Stage(self, stage)


class _Stage:
    def __init__(self, timer: StageTimer, name: str) -> None:
        self.timer, self.name = timer, name

    def __enter__(self) -> _Stage:
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        dt = time.perf_counter() - self.t0
        self.timer.timings[self.name] = self.timer.timings.get(self.name, 0.0) + dt
        self.timer._log.info("%s took %.1f s", self.name, dt)
