"""Many short DPO runs from one reference, each measured exactly: the sweeps of chapters
7 and 8.

A run starts from a fresh copy of the reference, trains with `train_dpo` (full batch,
one optimizer step per epoch) and records a `Snapshot` after every epoch: the exact
completion distribution of one person's prompt (target probability, well-formed share,
KL to the reference) and the mean log-ratio gap d = u(y_w) - u(y_l) over the pairs (the
reward margin is beta * d); every `others_every` epochs (and at the end) also the drift
of everyone else. Nothing is sampled, so a sweep is deterministic. Each run's DPOConfig
is the base config with the run's settings put in by `dataclasses.replace`."""

from __future__ import annotations

import copy
import inspect
import itertools
import math
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Sequence

import torch

from .. import evaluate
from ..config import DPOConfig
from ..data import PreferencePair, validate_pairs
from ..evaluate import Snapshot
from ..model import GPT
from ..tokenizer import CharTokenizer
from ..train import Anchor, train_dpo
from .corpus import FOODS, PEOPLE, prompt_for
from .measures import TARGET
from .run import PERSON

__all__ = [
    "Evaluator",
    "RunResult",
    "Snapshot",
    "grid",
    "sweep",
    "train_run",
    "value_at",
]


class Evaluator(evaluate.Evaluator):
    """`dpolib.evaluate.Evaluator` on the toy: the person's prompt, the foods, and every
    other person's prompt for the drift."""

    def __init__(
        self,
        reference: GPT,
        tokenizer: CharTokenizer,
        pairs: Sequence[PreferencePair],
        person: str = PERSON,
        target: str = TARGET,
        people: Sequence[str] = PEOPLE,
    ) -> None:
        if person not in people:
            raise ValueError(
                f"person {person!r} is not in people {tuple(people)}; pass the person "
                "whose prompt the pairs use"
            )
        others = {p: prompt_for(p) for p in people if p != person}
        super().__init__(
            reference, tokenizer, pairs, prompt_for(person), target, FOODS, others
        )
        self.person = person


@dataclass
class RunResult:
    """One run: its settings, a snapshot per epoch, the training history and the final
    distribution."""

    settings: dict[str, Any]
    trace: list[
        Snapshot
    ]  # trace[e] is the policy after e epochs; trace[0] is the reference
    history: list[
        dict
    ]  # run_dpo_episodes' per-step metrics (TRL's names), measured before each step
    distribution: dict[
        str, float
    ]  # the final exact distribution of the person's prompt
    # wall time of training and measuring (varies by machine: no chapter prints it)
    seconds: float
    policy: GPT | None = field(default=None, repr=False)
    config: DPOConfig | None = None  # the run's DPO settings

    @property
    def final(self) -> Snapshot:
        return self.trace[-1]

    def at(self, epoch: int) -> Snapshot:
        """The snapshot after `epoch` epochs."""
        if not 0 <= epoch < len(self.trace):
            raise ValueError(
                f"epoch must be between 0 and {len(self.trace) - 1}, got {epoch}"
            )
        return self.trace[epoch]

    def best(self, min_well_formed: float = 0.99) -> Snapshot:
        """The epoch with the highest target probability among those with at least
        `min_well_formed` well-formed mass: where early stopping on an exact measurement
        would have ended the run."""
        ok = [s for s in self.trace if s.well_formed >= min_well_formed]
        if not ok:
            raise ValueError(
                "no epoch of this run reaches a well-formed share of "
                f"{min_well_formed}; lower min_well_formed"
            )
        return max(ok, key=lambda s: (s.target, -s.epoch))


BASE_CONFIG = DPOConfig()  # full batch, summed log-probs: every run starts from it


def run_config(
    beta: float, epochs: int, loss_type: str = "sigmoid", label_smoothing: float = 0.0
) -> DPOConfig:
    """BASE_CONFIG with one run's DPO settings, by dataclasses.replace (which
    validates)."""
    return replace(
        BASE_CONFIG,
        beta=beta,
        loss_type=loss_type,
        label_smoothing=label_smoothing,
        num_train_epochs=epochs,
    )


