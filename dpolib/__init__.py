"""dpolib: the small PyTorch library behind the dpo-course book."""
from .data import FOODS, PEOPLE, PreferencePair, build_preference_pairs, food_distributions, make_corpus, prompt_for
from .logprobs import SequenceBatch, PairBatch, batch_logprobs, build_batch, build_pair_batch, pair_logprobs, sequence_logprobs
from .losses import LOSS_TYPES, DPOOutput, compute_dpo_loss, compute_implicit_reward, dpo_gradient_weight, dpo_loss, preference_losses
from .model import GPT, GPTConfig, Sample
from .runtime import get_device, seed_everything
from .tokenizer import BOS, EOS, PAD, CharTokenizer

__version__ = "0.1.0"
