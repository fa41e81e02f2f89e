"""Shared randomness derived from (seed, step): batches, latent z, GP alpha, Gumbel noise.

Every party recomputes these from the run seed and the step number, so z and alpha never
cross the wire and the federated run draws exactly what a single-process run draws.
"""

from __future__ import annotations

import torch

from trainkit import make_generator
from vflgan_app.config import SAMPLERS


def batch_indices(
    seed: int, step: int, n_rows: int, batch_size: int, sampler: str = "shuffle"
) -> torch.Tensor:
    """Row indices of step ``step``'s batch.

    Args:
        seed: the run seed.
        step: 0-based training step.
        n_rows: N, rows in the table.
        batch_size: B.
        sampler: ``"shuffle"``: epochs of a fresh permutation, ``N // B`` full batches
            each (the paper's shuffled DataLoader, last partial batch dropped);
            ``"wor"``: an independent fixed-size batch drawn without replacement at every
            step (the paper's DP sampler, matched by the accountant).

    Returns:
        ``LongTensor (B,)``.
    """
    if not 1 <= batch_size <= n_rows:
        raise ValueError(f"batch size: got {batch_size}, expected 1 <= B <= the {n_rows} rows")
    if sampler == "wor":
        return torch.randperm(n_rows, generator=make_generator(seed, "batch", step))[
            :batch_size
        ]
    if sampler != "shuffle":
        raise ValueError(f"sampler: got {sampler!r}, expected one of {SAMPLERS}")
    per_epoch = n_rows // batch_size
    epoch, i = divmod(step, per_epoch)
    perm = torch.randperm(n_rows, generator=make_generator(seed, "epoch", epoch))
    return perm[i * batch_size : (i + 1) * batch_size]


def shared_latent(
    seed: int, step: int, batch_size: int, latent_dim: int
) -> torch.Tensor:
    """The latent z ``(B, d)`` every party feeds its generator at ``step``."""
    return torch.randn(
        batch_size, latent_dim, generator=make_generator(seed, "z", step)
    )


def publication_latent(seed: int, n: int, latent_dim: int,
                       party_id: int | None = None) -> torch.Tensor:
    """The latent z ``(n, d)`` of a publication: shared, or one party's own stream.

    ``party_id`` given: that party's independent stream (the independent-latent
    control, cross-party dependence destroyed).
    """
    keys = ("sample",) if party_id is None else ("sample", party_id)
    return torch.randn(n, latent_dim, generator=make_generator(seed, *keys))


def gp_alpha(seed: int, step: int, batch_size: int) -> torch.Tensor:
    """Per-sample interpolation weights ``(B, 1)``, the same at every party."""
    return torch.rand(batch_size, 1, generator=make_generator(seed, "alpha", step))


def gumbel_generator(
    seed: int, party_id: int, step: int, phase: str
) -> torch.Generator:
    """Generator for party ``party_id``'s Gumbel noise in ``phase`` of ``step``."""
    return make_generator(seed, "gumbel", party_id, step, phase)


def party_shuffle(seed: int, step: int, batch_size: int, num_parties: int) -> list[torch.Tensor]:
    """Row permutations that pair party 0's row i with other parties' rows of other records.

    Party 0 keeps its order; party k >= 1 gets its own permutation of ``range(B)`` from
    ``(seed, step, k)``. Applied to real IFs, they give "shuffled real" rows: each party's
    marginal is real, the cross-party dependence is broken (the negatives of
    ``shuffle_negatives``).
    """
    perms = [torch.arange(batch_size)]
    for k in range(1, num_parties):
        perms.append(torch.randperm(batch_size,
                                    generator=make_generator(seed, "shuffle-neg", step, k)))
    return perms

