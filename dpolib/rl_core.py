"""The formulas of on-policy RL for language models, on tensors only (no models).

Notation: ratio rho = pi_theta(y) / pi_old(y) = exp(logp - old_logp), A an advantage,
epsilon the clip range, k a group size. Each function states its formula in one line.
"""

from __future__ import annotations

import torch

from .errors import describe

KL_ESTIMATORS = ("k1", "k2", "k3")


def _check_positive(value: float, name: str, fix: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a number > 0, got {describe(value)}; {fix}")


def kl_estimate(
    logps: torch.Tensor, ref_logps: torch.Tensor, kind: str = "k1"
) -> torch.Tensor:
    """Per-sample estimates of KL(pi || pi_ref) for y ~ pi, log r = ref_logps - logps:
    k1 = -log r, k2 = (log r)^2 / 2, k3 = r - 1 - log r (k1, k3 unbiased; k3 >= 0)."""
    if kind not in KL_ESTIMATORS:
        raise ValueError(
            f"unknown KL estimator {describe(kind)}; choose one of {KL_ESTIMATORS}"
        )
    log_r = ref_logps - logps
    if kind == "k1":
        return -log_r
    if kind == "k2":
        return 0.5 * log_r**2
    return torch.expm1(log_r) - log_r


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """sum(x * mask) / sum(mask), or the plain mean without a mask."""
    if mask is None:
        return x.mean()
    m = mask.to(x.dtype)
    return (x * m).sum() / m.sum().clamp(min=1)


def masked_whiten(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(x - mean) / std over the masked entries, 0 outside (PPO's normalisation)."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    return (x - mean) * torch.rsqrt(var + 1e-8) * mask


def clipped_surrogate_loss(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    advantages: torch.Tensor,
    cliprange: float,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """PPO's loss -mean min(rho A, clip(rho, 1 - eps, 1 + eps) A),
    rho = exp(logps - old_logps)."""
    _check_positive(cliprange, "cliprange", "PPO clips the ratio to [1 - eps, 1 + eps]")
    return -masked_mean(
        clipped_objective(logps, old_logps, advantages, cliprange), mask
    )


def clipped_objective(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    advantages: torch.Tensor,
    cliprange: float,
) -> torch.Tensor:
    """Per element min(rho A, clip(rho, 1 - eps, 1 + eps) A), rho = exp(logps -
    old_logps), unreduced (PPO, GRPO and TRL's GRPO variants reduce it differently)."""
    ratio = torch.exp(logps - old_logps)
    clipped = torch.clamp(ratio, 1 - cliprange, 1 + cliprange)
    return torch.minimum(ratio * advantages, clipped * advantages)


def clip_fraction(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    advantages: torch.Tensor,
    cliprange: float,
    mask: torch.Tensor | None = None,
) -> float:
    """Share of entries where min() keeps the clipped term (their gradient is 0)."""
    ratio = torch.exp(logps - old_logps)
    clipped = torch.clamp(ratio, 1 - cliprange, 1 + cliprange)
    active = (clipped * advantages < ratio * advantages).to(ratio.dtype)
    return float(masked_mean(active, mask))


def clipped_value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    cliprange_value: float,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """1/2 mean max((V - R)^2, (V_old + clip(V - V_old, -eps, eps) - R)^2)."""
    _check_positive(cliprange_value, "cliprange_value", "it limits the value update")
    clipped = old_values + torch.clamp(
        values - old_values, -cliprange_value, cliprange_value
    )
    loss = torch.maximum((values - returns) ** 2, (clipped - returns) ** 2)
    return 0.5 * masked_mean(loss, mask)


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    gamma: float = 1.0,
    lam: float = 0.95,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over masked positions of each row (B, T):
    delta_t = r_t + gamma V_{t+1} - V_t, A_t = delta_t + gamma lam A_{t+1};
    returns (A, A + V).

    V_{t+1} and A_{t+1} are 0 past a row's last masked position (the episode's end).
    """
    if not (rewards.shape == values.shape == mask.shape) or rewards.dim() != 2:
        raise ValueError(
            "rewards, values and mask must share one (batch, time) shape, got "
            f"{tuple(rewards.shape)}, {tuple(values.shape)}, {tuple(mask.shape)}"
        )
    m = mask.to(values.dtype)
    values = values * m
    advantages = torch.zeros_like(values)
    next_value = torch.zeros_like(values[:, 0])
    next_adv = torch.zeros_like(values[:, 0])
    for t in reversed(range(values.shape[1])):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        adv = (delta + gamma * lam * next_adv) * m[:, t]
        advantages[:, t] = adv
        # outside the mask (prompt, padding) nothing carries over to earlier positions
        next_value = values[:, t] * m[:, t]
        next_adv = adv
    return advantages, advantages + values


def rloo_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """A_i = R_i - mean_{j != i} R_j within each group: rows of shape (G, k), k >= 2."""
    if rewards.dim() != 2 or rewards.shape[1] < 2:
        raise ValueError(
            "RLOO needs groups of k >= 2 samples (shape (groups, k)) so that every "
            "sample has "
            f"others to form its baseline, got shape {tuple(rewards.shape)}"
        )
    k = rewards.shape[1]
    baseline = (rewards.sum(1, keepdim=True) - rewards) / (k - 1)
    return rewards - baseline


def grpo_advantages(
    rewards: torch.Tensor, scale_rewards: bool = True, eps: float = 1e-4
) -> torch.Tensor:
    """A_i = (R_i - mean_group R) / (std_group R + eps) per group row (G, k), k >= 2;
    without `scale_rewards` only the mean is removed."""
    if rewards.dim() != 2 or rewards.shape[1] < 2:
        raise ValueError(
            "GRPO normalises within groups of num_generations >= 2 samples (a group "
            "of 1 has "
            f"zero standard deviation), got rewards of shape {tuple(rewards.shape)}"
        )
    centred = rewards - rewards.mean(1, keepdim=True)
    if not scale_rewards:
        return centred
    return centred / (rewards.std(1, keepdim=True) + eps)
