import numpy as np
import pandas as pd
import pytest

from audit import AuditConfig
from audit.game import (
    IN,
    OUT,
    build_trials,
    resolve_world_size,
    seed_folds,
    seed_splits,
    select_targets,
)
from audit.schema import TableSchema


def encoded(table: pd.DataFrame) -> np.ndarray:
    schema = TableSchema.fit(table)
    return schema.encode(schema.normalize(table, "real"))


def test_default_targets_are_the_strongest_outliers(table):
    # Prepare: row 7 is far from everything
    cfg = AuditConfig(n_shadows=20, n_targets=2)
    # Execute
    targets = select_targets(table, encoded(table), cfg)
    # Assert
    assert targets[0].position == 7 and targets[0].chosen_by == "outlier"
    assert targets[0].nn_distance > targets[1].nn_distance > 0


def test_user_targets_by_id_and_by_position(table):
    real = table.set_index(pd.Index([f"r{i}" for i in range(len(table))], name="id"))
    by_id = select_targets(
        real, encoded(real), AuditConfig(n_shadows=20, targets=("r3",))
    )
    assert (by_id[0].label, by_id[0].position, by_id[0].chosen_by) == ("r3", 3, "user")
    by_pos = select_targets(
        real, encoded(real), AuditConfig(n_shadows=20, target_positions=(5,))
    )
    assert (by_pos[0].label, by_pos[0].position) == ("r5", 5)


def test_unknown_target_id_is_named_with_what_was_expected(table):
    cfg = AuditConfig(n_shadows=20, targets=(999,))
    with pytest.raises(
        ValueError,
        match=r"target id 999 is not in the real table's index "
        r"\(40 rows, labels 0..39\)",
    ):
        select_targets(table, encoded(table), cfg)
    cfg = AuditConfig(n_shadows=20, target_positions=(40,))
    with pytest.raises(ValueError, match=r"target position 40 .* 0 <= position < 40"):
        select_targets(table, encoded(table), cfg)


def test_worlds_have_equal_size_and_differ_in_the_target_only():
    # Prepare
    cfg = AuditConfig(n_shadows=20, seed=3)
    # Execute
    trials = build_trials(30, 4, 12, cfg)
    # Assert
    assert len(trials) == 40
    for s in range(20):
        t_in, t_out = trials[2 * s], trials[2 * s + 1]
        assert (t_in.world, t_out.world, t_in.shadow, t_out.shadow) == (IN, OUT, s, s)
        assert len(t_in.rows) == len(t_out.rows) == 12
        assert 4 in t_in.rows and 4 not in t_out.rows
        assert len(np.setdiff1d(t_out.rows, t_in.rows)) == 1
        assert t_in.fit_seed == t_out.fit_seed  # share_seeds: common random numbers
    # different seeds give different worlds; the same config the same ones
    assert len({tuple(t.rows) for t in trials if t.world == OUT}) > 10
    again = build_trials(30, 4, 12, cfg)
    assert all(np.array_equal(a.rows, b.rows) for a, b in zip(trials, again))
    unshared = build_trials(30, 4, 12, AuditConfig(n_shadows=20, share_seeds=False))
    assert unshared[0].fit_seed != unshared[1].fit_seed


def test_world_size_defaults_to_leave_one_out_and_is_checked(table):
    assert resolve_world_size(40, AuditConfig(n_shadows=20)) == 39
    with pytest.raises(ValueError, match="world_size=40 with 40 real rows; expected"):
        resolve_world_size(40, AuditConfig(n_shadows=20, world_size=40))


def test_splits_and_folds_keep_seeds_apart():
    for train, test in seed_splits(20, 14, 5, seed=0):
        assert len(train) == 14 and len(test) == 6
        assert not set(train) & set(test)
    folds = seed_folds(20, 4, seed=0)
    tested = np.concatenate([test for _, test in folds])
    assert sorted(tested) == list(range(20))  # every seed scored exactly once
    for train, test in folds:
        assert not set(train) & set(test)
