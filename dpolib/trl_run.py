"""DPO with Hugging Face TRL: the one training function the chapter, the accelerate
script and the real-model section all call.

`dpo_config` is a TRL DPOConfig whose defaults are set to compute what
`run_dpo_episodes` computes (fp32, no gradient clipping, constant learning rate,
no gradient checkpointing); `train_trl_dpo` runs `trl.DPOTrainer` and returns the
per-step history under TRL's metric names (the names dpolib's history uses too).

    python -m dpolib.trl_run --out run.json             # one process
    accelerate launch --num_processes 2 --cpu -m dpolib.trl_run --out run2.json
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from .data import PreferencePair, validate_pairs
from .errors import describe
from .hf import check_version

# The per-step metrics both libraries log under the same names.
METRICS = (
    "loss",
    "rewards/chosen",
    "rewards/rejected",
    "rewards/margins",
    "rewards/accuracies",
    "logps/chosen",
    "logps/rejected",
)

# DPOConfig settings whose TRL default changes the math away from run_dpo_episodes.
PARITY_SETTINGS = {
    "bf16": False,  # TRL trains in bfloat16 by default; dpolib in float32
    "max_grad_norm": 0.0,  # TRL clips the gradient norm at 1.0; dpolib does not clip
    "lr_scheduler_type": "constant",  # transformers decays linearly to 0 by default
    "warmup_steps": 0,
    "weight_decay": 0.0,  # AdamW with no decay is Adam
    "activation_checkpointing": False,  # recomputes activations: slower, same math
}


def _require_trl() -> None:
    for package in ("trl", "transformers", "accelerate", "datasets"):
        check_version(package)


def pairs_to_dataset(pairs: Sequence[PreferencePair]) -> Any:
    """A datasets.Dataset with TRL's preference columns prompt/chosen/rejected."""
    _require_trl()
    from datasets import Dataset

    pairs = validate_pairs(pairs)
    return Dataset.from_dict(
        {
            "prompt": [p.prompt for p in pairs],
            "chosen": [p.chosen for p in pairs],
            "rejected": [p.rejected for p in pairs],
        }
    )


def dpo_config(
    output_dir: str | os.PathLike,
    *,
    beta: float = 0.1,
    learning_rate: float = 1e-4,
    num_train_epochs: float = 1,
    per_device_train_batch_size: int = 8,
    parity: bool = True,
    **overrides: Any,
) -> Any:
    """trl.DPOConfig for `output_dir`; with `parity` the settings in PARITY_SETTINGS
    (the math of run_dpo_episodes), else TRL's defaults. `overrides` win over both."""
    _require_trl()
    from trl import DPOConfig

    base = dict(PARITY_SETTINGS) if parity else {}
    fields = {
        "output_dir": str(output_dir),
        "beta": beta,
        "learning_rate": learning_rate,
        "num_train_epochs": num_train_epochs,
        "per_device_train_batch_size": per_device_train_batch_size,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "disable_tqdm": True,
        "use_cpu": not torch.cuda.is_available(),
        "seed": 0,
        **base,
        **overrides,
    }
    if "bf16" not in fields and not torch.cuda.is_available():
        fields["bf16"] = False  # TRL's bf16 default fails on CPUs without bfloat16
    return DPOConfig(**fields)


