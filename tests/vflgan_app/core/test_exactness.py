"""The federated in-process run equals the single-process reference, for both objectives.

`paper` is the paper's script; `joint` is the joint penalty written with one autograd
graph (core/reference.py), against its split, over-the-wire form (core/joint.py).
"""

import pytest
import torch

from tests.vflgan_app.conftest import TINY, make_table
from vflgan_app.core.coordinator import Coordinator, ServerCriticGradients
from vflgan_app.core.joint import JointCriticGradients, JointServerCritic
from vflgan_app.core.party import CriticGradients, Party, PartySettings
from vflgan_app.core.protocol import InProcessTransport
from vflgan_app.core.reference import ReferenceVFLGAN
from vflgan_app.data.partition import prepare_parties, split_vertical

PARTY_SPLITS = {
    2: [["a", "color", "count"], ["b", "c", "kind"]],
    3: [["a", "color"], ["b", "count"], ["c", "kind"]],
}


def build_both(k, arch, seed=3, n_critic=5, objective="paper", shuffle_negatives=0.0,
               trunk=0, gram=False):
    joint = objective == "joint"
    table = make_table(64)
    parties_data = prepare_parties(
        split_vertical(table, PARTY_SPLITS[k], "record_id"),
        "record_id",
        categorical=["color", "kind"],
    )
    settings = PartySettings(seed=seed, lambda_gp=arch.lambda_gp, lr=arch.lr, trunk=trunk)
    parties = [Party(d, arch, settings,
                     critic_rule=JointCriticGradients(gram) if joint else CriticGradients())
               for d in parties_data]
    coord = Coordinator(InProcessTransport(parties), arch, seed=seed, n_critic=n_critic,
                        critic_rule=JointServerCritic() if joint else ServerCriticGradients(),
                        shuffle_negatives=shuffle_negatives, generator_trunk=trunk)
    coord.handshake()
    ref = ReferenceVFLGAN(
        [d.x for d in parties_data],
        [d.schema.output_spans() for d in parties_data],
        arch,
        seed,
        n_critic,
        objective=objective,
        shuffle_negatives=shuffle_negatives,
        generator_trunk=trunk,
    )
    return coord, parties, ref


@pytest.mark.parametrize(("objective", "shuffle", "trunk"),
                         [("paper", 0.0, 0), ("joint", 0.0, 0), ("paper", 0.5, 0),
                          ("joint", 0.5, 0), ("paper", 0.0, 1), ("joint", 0.5, 2),
                          ("joint", 0.0, 1), ("joint-gram", 0.0, 0),
                          ("joint-gram", 0.5, 2)])
@pytest.mark.parametrize("k", [2, 3])
def test_federated_equals_reference(k, objective, shuffle, trunk):
    # float64 so that the only difference left is summation order (float32 differs by
    # ~1e-7 per step, which Adam amplifies slowly); the computation is the same.
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        gram = objective == "joint-gram"  # the penalty via Gram matrices, in exact mode
        coord, parties, ref = build_both(k, TINY, objective=objective.removesuffix("-gram"),
                                         shuffle_negatives=shuffle, trunk=trunk, gram=gram)
        for _ in range(25):
            d_fed = coord.train_step()
            d_ref, g_ref = ref.train_step()
            t = coord.step - 1
            assert d_fed == pytest.approx(d_ref, abs=1e-6, rel=1e-6), (
                f"d_loss at step {t}"
            )
            if g_ref is not None:
                assert coord.history.g_loss[t] == pytest.approx(
                    g_ref, abs=1e-6, rel=1e-6
                )
        coord.flush()
        for p in parties:
            k_ = p.party_id
            for mine, theirs in [
                (p.G, ref.G[k_]),
                (p.D_C, ref.D_C[k_]),
                (p.D_p, ref.D_p[k_]),
            ]:
                for (name, a), b in zip(
                    mine.state_dict().items(), theirs.state_dict().values()
                ):
                    assert torch.allclose(a.double(), b.double(), atol=1e-6, rtol=0), (
                        name
                    )
        for a, b in zip(coord.D_S.parameters(), ref.D_S.parameters()):
            assert torch.allclose(a, b, atol=1e-6, rtol=0)
        if trunk:  # the shared trunk, its BatchNorm statistics included
            for (name, a), b in zip(coord.trunk.state_dict().items(),
                                    ref.trunk.state_dict().values()):
                assert torch.allclose(a.double(), b.double(), atol=1e-6, rtol=0), name
        # the losses moved: this was not a no-op run
        assert len(set(round(x, 6) for x in coord.history.d_loss)) > 20
    finally:
        torch.set_default_dtype(old)


def test_float32_close_to_reference():
    coord, _, ref = build_both(2, TINY)
    diffs = []
    for _ in range(20):
        d_fed = coord.train_step()
        d_ref, _ = ref.train_step()
        diffs.append(abs(d_fed - d_ref))
    assert max(diffs) < 1e-3


def test_objectives_differ():
    # the joint objective is another loss: same seeds, different critic losses
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        paper, _, _ = build_both(2, TINY)
        joint, _, _ = build_both(2, TINY, objective="joint")
        shuffled, _, _ = build_both(2, TINY, shuffle_negatives=0.5)
        d = paper.train_step()
        assert abs(d - joint.train_step()) > 1e-3
        assert abs(d - shuffled.train_step()) > 1e-6  # D_S starts nearly constant
        for _ in range(3):
            d = paper.train_step()
        for _ in range(3):
            e = shuffled.train_step()
        assert abs(d - e) > 1e-6  # float64 round-off is ~1e-15
    finally:
        torch.set_default_dtype(old)


def test_joint_round_trips_per_step():
    # two round trips per critic step (features, then the penalty exchange), plus one on
    # generator steps; the third leg rides with the next step
    coord, _, _ = build_both(2, TINY, n_critic=5, objective="joint")
    for _ in range(10):
        coord.train_step()
    assert coord.transport.round_trips == 1 + 2 * 10 + 2  # handshake + steps + 2 gen


@pytest.mark.parametrize(("trunk", "want"), [(0, 1 + 10 + 2), (1, 1 + 10 + 2 * 2)])
def test_joint_with_gram_exchange_round_trips_per_step(trunk, want):
    # the Gram matrices ride with the features: one round trip per critic step, the
    # generator steps' as with the paper objective (a trunk adds its gradient's return)
    coord, parties, _ = build_both(2, TINY, n_critic=5, objective="joint", trunk=trunk,
                                   gram=True)
    for _ in range(10):
        coord.train_step()
    assert coord.transport.round_trips == want
    assert all(p._penalty_u is None for p in parties)  # u came with the gradients
