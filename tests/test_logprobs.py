import pytest
import torch

from dpolib.data import PreferencePair
from dpolib.logprobs import (
    SequenceBatch,
    batch_logprobs,
    batch_token_logprobs,
    build_batch,
    build_pair_batch,
    pair_logprobs,
    sequence_logprobs,
)

PROMPTS = ["ravin likes ", "leo likes ", "ravin likes ", "yuki likes "]
COMPLETIONS = ["pizza", "dumplings", "pho", "ramen"]


def one_at_a_time(model, tok, prompt, completion):
    """Plain re-derivation: one sequence alone, log p of its completion and <eos>."""
    ids = tok.encode(prompt, bos=True) + tok.encode(completion, eos=True)
    logp = torch.log_softmax(model(torch.tensor([ids[:-1]]))[0], -1)
    start = len(tok.encode(prompt, bos=True))
    return sum(logp[t - 1, ids[t]] for t in range(start, len(ids)))


def test_batched_equals_one_at_a_time(tiny, tok):
    batch = build_batch(tok, PROMPTS, COMPLETIONS)
    got = batch_logprobs(tiny, batch)
    want = torch.stack(
        [one_at_a_time(tiny, tok, p, c) for p, c in zip(PROMPTS, COMPLETIONS)]
    )
    assert torch.allclose(got, want, atol=1e-5)


def test_mask_covers_completion_and_eos_only(tok):
    batch = build_batch(tok, ["ravin likes ", "leo likes "], ["pizza", "pho"])
    assert batch.completion_mask.sum(1).tolist() == [
        6,
        4,
    ]  # 5 letters + <eos>, 3 letters + <eos>
    masked_targets = batch.targets[0][batch.completion_mask[0]].tolist()
    assert masked_targets == tok.encode("pizza", eos=True)
    # padding positions are never counted
    assert not batch.completion_mask[1, batch.targets[1] == tok.pad_id].any()


def test_prompt_and_padding_do_not_count(tiny, tok):
    batch = build_batch(tok, PROMPTS, COMPLETIONS)
    logits = tiny(batch.input_ids)
    base = sequence_logprobs(logits, batch.targets, batch.completion_mask)
    noisy = logits.clone()
    noisy[~batch.completion_mask] += 100 * torch.randn_like(
        noisy[~batch.completion_mask]
    )
    assert torch.allclose(
        sequence_logprobs(noisy, batch.targets, batch.completion_mask), base
    )


def test_average_is_per_token_mean(tiny, tok):
    batch = build_batch(tok, PROMPTS, COMPLETIONS)
    s = batch_logprobs(tiny, batch)
    m = batch_logprobs(tiny, batch, average=True)
    assert torch.allclose(m, s / batch.completion_mask.sum(1))


def test_merged_pairs_equal_unmerged(tiny, tok):
    pairs = [
        PreferencePair("ravin likes ", "pizza", r)
        for r in ["pasta", "curry", "pasta", "noodles"]
    ]
    merged = build_pair_batch(tok, pairs, merge_identical=True)
    plain = build_pair_batch(tok, pairs, merge_identical=False)
    assert len(merged.rows) == 4 and len(plain.rows) == 8
    for a, b in zip(pair_logprobs(tiny, merged), pair_logprobs(tiny, plain)):
        assert torch.allclose(a, b, atol=1e-6)


def test_bad_batches(tok):
    with pytest.raises(ValueError, match="one prompt per completion"):
        build_batch(tok, ["a"], ["b", "c"])
    with pytest.raises(ValueError, match="zero sequences"):
        build_batch(tok, [], [])
    with pytest.raises(ValueError, match="context is 8"):
        build_batch(tok, ["ravin likes "], ["pizza"], block_size=8)
    with pytest.raises(ValueError, match="not in the tokenizer's alphabet"):
        build_batch(tok, ["ravin likes "], ["Pizza"])
    with pytest.raises(ValueError, match="shapes disagree"):
        sequence_logprobs(
            torch.zeros(2, 3, 5),
            torch.zeros(2, 4, dtype=torch.long),
            torch.ones(2, 4, dtype=torch.bool),
        )


