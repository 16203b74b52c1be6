"""The RLHF side in Hugging Face TRL: a reward model with `trl.RewardTrainer` and the
policy with `trl.GRPOTrainer`, set up to compute what `dpolib.reward` and
`dpolib.rl.train_grpo` compute.

`reward_config` / `grpo_config` are TRL configs whose math-changing defaults are set to
dpolib's (REWARD_PARITY_SETTINGS, GRPO_PARITY_SETTINGS); `train_trl_reward` and
`train_trl_grpo` run the trainers and return per-step histories under TRL's metric
names. `trl_reward_function` turns a dpolib reward (prompt, completion) -> float into
the function GRPOTrainer calls; `fixed_rollout` hands GRPOTrainer completions sampled
elsewhere, so one step can be compared with dpolib's on the very same samples.

The toy's glue (the food model, the pizza prompt and reward) is in `dpolib.pizza.trl`.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any, Callable, Sequence

import torch

from .errors import describe
from .model import Sample
from .reward import ScalarHeadGPT
from .rl import BatchReward, GRPOConfig, Reward, score_completions
from .rl_core import clipped_objective, kl_estimate
from .tokenizer import CharTokenizer
from .trl_run import PARITY_SETTINGS, _require_trl, pairs_to_dataset

# The per-step metrics RewardTrainer logs (its names): Bradley-Terry loss, the share of
# pairs with r(y_w) > r(y_l), the mean of r(y_w) - r(y_l), and the spread of scores.
REWARD_METRICS = (
    "loss",
    "accuracy",
    "margin",
    "min_reward",
    "mean_reward",
    "max_reward",
)

# RewardConfig settings whose TRL default changes the math away from
# dpolib.reward.train_reward_model (full-batch AdamW, constant rate, float32): the same
# Trainer settings as the DPO run's (RewardConfig also turns activation checkpointing on
# by default: same math, slower).
REWARD_PARITY_SETTINGS = dict(PARITY_SETTINGS)

# GRPOConfig settings whose TRL default changes the math away from dpolib's GRPO: the
# Trainer settings, and grpo_loss is the per-sequence token mean ("grpo"; TRL's default
# "dapo" averages over every token of the batch), and its k3 term is not multiplied by
# the importance ratio (TRL's default use_bias_correction_kl=True adds k3 * grad log pi
# to the gradient).
GRPO_PARITY_SETTINGS = {
    **PARITY_SETTINGS,
    "loss_type": "grpo",
    "use_bias_correction_kl": False,
}

# What the TRL history of one GRPO step keeps (TRL's names).
GRPO_METRICS = (
    "loss",
    "reward",
    "reward_std",
    "kl",
    "entropy",
    "grad_norm",
    "clip_ratio/region_mean",
    "completions/mean_length",
    "completions/clipped_ratio",
)


def _common(output_dir: str | os.PathLike, seed: int) -> dict:
    return {
        "output_dir": str(output_dir),
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "disable_tqdm": True,
        "use_cpu": not torch.cuda.is_available(),
        "seed": seed,
    }


def reward_config(
    output_dir: str | os.PathLike,
    *,
    learning_rate: float = 3e-4,
    max_steps: int = 150,
    per_device_train_batch_size: int = 100,
    parity: bool = True,
    seed: int = 0,
    **overrides: Any,
) -> Any:
    """trl.RewardConfig for `output_dir`; with `parity` the REWARD_PARITY_SETTINGS
    (the math of train_reward_model), else TRL's defaults. `overrides` win over both.
    Full batch = per_device_train_batch_size equal to the number of pairs."""
    _require_trl()
    from trl import RewardConfig

    fields = {
        **_common(output_dir, seed),
        "learning_rate": learning_rate,
        "max_steps": max_steps,
        "per_device_train_batch_size": per_device_train_batch_size,
        **(dict(REWARD_PARITY_SETTINGS) if parity else {}),
        **overrides,
    }
    if "bf16" not in fields and not torch.cuda.is_available():
        fields["bf16"] = False  # TRL's bf16 default fails on CPUs without bfloat16
    return RewardConfig(**fields)


def _history_callback(
    keys: Sequence[str], history: list, callback: Callable | None
) -> Any:
    """A TrainerCallback that appends TRL's per-step logs (`keys`) to `history`;
    `callback(record)` returning True stops training after that step."""
    from transformers import TrainerCallback

    class Collect(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs or "loss" not in logs:
                return control  # the end-of-training summary
            record = {"step": state.global_step}
            record.update({k: float(logs[k]) for k in keys if k in logs})
            history.append(record)
            if callback is not None and callback(record):
                control.should_training_stop = True
            return control

    return Collect()


def train_trl_reward(
    model: Any,
    tokenizer: Any,
    train_dataset: Any,
    config: Any,
    callback: Callable[[dict], bool | None] | None = None,
) -> tuple[Any, list[dict]]:
    """Train a GPT2ForSequenceClassification reward model with trl.RewardTrainer.

    Returns (model, history): one dict per optimizer step with "step", the
    REWARD_METRICS TRL logged for it (computed before that step's update) and the
    gradient norm before clipping ("grad_norm"). `train_dataset` is a datasets.Dataset
    with prompt/chosen/rejected columns or a list of PreferencePair;
    `callback(record)` returning True stops training after that step."""
    _require_trl()
    from transformers import PrinterCallback
    from trl import RewardConfig, RewardTrainer

    if not isinstance(config, RewardConfig):
        raise TypeError(
            "config must be a trl.RewardConfig (see dpolib.trl_rl.reward_config), "
            f"got {type(config).__name__}"
        )
    if getattr(getattr(model, "config", None), "num_labels", None) != 1:
        raise ValueError(
            "model must be a sequence-classification model with num_labels=1 (one "
            f"score per sequence), got {type(model).__name__}; port a dpolib reward "
            "model with dpolib.hf.to_hf_reward_model"
        )
    if isinstance(train_dataset, (list, tuple)):
        train_dataset = pairs_to_dataset(train_dataset)
    history: list[dict] = []
    trainer = RewardTrainer(
        model=model,
        args=config,
        train_dataset=train_dataset,
        processing_class=tokenizer,
        callbacks=[
            _history_callback((*REWARD_METRICS, "grad_norm"), history, callback)
        ],
    )
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    model = trainer.model
    model.eval()
    return model, history


@torch.no_grad()
def hf_reward_scores(model: Any, tokenizer: Any, texts: Sequence[str]) -> torch.Tensor:
    """r_phi of each full text (prompt + completion + "<eos>") from a transformers
    reward model, read where RewardTrainer reads it: the last non-pad token."""
    batch = tokenizer(list(texts), padding=True, return_tensors="pt")
    device = next(model.parameters()).device
    out = model(**{k: v.to(device) for k, v in batch.items()})
    return out.logits[:, 0].float().cpu()


# --------------------------------------------------------------------------------
# GRPO
# --------------------------------------------------------------------------------
def grpo_config(
    output_dir: str | os.PathLike,
    rl: GRPOConfig | None = None,
    *,
    parity: bool = True,
    seed: int = 0,
    **overrides: Any,
) -> Any:
    """trl.GRPOConfig with the hyper-parameters of a dpolib GRPOConfig `rl`:
    batch_size -> per_device_train_batch_size, num_generations, beta, epsilon,
    num_iterations, scale_rewards (True -> "group", False -> "none"), learning_rate,
    max_completion_length, temperature, and max_steps = rl.max_steps * num_iterations
    (TRL counts optimizer steps; dpolib counts sampled batches). With `parity` also
    GRPO_PARITY_SETTINGS. `overrides` win over everything."""
    _require_trl()
    from trl import GRPOConfig as TRLGRPOConfig

    rl = GRPOConfig() if rl is None else rl
    if not isinstance(rl, GRPOConfig):
        raise TypeError(
            f"rl must be a dpolib.rl.GRPOConfig, got {type(rl).__name__}; "
            "pass TRL fields as keyword arguments instead"
        )
    # GRPOTrainer has no missing_eos_penalty: pass it to trl_reward_function instead
    fields = {
        **_common(output_dir, seed),
        "learning_rate": rl.learning_rate,
        "per_device_train_batch_size": rl.batch_size,
        "num_generations": rl.num_generations,
        "beta": rl.beta,
        "epsilon": rl.epsilon,
        "num_iterations": rl.num_iterations,
        "scale_rewards": "group" if rl.scale_rewards else "none",
        "max_completion_length": rl.max_completion_length,
        "temperature": rl.temperature,
        "max_steps": rl.max_steps * rl.num_iterations,
        **(dict(GRPO_PARITY_SETTINGS) if parity else {}),
        **overrides,
    }
    if "bf16" not in fields and not torch.cuda.is_available():
        fields["bf16"] = False
    return TRLGRPOConfig(**fields)


TRL_GRPO_LOSS_TYPES = ("grpo", "bnpo", "dapo", "dr_grpo")


def trl_grpo_loss(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    ref_logps: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    beta: float,
    epsilon: float,
    loss_type: str = "grpo",
    bias_correction_kl: bool = False,
    max_completion_length: int | None = None,
) -> torch.Tensor:
    """TRL's clipped GRPO losses, written out on (B, T) per-token tensors (one process,
    no accumulation): l_t = -min(rho_t A, clip(rho_t, 1 - eps, 1 + eps) A) + beta k3_t
    (times rho_t if bias_correction_kl); "grpo": mean over rows of each row's token
    mean; "bnpo"/"dapo": the mean over all tokens of the batch; "dr_grpo": the sum
    over tokens / (B * max_completion_length)."""
    if loss_type not in TRL_GRPO_LOSS_TYPES:
        raise ValueError(
            f"loss_type must be one of {TRL_GRPO_LOSS_TYPES}, got {describe(loss_type)}"
        )
    surrogate = clipped_objective(logps, old_logps, advantages[:, None], epsilon)
    k3 = kl_estimate(logps, ref_logps, "k3")
    if bias_correction_kl:
        k3 = k3 * torch.exp(logps - old_logps)
    per_token = -surrogate + beta * k3
    m = mask.to(per_token.dtype)
    if loss_type == "grpo":
        return ((per_token * m).sum(1) / m.sum(1).clamp(min=1)).mean()
    if loss_type in ("bnpo", "dapo"):
        return (per_token * m).sum() / m.sum().clamp(min=1)
    if max_completion_length is None:
        raise ValueError("dr_grpo divides by max_completion_length: pass it")
    return (per_token * m).sum() / (per_token.shape[0] * max_completion_length)


def trl_reward_function(
    reward: Reward,
    eos_token_id: int,
    missing_eos_penalty: float | None = None,
    name: str | None = None,
) -> Callable[..., list[float]]:
    """GRPOTrainer's reward function from a dpolib reward, scored as dpolib.rl scores
    it (`score_completions`): a function r(prompt, completion), a BatchReward, or a
    RewardModel read at <eos> where one was sampled, minus `missing_eos_penalty`
    where none was. `name` is the metric name TRL logs (rewards/<name>/mean).

    Passing a transformers reward model to GRPOTrainer directly scores the decoded
    text prompt + completion without <bos> and without <eos>, which is not what a
    reward model trained by RewardTrainer (or dpolib) read."""
    if not (isinstance(reward, (ScalarHeadGPT, BatchReward)) or callable(reward)):
        raise TypeError(
            "reward must be a function (prompt, completion) -> float, a BatchReward or "
            f"a dpolib RewardModel, got {describe(reward)}"
        )

    def reward_func(prompts, completions, completion_ids, **kwargs) -> list[float]:
        finished = [eos_token_id in ids for ids in completion_ids]
        scores = score_completions(
            reward, list(prompts), list(completions), finished, missing_eos_penalty
        )
        return scores.tolist()

    default = "reward_model" if isinstance(reward, ScalarHeadGPT) else "reward"
    reward_func.__name__ = str(name or getattr(reward, "__name__", default))
    return reward_func


def sample_ids(
    tokenizer: CharTokenizer, prompt: str, samples: Sequence[Sample]
) -> tuple[list[list[int]], list[list[int]]]:
    """(prompt_ids, completion_ids) of dpolib samples, as GRPOTrainer holds them:
    <bos> prompt, and the completion with <eos> only where one was sampled."""
    head = tokenizer.encode(prompt, bos=True)
    tails = [tokenizer.encode(s.completion, eos=s.finished) for s in samples]
    return [list(head) for _ in tails], tails


def fixed_rollout(
    prompt_ids: Sequence[Sequence[int]], completion_ids: Sequence[Sequence[int]]
) -> Callable[[list, Any], dict]:
    """A GRPOTrainer rollout_func that returns these completions (token ids, end token
    included where one was sampled) instead of generating: one step on samples drawn
    elsewhere. Every call must ask for exactly len(completion_ids) rows."""
    if len(prompt_ids) != len(completion_ids) or not completion_ids:
        raise ValueError(
            f"got {len(prompt_ids)} prompt rows and {len(completion_ids)} "
            "completions; pass one prompt row per completion (at least one)"
        )
    rows = [list(map(int, p)) for p in prompt_ids]
    done = [list(map(int, c)) for c in completion_ids]

    def rollout_func(prompts: list, trainer: Any) -> dict:
        if len(prompts) != len(done):
            raise ValueError(
                f"GRPOTrainer asked for {len(prompts)} completions but the fixed "
                f"rollout holds {len(done)}; set per_device_train_batch_size to "
                f"{len(done)} (one generation batch)"
            )
        return {"prompt_ids": rows, "completion_ids": done, "logprobs": None}

    return rollout_func


def train_trl_grpo(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    reward_funcs: Callable | Sequence[Callable],
    config: Any,
    *,
    reference: Any | None = None,
    rollout_func: Callable | None = None,
    callback: Callable[[dict], bool | None] | None = None,
    callbacks: Sequence[Any] = (),
    reward_processing_classes: Any | None = None,
) -> tuple[Any, list[dict], Any]:
    """Train a causal LM with trl.GRPOTrainer on `prompts` (one dataset row each; TRL
    samples num_generations completions per row). Returns (model, history, trainer):
    one dict per optimizer step with "step" and the GRPO_METRICS TRL logged for it.

    With beta > 0 the reference is `reference` (a transformers causal LM; default:
    the model as it is now): GRPOTrainer builds its reference by reloading the model
    by its name, which an in-memory model lacks, so the reference is saved to a
    temporary folder the model is named by while the trainer is built. `rollout_func`
    replaces generation (see fixed_rollout); `callback(record)` returning True stops
    training after that step; `callbacks` are extra TrainerCallbacks (for example
    gradient_recorder()); `reward_processing_classes` is passed on (the tokenizer of
    a transformers reward model among `reward_funcs`)."""
    _require_trl()
    from datasets import Dataset
    from transformers import PrinterCallback
    from transformers.utils import logging as hf_logging
    from trl import GRPOConfig as TRLGRPOConfig
    from trl import GRPOTrainer

    if not isinstance(config, TRLGRPOConfig):
        raise TypeError(
            "config must be a trl.GRPOConfig (see dpolib.trl_rl.grpo_config), got "
            f"{type(config).__name__}"
        )
    prompts = list(prompts)
    if not prompts or not all(isinstance(p, str) for p in prompts):
        raise ValueError(
            f"prompts must be a non-empty list of strings, got {describe(prompts)}"
        )
    funcs: list[Any] = [reward_funcs] if callable(reward_funcs) else list(reward_funcs)
    if isinstance(model, (str, os.PathLike)):
        raise TypeError(
            "model must be an in-memory transformers causal LM (dpolib.hf.to_hf_model),"
            f" got the name {describe(str(model))}; load it first"
        )
    history: list[dict] = []
    name = getattr(model.config, "_name_or_path", "")
    bars = hf_logging.is_progress_bar_enabled()
    with tempfile.TemporaryDirectory(prefix="dpolib-grpo-ref-") as folder:
        try:
            # the save and reload below are ours, not the reader's: no progress bars
            hf_logging.disable_progress_bar()
            if config.beta != 0.0:
                (model if reference is None else reference).save_pretrained(folder)
                model.config._name_or_path = folder
            trainer = GRPOTrainer(
                model=model,
                reward_funcs=funcs,
                args=config,
                train_dataset=Dataset.from_dict({"prompt": prompts}),
                processing_class=tokenizer,
                callbacks=[
                    _history_callback(GRPO_METRICS, history, callback),
                    *callbacks,
                ],
                rollout_func=rollout_func,
                reward_processing_classes=reward_processing_classes,
            )
        finally:
            model.config._name_or_path = name
            if bars:
                hf_logging.enable_progress_bar()
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    model = trainer.model
    model.eval()
    return model, history, trainer


def gradient_recorder() -> Any:
    """A TrainerCallback that keeps, at every optimizer step, the gradient TRL is about
    to apply (after any clipping), under dpolib's parameter names and layout
    (`.gradients`, one dict per step): TRL's gradient beside dpolib's autograd one."""
    _require_trl()
    from transformers import TrainerCallback

    from .hf import _name_map

    class GradientRecorder(TrainerCallback):
        def __init__(self) -> None:
            self.gradients: list[dict[str, torch.Tensor]] = []

        def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
            theirs = {n: p.grad for n, p in model.named_parameters()}
            ours = {}
            for name, (hf_name, transpose) in _name_map(model.config.n_layer).items():
                g = theirs[hf_name].detach().float().cpu()
                ours[name] = (g.t() if transpose else g).clone()
            self.gradients.append(ours)

    return GradientRecorder()
