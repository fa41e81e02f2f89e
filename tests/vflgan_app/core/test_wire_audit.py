"""Wire audit: record every payload crossing the transport and prove that no raw row, no
array of raw-row shape, and no party's weights ever leave a party.

Two recorders: the in-process transport's observer (Python payloads) and the Flower
FlowerTransport observer (the encoded ``RecordDict`` s, i.e. the bytes' content). The run
covers the handshake, exact-mode and chunked-mode training steps, the final flush and a
checkpoint. Publication (``query.generate``) is audited separately: its payload is
synthetic rows by design, so it is checked only for copies of real rows.
"""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from flwr.app import ArrayRecord, ConfigRecord

from tests.vflgan_app.flower.test_flower import (
    CATS,
    RUN_CONFIG,
    FakeGrid,
    flower_coordinator,
    in_process,
    node_configs,
    write_party_csvs,
)
from vflgan_app.config import VFLGANConfig
from vflgan_app.core import loop

ALLOWED_KEYS = {
    # handshake
    "party_id", "n_rows", "id_hash", "schema", "width", "if_dim",
    # training: row indices, step numbers, IFs, gradients w.r.t. IFs, scalar losses
    "step", "idx", "batch_size", "loss", "h_real", "h_fake", "h_hat", "h_gen", "grads",
    # the joint objective's mid-step exchange: dD_S/dIF (u), per-row squared norms (s),
    # J J^T u (a), per-row penalty weights (w)
    "u", "s", "a", "w",
    # call framing (Flower codec: tensors stacked in "g<k>" arrays, referenced by key)
    "methods", "n", "key", "group", "index",
}


