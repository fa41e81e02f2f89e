import numpy as np
import pandas as pd
import pytest

from audit import (
    CopyGenerator,
    GaussianCopulaGenerator,
    IndependentGenerator,
    run_audit,
)
from audit.config import AuditConfig


def test_row_copier_is_caught_with_auc_near_one_and_positive_epsilon(
    table, fast_config
):
    # Prepare: a generator that releases its training rows (a planted leak)
    cfg = fast_config(n_shadows=30)
    # Execute
    report = run_audit(table, CopyGenerator(), cfg)
    # Assert
    by_set = {r.feature_set: r for r in report.results}
    knn = by_set["assd/knn"]
    assert knn.auc >= 0.95 and knn.auc_mean >= 0.95
    assert knn.tpr_at_fpr["0.1"] >= 0.9
    assert knn.epsilon.epsilon > 1.0  # the resolvable maximum here is 1.28
    assert report.best().epsilon.epsilon > 1.0
    assert report.targets[0]["position"] == 7


def test_generator_independent_of_its_data_gives_chance_auc(table, fast_config):
    # Prepare: released tables ignore the training rows; IN and OUT get different fit
    # seeds so their outputs differ (with shared seeds they would be identical)
    cfg = fast_config(n_shadows=30, share_seeds=False, confidence=0.99)
    # Execute
    report = run_audit(table, IndependentGenerator(table), cfg)
    # Assert: every attack's AUC inside the 99 % null interval of its trial counts
    for r in report.results:
        lo, hi = r.auc_null_interval
        assert lo <= r.auc <= hi, (r.feature_set, r.auc, (lo, hi))
        assert r.epsilon.epsilon == 0.0


class NoisyMean:
    """A correctly eps-DP release: the Laplace-noised mean of x in [0, 1].

    Worlds of m rows are replace-one neighbours, so the sensitivity of the mean is 1/m
    and Laplace noise of scale 1 / (m eps) gives eps-DP. The table has the noisy mean
    in every row.
    """

    def __init__(self, eps: float) -> None:
        self.eps = eps

    def __call__(self, rows: pd.DataFrame, seed: int) -> pd.DataFrame:
        rng = np.random.default_rng(seed)
        m = len(rows)
        noisy = rows["x"].clip(0, 1).mean() + rng.laplace(scale=1 / (m * self.eps))
        return pd.DataFrame({"x": np.full(4, noisy)})


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_epsilon_bound_of_a_dp_release_stays_below_its_true_epsilon(seed):
    # Prepare: a target at x = 1 among small values; eps = 1
    rng = np.random.default_rng(seed)
    real = pd.DataFrame({"x": np.r_[1.0, rng.uniform(0, 0.1, size=29)]})
    cfg = AuditConfig(
        n_shadows=120,
        world_size=10,
        target_positions=(0,),
        feature_sets=("naive",),
        n_estimators=10,
        n_splits=2,
        n_folds=4,
        seed=seed,
        progress=False,
    )
    # Execute
    report = run_audit(real, NoisyMean(eps=1.0), cfg)
    # Assert: sound, and the attack does see the signal (AUC well above chance)
    (r,) = report.results
    assert r.epsilon.epsilon <= 1.0
    assert r.auc > 0.6


def test_copula_generator_round_trips_types_and_is_audited(table, fast_config):
    synth = GaussianCopulaGenerator(["c"])(table, seed=0)
    assert list(synth.columns) == ["a", "b", "c"] and len(synth) == len(table)
    assert set(synth["c"]) <= set(table["c"])
    assert np.corrcoef(synth["a"], synth["b"])[0, 1] == pytest.approx(
        np.corrcoef(table["a"], table["b"])[0, 1], abs=0.35
    )
    report = run_audit(table, GaussianCopulaGenerator(["c"]), fast_config())
    assert len(report.results) == 3