def train_trl_dpo(
    model: Any,
    ref_model: Any,
    tokenizer: Any,
    train_dataset: Any,
    config: Any,
    callback: Callable[[dict], None] | None = None,
) -> tuple[Any, list[dict]]:
    """Train `model` with trl.DPOTrainer against `ref_model`; returns (model, history)
    with one dict per optimizer step: "step", the METRICS TRL logged for it and the
    gradient norm before clipping ("grad_norm").

    `train_dataset` is a datasets.Dataset with prompt/chosen/rejected columns, or a
    list of PreferencePair. `ref_model` must be given when `model` is an in-memory
    model: with None TRL reloads the model by its name, which a model built in memory
    does not have (precompute_ref_log_probs=True is the exception)."""
    _require_trl()
    from transformers import PrinterCallback, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    if not isinstance(config, DPOConfig):
        raise TypeError(
            f"config must be a trl.DPOConfig (see dpolib.trl_run.dpo_config), got "
            f"{type(config).__name__}"
        )
    if isinstance(train_dataset, (list, tuple)):
        train_dataset = pairs_to_dataset(train_dataset)
    if ref_model is None and not config.precompute_ref_log_probs:
        name = getattr(getattr(model, "config", None), "_name_or_path", "")
        if not name or not Path(name).exists() and "/" not in name:
            raise ValueError(
                f"ref_model is None and the model has no loadable name "
                f"({describe(name)}): TRL would try to reload the reference by that "
                "name and fail. Pass ref_model=copy.deepcopy(model) (before "
                "training), or set precompute_ref_log_probs=True"
            )
    history: list[dict] = []

    class _Collect(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs and "rewards/margins" in logs:
                record = {"step": state.global_step}
                record.update({k: float(logs[k]) for k in METRICS if k in logs})
                if "grad_norm" in logs:  # before clipping
                    record["grad_norm"] = float(logs["grad_norm"])
                history.append(record)
                if callback is not None:
                    callback(record)

    trainer = DPOTrainer(
        model=model,
        ref_model=ref_model,
        args=config,
        train_dataset=train_dataset,
        processing_class=tokenizer,
        callbacks=[_Collect()],
    )
    trainer.remove_callback(PrinterCallback)  # the history is returned, not printed
    trainer.train()
    model = trainer.model
    model.eval()
    return model, history


@torch.no_grad()
def sample_completions(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    max_new_tokens: int = 32,
    seed: int = 0,
) -> list[str]:
    """Greedy-free samples (temperature 1) of each prompt from a transformers causal
    LM, decoded without special tokens: the before/after view of a real run."""
    torch.manual_seed(seed)
    out = []
    device = next(model.parameters()).device
    for prompt in prompts:
        ids = tokenizer(prompt, return_tensors="pt").to(device)
        gen = model.generate(
            **ids,
            max_new_tokens=max_new_tokens,
            do_sample=True,
            pad_token_id=tokenizer.pad_token_id,
        )
        out.append(
            tokenizer.decode(
                gen[0, ids["input_ids"].shape[1] :], skip_special_tokens=True
            )
        )
    return out


def real_model_run(
    model: Any,
    tokenizer: Any,
    train_dataset: Any,
    config: Any,
    sample_prompts: Sequence[str],
    max_new_tokens: int = 32,
) -> dict:
    """The real-model recipe: copy the reference, sample, train with TRL, sample again.

    Returns {"history", "before", "after", "seconds", "model"}; the Colab section
    runs it on a hub model and dataset, the tests on the food model and pizza pairs."""
    reference = copy.deepcopy(model).eval()
    for p in reference.parameters():
        p.requires_grad_(False)
    before = sample_completions(model, tokenizer, sample_prompts, max_new_tokens)
    t0 = time.perf_counter()
    model, history = train_trl_dpo(model, reference, tokenizer, train_dataset, config)
    seconds = time.perf_counter() - t0
    after = sample_completions(model, tokenizer, sample_prompts, max_new_tokens)
    return {
        "history": history,
        "before": before,
        "after": after,
        "seconds": seconds,
        "model": model,
    }


def pizza_pairs(
    reference: Any,
    tokenizer: Any,
    n_pairs: int = 100,
    seed: int = 0,
    n_eval: int = 1000,
) -> tuple[list[PreferencePair], Any]:
    """The pairs `python -m dpolib.pizza` trains on (the same draws in the same order:
    n_eval samples for the "before" report, then 500 candidates); (pairs, before)."""
    from .data import build_preference_pairs
    from .evaluate import sample_report
    from .pizza.corpus import prompt_for
    from .pizza.run import PERSON, TARGET, pizza_reward
    from .runtime import seed_everything

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
    from .hf import to_hf_model, to_hf_tokenizer
    from .pizza.food import load_food_model

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
        prog="python -m dpolib.trl_run",
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