def flatten_payload(d, prefix=""):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from flatten_payload(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def record_items(content):
    """(key, value) of every record in a RecordDict; arrays as numpy."""
    for name, rec in content.items():
        if isinstance(rec, ArrayRecord):
            for k, a in rec.items():
                yield k, a.numpy()
        elif isinstance(rec, ConfigRecord):
            for k, v in rec.items():
                yield k, v
        else:
            raise AssertionError(f"unexpected record type {type(rec).__name__} ({name})")


def party_secrets(paths, model):
    """Raw float values, encoded rows and every weight/optimizer tensor of each party."""
    raw_floats, rows, widths, weights = set(), [], [], []
    for p, path in zip(model.parties, paths, strict=True):
        t = pd.read_csv(path)
        for c in t.columns:
            if t[c].dtype.kind == "f":
                raw_floats.update(t[c].tolist())
        rows.append(np.asarray(p.data.x, np.float32))
        widths.append(p.data.schema.width)
        for m in (p.G, p.D_C, p.D_p):
            weights += [v.detach().numpy().ravel() for v in m.state_dict().values()
                        if v.dtype.is_floating_point]
    return raw_floats, rows, widths, weights


def audit(items, secrets, if_dim, batch=None):
    """Check every (key, value); ``batch``: per-row scalar vectors (B,) are allowed."""
    raw_floats, rows, widths, weights = secrets
    row_values = {float(x) for r in rows for x in np.unique(r) if x not in (0.0, 1.0)}
    n_arrays = 0
    for key, v in items:
        leaf = key.split(".")[-1]
        stacked = leaf[:1] == "g" and leaf[1:].isdigit()  # a codec stack of tensors
        assert leaf in ALLOWED_KEYS or stacked or key.startswith("grads."), \
            f"unexpected key {key!r}"
        if key == "_refs.key":  # names of the stacked tensors
            assert all(k.split(".")[-1] in ALLOWED_KEYS for k in v), v
            continue
        if isinstance(v, torch.Tensor):
            v = v.detach().numpy()
        if isinstance(v, np.ndarray):
            n_arrays += 1
            # nothing shaped like a party's rows (N or B, width_k)
            assert not (v.ndim >= 2 and v.shape[-1] in widths), f"{key}: raw-row shape {v.shape}"
            if v.dtype.kind == "f":
                # IFs / their gradients: (B, if_dim), or a stack (n, B, if_dim); with the
                # joint objective also per-row scalars (B,), or a stack (n, B)
                assert (v.ndim in (2, 3) and v.shape[-1] == if_dim) or (
                    batch is not None and v.ndim in (1, 2) and v.shape[-1] == batch), \
                    f"{key}: shape {v.shape}"
                # no encoded row value (one-hot 0/1 aside) travels either
                assert not row_values & set(v.ravel().tolist()), f"{key}: an encoded row value"
                # no raw value and no weight value appears anywhere
                assert not raw_floats & set(v.ravel().astype(np.float64).tolist()), key
                flat = v.ravel()
                for w in weights:
                    if len(w) >= 4:
                        assert not np.isin(w[:4], flat).all(), f"{key} carries weights"
            else:  # row indices: (B,), or a stack (n, B)
                assert (leaf == "idx" and v.ndim == 1) or (stacked and v.ndim == 2), \
                    f"{key}: integer array {v.shape}"
        elif isinstance(v, float):
            assert v not in raw_floats, f"{key}: a raw value"
        elif key == "schema":
            cols = json.loads(v)
            assert all(set(c) >= {"name", "kind"} for c in cols)
    return n_arrays


@pytest.mark.parametrize(("steps_per_round", "objective"),
                         [(1, "paper"), (4, "paper"), (1, "joint")])
def test_in_process_payloads_carry_no_rows_or_weights(tmp_path, steps_per_round, objective):
    paths = write_party_csvs(tmp_path)
    cfg = VFLGANConfig.from_run_config(RUN_CONFIG | {"steps": 12, "objective": objective})
    log = []
    import vflgan_app.api as api
    from vflgan_app.data.partition import prepare_parties

    tables = [pd.read_csv(p) for p in paths]
    model = api.build_federation(prepare_parties(tables, "record_id", CATS), cfg,
                                 observer=lambda d, pid, m, payload: log.append((d, m, payload)))
    for p in model.parties:
        p.checkpoint_dir = str(tmp_path / f"party{p.party_id}")
    loop.fit(model.coordinator, 12, checkpoint_root=tmp_path / "server", checkpoint_every=8,
                         steps_per_round=steps_per_round)
    secrets = party_secrets(paths, model)
    items = [kv for _, m, payload in log for kv in flatten_payload(payload)]
    batch = model.coordinator.arch.batch_size if objective == "joint" else None
    n = audit(items, secrets, model.coordinator.arch.if_dim, batch)
    assert n > 50  # the audit saw the traffic
    methods = {m for _, m, _ in log}
    assert {"hello", "save_checkpoint"} <= methods
    assert ("critic_penalty" in methods) == (objective == "joint")
    # publication: synthetic rows, never a copy of a real row
    for x, real in zip(model.coordinator.sample(64, 0), secrets[1], strict=True):
        assert not (x[:, None, :] == real[None, :, :]).all(-1).any()


def test_flower_wire_carries_no_rows_or_weights(tmp_path):
    paths = write_party_csvs(tmp_path)
    cfg = VFLGANConfig.from_run_config(RUN_CONFIG | {"steps": 9})
    grid = FakeGrid(node_configs(paths), RUN_CONFIG, cache=False)
    log = []
    coord = flower_coordinator(grid, cfg)
    coord.transport.observer = lambda d, node, mtype, content: log.append((d, mtype, content))
    coord.fit(5)
    coord.fit(9, steps_per_round=2)
    ref = in_process(paths, cfg)  # the parties' own data and (initial) weights
    ref.coordinator.fit(9)
    secrets = party_secrets(paths, ref)
    items = [kv for _, _, content in log for kv in record_items(content)]
    assert audit(items, secrets, coord.arch.if_dim) > 30
    assert {m for d, m, _ in log if d == "request"} == {"train.step"}


@pytest.mark.parametrize("leak", ["raw rows", "rows in an IF", "row values in s"])
def test_audit_fails_on_a_planted_leak(tmp_path, leak):
    # Prepare: a party that smuggles its rows out in a reply
    paths = write_party_csvs(tmp_path)
    cfg = VFLGANConfig.from_run_config(RUN_CONFIG | {"steps": 3, "objective": "joint"})
    import vflgan_app.api as api
    from vflgan_app.data.partition import prepare_parties

    tables = [pd.read_csv(p) for p in paths]
    log = []
    model = api.build_federation(prepare_parties(tables, "record_id", CATS), cfg,
                                 observer=lambda d, pid, m, payload: log.append(payload))
    party = model.parties[0]
    forward, penalty = party.critic_forward, party.critic_penalty

    def leaky_forward(step, idx):
        out = forward(step, idx)
        x = party.x[torch.as_tensor(idx)]
        if leak == "raw rows":
            out["x"] = x
        elif leak == "rows in an IF":
            h = out["h_real"].clone()
            h[:, : x.shape[1]] = x
            out["h_real"] = h
        return out

    def leaky_penalty(step, u):
        out = penalty(step, u)
        if leak == "row values in s":
            out["s"] = party.x[: out["s"].shape[0], 0].abs().clone()
        return out

    party.critic_forward, party.critic_penalty = leaky_forward, leaky_penalty
    # Execute
    model.coordinator.fit(3)
    items = [kv for payload in log for kv in flatten_payload(payload)]
    # Assert: the audit refuses the traffic
    with pytest.raises(AssertionError):
        audit(items, party_secrets(paths, model), model.coordinator.arch.if_dim,
              model.coordinator.arch.batch_size)
