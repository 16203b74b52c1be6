"""The food model: the recipe that trains it, and the copy shipped with dpolib.

Reproduce the shipped checkpoint with `python -m dpolib.pizza.food --out dpolib/pizza/assets/food_model.pt`.
"""

from __future__ import annotations

import argparse
import json
import time
from importlib import resources
from pathlib import Path

import torch

from ..checkpoint import load_checkpoint, save_checkpoint
from ..model import GPT, GPTConfig
from ..runtime import seed_everything
from ..tokenizer import CharTokenizer
from ..train import pretrain
from .corpus import count_sentences, make_corpus

# Lowercase letters and space: every name and food, and any name a reader wants to try.
ALPHABET = " abcdefghijklmnopqrstuvwxyz"
RECIPE = {
    "n_sentences": 5000,
    "corpus_seed": 0,
    "init_seed": 0,
    "steps": 800,
    "lr": 1e-2,
    "warmup": 40,
    "n_layer": 2,
    "n_head": 4,
    "n_embd": 64,
    "block_size": 32,
}


def food_tokenizer() -> CharTokenizer:
    return CharTokenizer(tuple(ALPHABET))


def train_food_model(
    recipe: dict | None = None,
    progress: bool | None = None,
    device: torch.device | str | None = None,
) -> tuple[GPT, CharTokenizer, list[float]]:
    """Pretrain the tiny GPT on the people-food corpus with `RECIPE`; returns (model, tokenizer, losses).

    On the CPU (the default) the result is the shipped checkpoint; on a GPU it agrees to rounding."""
    r = {**RECIPE, **(recipe or {})}
    tokenizer = food_tokenizer()
    seed_everything(r["init_seed"])
    cfg = GPTConfig(
        tokenizer.vocab_size,
        block_size=r["block_size"],
        n_layer=r["n_layer"],
        n_head=r["n_head"],
        n_embd=r["n_embd"],
    )
    model = GPT(cfg).to(device or "cpu")
    sentences = count_sentences(make_corpus(r["n_sentences"], r["corpus_seed"]))
    losses = pretrain(
        model,
        tokenizer,
        sentences,
        steps=r["steps"],
        lr=r["lr"],
        warmup=r["warmup"],
        progress=progress,
    )
    return model, tokenizer, losses


def shipped_checkpoint_path() -> Path:
    return Path(str(resources.files("dpolib.pizza") / "assets" / "food_model.pt"))


def load_food_model(
    device: torch.device | str | None = None,
) -> tuple[GPT, CharTokenizer]:
    """The pretrained food model shipped with dpolib (trained by `train_food_model`)."""
    path = shipped_checkpoint_path()
    if not path.is_file():
        raise FileNotFoundError(
            f"the shipped food model is missing at {path}; recreate it with `python -m dpolib.pizza.food --out {path}`"
        )
    ckpt = load_checkpoint(path, device)
    return ckpt.model, ckpt.tokenizer


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description="Train the food model and save it as a checkpoint."
    )
    ap.add_argument("--out", type=Path, default=shipped_checkpoint_path())
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    model, tokenizer, losses = train_food_model(progress=False)
    save_checkpoint(
        args.out,
        model,
        tokenizer,
        step=RECIPE["steps"],
        kind="model",
        recipe=RECIPE,
        losses=losses,
    )
    print(
        json.dumps(
            {
                "out": str(args.out),
                "final_loss": round(losses[-1], 4),
                "seconds": round(time.perf_counter() - t0, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
