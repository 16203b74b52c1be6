"""The food model: the recipe that trains it, and the copy shipped with dpolib.

Reproduce the shipped checkpoint with
`python -m dpolib.pizza.food --out dpolib/pizza/assets/food_model.pt`.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, fields, replace
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from ..checkpoint import load_checkpoint, save_checkpoint
from ..config import (
    add_arguments,
    argument_type,
    check_finite,
    check_int,
    cli,
    from_arguments,
)
from ..errors import describe
from ..model import GPT, GPTConfig
from ..pretrain import pretrain
from ..runtime import seed_everything
from ..tokenizer import CharTokenizer
from .corpus import count_sentences, make_corpus

# Lowercase letters and space: every name and food, and any name a reader wants to try.
ALPHABET = " abcdefghijklmnopqrstuvwxyz"


@dataclass(frozen=True)
class FoodRecipe:
    """How the food model is made: the corpus, the model's shape, the pretraining."""

    n_sentences: int = cli("sentences in the corpus", default=5000)
    corpus_seed: int = cli("seed of the corpus", default=0)
    init_seed: int = cli("seed of the initial weights", default=0)
    steps: int = cli("full-batch pretraining steps", default=800)
    lr: float = cli("peak learning rate of AdamW", default=1e-2)
    warmup: int = cli("linear warm-up steps", default=40)
    n_layer: int = cli("transformer blocks", default=2)
    n_head: int = cli("attention heads", default=4)
    n_embd: int = cli("embedding width", default=64)
    block_size: int = cli("context length in tokens", default=32)

    def __post_init__(self) -> None:
        for f in fields(self):
            if f.name == "lr":
                check_finite("lr", self.lr, 0.0, strict=True)
            elif f.name.endswith("seed"):
                check_int(f.name, getattr(self, f.name), 0)
            else:
                check_int(f.name, getattr(self, f.name), 1)
        GPTConfig(  # the model's shape is checked by the model's own config
            len(ALPHABET) + 3, self.block_size, self.n_layer, self.n_head, self.n_embd
        )


RECIPE = FoodRecipe()  # the shipped model's recipe; asdict(RECIPE) is stored with it


def food_tokenizer() -> CharTokenizer:
    return CharTokenizer(tuple(ALPHABET))


def train_food_model(
    recipe: FoodRecipe | dict | None = None,
    progress: bool | None = None,
    device: torch.device | str | None = None,
) -> tuple[GPT, CharTokenizer, list[float]]:
    """Pretrain the tiny GPT on the people-food corpus with `recipe` (default RECIPE; a
    dict overrides some of its fields); returns (model, tokenizer, losses).

    On the CPU (the default) the result is the shipped checkpoint; on a GPU it agrees to
    rounding."""
    if recipe is None:
        r = RECIPE
    elif isinstance(recipe, FoodRecipe):
        r = recipe
    elif isinstance(recipe, dict):
        r = replace(RECIPE, **recipe)
    else:
        raise TypeError(
            f"recipe must be a FoodRecipe or a dict, got {describe(recipe)}"
        )
    tokenizer = food_tokenizer()
    seed_everything(r.init_seed)
    cfg = GPTConfig(
        tokenizer.vocab_size,
        block_size=r.block_size,
        n_layer=r.n_layer,
        n_head=r.n_head,
        n_embd=r.n_embd,
    )
    model = GPT(cfg).to(device or "cpu")
    sentences = count_sentences(make_corpus(r.n_sentences, r.corpus_seed))
    losses = pretrain(
        model,
        tokenizer,
        sentences,
        steps=r.steps,
        lr=r.lr,
        warmup=r.warmup,
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
            f"the shipped food model is missing at {path}; recreate it with "
            f"`python -m dpolib.pizza.food --out {path}`"
        )
    ckpt = load_checkpoint(path, device)
    return ckpt.model, ckpt.tokenizer


def writable_file(text: str) -> Path:
    """`text` as a path a file can be written to: not a folder, not under a file."""
    path = Path(text)
    if path.is_dir():
        raise ValueError(f"{describe(text)} is a folder; pass a file name")
    _check_folder_possible(path.parent)
    return path


def writable_folder(text: str) -> Path:
    """`text` as a path a folder can be (or is): not a file, not under a file."""
    path = Path(text)
    _check_folder_possible(path)
    return path


def _check_folder_possible(path: Path) -> None:
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                raise ValueError(
                    f"{describe(str(path))} cannot be a folder: {describe(str(p))} "
                    "is a file; pick another path"
                )
            return


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m dpolib.pizza.food",
        description="Train the food model and save it as a checkpoint.",
    )
    ap.add_argument(
        "--out",
        type=argument_type(writable_file),
        default=shipped_checkpoint_path(),
        help="checkpoint file to write",
    )
    add_arguments(ap, FoodRecipe)
    args = ap.parse_args(argv)
    recipe = from_arguments(FoodRecipe, args)
    t0 = time.perf_counter()
    model, tokenizer, losses = train_food_model(recipe, progress=False)
    save_checkpoint(
        args.out,
        model,
        tokenizer,
        step=recipe.steps,
        kind="model",
        recipe=asdict(recipe),
        losses=losses,
    )
    summary: dict[str, Any] = {
        "out": str(args.out),
        "final_loss": round(losses[-1], 4),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
