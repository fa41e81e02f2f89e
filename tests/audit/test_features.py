import numpy as np
import pandas as pd
import pytest

from audit.features import (
    FeatureExtractor,
    correlation_features,
    knn_features,
    naive_if_features,
    naive_table_features,
)
from audit.schema import TableSchema


def test_correlation_features_are_the_upper_triangle_with_constant_columns_zero():
    rng = np.random.default_rng(0)
    x = np.column_stack([rng.normal(size=50), rng.normal(size=50), np.ones(50)])
    x[:, 1] += x[:, 0]
    feats = correlation_features(x)
    assert feats.shape == (3,)
    assert feats[0] == pytest.approx(np.corrcoef(x[:, 0], x[:, 1])[0, 1])
    assert feats[1] == 0.0 and feats[2] == 0.0  # pairs with the constant column


def test_naive_features_per_column_kind():
    real = pd.DataFrame({"a": [1.0, 2.0, 3.0, 10.0], "c": ["x", "y", "y", "z"]})
    schema = TableSchema.fit(real)
    synth = schema.normalize(pd.DataFrame({"a": [1.0, 3.0], "c": ["y", "w"]}), "s")
    feats = naive_table_features(synth, schema)
    # a: mean, median, var; c: most / least frequent code (w unseen = -1), distinct
    assert feats.tolist() == [2.0, 2.0, 1.0, -1.0, -1.0, 2.0]


def test_knn_features_see_a_copied_target():
    target = np.array([1.0, 1.0])
    synth = np.array([[7.0, 9.0], [1.0, 1.0], [4.0, 5.0]])
    feats = knn_features(synth, target, k=2, radius=1.0)
    assert feats.tolist() == [0.0, 5.0, 1 / 3]


def test_extractor_names_and_if_features():
    real = pd.DataFrame({"a": [0.0, 1.0, 2.0], "b": [1.0, 0.0, 5.0]})
    schema = TableSchema.fit(real)
    ex = FeatureExtractor(
        schema,
        np.zeros(2),
        1.0,
        ("correlation", "naive", "knn"),
        ("correlation", "naive"),
        knn_k=2,
    )
    synth = schema.normalize(real, "s")
    ifs = [np.arange(12.0).reshape(4, 3), np.ones((4, 2))]
    out = ex.extract(synth, ifs, "s")
    assert list(out) == [
        "assd/correlation",
        "assd/naive",
        "assd/knn",
        "asif/party-0/correlation",
        "asif/party-0/naive",
        "asif/party-1/correlation",
        "asif/party-1/naive",
    ]
    assert out["asif/party-0/naive"].tolist() == naive_if_features(ifs[0]).tolist()
    assert out["asif/party-0/correlation"].shape == (3,)
    with pytest.raises(ValueError, match="has 3 rows; the knn features need at least"):
        FeatureExtractor(schema, np.zeros(2), 1.0, ("knn",), (), knn_k=5).extract(
            synth, None, "shadow X"
        )


def test_schema_rejects_mismatched_columns_naming_them():
    schema = TableSchema.fit(pd.DataFrame({"a": [0.0, 1.0], "c": ["x", "y"]}))
    with pytest.raises(
        ValueError,
        match=r"missing \['c'\], extra \['d'\]; expected "
        r"exactly \['a', 'c'\]",
    ):
        schema.normalize(pd.DataFrame({"a": [0.0], "d": ["x"]}), "shadow X")
    with pytest.raises(ValueError, match="column 'a' has non-numeric values"):
        schema.normalize(pd.DataFrame({"a": ["oops"], "c": ["x"]}), "shadow X")
    with pytest.raises(TypeError, match="expected a pandas DataFrame, got ndarray"):
        schema.normalize(np.zeros((2, 2)), "shadow X")
