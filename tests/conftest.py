import copy

import pytest
import torch

from dpolib.model import GPT, GPTConfig
from dpolib.pizza.food import load_food_model
from dpolib.tokenizer import CharTokenizer


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)
    torch.manual_seed(0)


@pytest.fixture
def tok() -> CharTokenizer:
    return CharTokenizer(tuple(" abcdefghijklmnopqrstuvwxyz"))


@pytest.fixture
def tiny(tok) -> GPT:
    """A small random model: fast, and its outputs depend on every input token."""
    torch.manual_seed(1)
    return GPT(GPTConfig(tok.vocab_size, block_size=32, n_layer=1, n_head=2, n_embd=16))


@pytest.fixture(scope="session")
def food():
    model, tokenizer = load_food_model()
    return model, tokenizer


@pytest.fixture
def food_pair(food):
    model, tokenizer = food
    return copy.deepcopy(model), copy.deepcopy(model), tokenizer
