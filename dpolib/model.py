"""A tiny decoder-only transformer in the spirit of nanoGPT, plus sampling."""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import describe
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
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            # bool is an int subclass and 32.0 a float: both are typos, not sizes
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise TypeError(
                    f"{name} must be an int, got {type(value).__name__} "
                    f"{describe(value)}; pass a whole number such as 32"
                )
            if value < 1:
                raise ValueError(
                    f"{name} must be >= 1, got {describe(value)}; "
                    "every size of the model is a positive count"
                )
            setattr(self, name, int(value))
        if self.n_embd % self.n_head:
            raise ValueError(
                f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head}); "
                "each head gets n_embd / n_head dimensions"
            )
        d = self.dropout
        if isinstance(d, bool) or not isinstance(d, numbers.Real):
            raise TypeError(
                f"dropout must be a float, got {type(d).__name__} {describe(d)}"
            )
        if not 0.0 <= d < 1.0:
            raise ValueError(
                f"dropout must be in [0, 1), got {describe(d)}; "
                "it is the share of activations zeroed in training"
            )
        self.dropout = float(d)

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
        """Attend over `past` keys/values (batch 1 or B) and x's own; append the keys
        and values, past included, to `cache` when one is given."""
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
            # new token i sits at position P + i: it sees all of `past`, new tokens <= i
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
class SampledTokens:
    """Sampled completions as ids: `tokens` (rows, steps) ends each finished row with
    <eos> and pads it after; `logprobs` holds log softmax(logits / temperature) of each
    drawn token (0 on padding; at temperature 1, log pi(y_t | x, y_<t))."""

    tokens: torch.Tensor  # (B, L) long, on the CPU
    logprobs: torch.Tensor  # (B, L) float32, on the CPU
    finished: torch.Tensor  # (B,) bool: the row emitted <eos> within the length limit


@dataclass
class Sample:
    """One sampled sequence: `text` is prompt + completion, `completion` has no special
    tokens."""

    text: str
    completion: str
    finished: bool  # True when the model emitted the end token within the length limit


