"""Checkpoints under attack: flipped bytes, values a safe load refuses, damaged fields,
kills in the middle of a save, two writers at once."""

import dataclasses
import os
import random
import signal
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from dpolib.checkpoint import (
    atomic_save,
    load_checkpoint,
    read_checkpoint,
    remove_stale_temporaries,
    save_checkpoint,
    tensor_digest,
)
from dpolib.model import GPT, GPTConfig


def temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def rewrite(path: Path, change) -> None:
    """Load the raw dictionary, change it, save it back (as a damaged file would be)."""
    raw = torch.load(path, weights_only=True)
    change(raw)
    torch.save(raw, path)


def test_flipped_bytes_inside_the_weights_are_detected(tiny, tok, tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", tiny, tok)
    with zipfile.ZipFile(path) as z:
        info = max(
            (i for i in z.infolist() if "/data/" in i.filename),
            key=lambda i: i.file_size,
        )
    data = bytearray(path.read_bytes())
    # the entry's bytes start after its local header (30 bytes, name, extra field)
    name_len = int.from_bytes(
        data[info.header_offset + 26 : info.header_offset + 28], "little"
    )
    extra_len = int.from_bytes(
        data[info.header_offset + 28 : info.header_offset + 30], "little"
    )
    start = info.header_offset + 30 + name_len + extra_len
    data[start + info.file_size // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    torch.load(path, weights_only=True)  # torch itself reads it without complaint
    with pytest.raises(ValueError, match="do not match the stored checksum"):
        load_checkpoint(path)


def test_digest_is_sensitive_to_every_tensor(tiny):
    state = tiny.state_dict()
    d = tensor_digest(state)
    assert d == tensor_digest({k: v.clone() for k, v in state.items()})
    state["head.weight"] = state["head.weight"].clone()
    state["head.weight"][0, 0] += 1e-7
    assert tensor_digest(state) != d


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.float64(1.5), "numpy.float64"),
        (Path("runs"), "Path"),
        (GPTConfig(30), "dataclasses.asdict"),
        ({"deep": [1, {"x": np.int64(2)}]}, r"extra\['value'\]\['deep'\]\[1\]\['x'\]"),
    ],
)
def test_unsafe_extra_is_refused_before_writing(tiny, tok, tmp_path, bad, match):
    path = save_checkpoint(tmp_path / "m.pt", tiny, tok, step=1)
    good = path.read_bytes()
    with pytest.raises(TypeError, match=match):
        save_checkpoint(path, tiny, tok, step=2, value=bad)
    assert path.read_bytes() == good and load_checkpoint(path).step == 1
    assert temporaries(tmp_path) == []


def test_non_finite_weights_are_neither_saved_nor_loaded(tiny, tok, tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", tiny, tok)
    broken = GPT(tiny.config)
    with torch.no_grad():
        broken.head.weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="non-finite weights"):
        save_checkpoint(tmp_path / "n.pt", broken, tok)

    def poison(raw):
        raw["model_state"]["head.weight"][0, 0] = float("nan")
        raw["version"] = 1  # an old file: no checksum to catch it

    rewrite(path, poison)
    with pytest.raises(ValueError, match="non-finite weights"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda r: r.__setitem__("version", "1"), "version '1'"),
        (lambda r: r.__setitem__("version", 3), "version 3"),
        (lambda r: r.pop("tokenizer"), r"lacks \['tokenizer'\]"),
        (lambda r: r.pop("model_state"), r"lacks \['model_state'\]"),
        (lambda r: r["config"].__setitem__("n_embed", 8), "keys this dpolib does not"),
        (lambda r: r["config"].__setitem__("vocab_size", 40), "tokenizer has 30"),
        (lambda r: r["config"].__setitem__("n_embd", "16"), "config or tokenizer"),
        (
            lambda r: r["model_state"].__setitem__("head.weight", torch.zeros(2)),
            "check",
        ),
    ],
)
def test_damaged_fields_give_clear_errors(tiny, tok, tmp_path, change, match):
    path = save_checkpoint(tmp_path / "m.pt", tiny, tok)
    rewrite(path, change)
    with pytest.raises(ValueError, match=match):
        load_checkpoint(path)


def test_version_1_files_still_load(tiny, tok, tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", tiny, tok, step=4)

    def downgrade(raw):
        raw["version"] = 1
        raw.pop("sha256")

    rewrite(path, downgrade)
    assert load_checkpoint(path).step == 4


def test_temporary_names_are_unique_and_stale_ones_are_removed(tmp_path):
    target = tmp_path / "m.pt"
    # a temporary file left by a killed writer (a pid that is no longer running)
    dead = os.fork()
    if dead == 0:
        os._exit(0)
    os.waitpid(dead, 0)
    stale = tmp_path / f".m.pt.{dead}.abc123.tmp"
    stale.write_bytes(b"half a checkpoint")
    live = tmp_path / f".m.pt.{os.getpid()}.def456.tmp"  # a writer still running
    live.write_bytes(b"being written")
    atomic_save({"x": 1}, target)
    assert not stale.exists() and live.exists()
    live.unlink()
    assert temporaries(tmp_path) == []


def _saver(path: Path, model: GPT, tok) -> None:
    """The child: save checkpoints to `path` forever (until killed)."""
    step = 0
    while True:
        step += 1
        save_checkpoint(path, model, tok, step=step)


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_killing_a_saving_process_never_breaks_the_target(tok, tmp_path):
    torch.manual_seed(0)
    model = GPT(GPTConfig(tok.vocab_size, n_layer=2, n_head=2, n_embd=64))
    path = tmp_path / "m.pt"
    save_checkpoint(path, model, tok, step=0)
    rng = random.Random(0)
    kills, steps = 0, set()
    for _ in range(25):
        pid = os.fork()
        if pid == 0:  # child
            try:
                _saver(path, model, tok)
            finally:
                os._exit(1)
        time.sleep(rng.uniform(0.0, 0.05))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        kills += 1
        steps.add(load_checkpoint(path).step)  # always a whole checkpoint, old or new
        remove_stale_temporaries(path)
        assert temporaries(tmp_path) == []
    assert kills >= 20 and len(steps) > 1  # the kills did land between saves too


def test_two_writers_on_one_path(tiny, tok, tmp_path):
    path = tmp_path / "m.pt"
    errors = []

    def write(start):
        try:
            for step in range(start, start + 20):
                save_checkpoint(path, tiny, tok, step=step)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=write, args=(s,)) for s in (0, 100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert load_checkpoint(path).step in (19, 119)
    assert temporaries(tmp_path) == []


def test_dataclass_asdict_is_plain(tiny, tok, tmp_path):
    cfg = GPTConfig(30)
    path = save_checkpoint(tmp_path / "m.pt", tiny, tok, cfg=dataclasses.asdict(cfg))
    assert read_checkpoint(path)["extra"]["cfg"] == dataclasses.asdict(cfg)
