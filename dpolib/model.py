"""A tiny decoder-only transformer in the spirit of nanoGPT, plus sampling."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .tokenizer import CharTokenizer

KV = tuple[
    torch.Tensor, torch.Tensor
]  # one layer's keys and values, (batch, heads, time, head_dim)


@dataclass
class GPTConfig:
    """Shape of the model: vocabulary, context length (block_size) and width/depth."""

    vocab_size: int
    block_size: int = 32
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 64
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.n_embd % self.n_head:
            raise ValueError(
                f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})"
            )
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    def to_dict(self) -> dict:
        return asdict(self)


class CausalSelfAttention(nn.Module):
    """Multi-head attention where position t sees positions <= t only."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.n_head = cfg.n_head
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.dropout = cfg.dropout

    def forward(
        self, x: torch.Tensor, past: KV | None = None, cache: list[KV] | None = None
    ) -> torch.Tensor:
        """Attend over `past` keys/values (a shared prefix, batch 1 or B) and x's own; append the keys and
        values to `cache` when one is given."""
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        # (B, T, C) -> (B, heads, T, C/heads)
        q, k, v = (
            t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
            for t in (q, k, v)
        )
        dropout = self.dropout if self.training else 0.0
        if past is None:
            y = F.scaled_dot_product_attention(
                q, k, v, is_causal=True, dropout_p=dropout
            )
        else:
            P = past[0].shape[2]
            k = torch.cat([past[0].expand(B, -1, -1, -1), k], dim=2)
            v = torch.cat([past[1].expand(B, -1, -1, -1), v], dim=2)
            # new token i sits at position P + i: it sees the whole prefix and new tokens <= i
            mask = torch.ones(T, P + T, dtype=torch.bool, device=x.device).tril(
                diagonal=P
            )
            y = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, dropout_p=dropout
            )
        if cache is not None:
            cache.append((k, v))
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.n_embd)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.n_embd)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.n_embd, 4 * cfg.n_embd),
            nn.GELU(),
            nn.Linear(4 * cfg.n_embd, cfg.n_embd),
            nn.Dropout(cfg.dropout),
        )

    def forward(
        self, x: torch.Tensor, past: KV | None = None, cache: list[KV] | None = None
    ) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), past, cache)
        return x + self.mlp(self.ln2(x))


@dataclass
class Sample:
    """One sampled sequence: `text` is prompt + completion, `completion` has no special tokens."""

    text: str
    completion: str
    finished: bool  # True when the model emitted the end token within the length limit


class GPT(nn.Module):
    """Token + position embeddings, `n_layer` blocks, a final norm and a linear head to vocabulary logits."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.config = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.pos_emb = nn.Embedding(cfg.block_size, cfg.n_embd)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd)
        self.head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.apply(self._init_weights)
        # GPT-2's scaled init of residual projections keeps the residual stream's variance flat in depth.
        for name, p in self.named_parameters():
            if name.endswith("proj.weight") or name.endswith("mlp.2.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @property
    def device(self) -> torch.device:
        return self.head.weight.device

    def forward(
        self,
        input_ids: torch.Tensor,
        past: list[KV] | None = None,
        cache: list[KV] | None = None,
    ) -> torch.Tensor:
        """Logits of shape (batch, time, vocab) for ids of shape (batch, time).

        `past` (from `prefix_cache`) is a prefix every row shares: the ids continue it, and it is computed
        once instead of once per row, with the same logits. `cache`, if given, collects each layer's keys
        and values."""
        if input_ids.dim() != 2:
            raise ValueError(
                f"input_ids must have shape (batch, time), got {tuple(input_ids.shape)}"
            )
        P = 0 if past is None else past[0][0].shape[2]
        T = P + input_ids.shape[1]
        if T > self.config.block_size:
            raise ValueError(
                f"sequence of {T} tokens is longer than the model's context ({self.config.block_size}); "
                "shorten the prompt/completion or build a model with a larger block_size"
            )
        pos = torch.arange(P, T, device=input_ids.device)
        x = self.tok_emb(input_ids) + self.pos_emb(pos)
        for i, block in enumerate(self.blocks):
            x = block(x, None if past is None else past[i], cache)
        return self.head(self.ln_f(x))

    def prefix_cache(self, prefix_ids: torch.Tensor) -> list[KV]:
        """Keys and values of every layer for a prefix of shape (1, P), to pass as `past`."""
        if prefix_ids.dim() != 2 or prefix_ids.shape[0] != 1:
            raise ValueError(
                f"a shared prefix has shape (1, length), got {tuple(prefix_ids.shape)}"
            )
        cache: list[KV] = []
        self(prefix_ids, cache=cache)
        return cache

    @torch.no_grad()
    def sample_batch(
        self,
        tokenizer: CharTokenizer,
        prompt: str,
        num_samples: int,
        max_completion_len: int = 20,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> list[Sample]:
        """Draw `num_samples` completions of `prompt` in one batch (ancestral sampling at `temperature`).

        Draws happen on the CPU with `generator`, so a seed gives the same samples on any device.
        """
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        if temperature <= 0:
            raise ValueError(
                f"temperature must be > 0, got {temperature}; use a small value such as 1e-3 for near-greedy"
            )
        prefix = tokenizer.encode(prompt, bos=True)
        if len(prefix) - 1 + max_completion_len > self.config.block_size:
            raise ValueError(
                f"prompt {prompt!r} ({len(prompt)} characters) plus max_completion_len={max_completion_len} exceeds the "
                f"model's context of {self.config.block_size} tokens; use a shorter prompt or a smaller max_completion_len"
            )
        was_training = self.training
        self.eval()
        ids = torch.tensor([prefix] * num_samples, dtype=torch.long, device=self.device)
        done = torch.zeros(num_samples, dtype=torch.bool)
        new_tokens: list[torch.Tensor] = []
        for _ in range(max_completion_len):
            logits = self(ids)[:, -1, :].float().cpu() / temperature
            nxt = torch.multinomial(
                torch.softmax(logits, dim=-1), 1, generator=generator
            ).squeeze(1)
            nxt = torch.where(done, torch.full_like(nxt, tokenizer.pad_id), nxt)
            new_tokens.append(nxt)
            done |= nxt == tokenizer.eos_id
            if bool(done.all()):
                break
            ids = torch.cat([ids, nxt.unsqueeze(1).to(self.device)], dim=1)
        self.train(was_training)
        out = []
        for row in torch.stack(new_tokens, dim=1).tolist():
            finished = tokenizer.eos_id in row
            body = row[: row.index(tokenizer.eos_id)] if finished else row
            completion = tokenizer.decode(body)
            out.append(
                Sample(
                    text=prompt + completion, completion=completion, finished=finished
                )
            )
        return out

    def sample(
        self,
        tokenizer: CharTokenizer,
        prompt: str,
        max_completion_len: int = 20,
        device: torch.device | str | None = None,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> Sample:
        """Sample one completion of `prompt`; `device` moves the model first when given."""
        if device is not None:
            self.to(device)
        return self.sample_batch(
            tokenizer, prompt, 1, max_completion_len, temperature, generator
        )[0]
