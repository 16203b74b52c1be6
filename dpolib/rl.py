"""On-policy RL from the same reference as DPO: PPO, RLOO and GRPO, batched.

Every method maximises E_{y~pi}[r(x, y)] - beta KL(pi || pi_ref) on samples of a prompt.
Each step draws one batch with `GPT.sample_batch`, scores it (a learned `RewardModel` or
an exact reward function: the same argument), reads per-token log-probs with
`batch_token_logprobs`, and updates. Configs use Hugging Face TRL's field names where
the meaning is the same (learning_rate, kl_coef, cliprange, vf_coef, cliprange_value,
gamma, lam, num_ppo_epochs, rloo_k, num_generations, beta, epsilon, num_iterations,
scale_rewards, missing_eos_penalty, max_completion_length, kl_estimator, max_steps).
"""

from __future__ import annotations

import copy
import math
import numbers
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from .config import check_finite, check_int
from .errors import describe
from .logprobs import SequenceBatch, batch_token_logprobs, build_batch
from .model import GPT, Sample
from .reward import RewardModel, ScalarHeadGPT
from .rl_core import (
    KL_ESTIMATORS,
    clip_fraction,
    clipped_objective,
    clipped_surrogate_loss,
    clipped_value_loss,
    gae,
    grpo_advantages,
    kl_estimate,
    masked_whiten,
    rloo_advantages,
)
from .tokenizer import CharTokenizer


@dataclass(frozen=True)
class _RLConfig:
    """What every method shares: optimisation, sampling, and the number of steps."""

    learning_rate: float = 3e-4
    batch_size: int = 64  # completions sampled per step
    max_steps: int = 30
    max_completion_length: int = 16
    temperature: float = 1.0
    # TRL's meaning: subtracted from the score of a completion that never emitted <eos>
    missing_eos_penalty: float | None = None

    def __post_init__(self) -> None:
        # the same checks as DPOConfig's (dpolib.config): one rule for every loop
        check_finite("learning_rate", self.learning_rate, 0.0, strict=True)
        check_int("batch_size", self.batch_size, 1)
        check_int("max_steps", self.max_steps, 0)
        check_int("max_completion_length", self.max_completion_length, 1)
        check_finite("temperature", self.temperature, 0.0, strict=True)
        if self.missing_eos_penalty is not None:
            check_finite("missing_eos_penalty", self.missing_eos_penalty)

    def _check_clip(self, name: str) -> None:
        # the ratio is clipped to [1 - eps, 1 + eps]; 0.2 is usual
        check_finite(name, getattr(self, name), 0.0, strict=True)

    def _check_epochs(self, name: str) -> None:
        check_int(name, getattr(self, name), 1)

    def _check_kl(self, name: str) -> None:
        # the KL penalty's strength; 0 switches it off
        check_finite(name, getattr(self, name), 0.0)

    def _check_group(self, name: str, why: str) -> None:
        k = getattr(self, name)
        if check_int(name, k, 1) < 2:
            raise ValueError(f"{name} must be >= 2 ({why}), got {describe(k)}")
        if self.batch_size % k:
            raise ValueError(
                f"batch_size ({self.batch_size}) must be a multiple of {name} ({k}): "
                "the batch is cut into groups of that size"
            )


@dataclass(frozen=True)
class PPOConfig(_RLConfig):
    """PPO with a per-token KL penalty in the reward, a value model and GAE."""

    kl_coef: float = 0.05
    kl_estimator: str = "k1"
    cliprange: float = 0.2
    cliprange_value: float = 0.2
    vf_coef: float = 0.1
    gamma: float = 1.0
    lam: float = 0.95
    num_ppo_epochs: int = 2
    whiten_advantages: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_kl("kl_coef")
        if self.kl_estimator not in KL_ESTIMATORS:
            raise ValueError(
                f"kl_estimator must be one of {KL_ESTIMATORS}, got "
                f"{describe(self.kl_estimator)}"
            )
        self._check_clip("cliprange")
        self._check_clip("cliprange_value")
        check_finite("vf_coef", self.vf_coef, 0.0)
        for name in ("gamma", "lam"):
            if check_finite(name, getattr(self, name), 0.0) > 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        self._check_epochs("num_ppo_epochs")


