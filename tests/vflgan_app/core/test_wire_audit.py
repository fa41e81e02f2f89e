"""Wire audit: record every payload crossing the transport and prove that no party's rows,
columns or weights ever leave it.

Two recorders: the in-process transport's observer (Python payloads) and the Flower
FlowerTransport observer (the encoded ``RecordDict`` s, i.e. the bytes' content). Both
directions (requests and replies) are searched by :func:`~tests.vflgan_app.core.
wire_audit.find_leaks` for each party's raw numeric values, its encoded rows and chunks of
its weights (snapshotted after every reply), row- and column-wise, in each payload's own
dtype; :func:`~tests.vflgan_app.core.wire_audit.find_off_protocol` checks keys and shapes.
The runs cover the handshake, exact-mode steps of both objectives, chunked-mode steps,
the DP modes, the final flush, a checkpoint and publication (``query.generate``: its
payload is synthetic rows by design, so only its content is searched).

The audit is shown able to fail: a patched party plants each kind of leak and the audit
must report it (``test_planted_leak_is_found``), while the same protocol unpatched gives
no finding. What the search leaves out on purpose, so that zeros, one-hot columns,
sizes and row indices in legitimate traffic cannot match by coincidence, is listed in
the helper's module docstring (in short: zeros, and whole numbers outside integer
arrays, are no column value; secret columns that are constant, more than half zero or
with fewer than 3 distinct values left are skipped, as are secret rows that are
constant, more than half zero or all whole numbers; rows are not searched in integer
arrays), and checked by the negative control
``test_find_leaks_does_not_match_zeros_constants_or_legitimate_arrays``.
"""

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from tests.vflgan_app.conftest import TINY_DOMAIN
from tests.vflgan_app.core.wire_audit import (
    Secret,
    find_leaks,
    find_off_protocol,
    weight_secret,
)
from tests.vflgan_app.flower.test_flower import (
    CATS,
    RUN_CONFIG,
    FakeGrid,
    flower_coordinator,
    node_configs,
    write_party_csvs,
)
from vflgan_app.config import VFLGANConfig
from vflgan_app.core import loop
from vflgan_app.core.party import Party
from vflgan_app.core.sampling import batch_indices
from vflgan_app.flower import codec

ID_COLUMN = "record_id"


# -- secrets --------------------------------------------------------------------------
def raw_numeric(path) -> np.ndarray:
    """A party's numeric CSV columns (ids excluded: they are shared by design), id order."""
    t = pd.read_csv(path).sort_values(ID_COLUMN)
    cols = [c for c in t.columns if c != ID_COLUMN and t[c].dtype.kind in "if"]
    return t[cols].to_numpy(np.float64)


def table_secrets(paths, parties) -> list[Secret]:
    """Each party's raw numeric values and encoded rows (rows and columns searched)."""
    out = []
    for p, path in zip(parties, paths, strict=True):
        out.append(Secret(f"party {p.party_id} raw numeric", raw_numeric(path)))
        out.append(Secret(f"party {p.party_id} encoded", np.asarray(p.data.x)))
    return out


class WeightLog:
    """Every distinct weight and buffer tensor the parties held, snapshotted on demand."""

    def __init__(self) -> None:
        self.seen: dict[tuple, Secret] = {}

    def snapshot(self, parties) -> None:
        for p in parties:
            for mod in ("G", "D_C", "D_p"):
                for k, v in getattr(p, mod).state_dict().items():
                    if not v.dtype.is_floating_point or v.numel() < 4:
                        continue
                    a = v.detach().cpu().numpy()
                    key = (p.party_id, mod, k, a.tobytes())
                    if key not in self.seen:
                        self.seen[key] = weight_secret(f"party {p.party_id} {mod}.{k}", a)

    @property
    def secrets(self) -> list[Secret]:
        return list(self.seen.values())


def in_process_run(tmp_path, overrides):
    """A federation on the Flower tests' CSVs whose observer logs messages and weights.

    Returns:
        ``(model, paths, log, weights)``: ``log`` holds ``(direction, method, payload)``.
    """
    import vflgan_app.api as api
    from vflgan_app.data.partition import prepare_parties

    paths = write_party_csvs(tmp_path)
    cfg = VFLGANConfig.from_run_config(RUN_CONFIG | overrides)
    log, weights, holder = [], WeightLog(), []

    def observer(direction, pid, method, payload):
        log.append((direction, method, payload))
        if direction == "reply" and holder:
            weights.snapshot(holder[0].parties)

    tables = [pd.read_csv(p) for p in paths]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # DP: the noise-seed / delta warnings
        model = api.build_federation(prepare_parties(tables, ID_COLUMN, CATS), cfg,
                                     observer=observer)
    holder.append(model)
    weights.snapshot(model.parties)
    return model, paths, log, weights


