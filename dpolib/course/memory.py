"""RLHF vs DPO memory as a calculator: bytes of weights, gradients and optimizer states
per model.

What it counts is the "model states" of the ZeRO paper (Rajbhandari et al. 2020):
parameters, gradients and optimizer states. It leaves out activations, the KV cache PPO
needs to generate rollouts, temporary buffers and fragmentation, which come on top and
depend on batch and sequence length. Sizes are in decimal units: 1 GB = 1e9 bytes.
"""

from __future__ import annotations

import copy
import math
import numbers
from dataclasses import dataclass, field
from typing import Callable, Iterable

import torch
import torch.nn as nn

from ..errors import describe

BYTES_PER_PARAM: dict[str, int] = {"fp32": 4, "bf16": 2, "fp16": 2, "int8": 1}
GB = 1e9  # decimal gigabyte, the unit model cards and GPU data sheets use

# Sizes for the chapter's table (number of parameters).
MODEL_SIZES: dict[str, float] = {"125M": 125e6, "1B": 1e9, "7B": 7e9, "70B": 70e9}
PIPELINES = ("ppo", "grpo", "dpo")


def bytes_per_param(precision: str) -> int:
    """Bytes one parameter takes in `precision`: fp32 4, bf16/fp16 2, int8 1."""
    if precision not in BYTES_PER_PARAM:
        raise ValueError(
            f"unknown precision {precision!r}; choose one of {tuple(BYTES_PER_PARAM)}"
        )
    return BYTES_PER_PARAM[precision]


def _check_params(n_params: float, name: str = "n_params") -> float:
    if isinstance(n_params, bool) or not isinstance(n_params, numbers.Real):
        raise TypeError(
            f"{name} must be a number of parameters (int or float such as 7e9), got "
            f"{type(n_params).__name__}"
        )
    if not math.isfinite(n_params) or n_params < 0:
        raise ValueError(
            f"{name} must be a finite number >= 0, got {n_params!r}; pass e.g. 7e9 "
            f"for a 7B model"
        )
    return float(n_params)


@dataclass(frozen=True)
class TrainingRecipe:
    """How a trained model is stored: Adam in mixed precision by default, 2 + 2 + 4 + 4
    + 4 = 16 bytes/param.

    weights and gradients in `precision`; optimizer states = an fp32 master copy of the
    weights (only when `precision` is not fp32 and `master_weights` is on) plus
    `n_moments` moments in `optimizer_precision` (Adam keeps 2: the running mean and the
    running mean of squares; SGD with momentum 1).
    """

    precision: str = "bf16"
    master_weights: bool = True
    n_moments: int = 2
    optimizer_precision: str = "fp32"

    def __post_init__(self) -> None:
        bytes_per_param(self.precision)
        bytes_per_param(self.optimizer_precision)
        if (
            isinstance(self.n_moments, bool)
            or not isinstance(self.n_moments, numbers.Integral)
            or self.n_moments < 0
        ):
            raise ValueError(
                f"n_moments must be an int >= 0 (Adam 2, SGD+momentum 1, SGD 0), got "
                f"{self.n_moments!r}"
            )

    def weight_bytes(self) -> int:
        return bytes_per_param(self.precision)

    def grad_bytes(self) -> int:
        return bytes_per_param(self.precision)

    def optimizer_bytes(self) -> int:
        # fp32 training updates the weights in place: a master copy would duplicate them
        master = 4 if self.master_weights and self.precision != "fp32" else 0
        return master + self.n_moments * bytes_per_param(self.optimizer_precision)

    def bytes_per_trained_param(self) -> int:
        return self.weight_bytes() + self.grad_bytes() + self.optimizer_bytes()


@dataclass(frozen=True)
class ModelMemory:
    """Bytes one model needs: weights, gradients and optimizer states (the last two are
    0 when frozen)."""

    name: str
    n_params: float
    trained: bool
    weights: float
    grads: float
    optimizer_states: float

    @property
    def total(self) -> float:
        return self.weights + self.grads + self.optimizer_states

    @property
    def bytes_per_param(self) -> float:
        return self.total / self.n_params if self.n_params else 0.0


