"""Checkpoints: written atomically, read with weights_only=True, carrying everything needed to resume."""

from __future__ import annotations

import os
import pickle
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .model import GPT, GPTConfig
from .tokenizer import CharTokenizer

FORMAT = "dpolib-checkpoint"
VERSION = 1


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """torch.save to a temporary file in the same folder, fsync, then rename over `path`.

    A crash leaves either the old file or the new one, never half of one: os.replace is atomic.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _to_cpu(state: Any) -> Any:
    if isinstance(state, torch.Tensor):
        return state.detach().cpu()
    if isinstance(state, dict):
        return {k: _to_cpu(v) for k, v in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(_to_cpu(v) for v in state)
    return state


def save_checkpoint(
    path: str | os.PathLike,
    model: GPT,
    tokenizer: CharTokenizer,
    optimizer: torch.optim.Optimizer | None = None,
    step: int = 0,
    kind: str = "model",
    **extra: Any,
) -> Path:
    """Save model weights, its config and tokenizer, and optionally optimizer state, step and `extra`
    (plain values only: numbers, strings, lists, dicts, tensors), so that training can resume exactly."""
    if model.config.vocab_size != tokenizer.vocab_size:
        raise ValueError(
            f"model vocabulary ({model.config.vocab_size}) and tokenizer ({tokenizer.vocab_size}) differ; "
            "save the tokenizer the model was built with"
        )
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "kind": kind,
        "config": model.config.to_dict(),
        "tokenizer": tokenizer.to_dict(),
        "model_state": _to_cpu(model.state_dict()),
        "optimizer_state": _to_cpu(optimizer.state_dict())
        if optimizer is not None
        else None,
        "step": int(step),
        "extra": _to_cpu(extra),
    }
    return atomic_save(payload, path)


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Load a checkpoint's raw dictionary safely (weights_only=True) and check that dpolib wrote it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"no checkpoint at {path}; check the path, or train and save one first"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter(
                "ignore"
            )  # torch warns about pickle protocols on foreign files
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ValueError(
            f"{path} holds Python objects that a safe load refuses to unpickle (it could run arbitrary code); "
            "it was not written by dpolib.save_checkpoint. Only load files you trust, and re-save them with dpolib"
        ) from e
    except (RuntimeError, EOFError, KeyError, OSError) as e:
        raise ValueError(
            f"{path} is not a readable torch checkpoint (truncated, corrupted or another format: {type(e).__name__}); "
            "restore it from a good copy or retrain"
        ) from e
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise ValueError(
            f"{path} is a torch file but not a dpolib checkpoint (no '{FORMAT}' marker); was it written by another program?"
        )
    if obj.get("version") != VERSION:
        raise ValueError(
            f"{path} is a dpolib checkpoint of version {obj.get('version')}, this dpolib reads version {VERSION}"
        )
    return obj


@dataclass
class Checkpoint:
    """A loaded checkpoint: the model (ready to use), its tokenizer, and the training state saved with it."""

    model: GPT
    tokenizer: CharTokenizer
    step: int
    kind: str
    optimizer_state: dict | None = None
    extra: dict = field(default_factory=dict)


def load_checkpoint(
    path: str | os.PathLike, device: torch.device | str | None = None
) -> Checkpoint:
    """Rebuild the model from a checkpoint's config and weights, on `device` (default: CPU)."""
    raw = read_checkpoint(path)
    cfg = GPTConfig(**raw["config"])
    tokenizer = CharTokenizer.from_dict(raw["tokenizer"])
    model = GPT(cfg)
    try:
        model.load_state_dict(raw["model_state"])
    except RuntimeError as e:
        raise ValueError(
            f"{path}: the saved weights do not fit the saved config ({e}); the file is damaged"
        ) from e
    if device is not None:
        model.to(device)
    return Checkpoint(
        model, tokenizer, raw["step"], raw["kind"], raw["optimizer_state"], raw["extra"]
    )


def load_dpo_checkpoint(
    path: str | os.PathLike, device: torch.device | str | None = None
) -> Checkpoint:
    """Load a checkpoint written by `run_dpo_episodes`: `.model` is the policy, `.step` the epoch,
    `.extra` holds the history and the hyper-parameters of the run."""
    ckpt = load_checkpoint(path, device)
    if ckpt.kind != "dpo":
        raise ValueError(
            f"{path} is a {ckpt.kind!r} checkpoint, not one written by run_dpo_episodes; use load_checkpoint"
        )
    return ckpt
