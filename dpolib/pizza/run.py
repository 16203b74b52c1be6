"""`python -m dpolib.pizza`: the whole pizza run end to end, with a JSON summary.

Load (or train) the food model, sample "ravin likes ", build preference pairs from a
reward that prefers "pizza", train with DPO, measure pizza frequency, well-formed share
and the drift of the other people, and save the final checkpoint."""

from __future__ import annotations

import argparse
import copy
import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from ..checkpoint import save_checkpoint
from ..config import (
    DPOConfig,
    add_arguments,
    check_bool,
    check_finite,
    check_int,
    cli,
    from_arguments,
)
from ..data import build_preference_pairs
from ..errors import describe
from ..runtime import get_device, seed_everything
from ..train import Anchor, train_dpo
from .corpus import PEOPLE, count_sentences, make_corpus, prompt_for, split_sentence
from .food import (
    RECIPE,
    load_food_model,
    shipped_checkpoint_path,
    train_food_model,
    writable_folder,
)
from .measures import TARGET, drift, sample_report

PERSON = "ravin"  # whose prompt the pizza run trains on

__all__ = ["PERSON", "PizzaRunConfig", "TARGET", "main", "other_people_anchor"]
__all__ += ["pizza_reward", "run"]


def pizza_reward(prompt: str, completion: str) -> float:
    """1 for the target food, 0 for anything else."""
    return float(completion == TARGET)


def other_people_anchor(weight: float, exclude: str = PERSON) -> Anchor:
    """An Anchor on every other person's sentences in the food model's corpus (weighted
    by count)."""
    corpus = make_corpus(RECIPE.n_sentences, RECIPE.corpus_seed)
    rows = [
        (split_sentence(s), c)
        for s, c in count_sentences(corpus)
        if not s.startswith(exclude + " ")
    ]
    return Anchor(
        [p for (p, _), _ in rows],
        [f for (_, f), _ in rows],
        [c for _, c in rows],
        weight,
    )


def device_name(text: str) -> str:
    """`text` if it names a device this machine has: cpu, cuda, cuda:N or mps."""
    try:
        dev = torch.device(text)
    except (RuntimeError, TypeError) as e:
        raise ValueError(
            f"{describe(text)} is not a device; use cpu, cuda or mps"
        ) from e
    if dev.type == "cuda" and not (
        torch.cuda.is_available() and (dev.index or 0) < torch.cuda.device_count()
    ):
        raise ValueError(f"{describe(text)}: no such CUDA device here; use cpu")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{describe(text)}: MPS is not available here; use cpu")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"{describe(text)} is not supported; use cpu, cuda or mps")
    return text


@dataclass(frozen=True)
class PizzaRunConfig:
    """Settings of the pizza run; each field is a `python -m dpolib.pizza` option."""

    seed: int = cli("seed of sampling, pairs and the run", default=0)
    beta: float = cli("DPO's KL strength (> 0)", default=0.5)
    num_train_epochs: int = cli("DPO epochs", default=20, flags=("--epochs",))
    learning_rate: float = cli("Adam's learning rate", default=1e-4, flags=("--lr",))
    n_pairs: int = cli("preference pairs", default=100, flags=("--pairs",))
    n_eval: int = cli("samples drawn to measure the pizza share", default=1000)
    anchor_weight: float = cli(
        "weight of the KL anchor on the other people (0: plain DPO)", default=0.0
    )
    out: str | None = cli(
        "folder for the final checkpoint", default=None, parse=writable_folder
    )
    retrain: bool = cli(
        "pretrain the food model instead of loading the shipped one", default=False
    )
    device: str | None = cli(
        "cpu, cuda or mps (default: the best available)",
        default=None,
        parse=device_name,
    )

    def __post_init__(self) -> None:
        seed = check_int("seed", self.seed, 0)
        if seed >= 2**63:
            raise ValueError(f"seed must be below 2**63, got {describe(seed)}")
        check_finite("beta", self.beta, 0.0, strict=True)
        check_int("num_train_epochs", self.num_train_epochs, 1)
        check_finite("learning_rate", self.learning_rate, 0.0, strict=True)
        check_int("n_pairs", self.n_pairs, 1)
        check_int("n_eval", self.n_eval, 1)
        check_finite("anchor_weight", self.anchor_weight, 0.0)
        check_bool("retrain", self.retrain)
        if self.out is not None:
            # a str, so that asdict(config) loads back with weights_only=True
            object.__setattr__(self, "out", str(writable_folder(str(self.out))))
        if self.device is not None:
            device_name(self.device)

    def dpo_config(self) -> DPOConfig:
        """The DPOConfig this run trains with (full batch, plain sums of log-probs)."""
        return DPOConfig(beta=self.beta, num_train_epochs=self.num_train_epochs)