def model_memory(
    name: str,
    n_params: float,
    trained: bool,
    recipe: TrainingRecipe | None = None,
    frozen_precision: str | None = None,
) -> ModelMemory:
    """Bytes = n_params * (weights + grads + optimizer) per param for a trained model,
    n_params * weights if frozen.

    A frozen model is stored in `frozen_precision` (default: the recipe's precision).
    """
    n = _check_params(n_params)
    recipe = recipe or TrainingRecipe()
    if trained:
        return ModelMemory(
            name,
            n,
            True,
            n * recipe.weight_bytes(),
            n * recipe.grad_bytes(),
            n * recipe.optimizer_bytes(),
        )
    w = bytes_per_param(frozen_precision or recipe.precision)
    return ModelMemory(name, n, False, n * w, 0.0, 0.0)


@dataclass(frozen=True)
class PipelineMemory:
    """All the models one training method keeps in memory at once, and their sum."""

    pipeline: str
    models: tuple[ModelMemory, ...]

    @property
    def total(self) -> float:
        return sum(m.total for m in self.models)

    @property
    def weights(self) -> float:
        return sum(m.weights for m in self.models)

    @property
    def n_trained(self) -> int:
        return sum(m.trained for m in self.models)

    def breakdown(self) -> str:
        """A small text table: one row per model, sizes in GB."""
        head = (
            f"{'model':<10} {'role':<8} {'weights':>9} {'grads':>9} "
            f"{'optimizer':>10} {'total':>9}"
        )
        rows = [
            f"{self.pipeline}: model states in GB (1 GB = 1e9 bytes)",
            head,
            "-" * len(head),
        ]
        for m in self.models:
            role = "trained" if m.trained else "frozen"
            rows.append(
                f"{m.name:<10} {role:<8} {m.weights / GB:>9.1f} {m.grads / GB:>9.1f} "
                f"{m.optimizer_states / GB:>10.1f} {m.total / GB:>9.1f}"
            )
        rows.append(
            f"{'total':<10} {'':<8} {'':>9} {'':>9} {'':>10} {self.total / GB:>9.1f}"
        )
        return "\n".join(rows)


def pipeline_memory(
    pipeline: str,
    n_params: float,
    recipe: TrainingRecipe | None = None,
    frozen_precision: str | None = None,
    value_params: float | None = None,
    reward_params: float | None = None,
    precomputed_reference: bool = False,
    inference_engine: bool = False,
) -> PipelineMemory:
    """Model states of PPO-RLHF (policy + value trained; reference + reward frozen),
    GRPO (policy trained; reference + reward frozen, no value model) or DPO (policy
    trained; reference frozen).

    `value_params`/`reward_params` default to the policy's size (InstructGPT used a
    smaller 6B reward model for its 175B policy: pass that here); GRPO with a verifiable
    reward (a program checks the answer) has no reward model: `reward_params=0`. With
    `precomputed_reference=True` DPO computes the reference log-probs of every pair
    once, before training, and keeps 2 numbers per pair instead of the reference model
    (PPO and GRPO cannot: their reference log-probs are of fresh samples at every step).
    `inference_engine=True` adds the copy of the policy's weights that a separate
    generation engine (vLLM, SGLang) holds for sampling rollouts, in the frozen
    precision; only the online methods sample, so DPO refuses it.
    """
    if pipeline not in PIPELINES:
        raise ValueError(f"unknown pipeline {pipeline!r}; choose one of {PIPELINES}")
    n = _check_params(n_params)
    recipe = recipe or TrainingRecipe()
    models = [model_memory("policy", n, True, recipe)]
    if pipeline == "dpo":
        if value_params is not None or reward_params is not None:
            raise ValueError(
                "DPO has no value or reward model: leave value_params and "
                "reward_params as None"
            )
        if inference_engine:
            raise ValueError(
                "inference_engine applies to PPO and GRPO only: DPO never samples "
                "from the policy, so it needs no generation engine"
            )
        if not precomputed_reference:
            models.append(model_memory("reference", n, False, recipe, frozen_precision))
        return PipelineMemory(pipeline, tuple(models))
    if precomputed_reference:
        raise ValueError(
            f"precomputed_reference applies to DPO only: {pipeline.upper()} scores "
            "fresh samples with the reference at every step"
        )
    if pipeline == "ppo":
        value = n if value_params is None else value_params
        models.append(
            model_memory("value", _check_params(value, "value_params"), True, recipe)
        )
    elif value_params is not None:
        raise ValueError(
            "GRPO has no value model (the group's mean reward is its baseline): "
            "leave value_params as None"
        )
    models.append(model_memory("reference", n, False, recipe, frozen_precision))
    reward = _check_params(
        n if reward_params is None else reward_params, "reward_params"
    )
    if reward > 0:
        models.append(model_memory("reward", reward, False, recipe, frozen_precision))
    if inference_engine:
        models.append(model_memory("engine", n, False, recipe, frozen_precision))
    return PipelineMemory(pipeline, tuple(models))


