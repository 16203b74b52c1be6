"""dpolib: the small PyTorch library behind the dpo-course book."""
from .checkpoint import Checkpoint, load_checkpoint, load_dpo_checkpoint, save_checkpoint
from .data import (
    FOODS,
    PEOPLE,
    PreferencePair,
    build_preference_pairs,
    count_sentences,
    food_distributions,
    make_corpus,
    prompt_for,
)
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
from .food import load_food_model, train_food_model
from .logprobs import (
    PairBatch,
    SequenceBatch,
    batch_logprobs,
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
from .runtime import get_device, seed_everything
from .tokenizer import BOS, EOS, PAD, CharTokenizer
from .train import Anchor, NonFiniteLossError, naive_dpo_epoch, pretrain, run_dpo_episodes

__version__ = "0.1.0"