def train_run(
    reference: GPT,
    tokenizer: CharTokenizer,
    pairs: Sequence[PreferencePair],
    *,
    beta: float,
    lr: float,
    epochs: int,
    loss_type: str = "sigmoid",
    label_smoothing: float = 0.0,
    anchor: Anchor | None = None,
    lr_schedule: Callable[[int], float] | None = None,
    make_optimizer: Callable[..., torch.optim.Optimizer] | None = None,
    others_every: int | None = 10,
    evaluator: Evaluator | None = None,
    keep_policy: bool = False,
) -> RunResult:
    """Train a fresh copy of `reference` on `pairs` for `epochs` full-batch epochs and
    measure it after every epoch.

    The DPO settings are `run_config(beta, epochs, loss_type, label_smoothing)`. The
    optimizer is Adam(lr) unless `make_optimizer(params,
    lr=lr)` builds another; `lr_schedule(step)` multiplies the learning rate (e.g.
    `lambda s: 1 - s / epochs` for a linear decay). The others' drift is measured every
    `others_every` epochs and at the end (None: only at the end). Pass an `evaluator`
    built on the same reference and pairs to share its cached reference measurements.
    """
    config = run_config(beta, epochs, loss_type, label_smoothing)
    if epochs < 1:
        raise ValueError(f"epochs must be an integer >= 1, got {epochs!r}")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)):
        raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
    if not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
    if others_every is not None and (
        not isinstance(others_every, int) or others_every < 1
    ):
        raise ValueError(
            "others_every must be an integer >= 1 or None (only at the end), got "
            f"{others_every!r}"
        )
    pairs = validate_pairs(pairs)
    if evaluator is None:
        evaluator = Evaluator(reference, tokenizer, pairs)
    elif evaluator.pairs != pairs:
        raise ValueError(
            "the evaluator was built for other pairs; build Evaluator(reference, "
            "tokenizer, pairs) for these"
        )
    t0 = time.perf_counter()
    policy = copy.deepcopy(reference)
    optimizer = (make_optimizer or torch.optim.Adam)(policy.parameters(), lr=lr)
    scheduler = (
        torch.optim.lr_scheduler.LambdaLR(optimizer, lr_schedule)
        if lr_schedule is not None
        else None
    )
    trace = [evaluator.snapshot(policy, 0, others=True, beta=beta)]

    def after_step(record: dict) -> None:
        # train_dpo calls this after each optimizer step; full batch: one step per epoch
        if scheduler is not None:
            scheduler.step()
        e = record["epoch"]
        others = e == epochs or (others_every is not None and e % others_every == 0)
        trace.append(evaluator.snapshot(policy, e, others, beta))

    policy, history = train_dpo(
        policy,
        reference,
        tokenizer,
        pairs,
        optimizer,
        config,
        anchor=anchor,
        progress=False,
        callback=after_step,
    )
    settings = {
        "beta": beta,
        "lr": lr,
        "epochs": epochs,
        "loss_type": loss_type,
        "label_smoothing": label_smoothing,
        "anchor_weight": anchor.weight if anchor is not None else 0.0,
        "lr_schedule": lr_schedule is not None,
    }
    return RunResult(
        settings,
        trace,
        history,
        evaluator.distribution(policy),
        time.perf_counter() - t0,
        policy if keep_policy else None,
        config,
    )


# what a settings dict of `sweep` may set: train_run's keywords, and the run's own pairs
RUN_KEYS = tuple(
    name
    for name, p in inspect.signature(train_run).parameters.items()
    if p.kind is inspect.Parameter.KEYWORD_ONLY and name != "evaluator"
) + ("pairs",)


def grid(**axes: Iterable[Any]) -> list[dict[str, Any]]:
    """Every combination of the given values, e.g. grid(lr=[1e-4, 3e-4], beta=[0.1,
    1.0]) -> 4 settings dicts (the last axis varies fastest)."""
    if not axes:
        raise ValueError("grid needs at least one axis, e.g. grid(beta=[0.1, 1.0])")
    names = list(axes)
    values = [list(v) for v in axes.values()]
    for n, v in zip(names, values):
        if not v:
            raise ValueError(f"axis {n!r} has no values")
    return [dict(zip(names, combo)) for combo in itertools.product(*values)]


def sweep(
    reference: GPT,
    tokenizer: CharTokenizer,
    pairs: Sequence[PreferencePair],
    settings: Iterable[dict[str, Any]],
    **common: Any,
) -> list[RunResult]:
    """`train_run` for every settings dict (each merged over `common`), sharing one
    Evaluator; results in order. Every run's DPOConfig is checked before any trains."""
    settings = list(settings)
    dpo_keys = set(inspect.signature(run_config).parameters)
    for s in settings:
        unknown = set(s) - set(RUN_KEYS)
        if unknown:
            raise TypeError(
                f"unknown run settings {sorted(unknown)}; train_run accepts "
                f"{list(RUN_KEYS)}"
            )
        kw = {**common, **s}
        run_config(**{k: v for k, v in kw.items() if k in dpo_keys})
    evaluator = Evaluator(reference, tokenizer, pairs)
    results = []
    for s in settings:
        kw = {**common, **s}
        run_pairs = kw.pop("pairs", pairs)
        ev = (
            evaluator
            if run_pairs is pairs
            else Evaluator(reference, tokenizer, run_pairs)
        )
        results.append(train_run(reference, tokenizer, run_pairs, evaluator=ev, **kw))
    return results


def value_at(
    trace: Sequence[Snapshot], key: str, level: float, value: str
) -> float | None:
    """Linearly interpolate `value` at the first point where `key` rises to `level`,
    using only the snapshots where `value` was measured (e.g. others_tvd_mean when kl
    reaches 1 nat). None if `key` never reaches `level`."""
    points = [
        (getattr(s, key), getattr(s, value))
        for s in trace
        if getattr(s, value) is not None
    ]
    if not points:
        raise ValueError(f"no snapshot has {value!r} measured")
    for (k0, v0), (k1, v1) in zip(points, points[1:]):
        if k0 < level <= k1:
            return v0 + (level - k0) / (k1 - k0) * (v1 - v0)
    if points[0][0] >= level:
        return points[0][1]
    return None
