"""The decoding schema under DP (issue 12 item 6): a value held by one real row is never
in the handshake's schema nor in the published rows; the noisy-count release against
the Gaussian tail; the schema's budget in the accountant's total, against dp-accounting
computed here."""

import json
import math
import warnings

import numpy as np
import pytest
import torch
from dp_accounting import NeighboringRelation, dp_event
from dp_accounting.rdp import RdpAccountant
from scipy import stats

from tests.vflgan_app.conftest import TINY, make_table
from vflgan_app import api, federation
from vflgan_app.config import DPConfig, VFLGANConfig
from vflgan_app.core.protocol import InProcessTransport
from vflgan_app.data.partition import prepare_parties, split_vertical
from vflgan_app.data.schema import TableSchema
from vflgan_app.dp.domain import (
    numeric_bucket,
    private_schema,
    release_counts,
    release_parameters,
    release_threshold,
)
from vflgan_app.dp.plan import SCHEMA_DELTA_FRACTION, resolve_plan

pytestmark = pytest.mark.filterwarnings("ignore:dp.noise-seed")

ALPHA = 1e-6  # tail probability of the statistical bounds (fixed seeds: deterministic)
SPLIT = [["a", "color", "count"], ["b", "c", "kind"]]
RARE, RARE_ROW = "violet", 5
N = 3000  # enough rows for the thresholds at epsilon 10 (64 are not: see below)
DOMAIN = {
    "a": {"low": -8, "high": 8}, "b": {"low": -8, "high": 8}, "c": {"low": -8, "high": 8},
    "count": {"low": 0, "high": 4, "integer": True},
    "color": {"categories": ["blue", "green", "red"]}, "kind": {"categories": ["neg", "pos"]},
}


def planted(n=N, outlier=None):
    """Prepared parties of a table where one row holds the colour 'violet'."""
    table = make_table(n, seed=0)
    table.loc[RARE_ROW, "color"] = RARE
    if outlier is not None:
        table.loc[RARE_ROW + 1, "c"] = outlier
    return prepare_parties(split_vertical(table, SPLIT, "record_id"), "record_id",
                           categorical=["color", "kind"])


def dp_config(mode="strict", steps=2, **dp):
    dp = {"noise_multiplier": 1.0, "noise_seed": 3, "target_epsilon": 10.0, **dp}
    return VFLGANConfig(dataset="custom", steps=steps, progress=False, seed=1,
                        dp=DPConfig(mode=mode, **dp))


def build(parties, cfg):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the test noise seed
        return api.build_federation(parties, cfg, arch=TINY)


def rare_seen(model, n=2000):
    """(in the schema party 0 sends, rows of n synthetic rows holding it)."""
    hello = model.parties[0].hello()["schema"]
    synth = model.sample(n, seed=0)
    return RARE in hello, int((synth["color"] == RARE).sum())


# ---------------------------------------------------------------------------------
# (a) the planted defect


def test_without_dp_the_single_row_value_is_sent_and_published():
    # Prepare / Execute: today's behaviour, kept exactly
    parties = planted()
    exact = [(p.schema.to_json(), p.x.copy()) for p in parties]
    model = build(parties, VFLGANConfig(dataset="custom", steps=2, progress=False, seed=1))
    in_schema, rows = rare_seen(model)
    # Assert: the exact schema (byte for byte) and the encoded rows, unchanged
    assert in_schema and rows > 0
    for p, (js, x) in zip(model.parties, exact, strict=True):
        assert p.hello()["schema"] == js and np.array_equal(p.data.x, x)


@pytest.mark.parametrize("mode", ["paper", "strict"])
@pytest.mark.parametrize("source", ["public", "dp"])
def test_under_dp_the_single_row_value_is_never_sent_nor_published(mode, source):
    # Prepare: the domain declared public, or released with DP (the default share)
    extra = {"public_domain": json.dumps(DOMAIN)} if source == "public" else {}
    model = build(planted(), dp_config(mode, **extra))
    # Execute
    model.fit()
    in_schema, rows = rare_seen(model)
    # Assert: not in the handshake, not in 2,000 published rows; the real row is
    # encoded as the fallback colour; every column's domain is public or DP
    assert not in_schema and rows == 0
    schema = model.parties[0].data.schema
    assert schema.private and {c.domain for c in schema.columns} == {source}
    color = schema.columns[1]
    assert RARE not in color.categories
    onehot = model.parties[0].data.x[RARE_ROW, schema.column_slices()["color"]]
    assert color.categories[int(onehot.argmax())] == color.fallback
    assert model.parties[0].data.table is None  # the raw values are gone


