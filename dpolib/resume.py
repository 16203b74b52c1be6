"""Resuming a DPO run from its checkpoint: what the checkpoint must match (settings,
pairs, reference, optimizer class) and the restore of weights, optimizer state and
shuffle, so that a resumed run ends exactly where an uninterrupted one would."""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import asdict
from typing import Any, Sequence

import torch

from .checkpoint import load_dpo_checkpoint, tensor_digest
from .config import DPOConfig
from .data import PreferencePair
from .errors import describe
from .model import GPT

__all__ = ["resume_dpo", "run_fingerprint"]


def run_fingerprint(
    config: DPOConfig,
    pairs: Sequence[PreferencePair],
    reference: GPT,
    optimizer: torch.optim.Optimizer,
) -> dict[str, Any]:
    """What a resume must match: settings, pairs, reference, optimizer class."""
    rows = [[p.prompt, p.chosen, p.rejected] for p in pairs]
    return {
        "config": asdict(config),
        "data_sha256": hashlib.sha256(json.dumps(rows).encode()).hexdigest(),
        "reference_sha256": tensor_digest(reference.state_dict()),
        "optimizer_settings": {
            "class": type(optimizer).__qualname__,
            "lr": [float(g["lr"]) for g in optimizer.param_groups],
        },
    }


def resume_dpo(
    path: str | os.PathLike,
    policy: GPT,
    optimizer: torch.optim.Optimizer,
    config: DPOConfig,
    pairs: Sequence[PreferencePair],
    reference: GPT,
    generator: torch.Generator | None,
) -> tuple[list[dict], int]:
    """Restore policy, optimizer state and shuffle from a checkpoint; (history,
    epoch)."""
    ckpt = load_dpo_checkpoint(path)
    if ckpt.model.config != policy.config:
        raise ValueError(
            f"{path} holds a model of another shape than `policy`; resume with the "
            "same model config"
        )
    saved, now = ckpt.extra, run_fingerprint(config, pairs, reference, optimizer)
    if "config" not in saved:
        raise ValueError(f"{path} was written without a DPOConfig; it cannot resume")
    was = {k: v for k, v in saved["config"].items() if k not in DPOConfig.BOOKKEEPING}
    if was != config.training_settings():
        diff = {
            k: (v, now["config"].get(k))
            for k, v in was.items()
            if now["config"].get(k) != v
        }
        raise ValueError(
            f"{path} was trained with other settings ({describe(diff)} as (saved, "
            "now)); resume with the same settings"
        )
    for key, what in (
        ("data_sha256", "preference pairs"),
        ("reference_sha256", "reference model"),
    ):
        if saved.get(key) != now[key]:
            raise ValueError(
                f"{path} was trained on other {what} than these; resume with the "
                f"same {what}, or start a new run without resume_from"
            )
    opt_was = saved.get("optimizer_settings", {})
    opt_now = now["optimizer_settings"]
    if opt_was.get("class") != opt_now["class"]:
        raise ValueError(
            f"{path} holds the state of a {opt_was.get('class')} optimizer, not of "
            f"{opt_now['class']}; resume with the same optimizer class"
        )
    if ckpt.step > config.num_train_epochs:
        raise ValueError(
            f"{path} is at epoch {ckpt.step}, beyond num_train_epochs="
            f"{config.num_train_epochs}; ask for at least {ckpt.step} epochs"
        )
    minibatched = (config.per_device_train_batch_size or len(pairs)) < len(pairs)
    if minibatched and "generator_state" in saved and generator is None:
        raise ValueError(
            f"{path} was trained with minibatches shuffled by a generator; pass a "
            "torch.Generator (any seed: its state is restored) as generator="
        )
    if minibatched and "generator_state" not in saved:
        warnings.warn(
            f"{path} was trained without a generator: its shuffle cannot be "
            "restored, "
            "so this run will differ from an uninterrupted one",
            stacklevel=3,
        )
    policy.load_state_dict(ckpt.model.state_dict())
    _restore_optimizer(optimizer, ckpt.optimizer_state, opt_was.get("lr"), path)
    if generator is not None and "generator_state" in saved:
        generator.set_state(saved["generator_state"])
    return list(saved.get("history", [])), ckpt.step


def _restore_optimizer(
    optimizer: torch.optim.Optimizer, state: dict | None, lr_was: Any, path: Any
) -> None:
    if state is None:
        return
    # keep the new optimizer's hyper-parameters (a lowered lr is a deliberate fix)
    groups = [
        {k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups
    ]
    try:
        optimizer.load_state_dict(state)
    except (ValueError, KeyError) as e:
        raise ValueError(
            f"{path}: the saved optimizer state does not fit this optimizer ({e}); "
            "resume with an optimizer built like the saved one"
        ) from e
    for g, hyper in zip(optimizer.param_groups, groups):
        g.update(hyper)
    lr_now = [float(g["lr"]) for g in optimizer.param_groups]
    if lr_was is not None and lr_was != lr_now:
        warnings.warn(
            f"resuming {path} with lr {lr_now} (it was trained with {lr_was}): the "
            "optimizer's moments and step count are restored, the lr is the new",
            stacklevel=4,
        )
