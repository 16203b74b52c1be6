"""Key/value-cached sampling draws exactly the tokens of the plain, uncached sampler."""

import copy

import pytest
import torch

from dpolib.logprobs import batch_token_logprobs, build_batch
from dpolib.pizza.corpus import PEOPLE, prompt_for


def draw(model, tok, prompt, n, length, temperature, seed, use_cache):
    g = torch.Generator().manual_seed(seed)
    return model.sample_tokens(
        tok, prompt, n, length, temperature, g, use_cache=use_cache
    )


def assert_same_draws(model, tok, prompt, n, length, temperature, seed, atol):
    cached = draw(model, tok, prompt, n, length, temperature, seed, True)
    plain = draw(model, tok, prompt, n, length, temperature, seed, False)
    assert torch.equal(cached.tokens, plain.tokens), (prompt, length, temperature)
    assert torch.equal(cached.finished, plain.finished)
    torch.testing.assert_close(cached.logprobs, plain.logprobs, rtol=0, atol=atol)
    return cached


# In float32 the two paths round attention differently (one query against a cache vs a
# causal pass over the whole row): logits of up to ~18 differ by a few ulps, so a
# log-prob by up to ~6e-6 at temperature 0.3 (measured). In float64 the same
# computation agrees to 1e-6 with room to spare: the cache changes rounding, not math.
F32_ATOL = 2e-5


@pytest.mark.parametrize("temperature", [0.3, 1.0, 2.5])
def test_cached_food_model_samples_are_the_uncached_ones(food, temperature):
    model, tok = food
    for i, person in enumerate(PEOPLE):
        length = (1, 5, 20)[i % 3]  # cut short, mid-word and complete
        out = assert_same_draws(
            model, tok, prompt_for(person), 32, length, temperature, i, F32_ATOL
        )
        assert out.tokens.shape[0] == 32 and out.tokens.shape[1] <= length


def test_in_float64_the_log_probs_agree_to_1e_6(food):
    model, tok = food
    wide = copy.deepcopy(model).double()
    for i, temperature in enumerate((0.3, 1.0, 2.5)):
        prompt = prompt_for(PEOPLE[i])
        out = assert_same_draws(wide, tok, prompt, 48, 20, temperature, i, 1e-6)
        assert out.logprobs.dtype == torch.float64
        narrow = draw(model, tok, prompt, 48, 20, temperature, i, True)
        assert torch.equal(out.tokens, narrow.tokens)


def test_rows_that_end_at_different_steps_and_at_the_context_limit(tiny, tok):
    # a random model rarely says <eos>: rows stop at many different steps, most run to
    # the last position the context holds (prompt of 11 + 21 new tokens = 32 positions)
    prompt = "maya likes "
    limit = tiny.config.block_size - len(prompt)
    for temperature in (0.5, 1.0, 3.0):
        out = assert_same_draws(tiny, tok, prompt, 64, limit, temperature, 7, F32_ATOL)
        ends = [
            row.index(tok.eos_id) for row in out.tokens.tolist() if tok.eos_id in row
        ]
        assert len(set(ends)) > 3 and not out.finished.all()
        assert out.tokens.shape[1] == limit
    with pytest.raises(ValueError, match="exceeds the model's context"):
        tiny.sample_tokens(tok, prompt, 4, limit + 1)


def test_padding_after_eos_and_text_matches_tokens(food):
    model, tok = food
    out = draw(model, tok, "leo likes ", 200, 20, 1.0, 0, True)
    for row, logp, fin in zip(out.tokens.tolist(), out.logprobs, out.finished):
        if fin:
            end = row.index(tok.eos_id)
            assert all(t == tok.pad_id for t in row[end + 1 :])
            assert (logp[end + 1 :] == 0).all() and (logp[: end + 1] < 0).all()
    samples = model.sample_batch(
        tok, "leo likes ", 200, 20, generator=torch.Generator().manual_seed(0)
    )
    for s, row in zip(samples, out.tokens.tolist()):
        body = row[: row.index(tok.eos_id)] if tok.eos_id in row else row
        assert s.completion == tok.decode(body)


def test_sampled_logprobs_are_the_teacher_forced_ones(food):
    # at temperature 1 the log-prob recorded while sampling is log pi(y_t | x, y_<t)
    model, tok = food
    prompt = "omar likes "
    out = draw(model, tok, prompt, 100, 20, 1.0, 3, True)
    rows = [i for i, f in enumerate(out.finished.tolist()) if f]
    completions = [
        tok.decode(out.tokens[i, : out.tokens[i].tolist().index(tok.eos_id)])
        for i in rows
    ]
    batch = build_batch(tok, [prompt] * len(rows), completions)
    with torch.no_grad():
        forced = batch_token_logprobs(model, batch)
    sampled = out.logprobs[rows]
    torch.testing.assert_close(
        forced.sum(1), sampled.sum(1), rtol=0, atol=1e-5
    )  # sums of up to 20 terms, each agreeing to ~1e-6


def test_finished_rows_leave_the_batch(food):
    model, tok = food
    rows_per_call = []
    hook = model.register_forward_hook(
        lambda m, args, out: rows_per_call.append(args[0].shape)
    )
    try:
        out = draw(model, tok, "ravin likes ", 300, 20, 1.0, 0, True)
    finally:
        hook.remove()
    # one pass over the prompt (batch 1), then one position per step for the live rows
    assert rows_per_call[0] == (1, len("ravin likes ") + 1)
    assert all(shape[1] == 1 for shape in rows_per_call[1:])
    sizes = [shape[0] for shape in rows_per_call[1:]]
    assert sizes == sorted(sizes, reverse=True) and sizes[-1] < sizes[0] <= 300
    live = [
        (out.tokens[:, : t + 1] == tok.eos_id).any(1).logical_not().sum()
        for t in range(len(sizes))
    ]
    assert sizes == [int(x) for x in live]


@pytest.mark.parametrize("use_cache", [True, False])
def test_bad_sampling_arguments_and_the_mode_is_restored(food, use_cache):
    model, tok = food
    was_training = model.training  # the session's shared model: leave it as found
    model.train()
    try:
        for bad in (float("nan"), float("inf"), 0, -1.0):
            with pytest.raises(ValueError, match="temperature must be a finite number"):
                model.sample_batch(
                    tok, "leo likes ", 3, temperature=bad, use_cache=use_cache
                )
            assert model.training
        with pytest.raises(TypeError, match="temperature must be a finite number"):
            model.sample_batch(tok, "leo likes ", 3, temperature="1")
        for bad in (0, -3):
            with pytest.raises(ValueError, match="max_completion_len must be >= 1"):
                model.sample_batch(tok, "leo likes ", 3, bad, use_cache=use_cache)
        with pytest.raises(TypeError, match="max_completion_len must be an int"):
            model.sample_batch(tok, "leo likes ", 3, 2.5)
        with pytest.raises(TypeError, match="num_samples must be an int"):
            model.sample_batch(tok, "leo likes ", 3.0)
        with pytest.raises(ValueError, match="num_samples must be >= 1"):
            model.sample_batch(tok, "leo likes ", 0)
        with pytest.raises(TypeError, match="prompt must be a str"):
            model.sample_batch(tok, ["leo likes "], 3)
        # an error raised while decoding (a generator on another device here) also
        # leaves the mode as it was
        with pytest.raises(RuntimeError):
            model.sample_batch(tok, "leo likes ", 3, generator=torch.Generator("meta"))
        assert model.training
    finally:
        model.train(was_training)
