"""DPO with Hugging Face TRL: the one training function the chapter, the accelerate
script and the real-model section all call.

`dpo_config` is a TRL DPOConfig whose defaults are set to compute what
`run_dpo_episodes` computes (fp32, no gradient clipping, constant learning rate,
no gradient checkpointing); `train_trl_dpo` runs `trl.DPOTrainer` and returns the
per-step history under TRL's metric names (the names dpolib's history uses too).

The pizza run with TRL (the toy's pairs, the CLI that accelerate launches) is in
`dpolib.pizza.trl`.
"""

from __future__ import annotations

import copy
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
