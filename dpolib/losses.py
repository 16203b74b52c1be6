"""The DPO loss family and its metrics. Works on log-probabilities only: it knows
nothing of models.

Notation: u(y) = log pi_theta(y|x) - log pi_ref(y|x), d = u(y_w) - u(y_l), sigma the
logistic function; beta * d is the reward margin (TRL's rewards/margins).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .errors import describe

LOSS_TYPES = ("sigmoid", "robust", "ipo", "hinge")
# Not a loss to train with: the DPO paper's ablation, DPO's gradient without its
# sigma(.) weight.
ABLATIONS = ("unweighted",)


# beta and 1/(2 beta) (IPO's target) must both be finite, non-zero float32 numbers: a
# beta of 1e39 is inf in float32, and inf * 0 (every d at the start) is NaN
BETA_MIN = float(torch.finfo(torch.float32).tiny)  # about 1.2e-38
BETA_MAX = float(torch.finfo(torch.float32).max)  # about 3.4e38


def check_beta(beta: float) -> None:
    """Raise unless beta is a number with BETA_MIN <= beta <= BETA_MAX (> 0, finite in
    float32)."""
    if isinstance(beta, torch.Tensor):
        if beta.numel() != 1:
            raise ValueError(
                f"beta must be one number, got a tensor of shape {tuple(beta.shape)}"
            )
        beta = float(beta)
    if isinstance(beta, bool) or not isinstance(beta, numbers.Real):
        raise TypeError(
            f"beta must be a finite number > 0, got {type(beta).__name__} "
            f"{describe(beta)}; pass a float such as 0.1"
        )
    if not math.isfinite(beta) or beta <= 0:
        raise ValueError(
            f"beta must be a finite number > 0, got {describe(beta)}; it is the "
            "strength of the KL leash (typical values 0.1 to 1; larger keeps the "
            "policy closer to the reference)"
        )
    if not BETA_MIN <= beta <= BETA_MAX:
        raise ValueError(
            f"beta must be a finite number > 0 between {BETA_MIN:.3g} and "
            f"{BETA_MAX:.3g}, got {describe(beta)}: beta * d (and IPO's "
            "1/(2 beta)) would overflow float32 to inf or NaN; typical values are "
            "0.1 to 1"
        )


def _check_logps(**named: torch.Tensor) -> None:
    """Same-shape, non-empty 1-D tensors of log-probs, or a clear error."""
    shape = None
    for name, t in named.items():
        if not isinstance(t, torch.Tensor):
            raise TypeError(
                f"{name} must be a torch.Tensor of per-sequence log-probs, got "
                f"{type(t).__name__}; wrap it with torch.tensor(...)"
            )
        if t.dim() != 1:
            raise ValueError(
                f"{name} must be 1-D (one summed log-prob per pair), got shape "
                f"{tuple(t.shape)}"
            )
        if shape is None:
            shape = t.shape
        elif t.shape != shape:
            raise ValueError(
                "log-prob tensors must all have the same shape (one entry per pair), "
                "got " + ", ".join(f"{k} {tuple(v.shape)}" for k, v in named.items())
            )
    if shape is not None and shape[0] == 0:
        raise ValueError(
            "log-prob tensors are empty; DPO needs at least one preference pair"
        )


def _check_finite(**named: torch.Tensor) -> None:
    """The reference's log-probs are data: NaN or +-inf there is a mistake upstream.

    (The policy's are left alone: a diverged policy must reach the training loop as a
    non-finite loss, which it reports as NonFiniteLossError and does not step on.)"""
    for name, t in named.items():
        bad = ~torch.isfinite(t.detach())
        if bool(bad.any()):
            i = int(bad.nonzero()[0, 0])
            raise ValueError(
                f"{name} must be finite, got {float(t[i])} at index {i} "
                f"({int(bad.sum())} of {t.numel()} entries not finite); NaN comes "
                "from a diverged reference or bad data, -inf means the reference "
                "gives the sequence probability 0 (check the targets, the mask and "
                "the reference model)"
            )


def _check_weights(weights: object, shape: torch.Size) -> torch.Tensor:
    """Per-pair weights: a tensor of `shape`, finite, >= 0, not all 0."""
    if not isinstance(weights, torch.Tensor):
        raise TypeError(
            f"weights must be a torch.Tensor of shape {tuple(shape)}, got "
            f"{type(weights).__name__} {describe(weights)}; wrap it with "
            "torch.tensor(...)"
        )
    if weights.shape != shape:
        raise ValueError(
            f"weights must have shape {tuple(shape)} (one per pair or row), got "
            f"{tuple(weights.shape)}"
        )
    w = weights.detach()
    if not bool(torch.isfinite(w).all()) or bool((w < 0).any()):
        raise ValueError(
            f"weights must be finite and >= 0, got {describe(w.tolist())}; a weight is "
            "how much a pair counts in the mean"
        )
    if not bool((w > 0).any()):
        raise ValueError(
            "weights are all 0, so the weighted mean is 0/0; give at least one pair a "
            "positive weight (or pass weights=None for a plain mean)"
        )
    return weights


def compute_implicit_reward(
    policy_logps: torch.Tensor, reference_logps: torch.Tensor, beta: float = 0.1
) -> torch.Tensor:
    """r_hat(x, y) = beta * (log pi_theta(y|x) - log pi_ref(y|x)), per sequence."""
    check_beta(beta)
    _check_logps(policy_logps=policy_logps, reference_logps=reference_logps)
    _check_finite(reference_logps=reference_logps)
    return beta * (policy_logps - reference_logps)


def preference_losses(
    logratio_diff: torch.Tensor,
    beta: float,
    loss_type: str = "sigmoid",
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Per-pair loss from logratio_diff d = u(y_w) - u(y_l) (beta * d is the reward
    margin):

    sigmoid  -(1-eps) log sigma(beta d) - eps log sigma(-beta d)   (DPO; eps > 0: cDPO)
    robust   [-(1-eps) log sigma(beta d) + eps log sigma(-beta d)] / (1 - 2 eps)
    ipo      (d - 1/(2 beta))^2
    hinge    max(0, 1 - beta d)
    unweighted  -beta d   (ablation only: every pair pushed equally hard, forever)
    """
    check_beta(beta)
    if not isinstance(logratio_diff, torch.Tensor):
        raise TypeError(
            "logratio_diff must be a torch.Tensor of d = u(y_w) - u(y_l), got "
            f"{type(logratio_diff).__name__}; wrap it with torch.tensor(...)"
        )
    if not isinstance(loss_type, str) or loss_type not in LOSS_TYPES + ABLATIONS:
        raise ValueError(
            f"unknown loss_type {describe(loss_type)}; choose one of {LOSS_TYPES} (or "
            f"the ablation {ABLATIONS[0]!r})"
        )
    if isinstance(label_smoothing, bool) or not isinstance(
        label_smoothing, numbers.Real
    ):
        raise TypeError(
            f"label_smoothing must be a float in [0, 0.5), got "
            f"{type(label_smoothing).__name__} {describe(label_smoothing)}"
        )
    if not 0.0 <= label_smoothing < 0.5:
        raise ValueError(
            f"label_smoothing must be in [0, 0.5), got {describe(label_smoothing)}; it "
            "is the assumed share of flipped labels"
        )
    if label_smoothing and loss_type not in ("sigmoid", "robust"):
        raise ValueError(
            "label_smoothing applies to the 'sigmoid' and 'robust' losses only, not "
            f"{loss_type!r}"
        )
    eps = float(label_smoothing)
    z = beta * logratio_diff
    if loss_type in ("sigmoid", "robust") and eps == 0:
        # without smoothing the second term is absent, not 0 * log sigma(-z): at
        # z = +inf that product is 0 * -inf = NaN instead of a loss of 0
        return -F.logsigmoid(z)
    if loss_type == "sigmoid":
        return -(1 - eps) * F.logsigmoid(z) - eps * F.logsigmoid(-z)
    if loss_type == "robust":
        return (-(1 - eps) * F.logsigmoid(z) + eps * F.logsigmoid(-z)) / (1 - 2 * eps)
    if loss_type == "ipo":
        return (logratio_diff - 1 / (2 * beta)) ** 2
    if loss_type == "unweighted":
        return -z
    return torch.relu(1 - z)