def test_mismatched_synthetic_columns_are_refused_before_caching(
    table, fast_config, tmp_path
):
    # Prepare: a generator that drops column "c" and invents "d"
    def bad(rows, seed):
        return rows.drop(columns="c").assign(d=1.0)

    # Execute / Assert
    with pytest.raises(
        ValueError,
        match=r"target position 7, in, s=0\): the synthetic "
        r"table's columns do not match the real table's: missing \['c'\], "
        r"extra \['d'\]; expected exactly \['a', 'b', 'c'\]",
    ):
        run_audit(table, bad, fast_config(), out_dir=tmp_path / "out")
    assert not list((tmp_path / "out").rglob("*.npz"))


def test_bad_inputs_fail_before_anything_is_written(table, fast_config, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="target id 'nope' is not in the real table"):
        run_audit(table, CopyGenerator(), fast_config(targets=("nope",)), out_dir=out)
    with pytest.raises(ValueError, match="world_size=40 with 40 real rows"):
        run_audit(table, CopyGenerator(), fast_config(world_size=40), out_dir=out)
    with pytest.raises(ValueError, match="repeated labels"):
        run_audit(
            pd.concat([table, table]), CopyGenerator(), fast_config(), out_dir=out
        )
    with pytest.raises(ValueError, match="real column 'a' has 1 missing values"):
        run_audit(
            table.assign(a=table["a"].where(table.index != 3)),
            CopyGenerator(),
            fast_config(),
            out_dir=out,
        )
    with pytest.raises(TypeError, match="expected a pandas DataFrame"):
        run_audit(table.to_numpy(), CopyGenerator(), fast_config(), out_dir=out)
    assert not out.exists()


class CopyWithFeatures:
    """Planted ASIF leak: party k's 'features' are its columns of the training rows."""

    def __call__(self, rows, seed):
        return [rows[["a"]].to_numpy() * 1.0, rows[["b"]].to_numpy() * 1.0 + 0.0]


def test_asif_runs_per_party_from_fit_and_features_or_a_returned_pair(
    table, fast_config
):
    cfg = fast_config(feature_sets=("naive",))

    def features(rows, seed):
        x = rows[["a", "b"]].to_numpy()
        return [x[:, :1] @ np.ones((1, 3)), x[:, 1:] @ np.ones((1, 2))]

    rep = run_audit(table, CopyGenerator(), cfg, fit_and_features=features)
    names = [r.feature_set for r in rep.results]
    assert names == [
        "assd/naive",
        "asif/party-0/correlation",
        "asif/party-0/naive",
        "asif/party-1/correlation",
        "asif/party-1/naive",
    ]
    # party features of the training rows include the outlier: naive IF leaks
    by_set = {r.feature_set: r for r in rep.results}
    assert by_set["asif/party-0/naive"].auc >= 0.95

    def both(rows, seed):
        return CopyGenerator()(rows, seed), features(rows, seed)

    rep2 = run_audit(table, both, cfg)
    assert [r.auc for r in rep2.results] == [r.auc for r in rep.results]


def test_report_files_and_the_resolution_message(table, fast_config, tmp_path):
    # Prepare: an accountant epsilon far above what 20 shadows can show
    cfg = fast_config(accountant_epsilon=10.0)
    # Execute
    rep = run_audit(table, CopyGenerator(), cfg, out_dir=tmp_path)
    # Assert
    for name in ("report.json", "results.csv", "roc.png", "summary.md", "config.json"):
        assert (tmp_path / name).stat().st_size > 0
    assert len(list((tmp_path / "shadows").glob("*.npz"))) == 40
    res = rep.resolution
    assert res["resolvable"] is False and res["shadows_needed"] > 100_000
    assert "CANNOT resolve the accountant's epsilon" in res["message"]
    summary = (tmp_path / "summary.md").read_text()
    assert "CANNOT resolve" in summary and "| assd/knn |" in summary
    csv = pd.read_csv(tmp_path / "results.csv")
    assert list(csv["feature_set"]) == ["assd/correlation", "assd/naive", "assd/knn"]
    assert (tmp_path / "roc.png").read_bytes()[:4] == b"\x89PNG"