# -- the unpatched protocol: no finding ---------------------------------------------------
def dp_overrides(mode: str) -> dict:
    """A short DP run: sigma given (no calibration), the tables' domain declared public.

    40 rows are too few for the thresholds of a DP schema release, so the domain of
    every column is declared.
    """
    out = {"dp.mode": mode, "dp.noise-seed": 1, "dp.noise-multiplier": 3.0}
    out["dp.public-domain"] = TINY_DOMAIN
    return out


@pytest.mark.parametrize(("steps_per_round", "overrides"), [
    (1, {"objective": "paper"}),
    (4, {"objective": "paper"}),
    (1, {"objective": "joint"}),
    (1, {"objective": "joint", "generator-trunk": 1}),
    (1, {"objective": "joint", "joint-exchange": "gram"}),
    (4, {"objective": "joint"}),
    (4, {"objective": "joint", "generator-trunk": 1}),
    (1, dp_overrides("paper")),
    (1, dp_overrides("strict")),
    (1, {**dp_overrides("strict"), "generator-trunk": 1}),
    (1, {**dp_overrides("strict"), "objective": "joint"}),
    (4, {**dp_overrides("strict"), "objective": "joint"}),
], ids=["paper", "paper-chunked", "joint", "joint-trunk", "joint-gram", "joint-chunked",
        "joint-trunk-chunked", "dp-paper",
        "dp-strict",
        "dp-strict-trunk", "dp-strict-joint", "dp-strict-joint-chunked"])
def test_in_process_traffic_carries_no_rows_columns_or_weights(tmp_path, steps_per_round,
                                                               overrides):
    # Prepare (DP steps cost more: fewer of them)
    steps = 4 if "dp.mode" in overrides else 6
    model, paths, log, weights = in_process_run(tmp_path, {"steps": steps, **overrides})
    for p in model.parties:
        p.checkpoint_dir = str(tmp_path / f"party{p.party_id}")
    # Execute: training with a checkpoint, the final flush, publication
    loop.fit(model.coordinator, steps, checkpoint_root=tmp_path / "server", checkpoint_every=3,
             steps_per_round=steps_per_round)
    synthetic = model.coordinator.sample(64, 0)
    # Assert
    joint = overrides.get("objective") == "joint"
    coord = model.coordinator
    arch = coord.arch
    trunk_width = coord.trunk.width if coord.trunk is not None else None
    assert find_leaks(log, table_secrets(paths, model.parties) + weights.secrets) == []
    assert find_off_protocol(log, if_dim=arch.if_dim,
                             batch_size=arch.batch_size if joint else None,
                             trunk_width=trunk_width) == []
    if trunk_width is not None:  # the structural rule is not vacuous: t is not IF-shaped
        assert trunk_width != arch.if_dim
        assert find_off_protocol(log, if_dim=arch.if_dim, batch_size=arch.batch_size) != []
        assert sum(1 for _, _, pl in log if "t" in pl) > steps  # the audit saw the t's
    methods = {m for _, m, _ in log}
    assert {"hello", "save_checkpoint", "sample"} <= methods
    gram = overrides.get("joint-exchange") == "gram"  # the penalty rides with the IFs
    assert ("critic_penalty" in methods) == (joint and steps_per_round == 1 and not gram)
    assert ("critic_features" in methods) == (steps_per_round > 1)
    n_arrays = sum(isinstance(v, torch.Tensor) for _, _, pl in log for v in _leaves(pl))
    assert n_arrays > 50  # the audit saw the traffic
    assert len(weights.secrets) > 50  # ... and weights of many steps
    assert all(x.shape == (64, p.data.schema.width)
               for x, p in zip(synthetic, model.parties, strict=True))


def _leaves(payload):
    for v in payload.values():
        yield from (_leaves(v) if isinstance(v, dict) else [v])


