"""Where code runs and how it is made repeatable: device choice, seeding, threads."""

from __future__ import annotations

import numbers
import random

import numpy as np
import torch

from .errors import describe

DEVICE_TYPES = ("cpu", "cuda", "mps")


def get_device(prefer: str | torch.device | None = None) -> torch.device:
    """CUDA if present (Colab), else Apple's MPS, else the CPU; `prefer` overrides
    ("cpu", "cuda", "cuda:1", "mps"), and must be available here."""
    if prefer is None:
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if not isinstance(prefer, (str, torch.device)):
        raise TypeError(
            f"device must be a str such as 'cpu' or 'cuda', got "
            f"{type(prefer).__name__} {describe(prefer)}"
        )
    try:
        device = torch.device(prefer)
    except (RuntimeError, ValueError):
        device = None
    if device is None or device.type not in DEVICE_TYPES:
        raise ValueError(
            f"unknown device {describe(prefer)}; choose one of {DEVICE_TYPES} (or "
            "None for the best one available)"
        )
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(
                f"device {describe(prefer)} was asked for but this machine has no "
                "usable CUDA GPU (or torch was built without CUDA); use 'cpu', or "
                "None to pick the best available"
            )
        if device.index is not None and device.index >= count:
            raise ValueError(
                f"device {describe(prefer)} does not exist: this machine has {count} "
                f"CUDA GPU(s), cuda:0 to cuda:{count - 1}"
            )
    if device.type == "mps" and not _mps_available():
        raise ValueError(
            f"device {describe(prefer)} was asked for but Apple's MPS is not "
            "available here; use 'cpu', or None to pick the best available"
        )
    return device


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return mps is not None and bool(mps.is_available())


def seed_everything(seed: int = 0, threads: int | None = 1) -> torch.Generator:
    """Seed Python, NumPy and torch, fix torch's CPU thread count, and return a seeded
    generator.

    One thread is both the fastest setting for models this small and the reproducible
    one: reductions split across threads add up in a different order. (Python's string
    hashing can only be fixed before the interpreter starts: the Makefile exports
    PYTHONHASHSEED=0.)
    """
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(
            f"seed must be an int, got {type(seed).__name__} {describe(seed)}"
        )
    if not 0 <= seed < 2**64:
        # torch keeps seeds in 64 bits: 2**70 would be its OverflowError
        raise ValueError(
            f"seed must be in [0, 2**64), got {describe(seed)}; pick a smaller seed"
        )
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, numbers.Integral):
            raise TypeError(
                f"threads must be an int or None, got {type(threads).__name__} "
                f"{describe(threads)}"
            )
        if threads < 1:
            raise ValueError(
                f"threads must be >= 1, got {describe(threads)}; pass None to leave "
                "torch's setting alone"
            )
        torch.set_num_threads(int(threads))
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)