@dataclass(frozen=True)
class MemoryRow:
    """One line of the comparison table: a model size and both pipelines' totals in
    bytes."""

    size: str
    n_params: float
    weights_16bit: float
    ppo: float
    dpo: float
    dpo_precomputed: float

    @property
    def ratio(self) -> float:
        return self.ppo / self.dpo


def memory_table(
    sizes: dict[str, float] | None = None,
    recipe: TrainingRecipe | None = None,
    frozen_precision: str | None = None,
) -> list[MemoryRow]:
    """PPO-RLHF vs DPO model-state bytes for each size (default 125M, 1B, 7B, 70B)."""
    sizes = MODEL_SIZES if sizes is None else sizes
    if not sizes:
        raise ValueError("sizes is empty; pass e.g. {'7B': 7e9}")
    rows = []
    for label, n in sizes.items():
        n = _check_params(n, f"sizes[{label!r}]")
        rows.append(
            MemoryRow(
                size=label,
                n_params=n,
                weights_16bit=n * BYTES_PER_PARAM["bf16"],
                ppo=pipeline_memory("ppo", n, recipe, frozen_precision).total,
                dpo=pipeline_memory("dpo", n, recipe, frozen_precision).total,
                dpo_precomputed=pipeline_memory(
                    "dpo", n, recipe, frozen_precision, precomputed_reference=True
                ).total,
            )
        )
    return rows


def format_memory_table(rows: Iterable[MemoryRow]) -> str:
    """The table as fixed-width text, sizes in GB rounded to 2 decimals."""
    head = (
        f"{'size':>6} {'16-bit weights':>15} {'PPO-RLHF':>10} {'DPO':>10} "
        f"{'DPO, ref. precomputed':>22} {'PPO/DPO':>8}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r.size:>6} {r.weights_16bit / GB:>15.2f} {r.ppo / GB:>10.2f} "
            f"{r.dpo / GB:>10.2f} "
            f"{r.dpo_precomputed / GB:>22.2f} {r.ratio:>8.2f}"
        )
    return "\n".join(lines)


@dataclass(frozen=True)
class MeasuredMemory:
    """Bytes a torch model and its optimizer actually hold after one training step."""

    n_params: int
    weights: int  # sum over parameters of numel * element_size
    grads: int  # the same for the .grad tensors
    # optimizer tensors with a parameter's shape (Adam: exp_avg, exp_avg_sq)
    optimizer_states: int
    # the rest of the optimizer state (Adam: one scalar `step` per parameter tensor)
    optimizer_other: int
    state_names: tuple[str, ...] = field(default=())

    @property
    def total(self) -> int:
        return self.weights + self.grads + self.optimizer_states + self.optimizer_other


