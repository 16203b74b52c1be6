"""The DPO loss family and its metrics. Works on log-probabilities only: it knows nothing of models.

Notation: u(y) = log pi_theta(y|x) - log pi_ref(y|x), d = u(y_w) - u(y_l), sigma the logistic function.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

LOSS_TYPES = ("sigmoid", "robust", "ipo", "hinge")
# Not a loss to train with: the DPO paper's ablation, DPO's gradient without its sigma(.) weight.
ABLATIONS = ("unweighted",)


def check_beta(beta: float) -> None:
    if isinstance(beta, torch.Tensor):
        beta = float(beta)
    if not isinstance(beta, (int, float)) or not math.isfinite(beta) or beta <= 0:
        raise ValueError(
            f"beta must be a finite number > 0, got {beta!r}; it is the strength of the KL leash "
            "(typical values 0.1 to 1; larger keeps the policy closer to the reference)"
        )


def _check_logps(**named: torch.Tensor) -> None:
    shape = None
    for name, t in named.items():
        if not isinstance(t, torch.Tensor):
            raise TypeError(
                f"{name} must be a torch.Tensor of per-sequence log-probs, got {type(t).__name__}; wrap it with torch.tensor(...)"
            )
        if t.dim() != 1:
            raise ValueError(
                f"{name} must be 1-D (one summed log-prob per pair), got shape {tuple(t.shape)}"
            )
        if shape is None:
            shape = t.shape
        elif t.shape != shape:
            raise ValueError(
                "log-prob tensors must all have the same shape (one entry per pair), got "
                + ", ".join(f"{k} {tuple(v.shape)}" for k, v in named.items())
            )
    if shape is not None and shape[0] == 0:
        raise ValueError(
            "log-prob tensors are empty; DPO needs at least one preference pair"
        )


def compute_implicit_reward(
    policy_logps: torch.Tensor, reference_logps: torch.Tensor, beta: float = 0.1
) -> torch.Tensor:
    """r_hat(x, y) = beta * (log pi_theta(y|x) - log pi_ref(y|x)), per sequence."""
    check_beta(beta)
    _check_logps(policy_logps=policy_logps, reference_logps=reference_logps)
    return beta * (policy_logps - reference_logps)


def preference_losses(
    logits: torch.Tensor,
    beta: float,
    loss_type: str = "sigmoid",
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Per-pair loss from d = u(y_w) - u(y_l):

    sigmoid  -(1-eps) log sigma(beta d) - eps log sigma(-beta d)      (DPO; eps > 0 is cDPO)
    robust   [-(1-eps) log sigma(beta d) + eps log sigma(-beta d)] / (1 - 2 eps)
    ipo      (d - 1/(2 beta))^2
    hinge    max(0, 1 - beta d)
    unweighted  -beta d   (ablation only: every pair pushed equally hard, forever)
    """
    check_beta(beta)
    if loss_type not in LOSS_TYPES + ABLATIONS:
        raise ValueError(
            f"unknown loss_type {loss_type!r}; choose one of {LOSS_TYPES} (or the ablation {ABLATIONS[0]!r})"
        )
    if not 0.0 <= label_smoothing < 0.5:
        raise ValueError(
            f"label_smoothing must be in [0, 0.5), got {label_smoothing}; it is the assumed share of flipped labels"
        )
    if label_smoothing and loss_type not in ("sigmoid", "robust"):
        raise ValueError(
            f"label_smoothing applies to the 'sigmoid' and 'robust' losses only, not {loss_type!r}"
        )
    eps = label_smoothing
    if loss_type == "sigmoid":
        return -(1 - eps) * F.logsigmoid(beta * logits) - eps * F.logsigmoid(
            -beta * logits
        )
    if loss_type == "robust":
        return (
            -(1 - eps) * F.logsigmoid(beta * logits)
            + eps * F.logsigmoid(-beta * logits)
        ) / (1 - 2 * eps)
    if loss_type == "ipo":
        return (logits - 1 / (2 * beta)) ** 2
    if loss_type == "unweighted":
        return -beta * logits
    return torch.relu(1 - beta * logits)


