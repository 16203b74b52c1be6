import copy

import pytest
import torch

from dpolib.data import PreferencePair, build_preference_pairs
from dpolib.evaluate import completion_distribution as exact
from dpolib.model import GPT, GPTConfig
from dpolib.pizza.corpus import FOODS, count_sentences, make_corpus
from dpolib.tokenizer import CharTokenizer
from dpolib.train import naive_dpo_epoch, pretrain, run_dpo_episodes


def completion_distribution(model, tok, prompt):
    return exact(model, tok, prompt, FOODS)


PROMPT = "ravin likes "


def pizza_pairs(model, tok, n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    cands = [s.completion for s in model.sample_batch(tok, PROMPT, 300, generator=g)]
    return build_preference_pairs(PROMPT, cands, lambda p, c: float(c == "pizza"), n, g)


def test_short_dpo_run_raises_pizza_frequency(food_pair):
    policy, reference, tok = food_pair
    pairs = pizza_pairs(reference, tok)
    before = completion_distribution(reference, tok, PROMPT)["pizza"]
    opt = torch.optim.Adam(policy.parameters(), lr=1e-4)
    policy, hist = run_dpo_episodes(
        15, pairs, policy, reference, opt, tok, beta=0.5, progress=False
    )
    after = completion_distribution(policy, tok, PROMPT)["pizza"]
    assert before < 0.2 and after > 0.8
    assert (
        hist[0]["loss"] == pytest.approx(0.6931, abs=1e-4)
        and hist[0]["rewards/accuracies"] == 0
    )
    assert hist[-1]["rewards/margins"] > 0 and hist[-1]["rewards/accuracies"] == 1
    assert set(hist[-1]) >= {
        "rewards/chosen",
        "rewards/rejected",
        "rewards/margins",
        "rewards/accuracies",
        "logps/chosen",
        "logps/rejected",
    }


def test_batched_equals_one_pair_at_a_time(food_pair):
    policy, reference, tok = food_pair
    pairs = pizza_pairs(reference, tok, n=12)
    twin = copy.deepcopy(policy)
    opt_a = torch.optim.SGD(policy.parameters(), lr=0.1)
    opt_b = torch.optim.SGD(twin.parameters(), lr=0.1)
    for merge in (True, False):
        _, hist = run_dpo_episodes(
            1,
            pairs,
            policy,
            reference,
            opt_a,
            tok,
            beta=0.5,
            merge_identical=merge,
            progress=False,
        )
        naive = naive_dpo_epoch(pairs, twin, reference, opt_b, tok, beta=0.5)
        assert hist[0]["loss"] == pytest.approx(naive, abs=1e-6)
        for a, b in zip(policy.parameters(), twin.parameters()):
            assert torch.allclose(a, b, atol=1e-6)


def test_resume_equals_uninterrupted(food_pair, tmp_path):
    _, reference, tok = food_pair
    pairs = pizza_pairs(reference, tok, n=30)

    def fresh():
        p = copy.deepcopy(reference)
        return p, torch.optim.Adam(p.parameters(), lr=3e-4)

    # minibatches with a seeded shuffle, so the generator state must be restored too
    kw = dict(beta=0.5, batch_size=8, progress=False)
    p1, o1 = fresh()
    p1, h1 = run_dpo_episodes(
        6,
        pairs,
        p1,
        reference,
        o1,
        tok,
        generator=torch.Generator().manual_seed(5),
        **kw,
    )
    p2, o2 = fresh()
    run_dpo_episodes(
        6,
        pairs,
        p2,
        reference,
        o2,
        tok,
        checkpoint_dir=tmp_path,
        checkpoint_every=3,
        generator=torch.Generator().manual_seed(5),
        **kw,
    )
    # "crash" after epoch 3: a new process resumes from epoch 3 with fresh objects
    p3, o3 = fresh()
    p3, h3 = run_dpo_episodes(
        6,
        pairs,
        p3,
        reference,
        o3,
        tok,
        resume_from=tmp_path / "dpo_epoch_0003.pt",
        generator=torch.Generator().manual_seed(123),
        **kw,
    )
    for a, b in zip(p1.state_dict().values(), p3.state_dict().values()):
        assert torch.equal(a, b)
    assert h1 == h3


def test_resume_with_other_settings_is_refused(food_pair, tmp_path):
    policy, reference, tok = food_pair
    pairs = pizza_pairs(reference, tok, n=10)
    opt = torch.optim.Adam(policy.parameters(), lr=1e-4)
    run_dpo_episodes(
        2,
        pairs,
        policy,
        reference,
        opt,
        tok,
        beta=0.5,
        checkpoint_dir=tmp_path,
        checkpoint_every=2,
        progress=False,
    )
    with pytest.raises(ValueError, match="resume with the same settings"):
        run_dpo_episodes(
            4,
            pairs,
            policy,
            reference,
            opt,
            tok,
            beta=0.1,
            resume_from=tmp_path / "dpo_epoch_0002.pt",
            progress=False,
        )


def test_nan_weights_are_refused_before_training(food_pair, tmp_path):
    policy, reference, tok = food_pair
    pairs = pizza_pairs(reference, tok, n=10)
    opt = torch.optim.Adam(policy.parameters(), lr=1e-4)
    with torch.no_grad():
        policy.head.weight.fill_(float("nan"))
    with pytest.raises(ValueError, match="policy has non-finite weights"):
        run_dpo_episodes(4, pairs, policy, reference, opt, tok, beta=0.5)


def test_bad_inputs(food_pair, tok):
    policy, reference, ftok = food_pair
    opt = torch.optim.Adam(policy.parameters(), lr=1e-4)
    good = [PreferencePair(PROMPT, "pizza", "pasta")]
    with pytest.raises(ValueError, match="preference dataset is empty"):
        run_dpo_episodes(1, [], policy, reference, opt, ftok)
    with pytest.raises(ValueError, match="chosen == rejected"):
        run_dpo_episodes(
            1, [PreferencePair(PROMPT, "pizza", "pizza")], policy, reference, opt, ftok
        )
    with pytest.raises(ValueError, match="beta must be"):
        run_dpo_episodes(1, good, policy, reference, opt, ftok, beta=0)
    with pytest.raises(ValueError, match="same object"):
        run_dpo_episodes(1, good, policy, policy, opt, ftok)
    other = GPT(GPTConfig(vocab_size=40))
    with pytest.raises(ValueError, match="different configs"):
        run_dpo_episodes(1, good, policy, other, opt, ftok)
    with pytest.raises(ValueError, match="tokenizer has"):
        run_dpo_episodes(1, good, policy, reference, opt, CharTokenizer(("a", "b")))
    with pytest.raises(ValueError, match="not in the tokenizer's alphabet"):
        run_dpo_episodes(
            1, [PreferencePair(PROMPT, "Pizza!", "pasta")], policy, reference, opt, ftok
        )
    with pytest.raises(ValueError, match="context"):
        run_dpo_episodes(
            1,
            [PreferencePair("x" * 40, "pizza", "pasta")],
            policy,
            reference,
            opt,
            ftok,
        )
    with pytest.raises(TypeError, match="PreferencePair"):
        run_dpo_episodes(
            1, [("ravin likes ", "pizza", "pasta")], policy, reference, opt, ftok
        )


def test_pretrain_lowers_the_loss(tok):
    torch.manual_seed(0)
    model = GPT(GPTConfig(tok.vocab_size, n_layer=1, n_head=2, n_embd=32))
    losses = pretrain(
        model,
        tok,
        count_sentences(make_corpus(500)),
        steps=60,
        lr=1e-2,
        warmup=5,
        progress=False,
    )
    assert losses[-1] < 0.5 * losses[0]
    with pytest.raises(ValueError, match="no sentences"):
        pretrain(model, tok, [])