class GPT(nn.Module):
    """Token + position embeddings, `n_layer` blocks, a final norm and a linear head to
    vocabulary logits."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.config = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.pos_emb = nn.Embedding(cfg.block_size, cfg.n_embd)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd)
        self.head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.apply(self._init_weights)
        # GPT-2's scaled init of residual projections keeps the residual stream's
        # variance flat in depth.
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

        `past` (from `prefix_cache`, or the `cache` of an earlier call) holds keys
        and values of the positions before the ids, batch 1 (shared by every row) or
        one per row: the ids continue it, with the logits of reading everything at
        once. `cache`, if given, collects each layer's keys and values, past included.
        """
        P = 0 if past is None else past[0][0].shape[2]
        T = P + self._check_ids(input_ids, P)
        pos = torch.arange(P, T, device=input_ids.device)
        x = self.tok_emb(input_ids) + self.pos_emb(pos)
        for i, block in enumerate(self.blocks):
            x = block(x, None if past is None else past[i], cache)
        return self.head(self.ln_f(x))

    def _check_ids(self, input_ids: torch.Tensor, P: int) -> int:
        """The number of new positions in `input_ids`, after checking its type, shape,
        ids and length (P positions come before it)."""
        if not isinstance(input_ids, torch.Tensor):
            raise TypeError(
                f"input_ids must be a torch.Tensor of token ids, got "
                f"{type(input_ids).__name__} {describe(input_ids)}; "
                "wrap the ids with torch.tensor([...])"
            )
        if input_ids.dim() != 2:
            raise ValueError(
                f"input_ids must have shape (batch, time), got {tuple(input_ids.shape)}"
            )
        if input_ids.dtype not in (torch.long, torch.int32):
            raise TypeError(
                f"input_ids must hold integer token ids, got dtype {input_ids.dtype}; "
                "build them with dtype=torch.long"
            )
        T = P + input_ids.shape[1]
        if T > self.config.block_size:
            raise ValueError(
                f"sequence of {T} tokens is longer than the model's context "
                f"({self.config.block_size}); shorten the prompt/completion or build a "
                "model with a larger block_size"
            )
        V = self.config.vocab_size
        outside = (input_ids < 0) | (input_ids >= V)
        if bool(outside.any()):
            bad = input_ids[outside][:10].tolist()
            raise ValueError(
                f"input_ids holds ids outside the vocabulary [0, {V}): "
                f"{describe(bad)}; encode the text with the tokenizer this model was "
                "built for"
            )
        return input_ids.shape[1]

    def prefix_cache(self, prefix_ids: torch.Tensor) -> list[KV]:
        """Keys and values of every layer for a prefix of shape (1, P), for `past`."""
        if prefix_ids.dim() != 2 or prefix_ids.shape[0] != 1:
            raise ValueError(
                f"a shared prefix has shape (1, length), got {tuple(prefix_ids.shape)}"
            )
        cache: list[KV] = []
        self(prefix_ids, cache=cache)
        return cache

    @torch.no_grad()
    def sample_tokens(
        self,
        tokenizer: CharTokenizer,
        prompt: str,
        num_samples: int,
        max_completion_len: int = 20,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        *,
        use_cache: bool = True,
    ) -> SampledTokens:
        """Draw `num_samples` completions: y_t ~ softmax(logits_t / temperature).

        With `use_cache` (the default) the prompt is read once into a key/value cache
        and each new token costs one position; rows that emitted <eos> leave the
        batch. The draws happen on the CPU with `generator`, one (num_samples, vocab)
        draw per step however many rows still run, so a seed gives the same tokens on
        any device and with or without the cache (`use_cache=False` re-reads every
        whole sequence at every step: the plain reference path)."""
        _check_count("num_samples", num_samples)
        _check_count("max_completion_len", max_completion_len)
        if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real):
            raise TypeError(
                "temperature must be a finite number > 0, got "
                f"{type(temperature).__name__} {describe(temperature)}"
            )
        if not math.isfinite(temperature) or temperature <= 0:
            raise ValueError(
                "temperature must be a finite number > 0, got "
                f"{describe(temperature)}; 1 samples the model as it is, a small "
                "value such as 1e-3 is near-greedy"
            )
        if not isinstance(prompt, str):
            raise TypeError(
                f"prompt must be a str, got {type(prompt).__name__} {describe(prompt)}"
            )
        prefix = tokenizer.encode(prompt, bos=True)
        # the last sampled token is never read back, so it needs no position
        if len(prefix) - 1 + max_completion_len > self.config.block_size:
            raise ValueError(
                f"prompt {describe(prompt)} ({len(prompt)} characters) plus "
                f"max_completion_len={max_completion_len} exceeds the model's context "
                f"of {self.config.block_size} tokens; use a shorter prompt or a "
                "smaller max_completion_len"
            )
        was_training = self.training
        self.eval()
        try:
            decode = self._decode_cached if use_cache else self._decode_uncached
            tokens, logprobs = decode(
                prefix,
                num_samples,
                max_completion_len,
                float(temperature),
                generator,
                tokenizer.eos_id,
                tokenizer.pad_id,
            )
        finally:
            self.train(was_training)
        finished = (tokens == tokenizer.eos_id).any(1)
        return SampledTokens(tokens, logprobs, finished)

    def _draw(
        self,
        logits: torch.Tensor,
        temperature: float,
        generator: torch.Generator | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One token per row from softmax(logits / temperature), and its log-prob."""
        logits = logits.cpu()
        nxt = torch.multinomial(
            torch.softmax(logits.float() / temperature, dim=-1), 1, generator=generator
        ).squeeze(1)
        # the log-prob keeps the model's precision (float64 for a model in float64)
        wide = logits if logits.dtype == torch.float64 else logits.float()
        logp = torch.log_softmax(wide / temperature, dim=-1)
        return nxt, logp.gather(1, nxt.unsqueeze(1)).squeeze(1)

    def _decode_uncached(
        self,
        prefix: list[int],
        n: int,
        steps: int,
        temperature: float,
        generator: torch.Generator | None,
        eos_id: int,
        pad_id: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The reference sampler: every step reads every row's whole sequence again."""
        ids = torch.tensor([prefix] * n, dtype=torch.long, device=self.device)
        done = torch.zeros(n, dtype=torch.bool)
        tokens, logps = [], []
        for _ in range(steps):
            nxt, logp = self._draw(self(ids)[:, -1, :], temperature, generator)
            nxt = torch.where(done, torch.full_like(nxt, pad_id), nxt)
            tokens.append(nxt)
            logps.append(logp.masked_fill(done, 0.0))
            done |= nxt == eos_id
            if bool(done.all()):
                break
            ids = torch.cat([ids, nxt.unsqueeze(1).to(self.device)], dim=1)
        return torch.stack(tokens, dim=1), torch.stack(logps, dim=1)

    def _decode_cached(
        self,
        prefix: list[int],
        n: int,
        steps: int,
        temperature: float,
        generator: torch.Generator | None,
        eos_id: int,
        pad_id: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Incremental decoding: the prompt once (batch 1), then one position per
        step for the rows still running, their keys and values kept per layer."""
        cache: list[KV] = []
        prompt = torch.tensor([prefix], dtype=torch.long, device=self.device)
        logits = self(prompt, cache=cache)[:, -1, :].expand(n, -1)
        past = cache
        done = torch.zeros(n, dtype=torch.bool)
        running = torch.arange(n)  # the rows whose keys and values `past` holds
        full = torch.zeros(n, logits.shape[-1], dtype=logits.dtype)
        tokens, logps = [], []
        for step in range(steps):
            # the draw always covers all n rows so the generator advances exactly as in
            # the uncached path; finished rows' draws are discarded
            full[running] = logits.cpu()
            nxt, logp = self._draw(full, temperature, generator)
            nxt = torch.where(done, torch.full_like(nxt, pad_id), nxt)
            tokens.append(nxt)
            logps.append(logp.masked_fill(done, 0.0))
            done |= nxt == eos_id
            if bool(done.all()) or step == steps - 1:
                break
            keep = ~done[running]
            if not bool(keep.all()):
                # finished rows leave the batch (a batch-1 prompt cache needs nothing)
                rows = keep.nonzero().squeeze(1).to(self.device)
                if past[0][0].shape[0] > 1:
                    past = [(k[rows], v[rows]) for k, v in past]
                running = running[keep]
            cache = []
            step_ids = nxt[running].unsqueeze(1).to(self.device)
            logits = self(step_ids, past=past, cache=cache)[:, -1, :]
            past = cache
        return torch.stack(tokens, dim=1), torch.stack(logps, dim=1)

    @torch.no_grad()
    def sample_batch(
        self,
        tokenizer: CharTokenizer,
        prompt: str,
        num_samples: int,
        max_completion_len: int = 20,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        *,
        use_cache: bool = True,
    ) -> list[Sample]:
        """Draw `num_samples` completions of `prompt` in one batch (ancestral
        sampling at `temperature`), decoded to text; see `sample_tokens`.

        Draws happen on the CPU with `generator`, so a seed gives the same samples on
        any device.
        """
        drawn = self.sample_tokens(
            tokenizer,
            prompt,
            num_samples,
            max_completion_len,
            temperature,
            generator,
            use_cache=use_cache,
        )
        out = []
        for row in drawn.tokens.tolist():
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
        """Sample one completion of `prompt`; `device` moves the model there first."""
        if device is not None:
            self.to(device)
        return self.sample_batch(
            tokenizer, prompt, 1, max_completion_len, temperature, generator
        )[0]


def _check_count(name: str, value: object) -> None:
    """A positive int (not a bool, not 2.5), or a clear error naming `name`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"{name} must be an int, got {type(value).__name__} {describe(value)}"
        )
    if value < 1:
        raise ValueError(
            f"{name} must be >= 1, got {describe(value)}; ask for at least one"
        )
