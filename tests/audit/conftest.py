import numpy as np
import pandas as pd
import pytest

from audit import AuditConfig


def make_table(n: int = 40, seed: int = 0) -> pd.DataFrame:
    """Two numeric columns, one categorical; row 7 is a clear outlier."""
    rng = np.random.default_rng(seed)
    real = pd.DataFrame(
        {
            "a": rng.normal(size=n),
            "b": rng.normal(size=n),
            "c": rng.choice(["x", "y", "z"], size=n),
        }
    )
    real.loc[7, ["a", "b"]] = [6.0, -5.0]
    return real


@pytest.fixture
def table() -> pd.DataFrame:
    return make_table()


@pytest.fixture
def fast_config():
    """Factory of tiny audit configs (20 shadows per world, 20 trees)."""

    def make(**overrides) -> AuditConfig:
        settings = dict(
            n_shadows=20,
            world_size=20,
            n_targets=1,
            n_estimators=20,
            n_splits=3,
            n_folds=4,
            progress=False,
        )
        settings.update(overrides)
        return AuditConfig(**settings)

    return make
