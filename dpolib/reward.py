"""A learned reward model: a GPT body with a scalar head, trained with Bradley-Terry.

r_phi(x, y) = w . h_T + b, where h_T is the body's last hidden state at the end token of
<bos> x y <eos>; the loss on pairs is -mean log sigma(r_phi(x, y_w) - r_phi(x, y_l)).
The same class, read at every position, is PPO's value model.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .data import PreferencePair, validate_pairs
from .errors import describe
from .model import GPT
from .tokenizer import CharTokenizer


class ScalarHeadGPT(nn.Module):
    """A copy of a GPT whose vocabulary head is one linear unit: a scalar per position.

    Read at a sequence's last token it is a reward model; read at every position it is a
    value model."""

    def __init__(self, base: GPT, tokenizer: CharTokenizer) -> None:
        super().__init__()
        if not isinstance(base, GPT):
            raise TypeError(
                f"base must be a dpolib GPT (the food model), got {type(base).__name__}"
            )
        if base.config.vocab_size != tokenizer.vocab_size:
            raise ValueError(
                f"tokenizer has {tokenizer.vocab_size} tokens but the base model has "
                f"{base.config.vocab_size}; use the tokenizer saved with the model"
            )
        self.body = copy.deepcopy(base)
        # GPT.forward returns head(ln_f(x)): with an identity head it returns the
        # hidden states
        self.body.head = nn.Identity()  # type: ignore[assignment]  # GPT.head is a Linear
        self.score_head = nn.Linear(base.config.n_embd, 1)
        nn.init.zeros_(self.score_head.weight)
        nn.init.zeros_(self.score_head.bias)
        self.tokenizer = tokenizer
        self.body.requires_grad_(True)

    @property
    def config(self):
        return self.body.config

    @property
    def device(self) -> torch.device:
        return self.score_head.weight.device

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Scalar at every position, shape (B, T)."""
        return self.score_head(self.body(input_ids)).squeeze(-1)

    def encode(
        self,
        prompts: Sequence[str],
        completions: Sequence[str],
        finished: Sequence[bool] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-padded ids of <bos> prompt completion [<eos>], each row's last index.

        An unfinished completion (no <eos> sampled) is read at its last character."""
        if len(prompts) != len(completions):
            raise ValueError(
                f"got {len(prompts)} prompts but {len(completions)} completions; "
                "pass one prompt per completion"
            )
        if not prompts:
            raise ValueError("nothing to score: pass at least one completion")
        finished = [True] * len(prompts) if finished is None else list(finished)
        rows = [
            self.tokenizer.encode(p, bos=True) + self.tokenizer.encode(c, eos=f)
            for p, c, f in zip(prompts, completions, finished)
        ]
        T = max(len(r) for r in rows)
        if T > self.config.block_size:
            raise ValueError(
                f"a scored sequence needs {T} positions but the reward model's "
                "context is "
                f"{self.config.block_size}; shorten the completions"
            )
        ids = torch.full((len(rows), T), self.tokenizer.pad_id, dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
        last = torch.tensor([len(r) - 1 for r in rows])
        return ids.to(self.device), last.to(self.device)

    def score(
        self,
        prompts: Sequence[str],
        completions: Sequence[str],
        finished: Sequence[bool] | None = None,
    ) -> torch.Tensor:
        """r_phi(x, y) for each row, shape (B,), read at the end token."""
        ids, last = self.encode(prompts, completions, finished)
        return self(ids).gather(1, last[:, None]).squeeze(1)


class RewardModel(ScalarHeadGPT):
    """The reward model of the RLHF pipeline (a ScalarHeadGPT read at the end token)."""


def bradley_terry_loss(
    chosen_scores: torch.Tensor, rejected_scores: torch.Tensor
) -> torch.Tensor:
    """-mean log sigma(r(y_w) - r(y_l)): the preferences' negative log-likelihood."""
    if chosen_scores.shape != rejected_scores.shape or chosen_scores.dim() != 1:
        raise ValueError(
            "chosen_scores and rejected_scores must be 1-D with one entry per pair, "
            "got "
            f"{tuple(chosen_scores.shape)} and {tuple(rejected_scores.shape)}"
        )
    return -F.logsigmoid(chosen_scores - rejected_scores).mean()


@dataclass
class RewardFit:
    """A trained reward model, its loss per step and its training accuracy."""

    model: RewardModel
    losses: list[float]
    accuracy: float


def train_reward_model(
    base: GPT,
    tokenizer: CharTokenizer,
    pairs: Sequence[PreferencePair],
    steps: int = 150,
    lr: float = 3e-4,
    weight_decay: float = 0.0,
) -> RewardFit:
    """Fit r_phi on `pairs` from `base`'s body: full-batch AdamW, Bradley-Terry loss."""
    pairs = validate_pairs(pairs)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {describe(steps)}")
    if not (isinstance(lr, (int, float)) and lr > 0):
        raise ValueError(f"lr must be a number > 0, got {describe(lr)}")
    model = RewardModel(base, tokenizer).to(base.device)
    # identical rows are scored once: a pair's loss depends only on its two rows' scores
    keys = list(
        dict.fromkeys(
            [(p.prompt, p.chosen) for p in pairs]
            + [(p.prompt, p.rejected) for p in pairs]
        )
    )
    index = {k: i for i, k in enumerate(keys)}
    ci = torch.tensor([index[(p.prompt, p.chosen)] for p in pairs], device=model.device)
    ri = torch.tensor(
        [index[(p.prompt, p.rejected)] for p in pairs], device=model.device
    )
    ids, last = model.encode([k[0] for k in keys], [k[1] for k in keys])
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    model.train()
    losses = []
    for _ in range(steps):
        scores = model(ids).gather(1, last[:, None]).squeeze(1)
        loss = bradley_terry_loss(scores[ci], scores[ri])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    model.eval()
    with torch.no_grad():
        scores = model(ids).gather(1, last[:, None]).squeeze(1)
        accuracy = float((scores[ci] > scores[ri]).float().mean())
    model.requires_grad_(False)
    return RewardFit(model, losses, accuracy)


@torch.no_grad()
def reward_accuracy(model: RewardModel, pairs: Sequence[PreferencePair]) -> float:
    """Share of pairs with r_phi(y_w) > r_phi(y_l) (strict)."""
    pairs = validate_pairs(pairs)
    chosen = model.score([p.prompt for p in pairs], [p.chosen for p in pairs])
    rejected = model.score([p.prompt for p in pairs], [p.rejected for p in pairs])
    return float((chosen > rejected).float().mean())
