import json

import numpy as np
import pandas as pd
import pytest

from audit import AuditConfig, GaussianCopulaGenerator, run_audit
from audit.game import build_trials
from audit.schema import TableSchema
from audit.shadow import ShadowCache, ShadowOutput


class Counting:
    """The copula generator, counting calls and raising after ``fail_after`` of them."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.fail_after, self.calls = fail_after, 0
        self.inner = GaussianCopulaGenerator(["c"])

    def __call__(self, rows, seed):
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise RuntimeError("interrupted")
        return self.inner(rows, seed)


def comparable(report) -> dict:
    out = report.to_dict()
    for key in ("timings", "meta", "counts"):
        out.pop(key)
    return out


def test_interrupted_audit_resumes_from_the_cache_and_gives_the_same_report(
    table, fast_config, tmp_path
):
    cfg = fast_config()
    # Prepare: a fresh, uninterrupted reference
    reference = run_audit(table, Counting(), cfg, out_dir=tmp_path / "reference")
    # Execute: the first run dies after 15 of 40 fits ...
    out = tmp_path / "resumed"
    with pytest.raises(RuntimeError, match="interrupted") as info:
        run_audit(table, Counting(fail_after=15), cfg, out_dir=out)
    assert (
        "while fitting shadow (target position 7, out, s=7)" in info.value.__notes__[0]
    )
    assert len(list((out / "shadows").glob("*.npz"))) == 15
    assert not (out / "report.json").exists()
    # ... and the second fits only the other 25
    gen = Counting()
    resumed = run_audit(table, gen, cfg, out_dir=out)
    # Assert
    assert gen.calls == 25
    assert resumed.counts == {"trials": 40, "fitted": 25, "cached": 15}
    assert comparable(resumed) == comparable(reference)
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk["results"][0]["auc"] == reference.results[0].auc
    # a third run fits nothing
    gen = Counting()
    run_audit(table, gen, cfg, out_dir=out)
    assert gen.calls == 0


def test_a_cache_from_another_audit_or_a_broken_file_is_refused(
    table, fast_config, tmp_path
):
    run_audit(table, Counting(), fast_config(), out_dir=tmp_path)
    with pytest.raises(ValueError, match="was made for another audit"):
        run_audit(table, Counting(), fast_config(seed=1), out_dir=tmp_path)
    path = tmp_path / "shadows" / "t7-in-s000.npz"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match=f"shadow cache file {path} cannot be read"):
        run_audit(table, Counting(), fast_config(), out_dir=tmp_path)


def test_cache_round_trip_is_exact_and_holds_plain_arrays_only(table, tmp_path):
    # Prepare: one trial's output, normalised as the audit does
    schema = TableSchema.fit(table)
    trial = build_trials(len(table), 7, 20, AuditConfig(n_shadows=20))[1]
    raw = GaussianCopulaGenerator(["c"])(table.iloc[trial.rows], trial.fit_seed)
    output = ShadowOutput(
        schema.normalize(raw, "s"), [np.arange(6.0).reshape(3, 2) / 7]
    )
    cache = ShadowCache(tmp_path, schema, "hash")
    # Execute
    cache.save(trial, output)
    back = cache.load(trial)
    # Assert: bit-identical, so a resumed audit computes the same features
    pd.testing.assert_frame_equal(back.synthetic, output.synthetic, check_exact=True)
    assert np.array_equal(back.intermediate[0], output.intermediate[0])
    with np.load(cache.path(trial), allow_pickle=False) as z:
        assert set(z.files) >= {"columns", "c0", "c1", "c2", "rows", "fit_seed", "if0"}
        assert z["c2"].dtype.kind == "U" and z["rows"].shape == (20,)


def test_parallel_workers_give_the_same_report(table, fast_config):
    serial = run_audit(table, GaussianCopulaGenerator(["c"]), fast_config())
    parallel = run_audit(table, GaussianCopulaGenerator(["c"]), fast_config(workers=2))
    a, b = comparable(serial), comparable(parallel)
    a["config"].pop("workers"), b["config"].pop("workers")
    assert a == b


def test_parallel_workers_refuse_closures(table, fast_config):
    with pytest.raises(TypeError, match="workers=2 needs picklable callables"):
        run_audit(table, lambda rows, seed: rows, fast_config(workers=2))
