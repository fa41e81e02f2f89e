"""Seeding and explicit ``torch.Generator`` plumbing.

Randomness that must agree between processes (VFLGAN's shared latent z, the gradient
penalty's alpha) is derived from ``(seed, *keys)`` with :func:`derive_seed`, so it can be
recomputed anywhere and never has to travel.
"""

from __future__ import annotations

import hashlib
import random

import numpy as np
import torch


def derive_seed(seed: int, *keys: object) -> int:
    """Derive a 63-bit seed from a base seed and any number of keys.

    Uses SHA-256 over the textual keys, so it is stable across processes, platforms
    and Python versions (unlike ``hash``).

    Args:
        seed: the base seed.
        *keys: anything with a stable ``str`` (step numbers, stream names, party ids).

    Returns:
        A non-negative integer below 2**63.
    """
    text = "\x1f".join([str(int(seed)), *map(str, keys)])
    digest = hashlib.sha256(text.encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def make_generator(
    seed: int, *keys: object, device: str | torch.device = "cpu"
) -> torch.Generator:
    """Return a ``torch.Generator`` seeded with ``derive_seed(seed, *keys)``."""
    gen = torch.Generator(device=device)
    gen.manual_seed(derive_seed(seed, *keys) if keys else int(seed))
    return gen


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (all devices)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