def compute_dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    reference_chosen_logps: torch.Tensor,
    reference_rejected_logps: torch.Tensor,
    beta: float = 0.1,
) -> torch.Tensor:
    """L = -mean log sigma(beta * [(log pi(y_w) - log pi_ref(y_w))
    - (log pi(y_l) - log pi_ref(y_l))])."""
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
            # strict: at the start every reward is 0 and no pair counts as ordered
            # correctly
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
    """The loss family of `preference_losses`, averaged over pairs (weighted by
    `weights`, finite and >= 0, if given).

    The reference's log-probs must be finite; a NaN in the policy's gives a NaN loss
    (what the training loop checks for)."""
    check_beta(beta)
    _check_logps(
        policy_chosen_logps=policy_chosen_logps,
        policy_rejected_logps=policy_rejected_logps,
        reference_chosen_logps=reference_chosen_logps,
        reference_rejected_logps=reference_rejected_logps,
    )
    _check_finite(
        reference_chosen_logps=reference_chosen_logps,
        reference_rejected_logps=reference_rejected_logps,
    )
    chosen_u = policy_chosen_logps - reference_chosen_logps
    rejected_u = policy_rejected_logps - reference_rejected_logps
    losses = preference_losses(chosen_u - rejected_u, beta, loss_type, label_smoothing)
    if weights is None:
        loss = losses.mean()
    else:
        weights = _check_weights(weights, losses.shape)
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
    """sigma(r_hat(y_l) - r_hat(y_w)) = sigma(-reward margin): how hard DPO pushes on
    a pair; near 1 when the pair is ordered wrongly."""
    return torch.sigmoid(rejected_rewards - chosen_rewards)