def test_flower_wire_carries_no_rows_columns_or_weights(tmp_path):
    # Prepare: the Flower path (codec records), exact steps then chunks
    paths = write_party_csvs(tmp_path)
    cfg = VFLGANConfig.from_run_config(RUN_CONFIG | {"steps": 9})
    grid = FakeGrid(node_configs(paths), RUN_CONFIG, cache=False)
    log, sent = [], {}

    def observer(direction, node, mtype, content):
        if direction == "request":
            sent[node] = mtype
        log.append((direction, mtype if direction == "request" else sent[node], content))

    coord = flower_coordinator(grid, cfg)
    coord.transport.observer = observer
    # Execute
    coord.fit(5)
    coord.fit(9, steps_per_round=2)
    coord.sample(16, 0)
    # the parties' data and weights: an in-process twin (the transports are equivalent,
    # tests/vflgan_app/flower/test_flower.py), weights snapshotted after every reply
    (tmp_path / "ref").mkdir()
    ref, _, _, weights = in_process_run(tmp_path / "ref", {"steps": 9})
    ref.coordinator.fit(5)
    ref.coordinator.fit(9, steps_per_round=2)
    # Assert
    assert find_leaks(log, table_secrets(paths, ref.parties) + weights.secrets) == []
    assert find_off_protocol(log, if_dim=coord.arch.if_dim) == []
    assert {m for d, m, _ in log if d == "request"} == {"train.step", "query.generate"}
    assert all(codec.is_packed(c) for _, _, c in log)  # the audit read the wire form
    assert sum(1 for _, _, c in log if "stack" in codec.unpack(c)) > 10


# -- planted leaks: the audit must fail ------------------------------------------------
#: what a patched party 0 does (see ``plant``) -> the secret the audit must name
LEAKS = {
    "a: encoded rows as h_real (float32, zero-padded)": "party 0 encoded",
    "a: encoded rows as h_real (float16)": "party 0 encoded",
    "a: encoded rows as h_real (bfloat16)": "party 0 encoded",
    "b: raw numeric values as h_real (float32, zero-padded)": "party 0 raw numeric",
    "c: one raw column appended to the IF": "party 0 raw numeric column 0",
    "d: one encoded row at an offset in h_fake": "party 0 encoded",
    "d: one encoded row at an offset in h_fake (float16)": "party 0 encoded",
    "e: a raw column laid along a row of a (joint penalty reply)": "party 0 raw numeric column 0",
    "f: one row of D_C's weights in h_hat": "party 0 D_C.net.2.weight",
    "g: encoded rows in the trunk gradient t": "party 0 encoded",
    "h: a raw column along the trunk gradient t": "party 0 raw numeric column 0",
}


def plant(monkeypatch, leak: str, raw: dict[int, np.ndarray]) -> None:
    """Patch ``Party`` so that party 0 smuggles a secret out in legitimately shaped replies.

    Every planted array keeps the key, shape and float dtype the protocol sends, so the
    structural checks and the coordinator's reply checks accept it: only the content
    search can find it.
    """
    forward, penalty = Party.critic_forward, Party.critic_penalty
    backward = Party.generator_backward

    def leaky_forward(self, step, idx, t=None):
        out = forward(self, step, idx, t)
        if self.party_id != 0:
            return out
        rows = torch.as_tensor(np.asarray(idx), dtype=torch.long)
        x = self.x[rows]  # (B, width) encoded rows
        r = torch.as_tensor(raw[0][rows.numpy()], dtype=torch.float32)  # (B, numeric)
        h = out["h_real"].clone()
        if leak.startswith("a:"):
            h = torch.zeros_like(h)
            h[:, : x.shape[1]] = x
            h = h.to({"(float16)": torch.float16, "(bfloat16)": torch.bfloat16}.get(
                leak.split()[-1], torch.float32))
        elif leak.startswith("b:"):
            h = torch.zeros_like(h)
            h[:, : r.shape[1]] = r
        elif leak.startswith("c:"):
            h = torch.cat([h[:, :-1], r[:, :1]], dim=1)
        elif leak.startswith("d:"):
            fake = out["h_fake"].clone()
            fake[3, 7 : 7 + x.shape[1]] = x[0]
            out["h_fake"] = fake.half() if leak.endswith("(float16)") else fake
        elif leak.startswith("f:"):
            hat = out["h_hat"].clone()
            hat[2, :16] = self.D_C.net[2].weight[5].detach()
            out["h_hat"] = hat
        out["h_real"] = h
        return out

    def leaky_penalty(self, step, u):
        out = penalty(self, step, u)
        if self.party_id == 0 and leak.startswith("e:"):
            rows = self._critic_args[1].numpy()
            a = out["a"].clone()
            a[0, : len(rows)] = torch.as_tensor(raw[0][rows, 0], dtype=a.dtype)
            out["a"] = a
        return out

    def leaky_backward(self, step, grads):
        out = backward(self, step, grads)
        if self.party_id == 0 and leak[:2] in ("g:", "h:"):
            rows = batch_indices(self.settings.seed, step, len(self.x),
                                 self.settings.batch_size, self.settings.sampler).numpy()
            t = out["t"].clone()  # (B, trunk width)
            if leak.startswith("g:"):
                x = self.x[rows]
                t[:, : x.shape[1]] = x
            else:
                t[: len(rows), 1] = torch.as_tensor(raw[0][rows, 0], dtype=t.dtype)
            out["t"] = t
        return out

    monkeypatch.setattr(Party, "critic_forward", leaky_forward)
    monkeypatch.setattr(Party, "critic_penalty", leaky_penalty)
    monkeypatch.setattr(Party, "generator_backward", leaky_backward)


