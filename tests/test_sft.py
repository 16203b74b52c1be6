import copy

import pytest
import torch
import torch.nn.functional as F

from dpolib import completion_distribution
from dpolib.logprobs import build_batch
from dpolib.sft import sft, sft_loss

PROMPT = "ravin likes "


def plain_sft_loss(model, tok, prompts, completions, weights):
    """Cross-entropy of every completion token (EOS included), one row at a time."""
    total, tokens = 0.0, 0.0
    for p, c, w in zip(prompts, completions, weights):
        ids = tok.encode(p + c, bos=True, eos=True)
        x = torch.tensor([ids[:-1]])
        logits = model(x)[0]
        n_prompt = len(
            tok.encode(p, bos=True)
        )  # predictions from the last prompt token on
        nll = F.cross_entropy(logits, torch.tensor(ids[1:]), reduction="none")
        total = total + w * nll[n_prompt - 1 :].sum()
        tokens += w * (len(ids) - n_prompt)
    return total / tokens


def test_sft_loss_matches_a_plain_rederivation(food):
    model, tok = food
    prompts = [PROMPT, PROMPT, "maya likes "]
    completions = ["pizza", "dumplings", "sushi"]
    weights = [1.0, 3.0, 0.5]
    batch = build_batch(tok, prompts, completions, model.config.block_size)
    got = sft_loss(model, batch, torch.tensor(weights))
    want = plain_sft_loss(model, tok, prompts, completions, weights)
    assert float(got.detach()) == pytest.approx(float(want.detach()), rel=1e-5)


def test_merging_identical_rows_is_exact(food):
    model, tok = food
    a, b = copy.deepcopy(model), copy.deepcopy(model)
    la = sft(a, tok, [PROMPT] * 3 + ["maya likes "], ["pizza"] * 3 + ["sushi"], steps=3)
    lb = sft(b, tok, [PROMPT, "maya likes "], ["pizza", "sushi"], [3.0, 1.0], steps=3)
    assert la == pytest.approx(lb, abs=1e-6)


def test_sft_raises_the_chosen_answer_and_trains_only_the_completion(food):
    model, tok = food
    m = copy.deepcopy(model)
    before = completion_distribution(model, tok, PROMPT)["pizza"]
    losses = sft(m, tok, [PROMPT], ["pizza"], steps=10, lr=1e-4)
    after = completion_distribution(m, tok, PROMPT)["pizza"]
    assert len(losses) == 10 and losses[-1] < losses[0]
    assert before < 0.2 < 0.5 < after
    assert not m.training
    # the loss is the per-token NLL of the completion alone, prompt excluded
    batch = build_batch(tok, [PROMPT], ["pizza"], model.config.block_size)
    n = int(batch.completion_mask.sum())
    assert n == len("pizza") + 1
    assert losses[0] == pytest.approx(-torch.log(torch.tensor(before)).item() / n, 1e-4)


def test_bad_input_gets_clear_errors(food):
    model, tok = food
    m = copy.deepcopy(model)
    with pytest.raises(ValueError, match="SFT set is empty"):
        sft(m, tok, [], [])
    with pytest.raises(ValueError, match="one to one"):
        sft(m, tok, [PROMPT, PROMPT], ["pizza"])
    with pytest.raises(ValueError, match="weight must be > 0"):
        sft(m, tok, [PROMPT], ["pizza"], [0.0])
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        sft(m, tok, [PROMPT], ["pizza"], steps=0)
    with pytest.raises(TypeError, match="completions must be strings"):
        sft(m, tok, [PROMPT], [3])
