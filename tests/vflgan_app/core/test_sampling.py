"""Shared randomness from (seed, step): batches, latent z, GP alpha, Gumbel streams."""

import pytest
import torch

from vflgan_app.core.sampling import (
    batch_indices,
    gp_alpha,
    gumbel_generator,
    shared_latent,
)

N, B = 32, 8


@pytest.mark.parametrize("sampler", ["shuffle", "wor"])
def test_batch_indices_are_a_function_of_seed_and_step(sampler):
    # Prepare / Execute: the same (seed, step) twice, another step, another seed
    first = batch_indices(7, 5, N, B, sampler)
    again = batch_indices(7, 5, N, B, sampler)
    other_step = batch_indices(7, 6, N, B, sampler)
    other_seed = batch_indices(8, 5, N, B, sampler)
    # Assert: recomputable anywhere, and it really depends on step and seed
    assert first.dtype == torch.long and tuple(first.shape) == (B,)
    assert torch.equal(first, again)
    assert not torch.equal(first, other_step)
    assert not torch.equal(first, other_seed)
    assert int(first.min()) >= 0 and int(first.max()) < N


@pytest.mark.parametrize("n_rows", [32, 35])
def test_shuffle_visits_every_row_once_per_epoch(n_rows):
    # Prepare: N // B full batches per epoch; a partial last batch is dropped
    per_epoch = n_rows // B
    # Execute: two epochs of batches
    epochs = [
        torch.cat([batch_indices(1, e * per_epoch + i, n_rows, B) for i in range(per_epoch)])
        for e in range(2)
    ]
    # Assert: no row twice within an epoch, all rows when B divides N, and each epoch
    # draws a fresh permutation
    for rows in epochs:
        assert len(set(rows.tolist())) == per_epoch * B
        if n_rows % B == 0:
            assert sorted(rows.tolist()) == list(range(n_rows))
    assert not torch.equal(epochs[0], epochs[1])


def test_wor_batches_have_no_repeats_and_are_independent_across_steps():
    # Execute: 50 "wor" batches
    batches = [batch_indices(2, t, N, B, "wor") for t in range(50)]
    # Assert: each batch is B distinct rows; consecutive batches overlap (unlike an
    # epoch of "shuffle"), i.e. they are fresh draws, not slices of one permutation
    for b in batches:
        assert len(set(b.tolist())) == B
    assert len({tuple(b.tolist()) for b in batches}) == 50
    overlaps = [len(set(a.tolist()) & set(b.tolist())) for a, b in zip(batches, batches[1:])]
    assert max(overlaps) > 0


def test_batch_of_the_whole_table_is_allowed():
    # Execute / Assert: B = N is one permutation of all rows (both samplers)
    for sampler in ("shuffle", "wor"):
        assert sorted(batch_indices(0, 3, N, N, sampler).tolist()) == list(range(N))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"batch_size": N + 1}, r"batch size: got 33, expected 1 <= B <= the 32 rows"),
        ({"sampler": "poisson"}, r"sampler: got 'poisson', expected one of"),
    ],
)
def test_batch_indices_refuses_bad_arguments(kwargs, match):
    # Prepare
    args = {"seed": 0, "step": 0, "n_rows": N, "batch_size": B} | kwargs
    # Execute / Assert
    with pytest.raises(ValueError, match=match):
        batch_indices(**args)


@pytest.mark.parametrize(("batch_size", "sampler"), [(0, "shuffle"), (-1, "wor")])
def test_batch_indices_refuses_a_non_positive_batch_size(batch_size, sampler):
    # Execute / Assert
    with pytest.raises(ValueError, match="batch size"):
        batch_indices(0, 0, N, batch_size, sampler)


def test_shared_latent_is_shared_per_step_and_fresh_across_steps():
    # Execute
    z = shared_latent(4, 10, B, 5)
    # Assert: every caller (party) gets the same z; another step or seed another z
    assert tuple(z.shape) == (B, 5) and z.is_floating_point()
    assert torch.equal(z, shared_latent(4, 10, B, 5))
    assert not torch.allclose(z, shared_latent(4, 11, B, 5))
    assert not torch.allclose(z, shared_latent(5, 10, B, 5))
    # roughly standard normal: not a constant, not uniform in [0, 1)
    assert float(z.min()) < 0 < float(z.max())


def test_gp_alpha_is_a_per_sample_weight_in_unit_interval():
    # Execute
    alpha = gp_alpha(4, 10, 64)
    # Assert: shape (B, 1), in [0, 1], recomputable, step-dependent, spread out
    assert tuple(alpha.shape) == (64, 1)
    assert float(alpha.min()) >= 0.0 and float(alpha.max()) <= 1.0
    assert torch.equal(alpha, gp_alpha(4, 10, 64))
    assert not torch.allclose(alpha, gp_alpha(4, 11, 64))
    assert float(alpha.std()) > 0.1


def test_gumbel_streams_differ_by_party_step_and_phase():
    # Prepare
    def draw(*args):
        return torch.rand(16, generator=gumbel_generator(*args))

    base = draw(0, 1, 3, "critic")
    # Execute / Assert: same arguments, same noise; any other argument, other noise
    assert torch.equal(base, draw(0, 1, 3, "critic"))
    for other in [(0, 0, 3, "critic"), (0, 1, 4, "critic"), (0, 1, 3, "gen"),
                  (1, 1, 3, "critic")]:
        assert not torch.allclose(base, draw(*other)), other