def planted_leak_run(tmp_path, monkeypatch, leak: str):
    """Three joint-objective steps with a shared trunk, party 0 patched by :func:`plant`."""
    paths = write_party_csvs(tmp_path)
    plant(monkeypatch, leak, {k: raw_numeric(p) for k, p in enumerate(paths)})
    model, paths, log, weights = in_process_run(tmp_path, {"steps": 3, "objective": "joint",
                                                           "generator-trunk": 1})
    model.coordinator.fit(3)
    return model, paths, log, weights


@pytest.mark.parametrize("leak", list(LEAKS))
def test_planted_leak_is_found(tmp_path, monkeypatch, leak):
    # Prepare / Execute: a party that smuggles a secret out in a reply
    model, paths, log, weights = planted_leak_run(tmp_path, monkeypatch, leak)
    # Assert: the content search reports it, the structural checks do not see it
    found = find_leaks(log, table_secrets(paths, model.parties) + weights.secrets)
    assert any(LEAKS[leak] in f for f in found), found
    assert all("party 1" not in f for f in found), found
    arch = model.coordinator.arch
    assert find_off_protocol(log, if_dim=arch.if_dim, batch_size=arch.batch_size,
                             trunk_width=model.coordinator.trunk.width) == []


def test_planted_leak_is_found_on_the_flower_wire(tmp_path, monkeypatch):
    # Prepare: leak b through the real ClientApp and codec (stacked (n, B, if_dim) arrays)
    paths = write_party_csvs(tmp_path)
    plant(monkeypatch, "b: raw numeric values", {k: raw_numeric(p) for k, p in enumerate(paths)})
    cfg = VFLGANConfig.from_run_config(RUN_CONFIG | {"steps": 3})
    log = []
    coord = flower_coordinator(FakeGrid(node_configs(paths), RUN_CONFIG, cache=False), cfg)
    coord.transport.observer = lambda d, node, mtype, content: log.append((d, mtype, content))
    # Execute
    coord.fit(3)
    # Assert
    secrets = [Secret(f"party {k} raw numeric", raw_numeric(p)) for k, p in enumerate(paths)]
    found = find_leaks(log, secrets)
    assert any("party 0 raw numeric" in f and "stack/g" in f for f in found), found


