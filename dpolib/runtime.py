"""Where code runs and how it is made repeatable: device choice, seeding, thread count."""

from __future__ import annotations

import random

import numpy as np
import torch


def get_device(prefer: str | None = None) -> torch.device:
    """CUDA if present (Colab), else Apple's MPS, else the CPU; `prefer` overrides ("cpu", "cuda")."""
    if prefer is not None:
        return torch.device(prefer)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int = 0, threads: int | None = 1) -> torch.Generator:
    """Seed Python, NumPy and torch, fix torch's CPU thread count, and return a seeded generator.

    One thread is both the fastest setting for models this small and the reproducible one:
    reductions split across threads add up in a different order. (Python's string hashing can only be
    fixed before the interpreter starts: the Makefile exports PYTHONHASHSEED=0.)
    """
    if threads is not None:
        if threads < 1:
            raise ValueError(
                f"threads must be >= 1, got {threads}; pass None to leave torch's setting alone"
            )
        torch.set_num_threads(threads)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)
