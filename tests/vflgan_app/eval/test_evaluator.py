"""Evaluator on a tiny table and a tiny digits subset, with fake models."""

import numpy as np
import pandas as pd
import pytest

from vflgan_app.data.partition import prepare_parties
from vflgan_app.data.sources import ID_COLUMN, Dataset, load_dataset
from vflgan_app.eval.dependence import party_shuffle
from vflgan_app.eval.evaluator import Evaluator


class FakeModel:
    """``sample_parts(n, seed, independent)`` returning fixed arrays.

    ``joint`` is what a plain sample returns, ``independent`` what the
    independent-latent sample returns; both are lists of per-party arrays.
    """

    def __init__(self, joint, independent):
        self.joint, self.independent = joint, independent

    def sample_parts(self, n, seed, independent=False):
        parts = self.independent if independent else self.joint
        return [p[:n] for p in parts]


def make_models(parties, slices):
    real = [p.x for p in parties]
    shuffled = party_shuffle(np.concatenate(real, 1), slices, np.random.default_rng(0))
    shuffled_parts = [shuffled[:, s] for s in slices]
    return {
        "copy": FakeModel(real, shuffled_parts),  # keeps every cross-party pairing
        "independent": FakeModel(shuffled_parts, shuffled_parts),  # keeps none
    }


def tiny_table_dataset(n=120):
    """Party 0 holds a, color; party 1 holds b = 2a + noise and kind = sign(a)."""
    rng = np.random.default_rng(0)
    a = rng.normal(size=n)
    table = pd.DataFrame({
        ID_COLUMN: np.arange(n),
        "a": a,
        "color": rng.choice(["red", "green", "blue"], size=n),
        "b": 2 * a + rng.normal(scale=0.1, size=n),
        "kind": np.where(a > 0, "pos", "neg"),
    })  # fmt: skip
    return Dataset(
        "tiny", table, [["a", "color"], ["b", "kind"]],
        categorical=["color", "kind"], target="kind",
    )  # fmt: skip


def evaluate_all(dataset, **kwargs):
    parties = prepare_parties(
        dataset.party_tables(), ID_COLUMN, dataset.categorical, dataset.bounded
    )
    evaluator = Evaluator(dataset, parties, seed=0, **kwargs)
    models = make_models(parties, evaluator.party_slices)
    return {k: evaluator.evaluate(m, seed=0) for k, m in models.items()}


@pytest.fixture(scope="module")
def table_reports():
    return evaluate_all(tiny_table_dataset())


@pytest.fixture(scope="module")
def digits_reports():
    return evaluate_all(load_dataset("digits", max_rows=200), ae_epochs=1)


def test_table_report_has_quality_utility_and_dependence_keys(table_reports):
    report = table_reports["copy"]

    assert list(report) == ["n_samples", "model", "control", "real", "dependence"]
    assert report["n_samples"] == 120
    assert set(report["model"]) == set(report["control"]) == {
        "fd", "fd_space", "tstr_accuracy", "trtr_accuracy", "cross_party_corr_error",
    }  # fmt: skip
    assert list(report["real"]) == ["cross_party_corr_error_holdout_vs_all"]
    # targets: the dataset's target and each party's first column
    targets = {row["target"] for row in report["dependence"]["details"]["utility"]}
    assert targets == {"kind", "a", "b"}
    assert "agreement" not in report["dependence"]["metrics"]  # no shared label


def test_copying_model_beats_independent_parties_on_dependence(table_reports):
    copy, indep = table_reports["copy"], table_reports["independent"]

    # the copy reproduces the real table: FD and correlation error vanish
    assert abs(copy["model"]["fd"]) < 1e-6
    assert copy["model"]["cross_party_corr_error"] < 1e-12
    assert indep["model"]["cross_party_corr_error"] > 0.2
    # b = 2a: the shuffle test sees the pairing only in the copy
    auc_copy = copy["dependence"]["metrics"]["shuffle_auc"]["model"]
    auc_indep = indep["dependence"]["metrics"]["shuffle_auc"]["model"]
    assert auc_copy > 0.7 and auc_indep < 0.6
    assert copy["dependence"]["verdicts"]["corr_error_focused"]["beats_control"]
    assert not indep["dependence"]["verdicts"]["corr_error_focused"]["beats_control"]


def test_digits_report_has_image_metrics_and_agreement(digits_reports):
    copy, indep = digits_reports["copy"], digits_reports["independent"]

    assert set(copy["model"]) == {
        "fd", "fd_space", "inception_score", "inception_score_real_holdout",
        "cross_party_corr_error",
    }  # fmt: skip
    assert copy["model"]["fd"] < indep["model"]["fd"]
    agreement = {
        k: r["dependence"]["metrics"]["agreement"] for k, r in digits_reports.items()
    }
    # the top and bottom halves of a copied digit name the same label more often
    assert agreement["copy"]["model"] > agreement["independent"]["model"] + 0.2
    assert agreement["copy"]["control"] == pytest.approx(
        agreement["independent"]["model"], abs=0.1
    )