@dataclass(frozen=True)
class RLOOConfig(_RLConfig):
    """REINFORCE, a leave-one-out baseline over rloo_k samples, KL in the reward."""

    rloo_k: int = 8
    kl_coef: float = 0.05
    cliprange: float = 0.2
    num_ppo_epochs: int = 2

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_group("rloo_k", "each sample's baseline is the mean of the others")
        self._check_kl("kl_coef")
        self._check_clip("cliprange")
        self._check_epochs("num_ppo_epochs")


@dataclass(frozen=True)
class GRPOConfig(_RLConfig):
    """Group-normalised advantages, a clipped per-token ratio, beta * k3 in the loss."""

    num_generations: int = 8
    beta: float = 0.05
    epsilon: float = 0.2
    num_iterations: int = 2
    scale_rewards: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_group("num_generations", "a group of 1 has zero standard deviation")
        self._check_kl("beta")
        self._check_clip("epsilon")
        self._check_epochs("num_iterations")


# --------------------------------------------------------------------------------
# Rewards: a learned model or an exact function, through one argument
# --------------------------------------------------------------------------------
@dataclass(frozen=True)
class BatchReward:
    """A reward that scores a whole batch: fn(prompts, completions) -> B numbers."""

    fn: Callable[[list[str], list[str]], Sequence[float] | torch.Tensor]


Reward = RewardModel | BatchReward | Callable[[str, str], float]


def check_reward(reward: Reward, policy: GPT, tokenizer: CharTokenizer) -> None:
    """Raise before training when `reward` cannot score the policy's completions."""
    if isinstance(reward, ScalarHeadGPT):
        if reward.config.vocab_size != policy.config.vocab_size or tuple(
            reward.tokenizer.chars
        ) != tuple(tokenizer.chars):
            raise ValueError(
                "the reward model reads another vocabulary than the policy "
                f"(reward model: {reward.config.vocab_size} tokens, "
                f"{describe(''.join(reward.tokenizer.chars))}; policy: "
                f"{policy.config.vocab_size} tokens, "
                f"{describe(''.join(tokenizer.chars))}); "
                "train the reward model from the policy's base model and tokenizer"
            )
    elif not (isinstance(reward, BatchReward) or callable(reward)):
        raise TypeError(
            "reward must be a RewardModel, a BatchReward or a function "
            f"(prompt, completion) -> float, got {describe(reward)}"
        )


def _as_score(value: object, i: int, completion: str) -> float:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(
                f"the reward function returned a tensor of shape {tuple(value.shape)} "
                "for "
                f"completion {i} ({describe(completion)}); return one number per "
                "completion"
            )
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"the reward function returned {describe(value)} for completion {i} "
            f"({describe(completion)}); return one float per completion"
        )
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(
            f"the reward function returned {value} for completion {i} "
            f"({describe(completion)}); rewards must be finite numbers"
        )
    return value


@torch.no_grad()
def score_completions(
    reward: Reward,
    prompts: Sequence[str],
    completions: Sequence[str],
    finished: Sequence[bool] | None = None,
    missing_eos_penalty: float | None = None,
) -> torch.Tensor:
    """r(x, y) per row, float32 on the CPU, from a RewardModel, a BatchReward or a
    function of one (prompt, completion); minus `missing_eos_penalty` where <eos> never
    came."""
    n = len(completions)
    finished = [True] * n if finished is None else list(finished)
    if isinstance(reward, ScalarHeadGPT):
        scores = reward.score(prompts, completions, finished).float().cpu()
    elif isinstance(reward, BatchReward):
        out = reward.fn(list(prompts), list(completions))
        values = list(out.flatten().tolist() if isinstance(out, torch.Tensor) else out)
        if isinstance(out, torch.Tensor) and out.dim() != 1:
            raise ValueError(
                f"the batch reward function returned shape {tuple(out.shape)}; "
                f"return {n} numbers, one per completion"
            )
        if len(values) != n:
            raise ValueError(
                f"the batch reward function returned {len(values)} rewards for {n} "
                "completions; return one per completion, in order"
            )
        scores = torch.tensor(
            [_as_score(v, i, c) for i, (v, c) in enumerate(zip(values, completions))]
        )
    elif callable(reward):
        scores = torch.tensor(
            [
                _as_score(reward(p, c), i, c)
                for i, (p, c) in enumerate(zip(prompts, completions))
            ]
        )
    else:
        raise TypeError(
            "reward must be a RewardModel, a BatchReward or a function "
            f"(prompt, completion) -> float, got {describe(reward)}"
        )
    if not torch.isfinite(scores).all():
        raise ValueError("the reward model returned non-finite scores")
    if missing_eos_penalty is not None:
        scores = scores - missing_eos_penalty * (~torch.tensor(finished)).float()
    return scores


