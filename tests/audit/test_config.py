import pytest

from audit import AuditConfig


def test_defaults_are_the_paper_scale():
    cfg = AuditConfig()
    assert (cfg.n_shadows, cfg.n_estimators, cfg.max_depth, cfg.n_splits) == (
        100,
        1000,
        3,
        5,
    )
    assert cfg.n_train == 70


def test_too_few_shadows_for_the_confidence_is_refused_with_the_minimum():
    with pytest.raises(
        ValueError,
        match=r"n_shadows=10 is too few for confidence=0.95 .*"
        r"expected n_shadows >= 11",
    ):
        AuditConfig(n_shadows=10)
    AuditConfig(n_shadows=11)  # enough
    with pytest.raises(
        ValueError, match=r"n_shadows=20 is too few for confidence=0.999"
    ):
        AuditConfig(n_shadows=20, confidence=0.999)


@pytest.mark.parametrize(
    "field, value, message",
    [
        (
            "feature_sets",
            ("bogus",),
            "feature_sets=\\('bogus',\\); expected distinct names",
        ),
        ("feature_sets", (), "at least one"),
        ("confidence", 1.5, "confidence=1.5; expected a value in \\(0, 1\\)"),
        ("train_fraction", 0.99, "trains on 20 seeds and tests on 0"),
        ("n_folds", 50, "n_folds=50; expected at most n_shadows=20"),
        ("max_features", "all", "max_features='all'"),
        ("accountant_epsilon", -1.0, "accountant_epsilon=-1.0; expected > 0"),
        ("world_size", 1, "world_size=1; expected an integer >= 2"),
    ],
)
def test_bad_values_name_the_field_the_value_and_the_range(field, value, message):
    with pytest.raises(ValueError, match=message):
        AuditConfig(n_shadows=20, **{field: value})


def test_targets_and_positions_are_exclusive_and_typed():
    with pytest.raises(ValueError, match="expected at most one of them"):
        AuditConfig(n_shadows=20, targets=(1,), target_positions=(2,))
    with pytest.raises(TypeError, match="n_shadows=2.5; expected an integer"):
        AuditConfig(n_shadows=2.5)
    with pytest.raises(TypeError, match="targets='ab'; expected a tuple"):
        AuditConfig(n_shadows=20, targets="ab")
