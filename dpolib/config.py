"""Training settings as frozen dataclasses that check themselves: `DPOConfig` and its
helpers.

The pattern (also for the food recipe, the pizza run and any later training loop): one
frozen dataclass per loop, a field per setting with its default, `__post_init__`
validating every field with a clear error, `dataclasses.replace` to derive a variant,
`dataclasses.asdict` to store it in a checkpoint. A command line is generated from the
fields (`add_arguments`), so a setting is written down in one place only."""

from __future__ import annotations

import argparse
import math
import os
from dataclasses import MISSING, Field, asdict, dataclass, field, fields
from typing import Any, Callable

from .errors import describe
from .losses import ABLATIONS, LOSS_TYPES, PRACTICE_LOSS_TYPES, check_beta

__all__ = [
    "DPOConfig",
    "add_arguments",
    "argument_type",
    "check_bool",
    "check_finite",
    "check_int",
    "cli",
    "from_arguments",
]


def check_int(name: str, value: Any, minimum: int | None = None) -> int:
    """`value` as an int (a bool, float or string is refused), at least `minimum`."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            f"{name} must be an integer, got {describe(value)} "
            f"({type(value).__name__}); pass e.g. {name}={max(minimum or 0, 1)}"
        )
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {describe(value)}")
    return value


def check_finite(
    name: str, value: Any, minimum: float | None = None, strict: bool = False
) -> float:
    """`value` as a finite float, above `minimum` (strictly if `strict`)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"{name} must be a number, got {describe(value)} ({type(value).__name__})"
        )
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {describe(value)}")
    if minimum is not None and (value <= minimum if strict else value < minimum):
        sign = ">" if strict else ">="
        raise ValueError(f"{name} must be {sign} {minimum}, got {describe(value)}")
    return value