def test_a_single_row_outlier_does_not_set_the_released_range():
    # Prepare: one row of 'c' at 10^6 (a numeric value held by one row)
    parties = planted(outlier=1e6)
    # Execute
    model = build(parties, dp_config("paper"))
    schema = model.parties[1].data.schema
    c = schema.columns[schema.names.index("c")]
    synth = model.sample(2000, seed=0)
    # Assert: the bounds are the released octaves of the bulk; the outlier is clipped
    assert c.domain == "dp" and c.high <= 8 and c.low >= -8
    assert synth["c"].abs().max() <= max(abs(c.low), c.high)


def test_count_one_values_are_not_released_over_many_noise_seeds():
    # Prepare: the party's real plan (strict, 2 parties, epsilon 10, delta 1e-5)
    data = planted()[0]
    released = []
    # Execute: 50 independent releases
    for seed in range(50):
        plan = resolve_plan(DPConfig(mode="strict", noise_multiplier=1.0, noise_seed=seed),
                            n_rows=N, batch_size=8, steps=2, num_parties=2)
        schema = private_schema(data.schema, data.table, public_domain={}, plan=plan,
                                party_id=0)
        released.append(schema.columns[1].categories)
    # Assert: never the count-1 colour; always the three common ones (~1,000 rows each)
    assert all(cats == ("blue", "green", "red") for cats in released)


# ---------------------------------------------------------------------------------
# (b) the noisy-count release against the Gaussian tail


def test_release_probability_matches_the_gaussian_tail():
    # Prepare: a threshold where a count of 1 passes 20 % of the time
    std, n = 2.0, 20_000
    tau = release_threshold(std, 0.2)
    gen = torch.Generator().manual_seed(0)
    hits = {1: 0, 3: 0}
    # Execute
    for _ in range(n):
        out = release_counts({"one": 1, "three": 3}, std=std, threshold=tau, generator=gen)
        hits[1] += "one" in out
        hits[3] += "three" in out
    # Assert: empirical rates vs P(c + N(0, std^2) >= tau) (scipy, not our formula)
    z = stats.norm.ppf(1 - ALPHA / 2)
    for count, k in hits.items():
        p = stats.norm.sf((tau - count) / std)
        assert abs(k / n - p) < z * math.sqrt(p * (1 - p) / n), (count, k / n, p)
    assert stats.norm.sf((tau - 1) / std) == pytest.approx(0.2, rel=1e-9)


def test_party_noise_and_threshold_follow_sensitivity_and_delta():
    # Prepare: strict mode, K = 2 parties, a party with m = 3 columns to release
    plan = resolve_plan(DPConfig(mode="strict", noise_multiplier=1.0, delta=1e-5),
                        n_rows=N, batch_size=8, steps=2, num_parties=2)
    # Execute
    std, tau = release_parameters(plan, 3)
    # Assert: std = sigma_s * sqrt(2 m) (replace-one moves 2 counts per histogram);
    # a count of 1 passes with probability schema_delta / (K m)
    assert plan.schema_delta == pytest.approx(SCHEMA_DELTA_FRACTION * 1e-5)
    assert plan.schema_noise_multiplier == pytest.approx(
        plan.schema_accounted_noise_multiplier * math.sqrt(2))
    assert std == pytest.approx(plan.schema_noise_multiplier * math.sqrt(6))
    assert stats.norm.sf((tau - 1) / std) == pytest.approx(plan.schema_delta / 6, rel=1e-6)


def test_numeric_buckets():
    assert numeric_bucket(0.0) == (0, 0, True) and numeric_bucket(1e-12)[0] == 0
    assert numeric_bucket(3.0) == (1, 1, True) and numeric_bucket(-0.7) == (-1, -1, False)
    assert numeric_bucket(float("inf")) == (1, 64, False)


# ---------------------------------------------------------------------------------
# (b, c) the budget: composed with training under RDP, in the accountant's total


