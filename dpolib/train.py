"""Batched DPO: `dpo_step` (the loss on one batch of pairs) and `train_dpo` (the loop).

`run_dpo_episodes` is the original text's entry point (an "episode" there is an epoch:
one pass over every pair), kept as a wrapper that builds a `DPOConfig`. Pretraining
lives in `dpolib.pretrain` and is re-exported here."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from tqdm.auto import tqdm

from .checkpoint import save_checkpoint
from .config import DPOConfig, check_finite
from .data import PreferencePair, validate_pairs
from .errors import describe
from .logprobs import (
    PairBatch,
    SequenceBatch,
    batch_logprobs,
    build_batch,
    build_pair_batch,
)
from .losses import (
    PRACTICE_LOSS_TYPES,
    check_beta,
    dpo_loss,
    practice_loss,
    token_kl_to_reference,
)
from .model import GPT
from .pretrain import NonFiniteLossError, pretrain, progress_disabled, warmup_cosine
from .resume import resume_dpo, run_fingerprint
from .tokenizer import CharTokenizer

__all__ = [
    "Anchor",
    "NonFiniteLossError",
    "PreparedPairs",
    "dpo_step",
    "naive_dpo_epoch",
    "pretrain",
    "run_dpo_episodes",
    "train_dpo",
    "warmup_cosine",
]


@dataclass
class Anchor:
    """Rows whose next-token distributions the policy must keep close to the
    reference's: adds weight * KL(pi_ref || pi_theta), teacher-forced over the rows'
    completion tokens.

    DPO's beta only leashes the prompts in the preference data; an anchor on other
    prompts keeps the rest of the model where it was."""

    prompts: Sequence[str]
    completions: Sequence[str]
    counts: Sequence[float]
    weight: float = 3.0

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """Raise unless there are as many counts as rows, each finite and > 0, and the
        weight is a finite number >= 0."""
        n = len(self.prompts)
        if n == 0 or len(self.completions) != n or len(self.counts) != n:
            raise ValueError(
                f"an Anchor needs one completion and one count per prompt, got "
                f"{n} prompts, {len(self.completions)} completions and "
                f"{len(self.counts)} counts"
            )
        counts = torch.as_tensor(self.counts, dtype=torch.float64)
        if counts.shape != (n,) or not (counts.isfinite() & (counts > 0)).all():
            raise ValueError(
                "anchor counts must be finite numbers > 0 (how often each row "
                "occurs), "
                f"got {describe(counts.tolist())}"
            )
        check_finite("anchor weight", self.weight, 0.0)


def _check_pair_models(policy: GPT, reference: GPT, tokenizer: CharTokenizer) -> None:
    if policy is reference:
        raise ValueError(
            "policy and reference_policy are the same object; the reference must be a "
            "frozen copy (copy.deepcopy(policy) before training)"
        )
    if policy.config != reference.config:
        raise ValueError(
            f"policy and reference have different configs ({policy.config} vs "
            f"{reference.config}); DPO compares log-probs of the same model family: "
            "load the reference from the policy's starting checkpoint"
        )
    if policy.config.vocab_size != tokenizer.vocab_size:
        raise ValueError(
            f"tokenizer has {tokenizer.vocab_size} tokens but the models have "
            f"{policy.config.vocab_size}; use the tokenizer saved with the model"
        )
    for name, model in (("policy", policy), ("reference", reference)):
        if not all(p.isfinite().all() for p in model.parameters()):
            raise ValueError(
                f"the {name} has non-finite weights (NaN or inf); reload it from a "
                "good "
                "checkpoint before training"
            )


def _check_optimizer(optimizer: torch.optim.Optimizer, policy: GPT, reference: GPT):
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(
            f"optimizer must be a torch.optim.Optimizer, got {describe(optimizer)}"
        )
    held = {id(p) for g in optimizer.param_groups for p in g["params"]}
    if held & {id(p) for p in reference.parameters()}:
        raise ValueError(
            "the optimizer holds the reference's parameters, so training would move "
            "the "
            "reference and never the policy; build it after the copy: "
            "policy = copy.deepcopy(reference); torch.optim.Adam(policy.parameters())"
        )
    if not held & {id(p) for p in policy.parameters()}:
        raise ValueError(
            "the optimizer holds none of the policy's parameters; build it on them: "
            "torch.optim.Adam(policy.parameters(), lr=...)"
        )


@dataclass
class PreparedPairs:
    """What never changes during a DPO run: the batched rows of the pairs, the
    reference's log-probs of them, and the anchor's rows with the reference's logits on
    them."""

    data: PairBatch
    ref_logps: torch.Tensor
    anchor: Anchor | None = None
    anchor_rows: SequenceBatch | None = None
    anchor_ref_logits: torch.Tensor | None = None
    anchor_counts: torch.Tensor | None = None

    @classmethod
    def prepare(
        cls,
        pairs: list[PreferencePair],
        policy: GPT,
        reference: GPT,
        tokenizer: CharTokenizer,
        config: DPOConfig,
        anchor: Anchor | None = None,
    ) -> "PreparedPairs":
        device, block = policy.device, policy.config.block_size
        reference.to(device).eval()
        data = build_pair_batch(
            tokenizer, pairs, block, config.merge_identical_rows, device
        )
        # the reference never changes: its log-probs are computed once
        with torch.no_grad():
            prepared = cls(
                data, batch_logprobs(reference, data.rows, config.average_logprobs)
            )
            if anchor is not None:
                prepared.anchor = anchor
                prepared.anchor_rows = build_batch(
                    tokenizer, anchor.prompts, anchor.completions, block, device
                )
                prepared.anchor_ref_logits = reference(prepared.anchor_rows.input_ids)
                prepared.anchor_counts = torch.as_tensor(
                    anchor.counts, dtype=torch.float32, device=device
                )
        return prepared


def dpo_step(
    policy: GPT, prepared: PreparedPairs, idx: torch.Tensor, config: DPOConfig
) -> tuple[torch.Tensor, dict]:
    """The loss on pairs `idx` (DPO, plus the anchor's KL if any) and its metrics under
    TRL's names; for loss_type "sigmoid", -log sigmoid(beta (u_w - u_l)) with
    u = log pi_theta - log pi_ref, averaged over the pairs."""
    ci, ri = prepared.data.chosen_index[idx], prepared.data.rejected_index[idx]
    # forward only the distinct rows this batch needs, chosen and rejected together
    needed, inverse = torch.unique(torch.cat([ci, ri]), return_inverse=True)
    rows = prepared.data.rows.select(needed)
    logps = batch_logprobs(policy, rows, config.average_logprobs)
    n = len(idx)
    pc, pr = logps[inverse[:n]], logps[inverse[n:]]  # policy, chosen and rejected
    rc, rr = prepared.ref_logps[ci], prepared.ref_logps[ri]
    if config.loss_type in PRACTICE_LOSS_TYPES:
        lengths = rows.completion_mask.sum(-1).float()  # tokens, end token included
        lc, lr = lengths[inverse[:n]], lengths[inverse[n:]]
        out = practice_loss(
            pc,
            pr,
            rc,
            rr,
            config.beta,
            config.loss_type,
            chosen_lengths=lc,
            rejected_lengths=lr,
            rpo_alpha=config.rpo_alpha,
            dpop_lambda=config.dpop_lambda,
            simpo_gamma=config.simpo_gamma,
        )
    else:
        out = dpo_loss(
            pc, pr, rc, rr, config.beta, config.loss_type, config.label_smoothing
        )
    loss, record = out.loss, out.metrics()
    if config.loss_type in PRACTICE_LOSS_TYPES:
        record["nll/chosen"] = float((-pc.detach() / lc).mean())
    if prepared.anchor is not None:
        kl = _anchor_kl(policy, prepared)
        loss = loss + prepared.anchor.weight * kl
        record["anchor/kl"] = float(kl.detach())
        record["loss/total"] = float(loss.detach())
    return loss, record


def _anchor_kl(policy: GPT, prepared: PreparedPairs) -> torch.Tensor:
    assert prepared.anchor_rows is not None and prepared.anchor_ref_logits is not None
    return token_kl_to_reference(
        policy(prepared.anchor_rows.input_ids),
        prepared.anchor_ref_logits,
        prepared.anchor_rows.completion_mask,
        prepared.anchor_counts,
    )


def train_dpo(
    policy: GPT,
    reference: GPT,
    tokenizer: CharTokenizer,
    pairs: Sequence[PreferencePair],
    optimizer: torch.optim.Optimizer,
    config: DPOConfig,
    *,
    anchor: Anchor | None = None,
    callback: Callable[[dict], None] | None = None,
    resume_from: str | os.PathLike | None = None,
    generator: torch.Generator | None = None,
    progress: bool | None = None,
) -> tuple[GPT, list[dict]]:
    """Train `policy` with DPO against the frozen `reference`; returns (policy,
    history).

    Reference log-probs are computed once; each step is one `dpo_step` and one optimizer
    step, and `history` holds its metrics (TRL's names). `callback(record)` runs after
    each step. A NaN loss or weight stops training with the policy restored to its last
    finite state. With `resume_from` (a checkpoint this function wrote, for the same
    pairs, reference, settings and optimizer class), the weights, the optimizer's state
    (its moments; the lr stays the new optimizer's) and the shuffle are restored, and
    the run ends exactly where an uninterrupted one would."""
    run = _Run(
        policy, reference, tokenizer, pairs, optimizer, config, anchor, generator
    )
    history: list[dict] = []
    start = 0
    if resume_from is not None:
        history, start = resume_dpo(
            resume_from, policy, optimizer, config, run.pairs, reference, generator
        )
    epochs = range(start, config.num_train_epochs)
    policy.train()
    for epoch in tqdm(epochs, desc="DPO", disable=progress_disabled(progress)):
        for idx in run.minibatches():
            loss, record = dpo_step(policy, run.prepared, idx, config)
            record = {"epoch": epoch + 1, "step": len(history) + 1, **record}
            run.update(loss, record)
            history.append(record)
            if callback is not None:
                callback(record)
        run.end_of_epoch(epoch + 1, history)
    policy.eval()
    return policy, history


class _Run:
    """The bookkeeping of `train_dpo`'s loop: checks, guarded updates, checkpoints."""

    def __init__(
        self,
        policy: GPT,
        reference: GPT,
        tokenizer: CharTokenizer,
        pairs: Sequence[PreferencePair],
        optimizer: torch.optim.Optimizer,
        config: DPOConfig,
        anchor: Anchor | None,
        generator: torch.Generator | None,
    ) -> None:
        if not isinstance(config, DPOConfig):
            raise TypeError(
                f"config must be a dpolib.DPOConfig, got {describe(config)}; "
                "build one with DPOConfig(beta=..., num_train_epochs=...)"
            )
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(
                f"generator must be a torch.Generator, got {describe(generator)}"
            )
        if anchor is not None:
            anchor.check()  # its fields may have changed since it was built
        self.pairs = validate_pairs(pairs)
        _check_pair_models(policy, reference, tokenizer)
        if not any(p.requires_grad for p in policy.parameters()):
            raise ValueError(
                "the policy has no trainable parameters (requires_grad is False "
                "everywhere); was it copied from a frozen model? call "
                "policy.requires_grad_(True)"
            )
        _check_optimizer(optimizer, policy, reference)
        if config.checkpoint_dir is not None:
            _check_writable(Path(config.checkpoint_dir))
        self.policy, self.reference, self.tokenizer = policy, reference, tokenizer
        self.optimizer, self.config, self.generator = optimizer, config, generator
        self.prepared = PreparedPairs.prepare(
            self.pairs, policy, reference, tokenizer, config, anchor
        )
        self.params = list(policy.parameters())
        self.last_checkpoint: Path | None = None

    def minibatches(self) -> list[torch.Tensor]:
        """Pair indices for one epoch: all at once, or a seeded shuffle cut into
        batches."""
        n, size = len(self.pairs), self.config.per_device_train_batch_size
        device = self.policy.device
        if size is None or size >= n:
            return [torch.arange(n, device=device)]
        order = torch.randperm(n, generator=self.generator)
        return list(order.to(device).split(size))

    def update(self, loss: torch.Tensor, record: dict) -> None:
        """One optimizer step on `loss`, undone if it makes any weight non-finite."""
        where = f"epoch {record['epoch']}, step {record['step']}"
        if not torch.isfinite(loss):
            self._stop(
                f"the loss became {loss.item()} at {where}; the policy was not updated"
            )
        # a copy of the weights to fall back on (the optimizer's moments are not copied:
        # that would make every step a quarter slower)
        before = [p.detach().clone() for p in self.params]
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if not _all_finite(self.params):
            with torch.no_grad():
                for p, w in zip(self.params, before):
                    p.copy_(w)
            self._stop(
                f"the optimizer step at {where} made weights non-finite; the policy "
                "was restored to its state before it (the optimizer's moments were "
                "not: build a new optimizer, or resume from a checkpoint)"
            )

    def _stop(self, what: str) -> None:
        last = (
            f"the last checkpoint is {self.last_checkpoint}"
            if self.last_checkpoint is not None
            else "no checkpoint was written"
        )
        raise NonFiniteLossError(
            f"{what} (its weights are finite; {last}). Lower the learning rate or "
            "raise "
            "beta, then resume from the last checkpoint"
        )

    def end_of_epoch(self, epoch: int, history: list[dict]) -> None:
        """Print and checkpoint when the config asks for it."""
        cfg = self.config
        if cfg.print_every and epoch % cfg.print_every == 0:
            r = history[-1]
            tqdm.write(
                f"epoch {epoch:4d} | loss {r['loss']:.4f} | margin "
                f"{r['rewards/margins']:+.3f} | accuracy {r['rewards/accuracies']:.2f} "
                "| "
                f"logps/chosen {r['logps/chosen']:.3f}"
            )
        if cfg.checkpoint_dir is None:
            return
        every = cfg.checkpoint_every
        if (every is None and epoch == cfg.num_train_epochs) or (
            every is not None and epoch % every == 0
        ):
            extra: dict[str, Any] = {"history": history, **self.fingerprint()}
            if self.generator is not None:
                extra["generator_state"] = self.generator.get_state()
            self.last_checkpoint = save_checkpoint(
                Path(cfg.checkpoint_dir) / f"dpo_epoch_{epoch:04d}.pt",
                self.policy,
                self.tokenizer,
                self.optimizer,
                step=epoch,
                kind="dpo",
                **extra,
            )

    def fingerprint(self) -> dict[str, Any]:
        """What a resume must match: settings, pairs, reference, optimizer class."""
        return run_fingerprint(self.config, self.pairs, self.reference, self.optimizer)


def _all_finite(tensors: Sequence[torch.Tensor]) -> bool:
    """Whether every entry is finite: one fused norm, confirmed exactly if it is not
    finite (a norm overflows for huge but finite weights)."""
    if torch.nn.utils.get_total_norm(tensors).isfinite():
        return True
    return all(bool(t.isfinite().all()) for t in tensors)


def _check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".dpolib-write-test.", dir=folder)
        os.close(fd)
        os.unlink(name)
    except OSError as e:
        raise ValueError(
            f"checkpoint_dir {describe(str(folder))} cannot be written "
            f"({type(e).__name__}: {e.strerror or e}); pass a folder you can write to"
        ) from e


def run_dpo_episodes(
    num_epochs: int,
    preference_dataset: Sequence[PreferencePair],
    policy: GPT,
    reference_policy: GPT,
    policy_optimizer: torch.optim.Optimizer,
    tokenizer: CharTokenizer,
    beta: float = 0.1,
    print_every: int | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    *,
    loss_type: str = "sigmoid",
    label_smoothing: float = 0.0,
    batch_size: int | None = None,
    merge_identical: bool = True,
    average_logprobs: bool = False,
    anchor: Anchor | None = None,
    resume_from: str | os.PathLike | None = None,
    generator: torch.Generator | None = None,
    progress: bool | None = None,
    callback: Callable[[dict], None] | None = None,
) -> tuple[GPT, list[dict]]:
    """The original text's call: `train_dpo` with a DPOConfig built from the arguments.

    An "episode" is an epoch, one pass over every pair; `batch_size=None` makes it one
    full-batch step. `checkpoint_dir` without `checkpoint_every` saves after the last
    epoch. Returns (policy, history), one dict of TRL-named metrics per step."""
    config = DPOConfig(
        beta=beta,
        loss_type=loss_type,
        label_smoothing=label_smoothing,
        num_train_epochs=num_epochs,
        per_device_train_batch_size=batch_size,
        merge_identical_rows=merge_identical,
        average_logprobs=average_logprobs,
        checkpoint_dir=checkpoint_dir,  # type: ignore[arg-type]  # os.fspath'd
        checkpoint_every=checkpoint_every,
        print_every=print_every or None,
    )
    return train_dpo(
        policy,
        reference_policy,
        tokenizer,
        preference_dataset,
        policy_optimizer,
        config,
        anchor=anchor,
        callback=callback,
        resume_from=resume_from,
        generator=generator,
        progress=progress,
    )


def naive_dpo_epoch(
    preference_dataset: Sequence[PreferencePair],
    policy: GPT,
    reference_policy: GPT,
    policy_optimizer: torch.optim.Optimizer,
    tokenizer: CharTokenizer,
    beta: float = 0.1,
) -> float:
    """One full-batch DPO step written the straightforward way: a pair at a time, four
    forward passes per pair, the reference re-run every time. Same result as
    `run_dpo_episodes` with batch_size=None, kept as the baseline it is measured
    against. Returns the mean loss."""
    check_beta(beta)
    pairs = validate_pairs(preference_dataset)
    _check_pair_models(policy, reference_policy, tokenizer)
    block, device = policy.config.block_size, policy.device

    def logp(model: GPT, prompt: str, completion: str) -> torch.Tensor:
        return batch_logprobs(
            model, build_batch(tokenizer, [prompt], [completion], block, device)
        )

    policy.train()
    policy_optimizer.zero_grad(set_to_none=True)
    total = 0.0
    for p in pairs:
        with torch.no_grad():
            ref_c, ref_r = (
                logp(reference_policy, p.prompt, p.chosen),
                logp(reference_policy, p.prompt, p.rejected),
            )
        loss = dpo_loss(
            logp(policy, p.prompt, p.chosen),
            logp(policy, p.prompt, p.rejected),
            ref_c,
            ref_r,
            beta,
        ).loss
        (loss / len(pairs)).backward()
        total += loss.item()
    policy_optimizer.step()
    policy.eval()
    return total / len(pairs)
