"""dpolib: the small PyTorch library behind the dpo-course book."""

from .checkpoint import (
    Checkpoint,
    load_checkpoint,
    load_dpo_checkpoint,
    save_checkpoint,
)
from .config import DPOConfig
from .data import PreferencePair, build_preference_pairs, validate_pairs
from .evaluate import OTHER, Evaluator, Snapshot, kl_divergence, total_variation
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

# The toy, re-exported for the chapters (the core modules above never import it); the
# measurements come with the foods and people as defaults, e.g.
# completion_distribution(model, tok, prompt); dpolib.evaluate has the general forms.
from .pizza import (  # noqa: E402
    FOODS,
    PEOPLE,
    completion_distribution,
    count_sentences,
    distribution_table,
    drift,
    food_distributions,
    load_food_model,
    make_corpus,
    prompt_for,
    sample_report,
    summarize_samples,
    train_food_model,
)
from .pretrain import NonFiniteLossError, pretrain
from .runtime import get_device, seed_everything
from .tokenizer import BOS, EOS, PAD, CharTokenizer
from .train import (
    Anchor,
    PreparedPairs,
    dpo_step,
    naive_dpo_epoch,
    run_dpo_episodes,
    train_dpo,
)

__version__ = "0.1.0"

__all__ = [
    "Anchor",
    "BOS",
    "CharTokenizer",
    "Checkpoint",
    "DPOConfig",
    "DPOOutput",
    "EOS",
    "Evaluator",
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
    "PreparedPairs",
    "Sample",
    "Snapshot",
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
    "dpo_step",
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
    "train_dpo",
    "train_food_model",
    "validate_pairs",
]