def run(config: PizzaRunConfig | None = None, **overrides: Any) -> dict:
    """Run the pipeline with `config` (default PizzaRunConfig()) and any fields replaced
    by `overrides`; returns the summary dictionary (also the CLI's JSON output)."""
    cfg = replace(config or PizzaRunConfig(), **overrides)
    t0 = time.perf_counter()
    generator = seed_everything(cfg.seed)
    dev = get_device(cfg.device)
    if cfg.retrain or not shipped_checkpoint_path().is_file():
        reference, tokenizer, _ = train_food_model(progress=False, device=dev)
        pretrained_here = True
    else:
        reference, tokenizer = load_food_model(dev)
        pretrained_here = False
    t_model = time.perf_counter()
    prompt = prompt_for(PERSON)
    before = sample_report(reference, tokenizer, prompt, cfg.n_eval, generator, TARGET)
    candidates = [
        s.completion
        for s in reference.sample_batch(tokenizer, prompt, 500, generator=generator)
    ]
    pairs = build_preference_pairs(
        prompt, candidates, pizza_reward, cfg.n_pairs, generator
    )
    policy = copy.deepcopy(reference)
    optimizer = torch.optim.Adam(policy.parameters(), lr=cfg.learning_rate)
    anchor = other_people_anchor(cfg.anchor_weight) if cfg.anchor_weight > 0 else None
    dpo = cfg.dpo_config()
    t_train = time.perf_counter()
    policy, history = train_dpo(
        policy,
        reference,
        tokenizer,
        pairs,
        optimizer,
        dpo,
        anchor=anchor,
        progress=False,
    )
    train_seconds = time.perf_counter() - t_train
    after = sample_report(policy, tokenizer, prompt, cfg.n_eval, generator, TARGET)
    moved = drift(policy, reference, tokenizer, [p for p in PEOPLE if p != PERSON])
    summary: dict[str, Any] = {
        **asdict(cfg),
        "device": str(dev),
        "pretrained_here": pretrained_here,
        "pizza_frequency_before": before.target_frequency,
        "pizza_frequency_after": after.target_frequency,
        "well_formed_before": before.well_formed,
        "well_formed_after": after.well_formed,
        "others_tvd_mean": sum(d["tvd"] for d in moved.values()) / len(moved),
        "others_tvd_max": max(d["tvd"] for d in moved.values()),
        "final_loss": history[-1]["loss"] if history else None,
        "seconds_model": t_model - t0,
        "seconds_dpo": train_seconds,
        "seconds_total": time.perf_counter() - t0,
    }
    if cfg.out is not None:
        path = save_checkpoint(
            Path(cfg.out) / "pizza_policy.pt",
            policy,
            tokenizer,
            optimizer,
            step=cfg.num_train_epochs,
            kind="dpo",
            history=history,
            config=asdict(dpo),
            run=asdict(cfg),
            summary=summary,
        )
        summary["checkpoint"] = str(path)
    return summary


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m dpolib.pizza", description=(__doc__ or "").splitlines()[0]
    )
    add_arguments(ap, PizzaRunConfig)
    summary = run(from_arguments(PizzaRunConfig, ap.parse_args(argv)))
    print(
        json.dumps(
            {
                k: float(f"{v:.4g}") if isinstance(v, float) else v
                for k, v in summary.items()
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
