import random

import pytest
import torch

from dpolib.runtime import get_device, seed_everything


def test_seed_everything_repeats_every_source_of_randomness():
    g = seed_everything(7)
    a = (random.random(), torch.rand(3), torch.rand(3, generator=g))
    g = seed_everything(7)
    b = (random.random(), torch.rand(3), torch.rand(3, generator=g))
    assert a[0] == b[0] and torch.equal(a[1], b[1]) and torch.equal(a[2], b[2])
    assert torch.get_num_threads() == 1


def test_thread_count_is_validated():
    with pytest.raises(ValueError, match="threads must be >= 1"):
        seed_everything(0, threads=0)


def test_device_choice():
    assert get_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else None
    if expected:
        assert get_device().type == "cuda"
    elif not (
        getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    ):
        assert get_device().type == "cpu"