# -- the helper on its own ---------------------------------------------------------------
def _secret_table(n=40, seed=0):
    """Continuous, integer and one-hot columns (like a party's table)."""
    rng = np.random.default_rng(seed)
    onehot = np.eye(3)[rng.integers(0, 3, n)]
    return np.column_stack([rng.normal(size=n), rng.integers(0, 5, n), onehot,
                            rng.normal(size=n)])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_find_leaks_finds_rows_and_columns_in_every_float_dtype(dtype):
    # Prepare: one secret table; payloads that hide a row or a column in several ways
    secret = Secret("t", _secret_table())
    v = torch.as_tensor(secret.values)
    rng = np.random.default_rng(1)
    idx = rng.permutation(40)[:16]
    noise = torch.randn(16, 32, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def padded_row():
        a = torch.zeros(16, 32, dtype=torch.float64)
        a[5, : v.shape[1]] = v[7]
        return a

    def row_at_offset():
        a = noise.clone()
        a[2, 11 : 11 + v.shape[1]] = v[7]
        return a

    def row_as_column():  # (stack, B, if_dim) with the row down one column
        a = noise.clone().repeat(2, 1, 1)
        a[1, 3 : 3 + v.shape[1], 20] = v[7]
        return a

    def gathered_column():
        a = noise.clone()
        a[:, 31] = v[idx, 0]
        return a

    def column_along_a_row():
        a = noise.clone()
        a[4, :16] = v[idx, 5]
        return a

    cases = {"padded row": (padded_row, "row 7"), "row at an offset": (row_at_offset, "row 7"),
             "row down a column of a stack": (row_as_column, "row 7"),
             "gathered column": (gathered_column, "column 0"),
             "column along a row": (column_along_a_row, "column 5")}
    for name, (make, what) in cases.items():
        # Execute
        found = find_leaks([("reply", "m", {"h": make().to(dtype)})], [secret])
        # Assert
        assert any(what in f for f in found), (name, found)
        assert find_leaks([("reply", "m", {"h": noise.to(dtype)})], [secret]) == []


def test_find_leaks_finds_integer_columns_lists_strings_and_scalars():
    secret = Secret("t", _secret_table())
    counts = secret.values[:, 1].astype(np.int64)  # raw integer column 0..4
    messages = [
        ("request", "m", {"idx": torch.as_tensor(counts[:20])}),  # integers as an int array
        ("reply", "m", {"loss": float(secret.values[3, 0])}),  # one raw value as a scalar
        ("reply", "m", {"l": secret.values[:, 5].tolist()}),  # a column as a config list
        ("reply", "m", {"schema": str(secret.values[9].tolist())}),  # a row inside a string
    ]
    found = find_leaks(messages, [secret])
    assert [f.split(":")[0] for f in found] == [f"message {i} ({d} m)"
                                                for i, (d, _, _) in enumerate(messages)], found


def test_find_leaks_does_not_match_zeros_constants_or_legitimate_arrays():
    """Negative control: coincidences are not leaks.

    The secret has a constant column, a zero column, a mostly-zero column and one-hot
    columns, all excluded from the column search (zeros, constants and two-valued
    columns are in legitimate arrays everywhere), and rows with few informative values.
    The payloads are what legitimate traffic holds: zero-padded and constant arrays,
    exact 0/1 values (hard one-hot synthetic rows), random IFs, row indices (integers,
    like the secret's integer column) and a schema and config lists full of small
    whole numbers.
    """
    rng = np.random.default_rng(2)
    n = 40
    mostly_zero = np.where(rng.random(n) < 0.8, 0.0, rng.normal(size=n))
    table = np.column_stack([np.full(n, 3.5), np.zeros(n), mostly_zero,
                             np.eye(2)[rng.integers(0, 2, n)], rng.integers(0, 5, n),
                             rng.normal(size=n)])
    secret = Secret("t", table)
    synthetic_onehot = np.eye(2, dtype=np.float32)[rng.integers(0, 2, 64)]
    messages = [("reply", "m", {
        "zeros": torch.zeros(16, 32), "threes": torch.full((16, 32), 3.5),
        "ones": torch.ones(3, 16, 32), "x": synthetic_onehot,
        "h_real": torch.randn(16, 32, generator=torch.Generator().manual_seed(3)),
        "idx": torch.as_tensor(rng.permutation(n)[:16]),
        "stack": np.stack([rng.permutation(n)[:16] for _ in range(4)]),
        "loss": 0.0, "step": 4, "index": [0, 1, 2, 3, 4, 1, 2, 3],
        "schema": json.dumps([{"name": "count", "kind": "numeric", "low": 0.0, "high": 4.0,
                               "mean": 2.0, "std": 2.0, "categories": [1, 2, 3, 4]}]),
    })]
    assert find_leaks(messages, [secret]) == []
    # the same secret is found when it does travel (the exclusions are not blanket)
    leak = torch.zeros(16, 32)
    leak[:, 0] = torch.as_tensor(table[:16, 6], dtype=torch.float32)
    assert find_leaks([("reply", "m", {"h_real": leak})], [secret]) != []