def test_shared_prompt_is_read_once_with_the_same_values_and_gradients(tiny, tok):
    completions = ["pizza", "pasta", "dumplings", "pho"]
    batch = build_batch(tok, ["ravin likes "] * 4, completions)
    assert batch.shared_prefix == len(
        "ravin likes "
    )  # <bos> + prompt, less the last prompt token
    fast = batch_logprobs(tiny, batch)
    plain = sequence_logprobs(
        tiny(batch.input_ids), batch.targets, batch.completion_mask
    )
    want = torch.stack(
        [one_at_a_time(tiny, tok, "ravin likes ", c) for c in completions]
    )
    assert torch.allclose(fast, want, atol=1e-5) and torch.allclose(
        plain, want, atol=1e-5
    )
    g_fast = torch.autograd.grad(fast.sum(), list(tiny.parameters()))
    g_plain = torch.autograd.grad(plain.sum(), list(tiny.parameters()))
    for a, b in zip(g_fast, g_plain):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)
    # a subset of rows keeps the prefix; different prompts share only <bos>
    assert batch.select(torch.tensor([1, 3])).shared_prefix == batch.shared_prefix
    assert build_batch(tok, PROMPTS, COMPLETIONS).shared_prefix == 1


def test_prefix_cache_checks_its_input(tiny, tok):
    with pytest.raises(ValueError, match=r"shape \(1, length\)"):
        tiny.prefix_cache(torch.zeros(2, 3, dtype=torch.long))
    past = tiny.prefix_cache(torch.zeros(1, 30, dtype=torch.long))
    with pytest.raises(ValueError, match="longer than the model's context"):
        tiny(torch.zeros(1, 5, dtype=torch.long), past=past)


def test_batch_token_logprobs_sum_to_sequence_logprobs(food):
    model, tok = food
    for prompts, completions in [
        (["ravin likes "] * 3, ["pizza", "pasta", "xq"]),  # shared prompt: prefix cache
        (["ravin likes ", "maya likes "], ["pizza", "sushi"]),  # no shared prompt
    ]:
        batch = build_batch(tok, prompts, completions, model.config.block_size)
        per_token = batch_token_logprobs(model, batch)
        assert per_token.shape == batch.targets.shape
        assert (per_token[~batch.completion_mask] == 0).all()
        torch.testing.assert_close(
            per_token.sum(1), batch_logprobs(model, batch), rtol=0, atol=1e-6
        )


def test_strings_instead_of_lists_are_refused(tok):
    # build_batch(tok, "ab", "cd") used to build two rows of one character each
    with pytest.raises(TypeError, match=r"prompts must be a list of strings.*\['ab'\]"):
        build_batch(tok, "ab", "cd")
    with pytest.raises(TypeError, match="completions must be a list of strings"):
        build_batch(tok, ["ab"], "c")
    with pytest.raises(TypeError, match=r"completions\[1\] must be a str, got int"):
        build_batch(tok, ["a", "b"], ["c", 3])
    with pytest.raises(TypeError, match="prompts must be a list of strings, got set"):
        build_batch(tok, {"a"}, ["c"])
    with pytest.raises(TypeError, match="block_size must be an int"):
        build_batch(tok, ["a"], ["c"], block_size=8.5)
    # tuples are sequences too
    assert len(build_batch(tok, ("ab", "cd"), ("e", "f"))) == 2


def test_masks_other_than_0_1_are_refused(tiny, tok):
    # an integer mask of 2 used to double the log-probs
    batch = build_batch(tok, PROMPTS, COMPLETIONS)
    logits = tiny(batch.input_ids)
    ones = batch.completion_mask.long()
    plain = sequence_logprobs(logits, batch.targets, batch.completion_mask)
    assert torch.equal(sequence_logprobs(logits, batch.targets, ones), plain)
    for bad in (2 * ones, -ones, 0.5 * ones):
        with pytest.raises(ValueError, match="mask must hold only 0/1"):
            sequence_logprobs(logits, batch.targets, bad)
    doubled = SequenceBatch(batch.input_ids, batch.targets, 2 * ones)
    with pytest.raises(ValueError, match="mask must hold only 0/1"):
        batch_logprobs(tiny, doubled)
    with pytest.raises(ValueError, match="mask must hold only 0/1"):
        batch_token_logprobs(tiny, doubled)


def test_long_texts_are_quoted_short(tok):
    with pytest.raises(ValueError, match="context is 8") as err:
        build_batch(tok, ["a" * 100_000], ["pizza"], block_size=8)
    assert len(str(err.value)) < 600
