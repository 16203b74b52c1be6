"""Checkpoints: atomic writes, safe reads (weights_only=True), checksums, resume."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pickle
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .errors import describe
from .model import GPT, GPTConfig
from .tokenizer import CharTokenizer

FORMAT = "dpolib-checkpoint"
VERSION = 2  # 2 adds "sha256", a checksum of every tensor; version 1 files still load
KEYS: tuple[str, ...] = ("format", "version", "kind", "config", "tokenizer")
KEYS += ("model_state", "optimizer_state", "step", "extra")
_TMP_SUFFIX = ".tmp"


def _temporary_prefix(path: Path) -> str:
    return f".{path.name}."


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # someone else's process: leave its file alone
    return True


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Delete temporary files that a killed `atomic_save` of `path` left; returns them.

    A temporary file's name carries its writer's process id, so the files of a writer
    still running (another thread or process) are kept."""
    path = Path(path)
    removed: list[Path] = []
    if not path.parent.is_dir():
        return removed
    prefix = _temporary_prefix(path)
    for tmp in path.parent.glob(f"{prefix}*{_TMP_SUFFIX}"):
        pid_text = tmp.name[len(prefix) :].split(".", 1)[0]
        if pid_text.isdigit() and not _pid_alive(int(pid_text)):
            try:
                tmp.unlink()
                removed.append(tmp)
            except FileNotFoundError:
                pass  # another process cleaned it first
    return removed


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """torch.save to a unique temporary file in the same folder, fsync, rename over
    `path`.

    A crash leaves either the old file or the new one, never half of one (os.replace is
    atomic); temporary files of killed writers are removed on the next save."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    fd, name = tempfile.mkstemp(
        prefix=f"{_temporary_prefix(path)}{os.getpid()}.",
        suffix=_TMP_SUFFIX,
        dir=path.parent,
    )
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as f:
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


_PLAIN = (type(None), bool, int, float, str, torch.Tensor)


def check_plain(value: Any, name: str = "extra") -> None:
    """Raise TypeError unless `value` is made of what a safe load reads back: None,
    bool, int, float, str, tensors, and lists, tuples and dicts of them."""
    if isinstance(value, _PLAIN) and type(value) in (*_PLAIN, torch.nn.Parameter):
        return
    if type(value) in (list, tuple):
        for i, v in enumerate(value):
            check_plain(v, f"{name}[{i}]")
        return
    if type(value) is dict:
        for k, v in value.items():
            if type(k) not in (str, int):
                raise TypeError(f"{name} has a key {describe(k)}; use str keys")
            check_plain(v, f"{name}[{k!r}]")
        return
    hint = "convert it with float()/int()/str()"
    if dataclasses.is_dataclass(value):
        hint = "store dataclasses.asdict(it)"
    raise TypeError(
        f"{name} is a {type(value).__module__}.{type(value).__qualname__} "
        f"({describe(value)}), which a safe load (weights_only=True) refuses; {hint}"
    )


def tensor_digest(obj: Any) -> str:
    """SHA-256 of every tensor in `obj` (nested dicts/lists), with names, dtypes and
    shapes.

    Equal digests mean equal weights, bit for bit; any flipped byte changes it."""
    h = hashlib.sha256()

    def walk(x: Any, where: str) -> None:
        if isinstance(x, torch.Tensor):
            t = x.detach().cpu().contiguous()
            h.update(f"{where}:{t.dtype}:{tuple(t.shape)}:".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        elif isinstance(x, dict):
            for k in sorted(x, key=str):
                walk(x[k], f"{where}/{k}")
        elif isinstance(x, (list, tuple)):
            for i, v in enumerate(x):
                walk(v, f"{where}/{i}")
        else:
            h.update(f"{where}={x!r};".encode())

    walk(obj, "")
    return h.hexdigest()


def _check_finite_weights(state: dict, what: str) -> None:
    bad = [
        k for k, v in state.items() if v.is_floating_point() and not v.isfinite().all()
    ]
    if bad:
        raise ValueError(
            f"{what} has non-finite weights (NaN or inf) in {describe(bad)}; "
            "a diverged model is not worth keeping: restore the last good checkpoint"
        )


def save_checkpoint(
    path: str | os.PathLike,
    model: GPT,
    tokenizer: CharTokenizer,
    optimizer: torch.optim.Optimizer | None = None,
    step: int = 0,
    kind: str = "model",
    **extra: Any,
) -> Path:
    """Save model weights, config, tokenizer, and optionally optimizer state, step and
    `extra` (plain values only: numbers, strings, lists, dicts, tensors), with a
    checksum.

    Nothing is written (and an old file at `path` stays) when a value is refused."""
    if model.config.vocab_size != tokenizer.vocab_size:
        raise ValueError(
            f"model vocabulary ({model.config.vocab_size}) and tokenizer "
            f"({tokenizer.vocab_size}) differ; save the tokenizer the model was built "
            "with"
        )
    if isinstance(step, bool) or not isinstance(step, int):
        raise TypeError(f"step must be an int, got {describe(step)}")
    check_plain(extra)
    model_state = _to_cpu(model.state_dict())
    _check_finite_weights(model_state, "the model")
    optimizer_state = _to_cpu(optimizer.state_dict()) if optimizer is not None else None
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "kind": kind,
        "config": model.config.to_dict(),
        "tokenizer": tokenizer.to_dict(),
        "model_state": model_state,
        "optimizer_state": optimizer_state,
        "step": step,
        "extra": _to_cpu(extra),
        "sha256": tensor_digest([model_state, optimizer_state]),
    }
    return atomic_save(payload, path)


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Load a checkpoint's raw dictionary safely (weights_only=True), check that dpolib
    wrote it, that nothing is missing and that its tensors match the stored checksum."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"no checkpoint at {path}; check the path, or train and save one first"
        )
    try:
        with warnings.catch_warnings():
            # torch warns about pickle protocols on foreign files
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ValueError(
            f"{path} holds Python objects that a safe load refuses to unpickle (it "
            "could "
            "run arbitrary code); it was not written by dpolib.save_checkpoint. Only "
            "load "
            "files you trust, and re-save them with dpolib"
        ) from e
    except (RuntimeError, EOFError, KeyError, OSError) as e:
        raise ValueError(
            f"{path} is not a readable torch checkpoint (truncated, corrupted or "
            "another "
            f"format: {type(e).__name__}); restore it from a good copy or retrain"
        ) from e
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise ValueError(
            f"{path} is a torch file but not a dpolib checkpoint (no '{FORMAT}' "
            "marker); "
            "was it written by another program?"
        )
    version = obj.get("version")
    if type(version) is not int or version not in (1, VERSION):
        raise ValueError(
            f"{path} is a dpolib checkpoint of version {describe(version)}; this "
            "dpolib "
            f"reads versions 1 and {VERSION} (integers)"
        )
    missing = [k for k in KEYS if k not in obj]
    if missing:
        raise ValueError(f"{path} is damaged: it lacks {missing}; restore a good copy")
    if version >= 2:
        digest = tensor_digest([obj["model_state"], obj["optimizer_state"]])
        if obj.get("sha256") != digest:
            raise ValueError(
                f"{path} is damaged: its tensors do not match the stored checksum "
                "(flipped bytes on disk or in transfer); restore it from a good copy"
            )
    return obj


@dataclass
class Checkpoint:
    """A loaded checkpoint: the model (ready to use), its tokenizer, and the training
    state."""

    model: GPT
    tokenizer: CharTokenizer
    step: int
    kind: str
    optimizer_state: dict | None = None
    extra: dict = field(default_factory=dict)


def load_checkpoint(
    path: str | os.PathLike, device: torch.device | str | None = None
) -> Checkpoint:
    """Rebuild the model from a checkpoint's config and weights, on `device` (default:
    CPU)."""
    raw = read_checkpoint(path)
    known = {f.name for f in dataclasses.fields(GPTConfig)}
    if not isinstance(raw["config"], dict) or set(raw["config"]) - known:
        raise ValueError(
            f"{path}: the stored model config {describe(raw['config'])} has keys this "
            f"dpolib does not know (it knows {sorted(known)}); the file is damaged or "
            "from another version"
        )
    try:
        cfg = GPTConfig(**raw["config"])
        tokenizer = CharTokenizer.from_dict(raw["tokenizer"])
    except (TypeError, ValueError, KeyError) as e:
        raise ValueError(
            f"{path}: the stored config or tokenizer is invalid ({e})"
        ) from e
    if tokenizer.vocab_size != cfg.vocab_size:
        raise ValueError(
            f"{path}: the tokenizer has {tokenizer.vocab_size} tokens but the model "
            "config "
            f"{cfg.vocab_size}; the file is damaged"
        )
    _check_finite_weights(raw["model_state"], str(path))
    model = GPT(cfg)
    try:
        model.load_state_dict(raw["model_state"])
    except RuntimeError as e:
        raise ValueError(
            f"{path}: the saved weights do not fit the saved config ({e}); the file is "
            "damaged"
        ) from e
    if device is not None:
        model.to(device)
    return Checkpoint(
        model, tokenizer, raw["step"], raw["kind"], raw["optimizer_state"], raw["extra"]
    )


def load_dpo_checkpoint(
    path: str | os.PathLike, device: torch.device | str | None = None
) -> Checkpoint:
    """Load a checkpoint written by `train_dpo`: `.model` is the policy, `.step` the
    epoch, `.extra` holds the history and the run's settings (`extra["config"]`)."""
    ckpt = load_checkpoint(path, device)
    if ckpt.kind != "dpo":
        raise ValueError(
            f"{path} is a {ckpt.kind!r} checkpoint, not one written by train_dpo or "
            "run_dpo_episodes; use load_checkpoint"
        )
    return ckpt
