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


def test_unavailable_or_unknown_devices_are_refused_up_front(monkeypatch):
    # "cuda" used to be accepted on a machine without one and fail later with "Torch not
    # compiled with CUDA enabled"; "foo" gave torch's list of every device type
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    for name in ("cuda", "cuda:0", torch.device("cuda")):
        with pytest.raises(ValueError, match="no usable CUDA GPU"):
            get_device(name)
    with pytest.raises(ValueError, match="MPS is not available"):
        get_device("mps")
    for name in ("foo", "gpu", "", "xla"):
        with pytest.raises(
            ValueError, match=r"unknown device .*\('cpu', 'cuda', 'mps'\)"
        ):
            get_device(name)
    with pytest.raises(TypeError, match="device must be a str"):
        get_device(0)
    assert get_device() == torch.device("cpu")
    assert get_device(torch.device("cpu")) == torch.device("cpu")


def test_a_cuda_index_beyond_the_gpus_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert get_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(ValueError, match="has 1 CUDA GPU"):
        get_device("cuda:1")


@pytest.mark.parametrize(
    "seed, error", [(2**70, ValueError), (-1, ValueError), (1.5, TypeError)]
)
def test_seed_is_validated(seed, error):
    with pytest.raises(error, match="seed must be"):
        seed_everything(seed)
    assert seed_everything(2**64 - 1).initial_seed() == 2**64 - 1
