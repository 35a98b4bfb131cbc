"""Explicit randomness: every stochastic function takes a generator built here."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch


def make_rng(seed: int | None = None, *, secure: bool = False) -> np.random.Generator:
    """A numpy Generator from ``seed``; ``secure=True`` seeds from the OS entropy pool.

    A fixed seed makes noise reproducible (good for experiments, bad for
    releases: anyone holding the seed can subtract the noise). Releases should
    use ``secure=True``, which ignores ``seed``.
    """
    if secure:
        return np.random.Generator(np.random.PCG64(secrets.randbits(128)))
    return np.random.default_rng(seed)


def make_torch_generator(seed: int | None = None, *, secure: bool = False) -> torch.Generator:
    """A ``torch.Generator`` seeded like :func:`make_rng`."""
    import torch

    gen = torch.Generator()
    if secure or seed is None:
        gen.manual_seed(secrets.randbits(63))
    else:
        gen.manual_seed(int(seed))
    return gen
