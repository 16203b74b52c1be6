"""The pizza run with Hugging Face TRL: the pairs `python -m dpolib.pizza` trains on,
the shipped food model ported to transformers, and the command line that `accelerate
launch` runs on any number of processes.

    python -m dpolib.pizza.trl --out run.json             # one process
    accelerate launch --multi_gpu --num_processes 2 -m dpolib.pizza.trl --out run2.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import torch

from ..data import PreferencePair, build_preference_pairs
from ..hf import to_hf_model, to_hf_tokenizer
from ..runtime import seed_everything
from ..trl_run import dpo_config, train_trl_dpo
from .corpus import prompt_for
from .food import load_food_model
from .measures import sample_report
from .run import PERSON, TARGET, pizza_reward


def pizza_pairs(
    reference: Any,
    tokenizer: Any,
    n_pairs: int = 100,
    seed: int = 0,
    n_eval: int = 1000,
) -> tuple[list[PreferencePair], Any]:
    """The pairs `python -m dpolib.pizza` trains on (the same draws in the same order:
    n_eval samples for the "before" report, then 500 candidates); (pairs, before)."""
    generator = seed_everything(seed)
    prompt = prompt_for(PERSON)
    before = sample_report(reference, tokenizer, prompt, n_eval, generator, TARGET)
    candidates = [
        s.completion
        for s in reference.sample_batch(tokenizer, prompt, 500, generator=generator)
    ]
    pairs = build_preference_pairs(prompt, candidates, pizza_reward, n_pairs, generator)
    return pairs, before


def pizza_trl_run(
    output_dir: str | os.PathLike,
    *,
    beta: float = 0.5,
    learning_rate: float = 1e-4,
    epochs: int = 20,
    n_pairs: int = 100,
    per_device_train_batch_size: int | None = None,
    seed: int = 0,
    **overrides: Any,
) -> tuple[Any, list[dict], list[PreferencePair]]:
    """The pizza run of `python -m dpolib.pizza` with TRL: the shipped food model
    ported to transformers, the same 100 pairs, full-batch steps (over all processes
    when launched with accelerate). Returns (hf_model, history, pairs)."""
    reference, tokenizer = load_food_model("cpu")
    pairs, _ = pizza_pairs(reference, tokenizer, n_pairs, seed)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if per_device_train_batch_size is None:
        if n_pairs % world:
            raise ValueError(
                f"n_pairs={n_pairs} does not split evenly over {world} processes; "
                "pick a multiple of the process count"
            )
        per_device_train_batch_size = n_pairs // world
    config = dpo_config(
        output_dir,
        beta=beta,
        learning_rate=learning_rate,
        num_train_epochs=epochs,
        per_device_train_batch_size=per_device_train_batch_size,
        **overrides,
    )
    hf_tok = to_hf_tokenizer(tokenizer)
    policy = to_hf_model(reference, tokenizer)
    ref = to_hf_model(reference, tokenizer)
    policy, history = train_trl_dpo(policy, ref, hf_tok, pairs, config)
    return policy, history, pairs


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m dpolib.pizza.trl",
        description="The pizza run with trl.DPOTrainer (any number of processes).",
    )
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--beta", type=float, default=0.5)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--pairs", type=int, default=100)
    ap.add_argument("--out", type=Path, default=None, help="JSON file for the history")
    ap.add_argument("--workdir", type=Path, default=Path("trl_output"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    _, history, _ = pizza_trl_run(
        args.workdir,
        beta=args.beta,
        learning_rate=args.lr,
        epochs=args.epochs,
        n_pairs=args.pairs,
    )
    rank = int(os.environ.get("RANK", "0"))
    summary = {
        "world_size": int(os.environ.get("WORLD_SIZE", "1")),
        "seconds": time.perf_counter() - t0,
        "history": history,
    }
    if rank == 0:
        text = json.dumps(summary, indent=1)
        if args.out is not None:
            args.out.write_text(text)
        else:
            print(text)


if __name__ == "__main__":
    main()
