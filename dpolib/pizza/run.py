"""`python -m dpolib.pizza`: the whole pizza run end to end, with a JSON summary.

Load (or train) the food model, sample "ravin likes ", build preference pairs from a reward that
prefers "pizza", train with DPO, measure pizza frequency, well-formed share and the drift of the
other people, and save the final checkpoint.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import torch

from ..checkpoint import save_checkpoint
from ..data import build_preference_pairs
from ..evaluate import drift, sample_report
from ..runtime import get_device, seed_everything
from ..train import Anchor, run_dpo_episodes
from .corpus import PEOPLE, count_sentences, make_corpus, prompt_for, split_sentence
from .food import RECIPE, load_food_model, shipped_checkpoint_path, train_food_model

PERSON, TARGET = "ravin", "pizza"


def pizza_reward(prompt: str, completion: str) -> float:
    """1 for the target food, 0 for anything else."""
    return float(completion == TARGET)


def other_people_anchor(weight: float, exclude: str = PERSON) -> Anchor:
    """An Anchor on every other person's sentences in the food model's corpus (weighted by count)."""
    corpus = make_corpus(RECIPE["n_sentences"], RECIPE["corpus_seed"])
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


def run(
    seed: int = 0,
    beta: float = 0.5,
    epochs: int = 20,
    lr: float = 1e-4,
    n_pairs: int = 100,
    n_eval: int = 1000,
    anchor_weight: float = 0.0,
    out: Path | None = None,
    retrain: bool = False,
    device: str | None = None,
) -> dict:
    """Run the pipeline and return the summary dictionary (also the CLI's JSON output)."""
    t0 = time.perf_counter()
    generator = seed_everything(seed)
    dev = get_device(device)
    if retrain or not shipped_checkpoint_path().is_file():
        reference, tokenizer, _ = train_food_model(progress=False, device=dev)
        pretrained_here = True
    else:
        reference, tokenizer = load_food_model(dev)
        pretrained_here = False
    t_model = time.perf_counter()
    prompt = prompt_for(PERSON)
    before = sample_report(reference, tokenizer, prompt, n_eval, generator, TARGET)
    candidates = [
        s.completion
        for s in reference.sample_batch(tokenizer, prompt, 500, generator=generator)
    ]
    pairs = build_preference_pairs(prompt, candidates, pizza_reward, n_pairs, generator)
    policy = copy.deepcopy(reference)
    optimizer = torch.optim.Adam(policy.parameters(), lr=lr)
    anchor = other_people_anchor(anchor_weight) if anchor_weight > 0 else None
    t_train = time.perf_counter()
    policy, history = run_dpo_episodes(
        epochs,
        pairs,
        policy,
        reference,
        optimizer,
        tokenizer,
        beta=beta,
        anchor=anchor,
        progress=False,
    )
    train_seconds = time.perf_counter() - t_train
    after = sample_report(policy, tokenizer, prompt, n_eval, generator, TARGET)
    moved = drift(policy, reference, tokenizer, [p for p in PEOPLE if p != PERSON])
    summary = {
        "seed": seed,
        "beta": beta,
        "epochs": epochs,
        "lr": lr,
        "pairs": n_pairs,
        "anchor_weight": anchor_weight,
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
    if out is not None:
        path = save_checkpoint(
            Path(out) / "pizza_policy.pt",
            policy,
            tokenizer,
            optimizer,
            step=epochs,
            kind="dpo",
            history=history,
            summary=summary,
        )
        summary["checkpoint"] = str(path)
    return summary


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m dpolib.pizza", description=__doc__.splitlines()[0]
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--beta", type=float, default=0.5, help="DPO's KL strength (> 0)")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--pairs", type=int, default=100)
    ap.add_argument(
        "--anchor-weight",
        type=float,
        default=0.0,
        help="weight of the KL anchor on the other people (0: plain DPO)",
    )
    ap.add_argument(
        "--out", type=Path, default=None, help="folder for the final checkpoint"
    )
    ap.add_argument(
        "--retrain",
        action="store_true",
        help="pretrain the food model instead of loading the shipped one",
    )
    ap.add_argument(
        "--device", default=None, help="cpu, cuda or mps (default: the best available)"
    )
    args = ap.parse_args(argv)
    if args.beta <= 0:
        ap.error(f"--beta must be > 0, got {args.beta}")
    summary = run(
        args.seed,
        args.beta,
        args.epochs,
        args.lr,
        args.pairs,
        anchor_weight=args.anchor_weight,
        out=args.out,
        retrain=args.retrain,
        device=args.device,
    )
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
