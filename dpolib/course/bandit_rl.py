"""PPO, RLOO and GRPO on chapter 2's bandit (one prompt, K responses, exact rewards).

A "completion" is one arm y ~ pi_theta = softmax(theta), with log-prob log pi_theta(y).
The update rules are dpolib.rl_core's, the same as the pizza run's; only the sampler
(torch.multinomial over K arms) and the reward (the vector r) differ.
KL(pi_theta || pi*) is measured against the closed form pi* = pi_ref exp(r / beta) / Z.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import describe
from ..losses import check_beta
from ..rl_core import (
    clipped_surrogate_loss,
    grpo_advantages,
    kl_estimate,
    rloo_advantages,
)
from .bandit import DTYPE, ArrayLike, _check_pair, optimal_policy

METHODS = ("exact", "rloo", "ppo", "grpo", "grpo_expected")


@dataclass
class BanditRun:
    """A trained softmax policy and KL(pi_theta || pi*) after each step (0: start)."""

    method: str
    policy: torch.Tensor
    kl_to_optimum: list[float]


def _exact_objective(
    theta: torch.Tensor, pi_ref: torch.Tensor, rewards: torch.Tensor, beta: float
) -> torch.Tensor:
    logp = torch.log_softmax(theta, 0)
    p = logp.exp()
    return (p * rewards).sum() - beta * (p * (logp - torch.log(pi_ref))).sum()


def _grpo_expected_loss(
    theta: torch.Tensor,
    pi_ref: torch.Tensor,
    rewards: torch.Tensor,
    beta: float,
    scale_rewards: bool,
) -> torch.Tensor:
    """GRPO's loss averaged exactly over y ~ pi_theta (infinitely large groups):
    advantages (r - E r) / std r, k3 differentiated through log pi_theta(y)."""
    logp = torch.log_softmax(theta, 0)
    p = (
        logp.exp().detach()
    )  # the sampling distribution, not differentiated (as with samples)
    mean = (p * rewards).sum()
    adv = rewards - mean
    if scale_rewards:
        adv = adv / ((p * adv**2).sum().sqrt() + 1e-4)
    k3 = kl_estimate(logp, torch.log(pi_ref), "k3")
    return -(p * (adv * logp)).sum() + beta * (p * k3).sum()


def bandit_rl(
    pi_ref: ArrayLike,
    rewards: ArrayLike,
    beta: float,
    method: str = "exact",
    steps: int = 500,
    lr: float = 0.05,
    num_samples: int = 64,
    group_size: int = 8,
    num_ppo_epochs: int = 2,
    cliprange: float = 0.2,
    scale_rewards: bool = True,
    generator: torch.Generator | None = None,
) -> BanditRun:
    """Maximise E_pi[r] - beta KL(pi || pi_ref) over softmax logits from pi_ref (Adam).

    exact: the exact gradient of that objective. rloo: `num_samples` arms per step,
    reward r(y) - beta log(pi/pi_ref)(y), leave-one-out baseline in groups of
    `group_size`. ppo: the same reward, a learned scalar baseline (the value model of a
    one-step episode), clipped ratio, `num_ppo_epochs` per batch. grpo: group-normalised
    r (no KL in the reward) and beta * k3 in the loss. grpo_expected: GRPO's loss
    averaged exactly over pi_theta."""
    check_beta(beta)
    pi_ref, rewards = _check_pair(pi_ref, rewards, positive=True)
    if method not in METHODS:
        raise ValueError(f"unknown method {describe(method)}; choose one of {METHODS}")
    for name, v, low in (
        ("steps", steps, 1),
        ("num_samples", num_samples, 2),
        ("group_size", group_size, 2),
        ("num_ppo_epochs", num_ppo_epochs, 1),
    ):
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise ValueError(f"{name} must be an int >= {low}, got {describe(v)}")
    if num_samples % group_size:
        raise ValueError(
            f"num_samples ({num_samples}) must be a multiple of group_size "
            f"({group_size})"
        )
    if not cliprange > 0:
        raise ValueError(f"cliprange must be > 0, got {describe(cliprange)}")
    target = optimal_policy(pi_ref, rewards, beta)
    logref = torch.log(pi_ref)
    theta = logref.clone().requires_grad_(True)
    baseline = torch.zeros((), dtype=DTYPE, requires_grad=True)
    opt = torch.optim.Adam([theta], lr=lr)
    value_opt = torch.optim.Adam([baseline], lr=lr)
    log_target = torch.log(target)

    def gap() -> float:  # KL(pi_theta || pi*), inline: it is measured after every step
        logp = torch.log_softmax(theta.detach(), 0)
        return max(float((logp.exp() * (logp - log_target)).sum()), 0.0)

    curve = [gap()]
    for _ in range(steps):
        if method in ("exact", "grpo_expected"):
            opt.zero_grad()
            if method == "exact":
                loss = -_exact_objective(theta, pi_ref, rewards, beta)
            else:
                loss = _grpo_expected_loss(theta, pi_ref, rewards, beta, scale_rewards)
            loss.backward()
            opt.step()
        else:
            _sampled_step(
                method,
                theta,
                baseline,
                opt,
                value_opt,
                logref,
                rewards,
                beta,
                num_samples,
                group_size,
                num_ppo_epochs,
                cliprange,
                scale_rewards,
                generator,
            )
        curve.append(gap())
    return BanditRun(method, torch.softmax(theta.detach(), 0), curve)


def _sampled_step(
    method: str,
    theta: torch.Tensor,
    baseline: torch.Tensor,
    opt: torch.optim.Optimizer,
    value_opt: torch.optim.Optimizer,
    logref: torch.Tensor,
    rewards: torch.Tensor,
    beta: float,
    num_samples: int,
    group_size: int,
    num_ppo_epochs: int,
    cliprange: float,
    scale_rewards: bool,
    generator: torch.Generator | None,
) -> None:
    with torch.no_grad():
        old_logp = torch.log_softmax(theta, 0)
        arms = torch.multinomial(
            old_logp.exp(), num_samples, replacement=True, generator=generator
        )
        old = old_logp[arms]
        # RLOO and PPO put the KL in the reward: r(y) - beta * k1(y)
        shaped = rewards[arms] - beta * (old - logref[arms])
        if method == "rloo":
            adv = rloo_advantages(shaped.view(-1, group_size)).flatten()
        elif method == "ppo":
            adv = shaped - baseline
        else:
            adv = grpo_advantages(
                rewards[arms].view(-1, group_size), scale_rewards
            ).flatten()
    epochs = 1 if method == "rloo" else num_ppo_epochs
    for _ in range(epochs):
        logp = torch.log_softmax(theta, 0)[arms]
        loss = clipped_surrogate_loss(logp, old, adv, cliprange)
        if method == "grpo":
            loss = loss + beta * kl_estimate(logp, logref[arms], "k3").mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    if method == "ppo":
        value_opt.zero_grad()
        ((baseline - shaped) ** 2).mean().backward()
        value_opt.step()


def grpo_fixed_point(
    pi_ref: ArrayLike,
    rewards: ArrayLike,
    beta: float,
    scale_rewards: bool = True,
    steps: int = 600,
) -> torch.Tensor:
    """Where GRPO's expected update is zero, pi_i (r_i - E r) / sigma =
    beta (pi_i - pi_ref_i) (sigma = 1 without scale_rewards): `grpo_expected` run to
    convergence."""
    return bandit_rl(
        pi_ref,
        rewards,
        beta,
        "grpo_expected",
        steps=steps,
        lr=0.05,
        scale_rewards=scale_rewards,
    ).policy