# --------------------------------------------------------------------------------
# One rollout: samples, their batch, log-probs under policy and reference, scores
# --------------------------------------------------------------------------------
@dataclass
class Rollout:
    samples: list[Sample]
    batch: SequenceBatch  # completion_mask excludes <eos> for unfinished samples
    logps: torch.Tensor  # (B, T) per-token, under the policy that sampled
    ref_logps: torch.Tensor  # (B, T)
    scores: torch.Tensor  # (B,) on the policy's device
    seconds_sampling: float
    seconds_scoring: float


def rollout(
    policy: GPT,
    reference: GPT,
    tokenizer: CharTokenizer,
    prompt: str,
    reward: Reward,
    config: _RLConfig,
    generator: torch.Generator | None = None,
) -> Rollout:
    """One `sample_batch` call of config.batch_size completions, scored, with their
    per-token log-probs under the policy and the reference."""
    t0 = time.perf_counter()
    samples = policy.sample_batch(
        tokenizer,
        prompt,
        config.batch_size,
        config.max_completion_length,
        config.temperature,
        generator,
    )
    t1 = time.perf_counter()
    device = policy.device
    batch = build_batch(
        tokenizer,
        [prompt] * len(samples),
        [s.completion for s in samples],
        policy.config.block_size,
        device,
    )
    finished = torch.tensor([s.finished for s in samples], device=device)
    # build_batch appends <eos> to every row; an unfinished sample never emitted it
    last = _last_index(batch.completion_mask)
    mask = batch.completion_mask.clone()
    rows = torch.nonzero(~finished).flatten()
    mask[rows, last[rows]] = False
    batch = SequenceBatch(batch.input_ids, batch.targets, mask, batch.shared_prefix)
    with torch.no_grad():
        logps = batch_token_logprobs(policy, batch)
        ref_logps = batch_token_logprobs(reference, batch)
    scores = score_completions(
        reward,
        [prompt] * len(samples),
        [s.completion for s in samples],
        [s.finished for s in samples],
        config.missing_eos_penalty,
    ).to(device)
    t2 = time.perf_counter()
    return Rollout(samples, batch, logps, ref_logps, scores, t1 - t0, t2 - t1)


def _last_index(mask: torch.Tensor) -> torch.Tensor:
    """Index of each row's last True (cumsum peaks there first)."""
    return mask.long().cumsum(1).argmax(1)


def _base_record(
    step: int, ro: Rollout, kind: str = "k1", target: str | None = None
) -> dict:
    mask = ro.batch.completion_mask
    seq_kl = (kl_estimate(ro.logps, ro.ref_logps, kind) * mask).sum(1)
    extra = {}
    if target is not None:  # e.g. the share of the batch that is the target
        extra["samples/target_share"] = sum(
            s.finished and s.completion == target for s in ro.samples
        ) / len(ro.samples)
    return {
        "step": step,
        "objective/scores": float(ro.scores.mean()),
        "objective/kl": float(seq_kl.mean()),
        # -log pi(y) of the sampled y: a one-sample estimate of the sequence entropy
        "objective/entropy": float(-ro.logps.sum(1).mean()),
        "samples/finished": sum(s.finished for s in ro.samples) / len(ro.samples),
        "time/sampling": ro.seconds_sampling,
        "time/scoring": ro.seconds_scoring,
        **extra,
    }


def _prepare(
    policy: GPT,
    reference: GPT,
    tokenizer: CharTokenizer,
    prompt: str,
    reward: Reward,
    config: _RLConfig,
    expected: type,
) -> None:
    if not isinstance(config, expected):
        raise TypeError(
            f"config must be a {expected.__name__}, got {type(config).__name__}"
        )
    if policy is reference:
        raise ValueError(
            "policy and reference are the same object; the reference must be a frozen "
            "copy "
            "(copy.deepcopy(policy) before training)"
        )
    if policy.config != reference.config:
        raise ValueError(
            f"policy and reference have different configs ({policy.config} vs "
            f"{reference.config}); start both from the same checkpoint"
        )
    if policy.config.vocab_size != tokenizer.vocab_size:
        raise ValueError(
            f"tokenizer has {tokenizer.vocab_size} tokens but the policy has "
            f"{policy.config.vocab_size}; use the tokenizer saved with the model"
        )
    need = len(tokenizer.encode(prompt, bos=True)) + config.max_completion_length
    if need > policy.config.block_size:
        raise ValueError(
            f"prompt {describe(prompt)} plus max_completion_length="
            f"{config.max_completion_length} (and <eos>) need {need} positions but the "
            f"model's context is {policy.config.block_size}; lower "
            "max_completion_length"
        )
    check_reward(reward, policy, tokenizer)
    reference.eval()