def compute_dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    reference_chosen_logps: torch.Tensor,
    reference_rejected_logps: torch.Tensor,
    beta: float = 0.1,
) -> torch.Tensor:
    """L = -mean log sigma(beta * [(log pi(y_w) - log pi_ref(y_w)) - (log pi(y_l) - log pi_ref(y_l))])."""
    return dpo_loss(
        policy_chosen_logps,
        policy_rejected_logps,
        reference_chosen_logps,
        reference_rejected_logps,
        beta,
    ).loss


@dataclass
class DPOOutput:
    """The batch loss, the per-pair losses, and the implicit rewards behind them."""

    loss: torch.Tensor  # scalar: (weighted) mean of `losses`
    losses: torch.Tensor  # (P,)
    chosen_rewards: torch.Tensor  # (P,) beta * u(y_w), detached
    rejected_rewards: torch.Tensor  # (P,) beta * u(y_l), detached
    policy_chosen_logps: torch.Tensor  # (P,) detached
    policy_rejected_logps: torch.Tensor  # (P,) detached
    weights: torch.Tensor | None = None

    def metrics(self) -> dict[str, float]:
        """Batch means under the names Hugging Face TRL logs, plus the loss."""

        def mean(t: torch.Tensor) -> float:
            if self.weights is None:
                return float(t.float().mean())
            return float((t.float() * self.weights).sum() / self.weights.sum())

        return {
            "loss": float(self.loss.detach()),
            "rewards/chosen": mean(self.chosen_rewards),
            "rewards/rejected": mean(self.rejected_rewards),
            "rewards/margins": mean(self.chosen_rewards - self.rejected_rewards),
            # strict: at the start every reward is 0 and no pair counts as ordered correctly
            "rewards/accuracies": mean(
                (self.chosen_rewards > self.rejected_rewards).float()
            ),
            "logps/chosen": mean(self.policy_chosen_logps),
            "logps/rejected": mean(self.policy_rejected_logps),
        }


def dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    reference_chosen_logps: torch.Tensor,
    reference_rejected_logps: torch.Tensor,
    beta: float = 0.1,
    loss_type: str = "sigmoid",
    label_smoothing: float = 0.0,
    weights: torch.Tensor | None = None,
) -> DPOOutput:
    """The loss family of `preference_losses`, averaged over pairs (weighted by `weights` if given)."""
    check_beta(beta)
    _check_logps(
        policy_chosen_logps=policy_chosen_logps,
        policy_rejected_logps=policy_rejected_logps,
        reference_chosen_logps=reference_chosen_logps,
        reference_rejected_logps=reference_rejected_logps,
    )
    chosen_u = policy_chosen_logps - reference_chosen_logps
    rejected_u = policy_rejected_logps - reference_rejected_logps
    losses = preference_losses(chosen_u - rejected_u, beta, loss_type, label_smoothing)
    if weights is None:
        loss = losses.mean()
    else:
        if weights.shape != losses.shape:
            raise ValueError(
                f"weights must have shape {tuple(losses.shape)}, got {tuple(weights.shape)}"
            )
        loss = (losses * weights).sum() / weights.sum()
    return DPOOutput(
        loss=loss,
        losses=losses,
        chosen_rewards=(beta * chosen_u).detach(),
        rejected_rewards=(beta * rejected_u).detach(),
        policy_chosen_logps=policy_chosen_logps.detach(),
        policy_rejected_logps=policy_rejected_logps.detach(),
        weights=None if weights is None else weights.detach(),
    )


def dpo_gradient_weight(
    chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor
) -> torch.Tensor:
    """sigma(r_hat(y_l) - r_hat(y_w)): how hard DPO pushes on a pair; near 1 when the pair is ordered wrongly."""
    return torch.sigmoid(rejected_rewards - chosen_rewards)


def token_kl_to_reference(
    policy_logits: torch.Tensor,
    reference_logits: torch.Tensor,
    mask: torch.Tensor,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean over rows (weighted) of sum_t KL(ref(.|t) || policy(.|t)) over masked positions: a
    teacher-forced KL that keeps the policy's next-token distributions near the reference's."""
    ref_logp = torch.log_softmax(reference_logits.float(), dim=-1)
    pol_logp = torch.log_softmax(policy_logits.float(), dim=-1)
    kl = F.kl_div(pol_logp, ref_logp, log_target=True, reduction="none").sum(
        -1
    )  # (B, T)
    per_row = (kl * mask.to(kl.dtype)).sum(-1)
    if weights is None:
        return per_row.mean()
    return (per_row * weights).sum() / weights.sum()
