import os
import zipfile

import pytest
import torch

from dpolib.checkpoint import (
    load_checkpoint,
    load_dpo_checkpoint,
    read_checkpoint,
    save_checkpoint,
)


def test_roundtrip_keeps_weights_config_tokenizer(tiny, tok, tmp_path):
    opt = torch.optim.Adam(tiny.parameters(), lr=1e-3)
    tiny(torch.tensor([[1, 4, 5]])).sum().backward()
    opt.step()
    path = save_checkpoint(tmp_path / "m.pt", tiny, tok, opt, step=7, note="hello")
    ck = load_checkpoint(path)
    assert (
        ck.step == 7
        and ck.extra["note"] == "hello"
        and ck.tokenizer == tok
        and ck.kind == "model"
    )
    for a, b in zip(tiny.state_dict().values(), ck.model.state_dict().values()):
        assert torch.equal(a, b)
    opt2 = torch.optim.Adam(ck.model.parameters(), lr=1e-3)
    opt2.load_state_dict(ck.optimizer_state)
    assert [p.name for p in tmp_path.iterdir()] == [
        "m.pt"
    ]  # no temporary file left behind


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "nope.pt")


def test_truncated_file(tiny, tok, tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", tiny, tok)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated, corrupted"):
        load_checkpoint(path)
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="not a readable torch checkpoint"):
        load_checkpoint(path)


def test_foreign_torch_file(tmp_path):
    torch.save({"state_dict": {"w": torch.ones(2)}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a dpolib checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


class _Payload:
    """Unpickling this would create a file: proof that code ran."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_refuses_to_unpickle_arbitrary_objects(tmp_path):
    marker = tmp_path / "pwned"
    torch.save(
        {"format": "dpolib-checkpoint", "x": _Payload(str(marker))},
        tmp_path / "evil.pt",
    )
    with pytest.raises(ValueError, match="refuses to unpickle"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not marker.exists()


def test_failed_save_keeps_the_old_file(tiny, tok, tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", tiny, tok, step=1)
    before = path.read_bytes()
    with pytest.raises(Exception):
        save_checkpoint(
            path, tiny, tok, step=2, bad=lambda: 0
        )  # a lambda cannot be pickled
    assert path.read_bytes() == before
    assert load_checkpoint(path).step == 1
    assert sorted(os.listdir(tmp_path)) == ["m.pt"]


def test_model_checkpoint_is_not_a_dpo_checkpoint(tiny, tok, tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", tiny, tok)
    with pytest.raises(ValueError, match="not one written by train_dpo"):
        load_dpo_checkpoint(path)


def test_tokenizer_must_match_model(tiny, tmp_path):
    from dpolib.tokenizer import CharTokenizer

    with pytest.raises(ValueError, match="differ"):
        save_checkpoint(tmp_path / "m.pt", tiny, CharTokenizer(("a", "b")))


def test_shipped_food_model_is_small_and_loads_safely():
    from dpolib.pizza.food import shipped_checkpoint_path

    path = shipped_checkpoint_path()
    assert path.stat().st_size < 1_000_000
    assert zipfile.is_zipfile(path)
    raw = read_checkpoint(path)
    assert raw["kind"] == "model" and raw["extra"]["recipe"]["steps"] > 0
    # the recipe dataclass is the one stored with the shipped model, field for field
    from dataclasses import asdict

    from dpolib.pizza.food import RECIPE

    assert raw["extra"]["recipe"] == asdict(RECIPE)