Callback = Callable[[dict], bool | None]


def _finish(record: dict, t_update: float, history: list, callback) -> bool:
    record["time/update"] = time.perf_counter() - t_update
    history.append(record)
    return bool(callback(record)) if callback is not None else False


def _check_finite(loss: torch.Tensor, step: int, method: str) -> None:
    if not torch.isfinite(loss):
        raise FloatingPointError(
            f"{method}'s loss became {float(loss)} at step {step}; the policy was not "
            "updated with it: lower learning_rate"
        )


# --------------------------------------------------------------------------------
# PPO
# --------------------------------------------------------------------------------
def train_ppo(
    policy: GPT,
    reference: GPT,
    tokenizer: CharTokenizer,
    prompt: str,
    reward: Reward,
    config: PPOConfig | None = None,
    *,
    value_model: ScalarHeadGPT | None = None,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    target: str | None = None,
) -> tuple[GPT, ScalarHeadGPT, list[dict]]:
    """PPO: per-token reward -kl_coef * KL_t (+ the score at the last token), GAE on a
    value model, clipped surrogate + vf_coef * clipped value loss, num_ppo_epochs per
    batch.

    Returns (policy, value_model, history). The value model starts as a copy of the
    reference's body with a zero head unless one is given. `callback(record)` returning
    True stops training after that step; with `target` the history also logs the share
    of samples that are exactly that completion (samples/target_share)."""
    config = config or PPOConfig()
    _prepare(policy, reference, tokenizer, prompt, reward, config, PPOConfig)
    if value_model is None:
        value_model = ScalarHeadGPT(reference, tokenizer).to(policy.device)
    policy_opt = torch.optim.Adam(policy.parameters(), lr=config.learning_rate)
    value_opt = torch.optim.Adam(value_model.parameters(), lr=config.learning_rate)
    history: list[dict] = []
    for step in range(1, config.max_steps + 1):
        ro = rollout(policy, reference, tokenizer, prompt, reward, config, generator)
        t0 = time.perf_counter()
        batch, mask = ro.batch, ro.batch.completion_mask
        with torch.no_grad():
            old_values = value_model(batch.input_ids) * mask
            per_token_kl = kl_estimate(ro.logps, ro.ref_logps, config.kl_estimator)
            rewards = -config.kl_coef * per_token_kl * mask
            rows = torch.arange(len(batch), device=mask.device)
            rewards[rows, _last_index(mask)] += ro.scores
            advantages, returns = gae(
                rewards, old_values, mask, config.gamma, config.lam
            )
            if config.whiten_advantages:
                advantages = masked_whiten(advantages, mask)
        policy.train()
        value_model.train()
        for _ in range(config.num_ppo_epochs):
            logps = batch_token_logprobs(policy, batch)
            pg_loss = clipped_surrogate_loss(
                logps, ro.logps, advantages, config.cliprange, mask
            )
            values = value_model(batch.input_ids)
            vf_loss = clipped_value_loss(
                values, old_values, returns, config.cliprange_value, mask
            )
            loss = pg_loss + config.vf_coef * vf_loss
            _check_finite(loss, step, "PPO")
            policy_opt.zero_grad(set_to_none=True)
            value_opt.zero_grad(set_to_none=True)
            loss.backward()
            policy_opt.step()
            value_opt.step()
        policy.eval()
        value_model.eval()
        record = _base_record(step, ro, config.kl_estimator, target)
        record.update(
            {
                "loss/policy_avg": float(pg_loss.detach()),
                "loss/value_avg": float(vf_loss.detach()),
                "policy/clipfrac_avg": clip_fraction(
                    logps.detach(), ro.logps, advantages, config.cliprange, mask
                ),
            }
        )
        if _finish(record, t0, history, callback):
            break
    return policy, value_model, history


