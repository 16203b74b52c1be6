import numpy as np
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


@pytest.mark.parametrize(
    "field, value, error, message",
    [
        ("n_head", 0, ValueError, "n_head must be >= 1"),  # was ZeroDivisionError
        ("n_head", -2, ValueError, "n_head must be >= 1"),
        ("n_embd", "64", TypeError, "n_embd must be an int, got str '64'"),
        ("block_size", 32.0, TypeError, "block_size must be an int, got float"),
        ("n_layer", 2.5, TypeError, "n_layer must be an int"),
        ("n_layer", True, TypeError, "n_layer must be an int, got bool"),
        ("vocab_size", None, TypeError, "vocab_size must be an int"),
        ("dropout", 1.0, ValueError, r"dropout must be in \[0, 1\)"),
        ("dropout", float("nan"), ValueError, "dropout must be in"),
        ("dropout", "0.1", TypeError, "dropout must be a float"),
    ],
)
def test_config_rejects_bad_sizes_by_name(field, value, error, message):
    kwargs = {"vocab_size": 30, field: value}
    with pytest.raises(error, match=message):
        GPTConfig(**kwargs)


def test_config_accepts_numpy_ints_as_plain_ints():
    cfg = GPTConfig(vocab_size=np.int64(30), block_size=np.int32(16))
    assert type(cfg.vocab_size) is int and cfg.to_dict()["block_size"] == 16


def test_forward_rejects_ids_outside_the_vocabulary(tiny, tok):
    # used to be torch's "index out of range in self" from inside the embedding
    for bad in (-1, tok.vocab_size, 1000):
        ids = torch.tensor([[1, 5, bad]])
        with pytest.raises(ValueError, match=r"outside the vocabulary \[0, 30\)"):
            tiny(ids)
    with pytest.raises(TypeError, match="integer token ids"):
        tiny(torch.tensor([[1.0, 5.0]]))
    with pytest.raises(TypeError, match="must be a torch.Tensor"):
        tiny([[1, 5]])
    past = tiny.prefix_cache(torch.tensor([[1, 5]]))
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tiny(torch.tensor([[tok.vocab_size]]), past=past)


def test_cache_of_one_call_continues_in_the_next(tiny, tok):
    # forward(past=cache) one token at a time gives the logits of the whole row at once
    ids = torch.tensor([tok.encode("ravin likes pizza", bos=True)] * 3)
    cache: list = []
    steps = [tiny(ids[:, :5], cache=cache)]
    for t in range(5, ids.shape[1]):
        past, cache = cache, []
        steps.append(tiny(ids[:, t : t + 1], past=past, cache=cache))
    torch.testing.assert_close(torch.cat(steps, 1), tiny(ids), rtol=0, atol=1e-5)


def test_bad_sampling_arguments_are_clear_and_keep_the_mode(food):
    # max_completion_len=0 gave torch's "stack expects a non-empty TensorList";
    # temperature NaN failed inside multinomial and left the model in eval mode
    model, tok = food
    was_training = model.training  # the session's shared model: leave it as found
    model.train()
    try:
        with pytest.raises(ValueError, match="max_completion_len must be >= 1"):
            model.sample_batch(tok, "leo likes ", 3, 0)
        with pytest.raises(ValueError, match="temperature must be a finite number"):
            model.sample_batch(tok, "leo likes ", 3, temperature=float("nan"))
        assert model.training
    finally:
        model.train(was_training)