def check_bool(name: str, value: Any) -> bool:
    """`value` if it is a bool (1, 0 or "yes" are refused: they hide a typo)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {describe(value)}")
    return value


def cli(help: str, parse: Callable[[str], Any] | None = None, **kw: Any) -> Any:
    """A dataclass field that is also a command-line option: `x: int = cli("...")`.

    Pass the default as `default=`; `parse` turns the option's text into the value
    (default: the field's default's type); `flags` adds aliases, e.g.
    flags=("--epochs",)."""
    meta = {"help": help, "parse": parse, "flags": tuple(kw.pop("flags", ()))}
    return field(metadata=meta, **kw)


@dataclass(frozen=True)
class DPOConfig:
    """Settings of one DPO run (`dpolib.train.train_dpo`); names follow TRL's DPOConfig.

    An epoch ("episode" in the original text) is one pass over every pair; with the
    default `per_device_train_batch_size=None` it is one optimizer step on the whole
    dataset."""

    beta: float = 0.1  # KL strength: the implicit reward is beta * log(pi / pi_ref)
    loss_type: str = "sigmoid"  # one of dpolib.losses.LOSS_TYPES
    label_smoothing: float = 0.0  # assumed share of flipped labels (cDPO / robust)
    num_train_epochs: int = 1
    per_device_train_batch_size: int | None = None  # pairs per step; None: all
    # dpolib's own settings
    merge_identical_rows: bool = True  # forward each distinct (prompt, completion) once
    average_logprobs: bool = False  # mean instead of sum of token log-probs
    checkpoint_dir: str | None = None  # folder for dpo_epoch_NNNN.pt files
    checkpoint_every: int | None = None  # epochs between checkpoints; None: at the end
    print_every: int | None = None  # epochs between printed lines; None: silent
    # weights of the practitioners' variants (dpolib.losses.practice_loss)
    rpo_alpha: float = 1.0  # "rpo": weight of the NLL per token of the chosen answer
    dpop_lambda: float = 5.0  # "dpop": DPO-Positive's penalty on a falling u(y_w)
    simpo_gamma: float = 1.0  # "simpo": target reward margin

    def __post_init__(self) -> None:
        check_beta(self.beta)
        object.__setattr__(self, "beta", float(self.beta))
        if self.loss_type not in LOSS_TYPES + ABLATIONS + PRACTICE_LOSS_TYPES:
            raise ValueError(
                f"loss_type must be one of {LOSS_TYPES + PRACTICE_LOSS_TYPES}, got "
                f"{describe(self.loss_type)}"
            )
        for name in ("rpo_alpha", "dpop_lambda", "simpo_gamma"):
            object.__setattr__(self, name, check_finite(name, getattr(self, name), 0.0))
        if self.loss_type in PRACTICE_LOSS_TYPES and self.average_logprobs:
            raise ValueError(
                f"loss_type {self.loss_type!r} divides by the completion's length "
                "itself; leave average_logprobs=False"
            )
        ls = check_finite("label_smoothing", self.label_smoothing, 0.0)
        if ls >= 0.5:
            raise ValueError(
                f"label_smoothing must be in [0, 0.5), got {describe(ls)}; it is the "
                "assumed share of flipped labels"
            )
        object.__setattr__(self, "label_smoothing", ls)
        check_int("num_train_epochs", self.num_train_epochs, 0)
        for name in ("per_device_train_batch_size", "checkpoint_every", "print_every"):
            value = getattr(self, name)
            if value is not None:
                check_int(name, value, 1)
        check_bool("merge_identical_rows", self.merge_identical_rows)
        check_bool("average_logprobs", self.average_logprobs)
        if self.checkpoint_dir is not None:
            if not isinstance(self.checkpoint_dir, (str, os.PathLike)):
                raise TypeError(
                    "checkpoint_dir must be a path (str or pathlib.Path), got "
                    f"{describe(self.checkpoint_dir)}"
                )
            # a str, so asdict(config) loads back with torch.load(weights_only=True)
            object.__setattr__(self, "checkpoint_dir", os.fspath(self.checkpoint_dir))
        elif self.checkpoint_every is not None:
            raise ValueError(
                f"checkpoint_every={self.checkpoint_every} needs a checkpoint_dir to "
                "write to; pass checkpoint_dir=..."
            )

    # settings that do not change the trained weights: a resumed run may change them
    BOOKKEEPING = (
        "num_train_epochs",
        "checkpoint_dir",
        "checkpoint_every",
        "print_every",
    )

    def training_settings(self) -> dict[str, Any]:
        """asdict(self) without the bookkeeping fields: what a resume must match."""
        return {k: v for k, v in asdict(self).items() if k not in self.BOOKKEEPING}


def _flags(f: Field) -> list[str]:
    return [f"--{f.name.replace('_', '-')}", *f.metadata.get("flags", ())]


def add_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add one option per `cli` field of dataclass `cls` (defaults from the class).

    A value the field refuses becomes an argparse usage error (exit 2) before any work.
    """
    for f in fields(cls):
        if "help" not in f.metadata:
            continue
        default = f.default if f.default is not MISSING else None
        if isinstance(default, bool):
            parser.add_argument(
                *_flags(f), dest=f.name, action="store_true", help=f.metadata["help"]
            )
            continue
        parse = f.metadata.get("parse") or type(default)
        text = f.metadata["help"]
        parser.add_argument(
            *_flags(f),
            dest=f.name,
            type=_usage_error(f.name, parse, cls),
            default=default,
            help=text if "default" in text else f"{text} (default: {default})",
        )


def argument_type(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """`parse` for argparse's `type=`: its ValueError/TypeError becomes a usage error
    (exit 2) that shows the message."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except (TypeError, ValueError) as e:
            raise argparse.ArgumentTypeError(str(e)) from e

    convert.__name__ = getattr(parse, "__name__", "value")
    return convert


def _usage_error(name: str, parse: Callable[[str], Any], cls: type) -> Callable:
    def convert(text: str) -> Any:
        try:
            value = parse(text)
            # let the dataclass judge the value, every other field at its default
            cls(**{name: value})
        except (TypeError, ValueError) as e:
            raise argparse.ArgumentTypeError(str(e)) from e
        return value

    convert.__name__ = name  # argparse names the option's type in its message
    return convert


def from_arguments(cls: type, args: argparse.Namespace) -> Any:
    """Build `cls` from the parsed options that `add_arguments` added."""
    return cls(**{f.name: getattr(args, f.name) for f in fields(cls) if f.metadata})