# --------------------------------------------------------------------------------
# RLOO
# --------------------------------------------------------------------------------
def train_rloo(
    policy: GPT,
    reference: GPT,
    tokenizer: CharTokenizer,
    prompt: str,
    reward: Reward,
    config: RLOOConfig | None = None,
    *,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    target: str | None = None,
) -> tuple[GPT, list[dict]]:
    """RLOO: sequence reward R = score - kl_coef * sum_t k1_t, advantage R_i minus the
    mean of the other rloo_k - 1 samples of its group, a sequence-level clipped ratio.
    No value model."""
    config = config or RLOOConfig()
    _prepare(policy, reference, tokenizer, prompt, reward, config, RLOOConfig)
    opt = torch.optim.Adam(policy.parameters(), lr=config.learning_rate)
    history: list[dict] = []
    for step in range(1, config.max_steps + 1):
        ro = rollout(policy, reference, tokenizer, prompt, reward, config, generator)
        t0 = time.perf_counter()
        old = ro.logps.sum(1)
        seq_kl = old - ro.ref_logps.sum(1)
        returns = ro.scores - config.kl_coef * seq_kl
        advantages = rloo_advantages(returns.view(-1, config.rloo_k)).flatten()
        policy.train()
        for _ in range(config.num_ppo_epochs):
            logps = batch_token_logprobs(policy, ro.batch).sum(1)
            loss = clipped_surrogate_loss(logps, old, advantages, config.cliprange)
            _check_finite(loss, step, "RLOO")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        policy.eval()
        record = _base_record(step, ro, "k1", target)
        record.update(
            {
                "loss/policy_avg": float(loss.detach()),
                "policy/clipfrac_avg": clip_fraction(
                    logps.detach(), old, advantages, config.cliprange
                ),
            }
        )
        if _finish(record, t0, history, callback):
            break
    return policy, history


# --------------------------------------------------------------------------------
# GRPO
# --------------------------------------------------------------------------------
def grpo_loss(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    ref_logps: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    beta: float,
    epsilon: float,
) -> torch.Tensor:
    """GRPO: mean over rows of the per-row token mean of
    -(min(rho_t A, clip(rho_t, 1 - eps, 1 + eps) A) - beta * k3_t), k3 to pi_ref."""
    surrogate = clipped_objective(logps, old_logps, advantages[:, None], epsilon)
    per_token = -(surrogate - beta * kl_estimate(logps, ref_logps, "k3"))
    m = mask.to(per_token.dtype)
    return ((per_token * m).sum(1) / m.sum(1).clamp(min=1)).mean()


def train_grpo(
    policy: GPT,
    reference: GPT,
    tokenizer: CharTokenizer,
    prompt: str,
    reward: Reward,
    config: GRPOConfig | None = None,
    *,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    target: str | None = None,
) -> tuple[GPT, list[dict]]:
    """GRPO: advantages are the scores normalised within groups of num_generations, the
    loss is `grpo_loss` (KL in the loss, not in the reward), num_iterations updates per
    batch."""
    config = config or GRPOConfig()
    _prepare(policy, reference, tokenizer, prompt, reward, config, GRPOConfig)
    opt = torch.optim.Adam(policy.parameters(), lr=config.learning_rate)
    history: list[dict] = []
    for step in range(1, config.max_steps + 1):
        ro = rollout(policy, reference, tokenizer, prompt, reward, config, generator)
        t0 = time.perf_counter()
        mask = ro.batch.completion_mask
        advantages = grpo_advantages(
            ro.scores.view(-1, config.num_generations), config.scale_rewards
        ).flatten()
        policy.train()
        for _ in range(config.num_iterations):
            logps = batch_token_logprobs(policy, ro.batch)
            loss = grpo_loss(
                logps,
                ro.logps,
                ro.ref_logps,
                advantages,
                mask,
                config.beta,
                config.epsilon,
            )
            _check_finite(loss, step, "GRPO")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        policy.eval()
        record = _base_record(step, ro, "k3", target)
        record.update(
            {
                "loss/policy_avg": float(loss.detach()),
                "policy/clipfrac_avg": clip_fraction(
                    logps.detach(),
                    ro.logps,
                    advantages[:, None].expand_as(logps),
                    config.epsilon,
                    mask,
                ),
            }
        )
        if _finish(record, t0, history, callback):
            break
    return policy, history


def fresh_policy(reference: GPT) -> GPT:
    """A trainable copy of the reference (the policy every method starts from)."""
    policy = copy.deepcopy(reference)
    policy.requires_grad_(True)
    return policy