def _tensor_bytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def measure_training_memory(
    model: nn.Module,
    loss_fn: Callable[[nn.Module], torch.Tensor],
    optimizer_factory: Callable[..., torch.optim.Optimizer] = torch.optim.Adam,
    **optimizer_kwargs,
) -> MeasuredMemory:
    """Take one optimizer step on a copy of `model` and count the bytes of its weights,
    gradients and optimizer state.

    `loss_fn(model)` returns a scalar loss. The copy keeps the caller's model and its
    gradients untouched.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError(
            "model has no trainable parameters (requires_grad=True); nothing to measure"
        )
    work = copy.deepcopy(model)
    work.train()
    params = [p for p in work.parameters() if p.requires_grad]
    opt = optimizer_factory(params, **optimizer_kwargs)
    opt.zero_grad(set_to_none=True)
    loss = loss_fn(work)
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        raise ValueError("loss_fn(model) must return a scalar tensor")
    loss.backward()
    opt.step()
    states = other = 0
    names: set[str] = set()
    for p in params:
        for key, value in opt.state.get(p, {}).items():
            if not isinstance(value, torch.Tensor):
                continue
            names.add(key)
            # tensors shaped like the parameter scale with model size; scalars (step
            # counters) do not
            if value.shape == p.shape:
                states += _tensor_bytes(value)
            else:
                other += _tensor_bytes(value)
    return MeasuredMemory(
        n_params=sum(p.numel() for p in params),
        weights=sum(_tensor_bytes(p) for p in params),
        grads=sum(_tensor_bytes(p.grad) for p in params if p.grad is not None),
        optimizer_states=states,
        optimizer_other=other,
        state_names=tuple(sorted(names)),
    )


def _count(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {describe(value)}")
    return int(value)


def sequences_per_step(pipeline: str, batch_size: int, group_size: int = 1) -> int:
    """Sequences the trained policy runs forward and backward per optimizer step.

    DPO: 2 per pair (chosen and rejected go through the policy, so a DPO batch of B
    pairs holds the activations of 2B sequences); SFT: 1 per example; PPO: 1 per
    prompt's rollout; GRPO: `group_size` rollouts per prompt.
    """
    batch_size = _count(batch_size, "batch_size")
    group_size = _count(group_size, "group_size")
    per_item = {"sft": 1, "dpo": 2, "ppo": 1, "grpo": group_size}
    if pipeline not in per_item:
        raise ValueError(
            f"unknown pipeline {describe(pipeline)}; choose one of {tuple(per_item)}"
        )
    if group_size != 1 and pipeline != "grpo":
        raise ValueError(
            f"group_size applies to GRPO only, got group_size={group_size} for "
            f"{pipeline!r}; leave it at 1"
        )
    return per_item[pipeline] * batch_size


def measure_activation_bytes(
    model: nn.Module, loss_fn: Callable[[nn.Module], torch.Tensor]
) -> int:
    """Bytes of the tensors autograd saves for the backward pass of `loss_fn(model)`.

    Activations = what the forward pass keeps for backward (saved_tensors_hooks sees
    each one); parameters saved by reference are not counted, they are model states.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"model must be a torch.nn.Module, got {type(model).__name__}; pass the "
            "policy itself"
        )
    param_ptrs = {p.data_ptr() for p in model.parameters()}
    seen: dict[tuple[int, int, tuple[int, ...]], int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        # the same storage can be saved by several ops: count each view once
        # int(): eager tensors have a concrete offset (the stubs allow a SymInt)
        key = (t.data_ptr(), int(t.storage_offset()), tuple(t.shape))
        if t.data_ptr() not in param_ptrs:
            seen[key] = _tensor_bytes(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = loss_fn(model)
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        raise ValueError(
            f"loss_fn(model) must return a scalar tensor, got {describe(loss)}"
        )
    return sum(seen.values())


def generation_time_share(
    decode_utilisation: float, train_utilisation: float = 0.4
) -> float:
    """Share of an online RL step's compute time spent sampling rollouts:
    (2N / u_gen) / (2N / u_gen + 6N / u_train) = 1 / (1 + 3 u_gen / u_train).

    Per token, generating costs one forward pass (2N FLOPs for N parameters) and the
    update a forward and a backward pass (6N). Training processes every position at
    once and runs near `train_utilisation` of the chip's peak; decoding emits one token
    per sequence per step, is bound by reading the weights and the KV cache from
    memory, and reaches far less (`decode_utilisation`). Scoring passes and
    communication are left out.
    """
    for name, u in (
        ("decode_utilisation", decode_utilisation),
        ("train_utilisation", train_utilisation),
    ):
        if isinstance(u, bool) or not isinstance(u, numbers.Real) or not 0 < u <= 1:
            raise ValueError(
                f"{name} must be a fraction of peak FLOPs in (0, 1], got "
                f"{describe(u)}; e.g. 0.05 for decoding, 0.4 for training"
            )
    return 1.0 / (1.0 + 3.0 * decode_utilisation / train_utilisation)
