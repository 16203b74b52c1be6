import pytest
import torch

from dpolib.model import GPTConfig


def test_logits_shape(tiny, tok):
    ids = torch.tensor([tok.encode("ravin likes ", bos=True)] * 3)
    assert tiny(ids).shape == (3, ids.shape[1], tok.vocab_size)


def test_causal(tiny, tok):
    a = torch.tensor([tok.encode("ravin likes pizza", bos=True)])
    b = torch.tensor([tok.encode("ravin likes sushi", bos=True)])
    n = len("ravin likes ") + 1
    # changing later tokens never changes earlier positions' logits
    assert torch.allclose(tiny(a)[:, :n], tiny(b)[:, :n], atol=1e-6)


def test_too_long_sequence_is_a_clear_error(tiny):
    with pytest.raises(ValueError, match="longer than the model's context"):
        tiny(torch.zeros(1, 33, dtype=torch.long))


def test_sample_has_text_and_completion(food):
    model, tok = food
    s = model.sample(
        tok,
        "ravin likes ",
        max_completion_len=20,
        device="cpu",
        generator=torch.Generator().manual_seed(0),
    )
    assert s.text == "ravin likes " + s.completion
    assert "<" not in s.completion and s.finished


def test_batched_sampler_is_seeded(food):
    model, tok = food
    a = model.sample_batch(
        tok, "maya likes ", 50, generator=torch.Generator().manual_seed(3)
    )
    b = model.sample_batch(
        tok, "maya likes ", 50, generator=torch.Generator().manual_seed(3)
    )
    assert [s.completion for s in a] == [s.completion for s in b]
    assert len({s.completion for s in a}) > 1


def test_prompt_longer_than_context(food):
    model, tok = food
    with pytest.raises(ValueError, match="exceeds the model's context"):
        model.sample(tok, "a" * 30, max_completion_len=5)


def test_config_validation():
    with pytest.raises(ValueError, match="divisible"):
        GPTConfig(vocab_size=10, n_embd=10, n_head=4)
