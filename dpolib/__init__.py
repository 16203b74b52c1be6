"""dpolib: the small PyTorch library behind the dpo-course book."""

from .checkpoint import (
    Checkpoint,
    load_checkpoint,
    load_dpo_checkpoint,
    save_checkpoint,
)
from .data import PreferencePair, build_preference_pairs
from .evaluate import (
    OTHER,
    completion_distribution,
    distribution_table,
    drift,
    kl_divergence,
    sample_report,
    summarize_samples,
    total_variation,
)
from .logprobs import (
    PairBatch,
    SequenceBatch,
    batch_logprobs,
    batch_token_logprobs,
    build_batch,
    build_pair_batch,
    pair_logprobs,
    sequence_logprobs,
)
from .losses import (
    LOSS_TYPES,
    DPOOutput,
    compute_dpo_loss,
    compute_implicit_reward,
    dpo_gradient_weight,
    dpo_loss,
    preference_losses,
)
from .model import GPT, GPTConfig, Sample

# The toy, re-exported for the chapters (the core modules above never import it).
from .pizza import (  # noqa: E402
    FOODS,
    PEOPLE,
    count_sentences,
    food_distributions,
    load_food_model,
    make_corpus,
    prompt_for,
    train_food_model,
)
from .runtime import get_device, seed_everything
from .tokenizer import BOS, EOS, PAD, CharTokenizer
from .train import (
    Anchor,
    NonFiniteLossError,
    naive_dpo_epoch,
    pretrain,
    run_dpo_episodes,
)

__version__ = "0.1.0"

__all__ = [
    "Anchor",
    "BOS",
    "CharTokenizer",
    "Checkpoint",
    "DPOOutput",
    "EOS",
    "FOODS",
    "GPT",
    "GPTConfig",
    "LOSS_TYPES",
    "NonFiniteLossError",
    "OTHER",
    "PAD",
    "PEOPLE",
    "PairBatch",
    "PreferencePair",
    "Sample",
    "SequenceBatch",
    "batch_logprobs",
    "batch_token_logprobs",
    "build_batch",
    "build_pair_batch",
    "build_preference_pairs",
    "completion_distribution",
    "compute_dpo_loss",
    "compute_implicit_reward",
    "count_sentences",
    "distribution_table",
    "dpo_gradient_weight",
    "dpo_loss",
    "drift",
    "food_distributions",
    "get_device",
    "kl_divergence",
    "load_checkpoint",
    "load_dpo_checkpoint",
    "load_food_model",
    "make_corpus",
    "naive_dpo_epoch",
    "pair_logprobs",
    "preference_losses",
    "pretrain",
    "prompt_for",
    "run_dpo_episodes",
    "sample_report",
    "save_checkpoint",
    "seed_everything",
    "sequence_logprobs",
    "summarize_samples",
    "total_variation",
    "train_food_model",
]
