"""dpolib.hf: the food model and its tokenizer in transformers, both directions."""

import os

import pytest
import torch

pytest.importorskip("transformers")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from dpolib.hf import (  # noqa: E402
    HFVersionError,
    check_version,
    from_hf_model,
    from_hf_tokenizer,
    gpt2_config,
    max_logit_difference,
    to_hf_model,
    to_hf_tokenizer,
)
from dpolib.model import GPT, GPTConfig  # noqa: E402
from dpolib.pizza.corpus import make_corpus  # noqa: E402
from dpolib.tokenizer import CharTokenizer  # noqa: E402


@pytest.fixture(scope="module")
def sentences():
    return sorted(set(make_corpus(5000, 0)))


def _rows(tok, texts):
    """Equal-length groups of <bos> text <eos> rows (no padding: every logit counts)."""
    by_len = {}
    for t in texts:
        by_len.setdefault(len(t), []).append(tok.encode(t, bos=True, eos=True))
    return [torch.tensor(r) for r in by_len.values()]


def test_food_model_logits_equal_in_transformers(food, sentences):
    model, tok = food
    hf = to_hf_model(model, tok)
    assert hf.num_parameters() == model.num_parameters() == 105_984
    for ids in _rows(tok, sentences):
        assert max_logit_difference(model, hf, ids) <= 1e-5
        assert torch.equal(model(ids).argmax(-1), hf(input_ids=ids).logits.argmax(-1))


def test_round_trip_is_exact(food):
    model, tok = food
    back = from_hf_model(to_hf_model(model, tok))
    assert back.config == model.config
    for (n, p), (m, q) in zip(model.state_dict().items(), back.state_dict().items()):
        assert n == m and torch.equal(p, q)


def test_from_hf_of_a_random_gpt2_matches(tok):
    """The other direction: a GPT2LMHeadModel made in transformers, then ported in."""
    torch.manual_seed(3)
    cfg = GPTConfig(tok.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16)
    import transformers

    hf = transformers.GPT2LMHeadModel(gpt2_config(cfg, tok)).eval()
    ours = from_hf_model(hf)
    ids = torch.tensor([tok.encode("ravin likes pizza", bos=True)[:16]])
    assert max_logit_difference(ours, hf, ids) <= 1e-5


def test_port_changes_the_function_if_the_activation_is_wrong(food):
    """The test can fail: GPT-2's default tanh GELU gives other logits."""
    model, tok = food
    hf = to_hf_model(model, tok)
    hf.config.activation_function = "gelu_new"
    with pytest.raises(ValueError, match="activation_function"):
        from_hf_model(hf)


def test_tokenizer_ids_equal_on_every_food_sentence(food, sentences):
    _, tok = food
    hf = to_hf_tokenizer(tok)
    for s in sentences:
        assert hf(s)["input_ids"] == tok.encode(s, bos=True)
        assert hf.decode(hf(s)["input_ids"], skip_special_tokens=True) == s
    # TRL appends the end token as text: it must become the single end id
    assert hf("ravin likes pizza<eos>")["input_ids"] == tok.encode(
        "ravin likes pizza", bos=True, eos=True
    )
    assert (hf.pad_token_id, hf.bos_token_id, hf.eos_token_id) == (0, 1, 2)
    assert from_hf_tokenizer(hf) == tok


def test_tokenizer_refuses_unknown_characters(food):
    _, tok = food
    with pytest.raises(Exception, match="(?i)unk"):
        to_hf_tokenizer(tok)("Ravin")


def test_mismatched_tokenizer_is_refused(food):
    model, _ = food
    other = CharTokenizer(tuple("abc"))
    with pytest.raises(ValueError, match="vocabulary is 30"):
        to_hf_model(model, other)


def test_other_architecture_is_refused():
    import transformers

    cfg = transformers.LlamaConfig(
        vocab_size=30,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
    )
    llama = transformers.LlamaForCausalLM(cfg)
    with pytest.raises(TypeError, match="GPT2LMHeadModel.*LlamaForCausalLM"):
        from_hf_model(llama)


def test_wrong_inputs_name_the_fix(food):
    model, tok = food
    with pytest.raises(TypeError, match="dpolib GPT"):
        to_hf_model(torch.nn.Linear(2, 2))
    with pytest.raises(TypeError, match="CharTokenizer"):
        to_hf_tokenizer("abc")
    with pytest.raises(TypeError, match="transformers tokenizer"):
        from_hf_tokenizer(tok)
    dropped = GPT(GPTConfig(tok.vocab_size, dropout=0.1))
    with pytest.raises(ValueError, match="dropout=0"):
        to_hf_model(dropped)


@pytest.mark.parametrize(
    "package,version,ok",
    [
        ("transformers", "5.24.0", True),
        ("transformers", "5.30.1", True),
        ("transformers", "4.57.0", False),
        ("transformers", "6.0.0", False),
        ("trl", "1.16.0", True),
        ("trl", "1.16.2", True),
        ("trl", "1.17.0", False),
        ("trl", "0.19.1", False),
        ("trl", "1.17.0rc1", False),
    ],
)
def test_version_range(package, version, ok):
    if ok:
        assert check_version(package, version) == version
    else:
        with pytest.raises(HFVersionError, match=r">=.*,<.*dpolib\[hf\]"):
            check_version(package, version)


def test_installed_versions_are_in_range():
    for package in ("transformers", "trl", "accelerate", "datasets"):
        check_version(package)
    with pytest.raises(ValueError, match="package must be one of"):
        check_version("torchvision")
