"""One prompt, K responses (a "bandit"): the KL-regularised optimum in closed form, and
DPO checked against it.

Notation: pi_ref the reference distribution over the K responses, r their rewards, beta
> 0, pi* = pi_ref exp(r/beta) / Z with Z = sum_y pi_ref(y) exp(r(y)/beta). Everything is
computed in float64: the checks compare KL divergences down to 1e-12.

DPO's minimiser is pi* under two assumptions: the preferences follow Bradley-Terry with
the same reward r, P(y_w > y_l) = sigma(r(y_w) - r(y_l)), and the comparison graph (the
responses as nodes, an edge for every pair compared with positive weight) is connected.
Then the fitted log-ratios are pinned up to one constant: not every pair needs to appear
(the K - 1 adjacent pairs of a chain suffice), and how pairs are drawn only shapes the
finite-sample error. Two groups that are never compared with each other keep one free
constant each. Real preference data satisfies neither assumption exactly.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Sequence

import torch

from ..errors import describe
from ..evaluate import kl_divergence
from ..losses import check_beta, dpo_loss

DTYPE = torch.float64
ArrayLike = torch.Tensor | Sequence[float]


def _as_vector(x: ArrayLike, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        try:
            x = torch.as_tensor(x, dtype=DTYPE)
        except (TypeError, ValueError) as err:
            raise TypeError(
                f"{name} must be a 1-D tensor or a list of numbers, got "
                f"{type(x).__name__}"
            ) from err
    x = x.to(DTYPE)
    if x.dim() != 1:
        raise ValueError(
            f"{name} must be 1-D (one entry per response), got shape {tuple(x.shape)}"
        )
    if x.numel() < 2:
        raise ValueError(
            f"{name} needs at least 2 responses to compare, got {x.numel()}"
        )
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} must be finite, got {x.tolist()}")
    return x


def _check_probs(p: ArrayLike, name: str, positive: bool = False) -> torch.Tensor:
    p = _as_vector(p, name)
    if (p < 0).any():
        raise ValueError(
            f"{name} has negative entries {p.tolist()}; a probability distribution is "
            f">= 0"
        )
    if abs(float(p.sum()) - 1.0) > 1e-6:
        raise ValueError(
            f"{name} must sum to 1, got {float(p.sum()):.6g}; normalise it with p / "
            f"p.sum()"
        )
    if positive and (p == 0).any():
        raise ValueError(
            f"{name} gives probability 0 to responses "
            f"{torch.nonzero(p == 0).flatten().tolist()}: they never appear in "
            "preference pairs, so DPO learns nothing about them; give every response "
            "positive reference probability"
        )
    return p


def _check_pair(
    pi_ref: ArrayLike, rewards: ArrayLike, positive: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    pi_ref = _check_probs(pi_ref, "pi_ref", positive)
    rewards = _as_vector(rewards, "rewards")
    if rewards.shape != pi_ref.shape:
        raise ValueError(
            f"rewards has shape {tuple(rewards.shape)} but pi_ref has "
            f"{tuple(pi_ref.shape)}; give one reward per response"
        )
    return pi_ref, rewards


def _log(p: torch.Tensor) -> torch.Tensor:
    return torch.log(
        p
    )  # log 0 = -inf on purpose: a response the reference never produces stays at 0


def make_bandit(
    k: int = 8, generator: torch.Generator | None = None, reward_scale: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """A random bandit: pi_ref = softmax(z) with z ~ N(0, 1), rewards ~ reward_scale *
    N(0, 1)."""
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 2:
        raise ValueError(f"k must be an int >= 2 (number of responses), got {k!r}")
    pi_ref = torch.softmax(torch.randn(k, generator=generator, dtype=DTYPE), dim=0)
    rewards = reward_scale * torch.randn(k, generator=generator, dtype=DTYPE)
    return pi_ref, rewards


def log_partition(pi_ref: ArrayLike, rewards: ArrayLike, beta: float) -> torch.Tensor:
    """log Z = log sum_y pi_ref(y) exp(r(y)/beta), by logsumexp so that exp(r/beta)
    never overflows."""
    check_beta(beta)
    pi_ref, rewards = _check_pair(pi_ref, rewards)
    return torch.logsumexp(_log(pi_ref) + rewards / beta, dim=0)


def optimal_policy(pi_ref: ArrayLike, rewards: ArrayLike, beta: float) -> torch.Tensor:
    """pi*(y) = pi_ref(y) exp(r(y)/beta) / Z: the maximiser of E_pi[r] - beta KL(pi ||
    pi_ref), as a softmax in log space."""
    check_beta(beta)
    pi_ref, rewards = _check_pair(pi_ref, rewards)
    return torch.softmax(_log(pi_ref) + rewards / beta, dim=0)


def kl(p: ArrayLike, q: ArrayLike) -> float:
    """KL(p || q) = sum_y p(y) log(p(y)/q(y)) by dpolib's one rule
    (`dpolib.evaluate.kl_divergence`): 0 log 0 = 0; +inf where q = 0 < p."""
    p = _check_probs(p, "p")
    q = _check_probs(q, "q")
    if p.shape != q.shape:
        raise ValueError(
            f"p and q must have the same shape, got {tuple(p.shape)} and "
            f"{tuple(q.shape)}"
        )
    return kl_divergence(p.tolist(), q.tolist())


def expected_reward(pi: ArrayLike, rewards: ArrayLike) -> float:
    """E_{y~pi}[r(y)] = sum_y pi(y) r(y)."""
    pi, rewards = _check_pair(pi, rewards)
    return float((pi * rewards).sum())


def rlhf_objective(
    pi: ArrayLike, pi_ref: ArrayLike, rewards: ArrayLike, beta: float
) -> float:
    """J(pi) = E_{y~pi}[r(y)] - beta KL(pi || pi_ref), the objective RLHF maximises."""
    check_beta(beta)
    pi, rewards = _check_pair(pi, rewards)
    pi_ref = _check_probs(pi_ref, "pi_ref")
    if pi_ref.shape != pi.shape:
        raise ValueError(
            f"pi has shape {tuple(pi.shape)} but pi_ref has {tuple(pi_ref.shape)}"
        )
    return expected_reward(pi, rewards) - beta * kl(pi, pi_ref)


def _all_pairs(k: int) -> tuple[torch.Tensor, torch.Tensor]:
    i, j = torch.meshgrid(torch.arange(k), torch.arange(k), indexing="ij")
    off = i != j  # y_w == y_l has d = 0 whatever the policy: a constant, no gradient
    return i[off], j[off]


def _pair_loss(
    logits: torch.Tensor,
    pi_ref: torch.Tensor,
    chosen: torch.Tensor,
    rejected: torch.Tensor,
    weights: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    logp = torch.log_softmax(logits, dim=0)
    logref = _log(pi_ref)
    # The GPT chapters call the same function with per-sequence log-probs; here a
    # "sequence" is one response.
    return dpo_loss(
        logp[chosen],
        logp[rejected],
        logref[chosen],
        logref[rejected],
        beta=beta,
        weights=weights,
    ).loss


def _check_logits(logits: torch.Tensor, k: int) -> torch.Tensor:
    if not isinstance(logits, torch.Tensor):
        raise TypeError(
            f"logits_theta must be a torch.Tensor (it carries the gradient), got "
            f"{type(logits).__name__}"
        )
    if logits.shape != (k,):
        raise ValueError(
            f"logits_theta must have shape ({k},), one logit per response, got "
            f"{tuple(logits.shape)}"
        )
    return logits


def _check_compared(compared: object, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        pairs = [(int(i), int(j)) for i, j in compared]  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        raise TypeError(
            f"compared must be a list of (i, j) index pairs, got {describe(compared)}"
        ) from None
    if not pairs or any(i == j or not (0 <= i < k and 0 <= j < k) for i, j in pairs):
        raise ValueError(
            f"compared must list pairs of different responses in [0, {k - 1}], got "
            f"{describe(compared)}"
        )
    unique = sorted({(min(i, j), max(i, j)) for i, j in pairs})
    i = torch.tensor([a for a, _ in unique] + [b for _, b in unique])
    j = torch.tensor([b for _, b in unique] + [a for a, _ in unique])
    return i, j


def expected_dpo_loss(
    logits_theta: torch.Tensor,
    pi_ref: ArrayLike,
    rewards: ArrayLike,
    beta: float,
    compared: Sequence[tuple[int, int]] | None = None,
) -> torch.Tensor:
    """E[-log sigma(beta d)] over pairs y_1, y_2 ~ pi_ref (y_1 != y_2) labelled by
    Bradley-Terry with reward r.

    Ordered pair (w, l) gets weight pi_ref(w) pi_ref(l) sigma(r(w) - r(l)); the loss is
    the weighted mean of `dpolib.losses.dpo_loss` over the K(K-1) ordered pairs,
    differentiable in `logits_theta` (pi_theta = softmax). With `compared`, a list of
    unordered pairs (i, j), only those pairs are compared, each with weight 1 (w, l
    weighted sigma(r(w) - r(l))). Its minimiser is pi* exactly when the compared pairs
    form a connected graph: every pair has positive weight here.
    """
    check_beta(beta)
    pi_ref, rewards = _check_pair(pi_ref, rewards, positive=True)
    logits = _check_logits(logits_theta, pi_ref.numel())
    if compared is None:
        chosen, rejected = _all_pairs(pi_ref.numel())
        draw = pi_ref[chosen] * pi_ref[rejected]
    else:
        chosen, rejected = _check_compared(compared, pi_ref.numel())
        draw = torch.ones(chosen.numel(), dtype=DTYPE)
    weights = draw * torch.sigmoid(rewards[chosen] - rewards[rejected])
    return _pair_loss(logits.to(DTYPE), pi_ref, chosen, rejected, weights, beta)


def comparison_components(
    k: int, chosen: torch.Tensor, rejected: torch.Tensor
) -> list[list[int]]:
    """The connected components of the comparison graph: K responses, one edge per
    compared pair; DPO pins the log-ratios within a component up to one constant."""
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 2:
        raise ValueError(f"k must be an int >= 2 (responses), got {describe(k)}")
    chosen, rejected = _check_index_pairs((chosen, rejected), int(k))
    parent = list(range(k))

    def root(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for a, b in zip(chosen.tolist(), rejected.tolist()):
        parent[root(a)] = root(b)
    groups: dict[int, list[int]] = {}
    for a in range(k):
        groups.setdefault(root(a), []).append(a)
    return sorted(groups.values())


def sample_preference_pairs(
    pi_ref: ArrayLike,
    rewards: ArrayLike,
    n: int,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """n pairs (chosen, rejected) of response indices: two different responses drawn
    from pi_ref, labelled by Bradley-Terry.

    Drawing y_1, y_2 ~ pi_ref and keeping only y_1 != y_2 gives pair (i, j) probability
    proportional to pi_ref(i) pi_ref(j), the weights of `expected_dpo_loss`; y_1 wins
    with probability sigma(r(y_1) - r(y_2)).
    """
    pi_ref, rewards = _check_pair(pi_ref, rewards)
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"n must be an int >= 1 (number of pairs), got {n!r}")
    if int((pi_ref > 0).sum()) < 2:
        raise ValueError(
            "pi_ref puts all its mass on one response: no pair of different responses "
            "can be drawn"
        )
    firsts, seconds = [], []
    have = 0
    while have < n:  # rejection of ties; each round keeps 1 - sum pi_ref^2 of its draws
        draws = torch.multinomial(
            pi_ref, 2 * (n - have) + 16, replacement=True, generator=generator
        ).view(-1, 2)
        keep = draws[draws[:, 0] != draws[:, 1]][: n - have]
        firsts.append(keep[:, 0])
        seconds.append(keep[:, 1])
        have += keep.shape[0]
    y1, y2 = torch.cat(firsts), torch.cat(seconds)
    first_wins = torch.rand(n, generator=generator, dtype=DTYPE) < torch.sigmoid(
        rewards[y1] - rewards[y2]
    )
    return torch.where(first_wins, y1, y2), torch.where(first_wins, y2, y1)


@dataclass
class DPOFit:
    """A fitted softmax policy: its logits, its probabilities, and the loss after each
    optimizer step."""

    logits: torch.Tensor
    policy: torch.Tensor
    losses: list[float]


def _minimise(
    loss_fn, init: torch.Tensor, method: str, steps: int, lr: float | None
) -> tuple[torch.Tensor, list[float]]:
    if method not in ("lbfgs", "adam"):
        raise ValueError(
            f"unknown method {method!r}; choose 'lbfgs' (exact, small problems) or "
            f"'adam'"
        )
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    theta = init.detach().clone().to(DTYPE).requires_grad_(True)
    history: list[float] = []
    if method == "lbfgs":
        opt = torch.optim.LBFGS(
            [theta],
            lr=1.0 if lr is None else lr,
            max_iter=20,
            history_size=20,
            tolerance_grad=1e-14,
            tolerance_change=1e-16,
            line_search_fn="strong_wolfe",
        )

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = loss_fn(theta)
            loss.backward()
            return loss

        for _ in range(steps):
            history.append(float(opt.step(closure).detach()))
    else:
        opt = torch.optim.Adam([theta], lr=0.05 if lr is None else lr)
        for _ in range(steps):
            opt.zero_grad()
            loss = loss_fn(theta)
            loss.backward()
            opt.step()
            history.append(float(loss.detach()))
    return theta.detach(), history


def fit_dpo(
    pi_ref: ArrayLike,
    beta: float,
    rewards: ArrayLike | None = None,
    pairs: tuple[torch.Tensor, torch.Tensor] | None = None,
    method: str = "lbfgs",
    steps: int = 50,
    lr: float | None = None,
    init_logits: torch.Tensor | None = None,
    compared: Sequence[tuple[int, int]] | None = None,
) -> DPOFit:
    """Minimise the DPO loss over a softmax policy's logits, starting at pi_ref (or
    `init_logits`).

    Give exactly one of `rewards` (the exact expected loss of `expected_dpo_loss`) or
    `pairs` = (chosen, rejected) index tensors (the mean loss over those pairs; repeated
    pairs are merged into counts, same value and gradient); with `rewards`, `compared`
    restricts the exact loss to those unordered pairs. method 'lbfgs' runs `steps`
    L-BFGS rounds of up to 20 iterations; 'adam' runs `steps` Adam steps (lr 0.05). With
    finitely many pairs the minimiser is the maximum-likelihood fit to those pairs, not
    pi*, and it may not exist: if the data are separable (some response never loses)
    that fit pushes logits without bound, and `steps` stops it.
    """
    check_beta(beta)
    if (rewards is None) == (pairs is None):
        raise ValueError(
            "give exactly one of rewards (exact expected loss) or pairs (sampled "
            "preference data)"
        )
    if compared is not None and rewards is None:
        raise ValueError(
            "compared restricts the exact expected loss: pass it with rewards, not "
            "with pairs (sampled pairs already say which responses were compared)"
        )
    pi_ref = _check_probs(pi_ref, "pi_ref", positive=True)
    k = pi_ref.numel()
    init = torch.log(pi_ref) if init_logits is None else _check_logits(init_logits, k)
    if rewards is not None:
        pi_ref, rewards = _check_pair(pi_ref, rewards, positive=True)

        def loss_fn(theta: torch.Tensor) -> torch.Tensor:
            return expected_dpo_loss(theta, pi_ref, rewards, beta, compared)
    else:
        chosen, rejected = _check_index_pairs(pairs, k)
        # merge repeated (chosen, rejected) rows: with K responses there are at most
        # K(K-1) distinct ones
        codes, counts = torch.unique(chosen * k + rejected, return_counts=True)
        uc, ur, w = codes // k, codes % k, counts.to(DTYPE)

        def loss_fn(theta: torch.Tensor) -> torch.Tensor:
            return _pair_loss(theta, pi_ref, uc, ur, w, beta)

    theta, history = _minimise(loss_fn, init, method, steps, lr)
    return DPOFit(logits=theta, policy=torch.softmax(theta, dim=0), losses=history)


def _check_index_pairs(pairs: object, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    if not (
        isinstance(pairs, (tuple, list))
        and len(pairs) == 2
        and all(isinstance(t, torch.Tensor) for t in pairs)
    ):
        raise TypeError(
            "pairs must be a tuple (chosen, rejected) of index tensors, as "
            "sample_preference_pairs returns"
        )
    chosen, rejected = (t.long() for t in pairs)
    if chosen.dim() != 1 or chosen.shape != rejected.shape or chosen.numel() == 0:
        raise ValueError(
            f"chosen and rejected must be non-empty 1-D tensors of equal length, got "
            f"{tuple(chosen.shape)} and {tuple(rejected.shape)}"
        )
    if (
        int(torch.minimum(chosen, rejected).min()) < 0
        or int(torch.maximum(chosen, rejected).max()) >= k
    ):
        raise ValueError(f"pair indices must lie in [0, {k - 1}]")
    return chosen, rejected


def fit_rlhf(
    pi_ref: ArrayLike,
    rewards: ArrayLike,
    beta: float,
    method: str = "lbfgs",
    steps: int = 50,
    lr: float | None = None,
) -> DPOFit:
    """Maximise J(pi) = E_pi[r] - beta KL(pi || pi_ref) directly over softmax logits
    (exact gradients; no sampling, no PPO).

    A numerical check of the closed form: it should reach J(pi*) and never exceed it.
    `losses` holds -J.
    """
    check_beta(beta)
    pi_ref, rewards = _check_pair(pi_ref, rewards, positive=True)
    logref = torch.log(pi_ref)

    def neg_objective(theta: torch.Tensor) -> torch.Tensor:
        logp = torch.log_softmax(theta, dim=0)
        p = logp.exp()
        return -((p * rewards).sum() - beta * (p * (logp - logref)).sum())

    # start at the uniform policy, not at pi_ref, so the optimizer has real work to do
    theta, history = _minimise(
        neg_objective, torch.zeros_like(pi_ref), method, steps, lr
    )
    return DPOFit(logits=theta, policy=torch.softmax(theta, dim=0), losses=history)


@dataclass
class TradeOff:
    """For each beta: the optimal policy's expected reward, its KL to pi_ref, and the
    objective value."""

    betas: torch.Tensor
    expected_reward: torch.Tensor
    kl: torch.Tensor
    objective: torch.Tensor
    policies: torch.Tensor  # (len(betas), K)


def tradeoff_curve(pi_ref: ArrayLike, rewards: ArrayLike, betas: ArrayLike) -> TradeOff:
    """E_{pi*_beta}[r] and KL(pi*_beta || pi_ref) over a grid of beta: larger beta,
    smaller KL, lower reward."""
    pi_ref, rewards = _check_pair(pi_ref, rewards)
    betas_t = torch.as_tensor(betas, dtype=DTYPE).flatten()
    if betas_t.numel() == 0:
        raise ValueError("betas is empty; pass e.g. torch.logspace(-2, 2, 50)")
    policies, rew, kls, obj = [], [], [], []
    for b in betas_t.tolist():
        p = optimal_policy(pi_ref, rewards, b)
        policies.append(p)
        rew.append(expected_reward(p, rewards))
        kls.append(kl(p, pi_ref))
        obj.append(rew[-1] - b * kls[-1])
    return TradeOff(
        betas=betas_t,
        expected_reward=torch.tensor(rew, dtype=DTYPE),
        kl=torch.tensor(kls, dtype=DTYPE),
        objective=torch.tensor(obj, dtype=DTYPE),
        policies=torch.stack(policies),
    )


def frontier_reward(
    pi_ref: ArrayLike, rewards: ArrayLike, kl_budget: float, tol: float = 1e-12
) -> float:
    """max E_pi[r] subject to KL(pi || pi_ref) <= kl_budget: the reward pi*_beta earns
    at the beta where its KL equals the budget.

    KL(pi*_beta || pi_ref) falls from -log pi_ref(best responses) (beta -> 0) to 0 (beta
    -> infinity), so beta is found by bisection on log beta. Any budget at or past the
    top buys the best reward. Why pi*_beta is the maximiser: a policy with the same KL
    and more reward would have a larger E[r] - beta KL, contradicting the theorem.
    """
    pi_ref, rewards = _check_pair(pi_ref, rewards)
    if (
        isinstance(kl_budget, bool)
        or not isinstance(kl_budget, numbers.Real)
        or math.isnan(kl_budget)
        or kl_budget < 0
    ):
        raise ValueError(f"kl_budget must be a number >= 0 (nats), got {kl_budget!r}")
    best = rewards == rewards.max()
    kl_max = -math.log(float(pi_ref[best].sum()))
    if kl_budget >= kl_max:
        return float(rewards.max())
    if kl_budget == 0:
        return expected_reward(pi_ref, rewards)
    lo, hi = -30.0, 30.0  # log beta; KL(pi*_beta) decreases in beta
    while hi - lo > tol:
        mid = (lo + hi) / 2
        if kl(optimal_policy(pi_ref, rewards, math.exp(mid)), pi_ref) > kl_budget:
            lo = mid
        else:
            hi = mid
    return expected_reward(optimal_policy(pi_ref, rewards, math.exp(hi)), rewards)
