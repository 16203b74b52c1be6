"""Many short DPO runs from one reference, each measured exactly: the sweeps of chapters 6 and 7.

A run starts from a fresh copy of the reference, trains with `run_dpo_episodes` (full batch, one
optimizer step per epoch) and records a `Snapshot` after every epoch: the exact completion
distribution of one person's prompt (target probability, well-formed share, KL to the reference)
and the mean margin d = u(y_w) - u(y_l) over the pairs; every `others_every` epochs (and at the
end) also the drift of everyone else. Nothing is sampled, so a sweep is deterministic.
"""

from __future__ import annotations

import copy
import itertools
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import torch

from ..data import PreferencePair, validate_pairs
from ..evaluate import (
    OTHER,
    completion_distribution,
    distribution_table,
    drift,
    kl_divergence,
)
from ..logprobs import build_pair_batch, pair_logprobs
from ..losses import dpo_gradient_weight
from ..model import GPT
from ..tokenizer import CharTokenizer
from ..train import Anchor, run_dpo_episodes
from .corpus import PEOPLE, prompt_for

__all__ = [
    "Evaluator",
    "RunResult",
    "Snapshot",
    "grid",
    "sweep",
    "train_run",
    "value_at",
]


@dataclass(frozen=True)
class Snapshot:
    """Exact measurements of the policy after `epoch` epochs (epoch 0 is the reference itself)."""

    epoch: int
    target: float  # p(target | person's prompt)
    well_formed: float  # 1 - p(OTHER | person's prompt): the mass on known foods
    kl: float  # KL(pi_theta || pi_ref) on the person's prompt over the foods and OTHER, in nats
    margin: float  # mean over pairs of d = u(y_w) - u(y_l) (TRL's rewards/margins divided by beta)
    margin_min: float  # the smallest d over the pairs
    dpo_weight: float  # mean over pairs of DPO's gradient weight sigma(-beta d) (near 0: the sigmoid has saturated)
    others_tvd_mean: float | None = (
        None  # mean over the other people of TVD(pi_theta, pi_ref); None if not measured
    )
    others_tvd_max: float | None = None


class Evaluator:
    """Measures policies against a fixed reference; the reference's distributions and log-probs are computed once."""

    def __init__(
        self,
        reference: GPT,
        tokenizer: CharTokenizer,
        pairs: Sequence[PreferencePair],
        person: str = "ravin",
        target: str = "pizza",
        people: Sequence[str] = PEOPLE,
    ) -> None:
        self.tokenizer, self.person, self.target = tokenizer, person, target
        self.prompt = prompt_for(person)
        self.others = [p for p in people if p != person]
        if len(self.others) == len(people):
            raise ValueError(
                f"person {person!r} is not in people {tuple(people)}; pass the person whose prompt the pairs use"
            )
        self.pairs = validate_pairs(pairs)
        self.reference_distribution = completion_distribution(
            reference, tokenizer, self.prompt
        )
        if target not in self.reference_distribution:
            raise ValueError(
                f"target {target!r} is not a known completion; pick one of the foods, e.g. 'pizza'"
            )
        self.reference_others = distribution_table(reference, tokenizer, self.others)
        # every pair's chosen and rejected row in one batch; the reference's log-probs never change
        self._pair_batch = build_pair_batch(
            tokenizer, self.pairs, reference.config.block_size, True, reference.device
        )
        with torch.no_grad():
            self._ref_logps = pair_logprobs(reference.eval(), self._pair_batch)

    def distribution(self, policy: GPT) -> dict[str, float]:
        """The exact completion distribution of the person's prompt under `policy` (foods and OTHER)."""
        return completion_distribution(policy, self.tokenizer, self.prompt)

    @torch.no_grad()
    def log_ratios(self, policy: GPT) -> tuple[torch.Tensor, torch.Tensor]:
        """(u(y_w), u(y_l)) for every pair, u = log pi_theta - log pi_ref, each of shape (P,), in nats."""
        was_training = policy.training
        policy.eval()
        c, r = pair_logprobs(policy, self._pair_batch.to(policy.device))
        policy.train(was_training)
        ref_c, ref_r = self._ref_logps
        return (c - ref_c.to(c.device)).double().cpu(), (
            r - ref_r.to(r.device)
        ).double().cpu()

    def snapshot(
        self, policy: GPT, epoch: int, others: bool = True, beta: float = 1.0
    ) -> Snapshot:
        """Measure `policy`: the person's exact distribution, the margins (and DPO's gradient weight at `beta`),
        and, if `others`, everyone else's drift."""
        dist = self.distribution(policy)
        u_w, u_l = self.log_ratios(policy)
        d = u_w - u_l
        tvd_mean = tvd_max = None
        if others:
            moved = drift(
                policy,
                None,
                self.tokenizer,
                self.others,
                reference_table=self.reference_others,
            )
            tvds = [m["tvd"] for m in moved.values()]
            tvd_mean, tvd_max = sum(tvds) / len(tvds), max(tvds)
        return Snapshot(
            epoch=epoch,
            target=dist[self.target],
            well_formed=1.0 - dist[OTHER],
            kl=kl_divergence(dist, self.reference_distribution),
            margin=float(d.mean()),
            margin_min=float(d.min()),
            dpo_weight=float(dpo_gradient_weight(beta * u_w, beta * u_l).mean()),
            others_tvd_mean=tvd_mean,
            others_tvd_max=tvd_max,
        )