def token_kl_to_reference(
    policy_logits: torch.Tensor,
    reference_logits: torch.Tensor,
    mask: torch.Tensor,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean over rows (weighted) of sum_t KL(ref(.|t) || policy(.|t)) over masked
    positions: a teacher-forced KL that keeps the policy's next-token distributions
    near the reference's."""
    ref_logp = torch.log_softmax(reference_logits.float(), dim=-1)
    pol_logp = torch.log_softmax(policy_logits.float(), dim=-1)
    kl = F.kl_div(pol_logp, ref_logp, log_target=True, reduction="none").sum(
        -1
    )  # (B, T)
    per_row = (kl * mask.to(kl.dtype)).sum(-1)
    if weights is None:
        return per_row.mean()
    weights = _check_weights(weights, per_row.shape)
    return (per_row * weights).sum() / weights.sum()


# --------------------------------------------------------------------------------------
# What practitioners add to DPO (chapters 11 and 12): an NLL term on the chosen answer
# (RPO), DPO-Positive, length-normalised DPO (TRL's sigmoid_norm) and the reference-free
# SimPO. They need more than the margin d (the chosen log-ratio alone, or the lengths),
# so they sit beside `preference_losses` rather than inside it.
# --------------------------------------------------------------------------------------

PRACTICE_LOSS_TYPES = ("rpo", "dpop", "sigmoid_norm", "simpo")


def _check_lengths(name: str, lengths: torch.Tensor | None, like: torch.Tensor) -> None:
    if lengths is None:
        raise ValueError(
            f"{name} is needed by this loss: pass the number of completion tokens of "
            "each pair (EOS included), e.g. batch.completion_mask.sum(-1)"
        )
    if not isinstance(lengths, torch.Tensor) or lengths.shape != like.shape:
        got = tuple(lengths.shape) if isinstance(lengths, torch.Tensor) else lengths
        raise ValueError(
            f"{name} must be a tensor of shape {tuple(like.shape)} (one token count "
            f"per pair), got {describe(got)}"
        )
    if bool((lengths <= 0).any()):
        bad = [int(v) for v in lengths[lengths <= 0][:5]]
        raise ValueError(
            f"{name} has completions of length <= 0 ({describe(bad)}); a length-"
            "normalised loss divides by the token count, so an empty completion has "
            "no mean log-prob. Drop the empty completions (or count their EOS token)"
        )


def practice_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    reference_chosen_logps: torch.Tensor | None,
    reference_rejected_logps: torch.Tensor | None,
    beta: float,
    loss_type: str,
    *,
    chosen_lengths: torch.Tensor | None = None,
    rejected_lengths: torch.Tensor | None = None,
    rpo_alpha: float = 1.0,
    dpop_lambda: float = 5.0,
    simpo_gamma: float = 1.0,
) -> DPOOutput:
    """The practitioners' variants per pair (u log-ratio, lp log pi, |y| token count):

    rpo           -log sigma(beta d) + alpha (-lp(y_w) / |y_w|)   (DPO + NLL on chosen)
    dpop          -log sigma(beta [d - lambda max(0, -u(y_w))])   (DPO-Positive)
    sigmoid_norm  -log sigma(beta [u(y_w)/|y_w| - u(y_l)/|y_l|])   (TRL's sigmoid_norm)
    simpo         -log sigma(beta [lp(y_w)/|y_w| - lp(y_l)/|y_l|] - gamma)  (no ref)

    The rewards in the output are beta * u (for simpo, beta * the mean log-prob).
    """
    check_beta(beta)
    if loss_type not in PRACTICE_LOSS_TYPES:
        raise ValueError(
            f"unknown practice loss_type {describe(loss_type)}; choose one of "
            f"{PRACTICE_LOSS_TYPES} (the DPO family itself is in dpo_loss)"
        )
    named = {
        "policy_chosen_logps": policy_chosen_logps,
        "policy_rejected_logps": policy_rejected_logps,
    }
    if loss_type != "simpo":
        if reference_chosen_logps is None or reference_rejected_logps is None:
            raise ValueError(
                f"loss_type {loss_type!r} needs the reference's log-probs; only "
                "'simpo' is reference-free"
            )
        named["reference_chosen_logps"] = reference_chosen_logps
        named["reference_rejected_logps"] = reference_rejected_logps
    _check_logps(**named)
    if loss_type in ("rpo", "sigmoid_norm", "simpo"):
        _check_lengths("chosen_lengths", chosen_lengths, policy_chosen_logps)
    if loss_type in ("sigmoid_norm", "simpo"):
        _check_lengths("rejected_lengths", rejected_lengths, policy_rejected_logps)
    for name, value in (
        ("rpo_alpha", rpo_alpha),
        ("dpop_lambda", dpop_lambda),
        ("simpo_gamma", simpo_gamma),
    ):
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(
                f"{name} must be a finite number >= 0, got {describe(value)}"
            )

    if loss_type == "simpo":
        # checked above: simpo needs both lengths
        assert chosen_lengths is not None and rejected_lengths is not None
        chosen_u = policy_chosen_logps / chosen_lengths
        rejected_u = policy_rejected_logps / rejected_lengths
        losses = -F.logsigmoid(beta * (chosen_u - rejected_u) - simpo_gamma)
    else:
        # checked above: every loss but simpo needs the reference
        assert reference_chosen_logps is not None
        assert reference_rejected_logps is not None
        chosen_u = policy_chosen_logps - reference_chosen_logps
        rejected_u = policy_rejected_logps - reference_rejected_logps
        if loss_type == "rpo":
            assert chosen_lengths is not None  # checked above
            nll = -policy_chosen_logps / chosen_lengths
            losses = -F.logsigmoid(beta * (chosen_u - rejected_u)) + rpo_alpha * nll
        elif loss_type == "dpop":
            # > 0 only once log pi(y_w) has fallen below the reference's
            penalty = torch.relu(-chosen_u)
            d = chosen_u - rejected_u - dpop_lambda * penalty
            losses = -F.logsigmoid(beta * d)
        else:
            # checked above: sigmoid_norm needs both lengths
            assert chosen_lengths is not None and rejected_lengths is not None
            chosen_u = chosen_u / chosen_lengths
            rejected_u = rejected_u / rejected_lengths
            losses = -F.logsigmoid(beta * (chosen_u - rejected_u))
    return DPOOutput(
        loss=losses.mean(),
        losses=losses,
        chosen_rewards=(beta * chosen_u).detach(),
        rejected_rewards=(beta * rejected_u).detach(),
        policy_chosen_logps=policy_chosen_logps.detach(),
        policy_rejected_logps=policy_rejected_logps.detach(),
    )