def reference_epsilon(*, schema_sigma, train_sigma, n, b, steps, delta, schema_delta):
    """(epsilon, delta)-DP of schema + training, with dp-accounting directly."""
    acc = RdpAccountant(neighboring_relation=NeighboringRelation.REPLACE_ONE)
    if schema_sigma is not None:
        acc.compose(dp_event.GaussianDpEvent(schema_sigma))
    acc.compose(dp_event.SampledWithoutReplacementDpEvent(
        n, b, dp_event.GaussianDpEvent(train_sigma)), steps)
    return acc.get_epsilon(delta - schema_delta) - math.log(1 - schema_delta)


@pytest.mark.parametrize("mode", ["paper", "strict"])
def test_the_accountant_total_includes_the_schema_release(mode):
    # Prepare: the same run with its domain released with DP, and declared public
    steps, delta = 3, 1e-5
    released = build(planted(), dp_config(mode, steps=steps))
    public = build(planted(), dp_config(mode, steps=steps, public_domain=json.dumps(DOMAIN)))
    # Execute
    released.fit()
    public.fit()
    meta, base = released.dp_metadata(), public.dp_metadata()
    # Assert: an increase, equal to dp-accounting's composition of both parts
    k = 2
    schema_sigma = released.dp.plan.schema_noise_multiplier / (
        math.sqrt(k) if mode == "strict" else 1.0)
    train_sigma = 1.0 / math.sqrt(k + 1) if mode == "strict" else 1.0
    ref = reference_epsilon(schema_sigma=schema_sigma, train_sigma=train_sigma, n=N, b=8,
                            steps=steps, delta=delta, schema_delta=0.1 * delta)
    ref_base = reference_epsilon(schema_sigma=None, train_sigma=train_sigma, n=N, b=8,
                                 steps=steps, delta=delta, schema_delta=0.0)
    assert meta["epsilon"] == pytest.approx(ref, rel=1e-9)
    assert base["epsilon"] == pytest.approx(ref_base, rel=1e-9)
    assert meta["epsilon"] > base["epsilon"] and meta["steps"] == base["steps"] == steps
    assert meta["schema_epsilon_fraction"] == 0.1 and base["schema_epsilon_fraction"] == 0
    assert meta["schema_releases"] == [[schema_sigma, 1]] and base["schema_releases"] == []
    # the schema alone spends the fraction of the target it was calibrated for
    alone = RdpAccountant(neighboring_relation=NeighboringRelation.REPLACE_ONE)
    alone.compose(dp_event.GaussianDpEvent(schema_sigma))
    assert 0.999 < alone.get_epsilon(0.9 * delta) <= 1.0  # 0.1 * target 10


@pytest.mark.slow  # three calibrations on dp-accounting (10-40 s)
def test_calibrated_sigma_leaves_room_for_the_schema():
    # Prepare: calibrate training sigma with and without a schema share
    kw = {"n_rows": N, "batch_size": 8, "steps": 50, "num_parties": 2}
    with_schema = resolve_plan(DPConfig(mode="paper", target_epsilon=3.0), **kw)
    without = resolve_plan(DPConfig(mode="paper", target_epsilon=3.0,
                                    public_domain=json.dumps(DOMAIN)), **kw)
    # Execute: the total of the calibrated run, with dp-accounting directly
    total = reference_epsilon(schema_sigma=with_schema.schema_noise_multiplier,
                              train_sigma=with_schema.noise_multiplier, n=N, b=8,
                              steps=50, delta=1e-5, schema_delta=with_schema.schema_delta)
    # Assert: more training noise, and the composed total within the target
    assert with_schema.noise_multiplier > without.noise_multiplier
    assert without.schema_noise_multiplier is None and without.schema_delta == 0
    assert 2.99 < total <= 3.0


# ---------------------------------------------------------------------------------
# (d) errors, and reusing a release


def test_dp_without_a_domain_or_a_budget_names_the_column():
    partial = json.dumps({k: v for k, v in DOMAIN.items() if k != "count"})
    with pytest.raises(ValueError, match=r"party 0: column 'count' \(numeric\) has no public "
                       r"domain, and dp.schema-epsilon-fraction is 0.*expected it in "
                       r"dp.public-domain \(e.g. \{\"count\": \{\"low\""):
        build(planted(), dp_config(public_domain=partial))
    with pytest.raises(ValueError, match=r"column 'color' \(categorical\).*dp.public-domain "
                                         r"\(e.g. \{\"color\": \{\"categories\""):
        build(planted(), dp_config(schema_epsilon_fraction=0.0, public_domain=json.dumps(
            {k: v for k, v in DOMAIN.items() if k != "color"})))
    with pytest.raises(ValueError, match=r"column 'a' \(numeric\).*\(also undeclared: "
                                         r"\['color', 'count'\]\)"):
        build(planted(), dp_config(schema_epsilon_fraction=0.0))