@dataclass
class RunResult:
    """One run: its settings, a snapshot per epoch, the training history and the final distribution."""

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
    seconds: float  # wall time of training and measuring (varies by machine: do not print it in a chapter)
    policy: GPT | None = field(default=None, repr=False)

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
        """The epoch with the highest target probability among those with at least `min_well_formed` well-formed
        mass: where early stopping on an exact measurement would have ended the run."""
        ok = [s for s in self.trace if s.well_formed >= min_well_formed]
        if not ok:
            raise ValueError(
                f"no epoch of this run reaches a well-formed share of {min_well_formed}; lower min_well_formed"
            )
        return max(ok, key=lambda s: (s.target, -s.epoch))


_RUN_KEYS = (
    "beta",
    "lr",
    "epochs",
    "loss_type",
    "label_smoothing",
    "anchor",
    "lr_schedule",
    "make_optimizer",
    "others_every",
    "keep_policy",
    "pairs",
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
    """Train a fresh copy of `reference` on `pairs` for `epochs` full-batch epochs and measure it after every epoch.

    The optimizer is Adam(lr) unless `make_optimizer(params, lr=lr)` builds another; `lr_schedule(step)` multiplies
    the learning rate (e.g. `lambda s: 1 - s / epochs` for a linear decay). The others' drift is measured every
    `others_every` epochs and at the end (None: only at the end). Pass an `evaluator` built on the same reference
    and pairs to share its cached reference measurements across runs.
    """
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an integer >= 1, got {epochs!r}")
    if not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
    if others_every is not None and (
        not isinstance(others_every, int) or others_every < 1
    ):
        raise ValueError(
            f"others_every must be an integer >= 1 or None (only at the end), got {others_every!r}"
        )
    pairs = validate_pairs(pairs)
    if evaluator is None:
        evaluator = Evaluator(reference, tokenizer, pairs)
    elif evaluator.pairs != pairs:
        raise ValueError(
            "the evaluator was built for other pairs; build Evaluator(reference, tokenizer, pairs) for these"
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
        # run_dpo_episodes calls this after each optimizer step; full batch: one step per epoch
        if scheduler is not None:
            scheduler.step()
        e = record["epoch"]
        others = e == epochs or (others_every is not None and e % others_every == 0)
        trace.append(evaluator.snapshot(policy, e, others, beta))

    policy, history = run_dpo_episodes(
        epochs,
        pairs,
        policy,
        reference,
        optimizer,
        tokenizer,
        beta=beta,
        loss_type=loss_type,
        label_smoothing=label_smoothing,
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
    )


def grid(**axes: Iterable[Any]) -> list[dict[str, Any]]:
    """Every combination of the given values, e.g. grid(lr=[1e-4, 3e-4], beta=[0.1, 1.0]) -> 4 settings dicts
    (the last axis varies fastest)."""
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
    """`train_run` for every settings dict (each merged over `common`), sharing one Evaluator; results in order."""
    settings = list(settings)
    for s in settings:
        unknown = set(s) - set(_RUN_KEYS)
        if unknown:
            raise TypeError(
                f"unknown run settings {sorted(unknown)}; train_run accepts {list(_RUN_KEYS)}"
            )
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
    """Linearly interpolate `value` at the first point where `key` rises to `level`, using only the snapshots where
    `value` was measured (e.g. others_tvd_mean when kl reaches 1 nat). None if `key` never reaches `level`."""
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