def test_too_few_rows_for_the_release_is_a_clear_error():
    with pytest.raises(ValueError, match=r"party 0: column 'a' \(numeric\): no range bucket "
                                         r"of the 64 rows passed the DP release threshold"):
        build(planted(64), dp_config())


def test_unknown_column_and_bad_settings_are_refused():
    bad = json.dumps({**DOMAIN, "colour": {"categories": ["red"]}})
    with pytest.raises(ValueError, match=r"dp.public-domain: column 'colour' is not a column "
                                         r"of any party; expected one of \['a', 'color'"):
        build(planted(), dp_config(public_domain=bad))
    with pytest.raises(ValueError, match=r"dp.public-domain.a.low: got 9, expected < high"):
        build(planted(), dp_config(public_domain=json.dumps(
            {**DOMAIN, "a": {"low": 9, "high": 1}})))
    with pytest.raises(ValueError, match=r"dp.schema-epsilon-fraction: got 1.0, expected "
                                         r"0 <= fraction < 1"):
        DPConfig(schema_epsilon_fraction=1.0)
    with pytest.raises(TypeError, match=r"dp.public-domain: got dict"):
        DPConfig(public_domain=DOMAIN)
    assert DPConfig().schema_fraction == 0.1
    assert DPConfig(public_domain="{}").schema_fraction == 0.0
    assert DPConfig.from_run_config({"dp.public-domain": "{}",
                                     "dp.schema-epsilon-fraction": "0.2"}).schema_fraction == 0.2


def test_a_release_happens_once_and_can_be_reused():
    # Prepare
    cfg = dp_config(noise_seed=None)  # secure noise: two releases would differ
    parties = planted()
    first = build(parties, cfg)
    schemas = [p.data.schema.to_json() for p in first.parties]
    # Execute: build again on the same objects; and re-prepare with the saved schema
    again = build(parties, cfg)
    fresh = federation.private_party_data(planted()[0], cfg, first.dp.plan,
                                          released=schemas[0])
    # Assert: the caller's objects hold the private schema (publication decodes with
    # it); no second release; the saved one re-encodes the rows identically
    assert [p.schema.to_json() for p in parties] == schemas
    assert [p.data.schema.to_json() for p in again.parties] == schemas
    assert fresh.schema.to_json() == schemas[0]
    assert np.array_equal(fresh.x, first.parties[0].data.x)
    with pytest.raises(ValueError, match=r"party 0: the released schema has columns"):
        federation.private_party_data(planted()[0], cfg, first.dp.plan,
                                      released=schemas[1])


def test_a_cached_table_serves_dp_and_plain_runs_apart():
    # Prepare: one prepared party, as a SuperNode caches it for every run of a process
    data = planted()[0]
    exact = data.schema.to_json()
    cfg = dp_config(noise_seed=None)
    plan = resolve_plan(cfg.dp, n_rows=N, batch_size=TINY.batch_size, steps=2,
                        num_parties=2)
    # Execute: DP parties built twice (two hellos), then a party without DP
    a = federation.build_party(data, cfg, TINY, plan)
    b = federation.build_party(data, cfg, TINY, plan)
    plain = federation.build_party(data, VFLGANConfig(dataset="custom"), TINY, None)
    # Assert: one release, reused; the run without DP keeps the exact schema
    assert a.hello()["schema"] == b.hello()["schema"] != exact
    assert RARE not in a.hello()["schema"]
    assert plain.hello()["schema"] == exact and data.schema.to_json() == exact


def test_the_server_refuses_a_schema_not_released_for_dp():
    # Prepare: parties built without DP, a server that runs DP
    plain = VFLGANConfig(dataset="custom", steps=2, progress=False, seed=1)
    parties = [federation.build_party(d, plain, TINY, None) for d in planted(200)]
    cfg = dp_config("paper", public_domain=json.dumps(DOMAIN), delta=1e-3)
    # Execute / Assert
    with pytest.raises(ValueError, match=r"party 0: its schema was not released for DP"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            federation.connect(InProcessTransport(parties), cfg)
    assert not TableSchema.from_json(parties[0].hello()["schema"]).private
