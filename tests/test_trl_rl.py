"""TRL's RewardTrainer and GRPOTrainer against dpolib's reward model and GRPO on the
pizza run: the reward-model port, per-step reward-model parity, one GRPO update's
loss and gradient on fixed completions, TRL's GRPO loss variants re-derived, and a
short GRPO run that learns."""

import copy
import math
import os
from dataclasses import replace

import pytest
import torch

pytest.importorskip("trl")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # rollout_func's notice

from dpolib.hf import (  # noqa: E402
    from_hf_model,
    from_hf_reward_model,
    to_hf_model,
    to_hf_reward_model,
    to_hf_tokenizer,
)
from dpolib.logprobs import batch_token_logprobs  # noqa: E402
from dpolib.pizza import completion_distribution  # noqa: E402
from dpolib.pizza.corpus import prompt_for  # noqa: E402
from dpolib.pizza.run import PERSON, pizza_reward  # noqa: E402
from dpolib.pizza.trl import pizza_pairs  # noqa: E402
from dpolib.reward import RewardModel, train_reward_model  # noqa: E402
from dpolib.rl import (  # noqa: E402
    BatchReward,
    GRPOConfig,
    fresh_policy,
    grpo_loss,
    rollout,
    train_grpo,
)
from dpolib.rl_core import grpo_advantages  # noqa: E402
from dpolib.tokenizer import CharTokenizer  # noqa: E402
from dpolib.trl_rl import (  # noqa: E402
    GRPO_PARITY_SETTINGS,
    REWARD_PARITY_SETTINGS,
    fixed_rollout,
    gradient_recorder,
    grpo_config,
    hf_reward_scores,
    reward_config,
    sample_ids,
    train_trl_grpo,
    train_trl_reward,
    trl_grpo_loss,
    trl_reward_function,
)

PROMPT = prompt_for(PERSON)
GRPO = GRPOConfig(batch_size=64, num_generations=8, beta=0.05, learning_rate=3e-4)


@pytest.fixture(scope="module")
def setup(food):
    reference, tok = food
    pairs, _ = pizza_pairs(reference, tok, 100, 0)
    return reference, tok, to_hf_tokenizer(tok), pairs


def _rows(pairs):
    return sorted(
        {(p.prompt, p.chosen) for p in pairs} | {(p.prompt, p.rejected) for p in pairs}
    )


# --------------------------------------------------------------------------------
# The reward model
# --------------------------------------------------------------------------------
def _random_head(reference, tok, seed=0):
    model = RewardModel(reference, tok)
    with torch.no_grad():
        w = model.score_head.weight
        w.copy_(
            0.1 * torch.randn(w.shape, generator=torch.Generator().manual_seed(seed))
        )
    return model


def test_reward_port_gives_the_same_scores_and_comes_back(setup):
    reference, tok, hf_tok, pairs = setup
    model = _random_head(reference, tok)
    hf = to_hf_reward_model(model)
    texts = [(PROMPT, c) for c in ("pizza", "pasta", "sushi", "pizzapizza", "p")]
    ours = model.score([p for p, _ in texts], [c for _, c in texts])
    theirs = hf_reward_scores(hf, hf_tok, [p + c + "<eos>" for p, c in texts])
    assert ours.abs().max() > 0.1  # a head that is not zero: the check has teeth
    assert torch.allclose(ours, theirs, atol=1e-5)
    back = from_hf_reward_model(hf, tok)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), back.parameters()))


def test_reward_port_rejects_what_it_cannot_carry(setup):
    reference, food_tok, _, _ = setup
    with pytest.raises(TypeError, match="RewardModel"):
        to_hf_reward_model(reference)
    biased = _random_head(reference, food_tok)
    with torch.no_grad():
        biased.score_head.bias.fill_(0.5)
    with pytest.raises(ValueError, match="no bias"):
        to_hf_reward_model(biased)
    with pytest.raises(TypeError, match="GPT2ForSequenceClassification"):
        from_hf_reward_model(to_hf_model(reference, food_tok), food_tok)
    hf = to_hf_reward_model(RewardModel(reference, food_tok))
    short = CharTokenizer(tuple("abc"))
    with pytest.raises(ValueError, match="ids"):
        from_hf_reward_model(hf, short)
    with pytest.raises(ValueError, match="tokenizer"):
        to_hf_reward_model(RewardModel(reference, food_tok), short)


def test_reward_config_sets_dpolib_math_or_keeps_trl_defaults(tmp_path):
    config = reward_config(tmp_path, learning_rate=1e-3, max_steps=7)
    for name, value in REWARD_PARITY_SETTINGS.items():
        assert getattr(config, name) == value, name
    assert config.max_steps == 7 and config.learning_rate == 1e-3
    trl_default = reward_config(tmp_path, parity=False)
    assert trl_default.max_grad_norm == 1.0 and trl_default.gradient_checkpointing


def test_reward_trainer_matches_train_reward_model(setup, tmp_path):
    reference, tok, hf_tok, pairs = setup
    steps, lr = 8, 1e-3
    fit = train_reward_model(reference, tok, pairs, steps=steps, lr=lr)
    config = reward_config(
        tmp_path, learning_rate=lr, max_steps=steps, per_device_train_batch_size=100
    )
    hf, history = train_trl_reward(
        to_hf_reward_model(RewardModel(reference, tok)), hf_tok, pairs, config
    )
    assert len(history) == steps
    assert max(abs(a - r["loss"]) for a, r in zip(fit.losses, history)) <= 1e-5
    assert history[-1]["loss"] < 0.5 * history[0]["loss"]  # it trained
    # TRL logs step s before its update: the model after s - 1 dpolib steps
    after4 = train_reward_model(reference, tok, pairs, steps=4, lr=lr).model
    chosen = after4.score([p.prompt for p in pairs], [p.chosen for p in pairs])
    rejected = after4.score([p.prompt for p in pairs], [p.rejected for p in pairs])
    assert abs(float((chosen - rejected).mean()) - history[4]["margin"]) <= 1e-4
    assert float((chosen > rejected).float().mean()) == history[4]["accuracy"]
    # the trained models agree up to dpolib's bias, which Bradley-Terry cannot see
    rows = _rows(pairs)
    ours = fit.model.score([p for p, _ in rows], [c for _, c in rows])
    theirs = hf_reward_scores(hf, hf_tok, [p + c + "<eos>" for p, c in rows])
    bias = float(fit.model.score_head.bias)
    assert torch.allclose(ours - bias, theirs, atol=1e-4)


def test_train_trl_reward_rejects_a_language_model_and_a_wrong_config(setup, tmp_path):
    reference, tok, hf_tok, pairs = setup
    config = reward_config(tmp_path, max_steps=1)
    with pytest.raises(ValueError, match="num_labels=1"):
        train_trl_reward(to_hf_model(reference, tok), hf_tok, pairs, config)
    with pytest.raises(TypeError, match="RewardConfig"):
        train_trl_reward(
            to_hf_reward_model(RewardModel(reference, tok)), hf_tok, pairs, object()
        )


# --------------------------------------------------------------------------------
# GRPO: formulas on tensors
# --------------------------------------------------------------------------------
def _tensors(seed=0, B=16, T=7):
    g = torch.Generator().manual_seed(seed)
    logps = -torch.rand(B, T, generator=g) * 3
    old = logps + 0.1 * torch.randn(B, T, generator=g)
    ref = logps + 0.3 * torch.randn(B, T, generator=g)
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    mask = torch.arange(T)[None, :] < lengths[:, None]
    rewards = torch.randint(0, 2, (B // 8, 8), generator=g).float()
    return logps, old, ref, grpo_advantages(rewards).flatten(), mask


def test_trl_grpo_loss_is_grpo_loss_for_loss_type_grpo():
    logps, old, ref, adv, mask = _tensors()
    for beta in (0.0, 0.05, 0.4):
        ours = grpo_loss(logps, old, ref, adv, mask, beta, 0.2)
        theirs = trl_grpo_loss(logps, old, ref, adv, mask, beta, 0.2, "grpo")
        assert torch.allclose(ours, theirs, atol=1e-7)
    dapo = trl_grpo_loss(logps, old, ref, adv, mask, 0.05, 0.2, "dapo")
    m = mask.float()
    per_token = -torch.minimum(
        torch.exp(logps - old) * adv[:, None],
        torch.clamp(torch.exp(logps - old), 0.8, 1.2) * adv[:, None],
    ) + 0.05 * (torch.exp(ref - logps) - (ref - logps) - 1)
    assert torch.allclose(dapo, (per_token * m).sum() / m.sum(), atol=1e-7)
    assert (
        abs(float(dapo) - float(grpo_loss(logps, old, ref, adv, mask, 0.05, 0.2)))
        > 1e-3
    )
    dr = trl_grpo_loss(
        logps, old, ref, adv, mask, 0.05, 0.2, "dr_grpo", max_completion_length=9
    )
    assert torch.allclose(dr, (per_token * m).sum() / (16 * 9), atol=1e-7)


def test_bias_corrected_kl_gradient_is_the_score_function_kl_gradient():
    """d/dlogp [k3 * rho] at rho = 1 is log(pi / pi_ref): REINFORCE on KL(pi || ref)."""
    logps, _, ref, _, mask = _tensors(1)
    lp = logps.clone().requires_grad_(True)
    corrected = trl_grpo_loss(
        lp, lp.detach(), ref, torch.zeros(16), mask, 1.0, 0.2, bias_correction_kl=True
    )
    (g,) = torch.autograd.grad(corrected, lp)
    m = mask.float()
    expected = (lp.detach() - ref) * m / m.sum(1, keepdim=True) / 16
    assert torch.allclose(g, expected, atol=1e-7)
    plain = trl_grpo_loss(lp, lp.detach(), ref, torch.zeros(16), mask, 1.0, 0.2)
    (g_plain,) = torch.autograd.grad(plain, lp)
    assert (g_plain - expected).abs().max() > 1e-3  # k3 alone pulls elsewhere


def test_trl_grpo_loss_rejects_unknown_types():
    logps, old, ref, adv, mask = _tensors()
    with pytest.raises(ValueError, match="loss_type"):
        trl_grpo_loss(logps, old, ref, adv, mask, 0.05, 0.2, "ppo")
    with pytest.raises(ValueError, match="max_completion_length"):
        trl_grpo_loss(logps, old, ref, adv, mask, 0.05, 0.2, "dr_grpo")


def test_grpo_config_maps_dpolib_fields(tmp_path):
    rl = replace(GRPO, max_steps=5, num_iterations=3, scale_rewards=False)
    config = grpo_config(tmp_path, rl, seed=4)
    assert config.per_device_train_batch_size == 64 and config.num_generations == 8
    assert config.beta == 0.05 and config.epsilon == 0.2 and config.num_iterations == 3
    assert config.max_steps == 15  # TRL counts updates, dpolib batches
    assert config.scale_rewards == "none" and config.learning_rate == 3e-4
    assert config.max_completion_length == 16 and config.seed == 4
    for name, value in GRPO_PARITY_SETTINGS.items():
        assert getattr(config, name) == value, name
    assert grpo_config(tmp_path, GRPO).scale_rewards == "group"
    assert grpo_config(tmp_path, GRPO, parity=False).loss_type == "dapo"
    with pytest.raises(TypeError, match="dpolib.rl.GRPOConfig"):
        grpo_config(tmp_path, {"beta": 0.1})


def test_trl_reward_function_scores_like_dpolib(tok):
    eos = 2
    fn = trl_reward_function(pizza_reward, eos, missing_eos_penalty=0.5, name="pizza")
    assert fn.__name__ == "pizza"
    got = fn(
        prompts=[PROMPT] * 3,
        completions=["pizza", "pasta", "pizza"],
        completion_ids=[[5, eos], [6, eos], [5, 5]],
    )
    assert got == [1.0, 0.0, 0.5]
    batch = trl_reward_function(
        BatchReward(lambda p, c: torch.tensor([len(x) for x in c])), eos
    )
    assert batch([PROMPT] * 2, ["ab", "abc"], [[1], [1]]) == [2.0, 3.0]
    with pytest.raises(TypeError, match="RewardModel"):
        trl_reward_function(0.5, eos)


def test_fixed_rollout_hands_over_exactly_its_samples(food):
    reference, tok = food
    samples = reference.sample_batch(
        tok, PROMPT, 4, generator=torch.Generator().manual_seed(0)
    )
    prompt_ids, completion_ids = sample_ids(tok, PROMPT, samples)
    assert prompt_ids[0] == tok.encode(PROMPT, bos=True)
    for s, ids in zip(samples, completion_ids):
        assert ids == tok.encode(s.completion, eos=s.finished)
    fn = fixed_rollout(prompt_ids, completion_ids)
    out = fn([PROMPT] * 4, None)
    assert out["completion_ids"] == completion_ids and out["logprobs"] is None
    with pytest.raises(ValueError, match="per_device_train_batch_size"):
        fn([PROMPT] * 8, None)
    with pytest.raises(ValueError, match="one prompt row per completion"):
        fixed_rollout(prompt_ids[:2], completion_ids)


# --------------------------------------------------------------------------------
# GRPO: TRL's trainer
# --------------------------------------------------------------------------------
def _relative(a, b):
    num = sum(float(((a[n] - b[n]) ** 2).sum()) for n in b)
    return math.sqrt(num / sum(float((b[n] ** 2).sum()) for n in b))


def test_one_grpo_update_has_dpolib_loss_and_gradient(setup, tmp_path):
    reference, tok, hf_tok, _ = setup
    start = fresh_policy(reference)  # one batch in, so that the KL term is live
    train_grpo(
        start,
        reference,
        tok,
        PROMPT,
        pizza_reward,
        replace(GRPO, max_steps=1),
        generator=torch.Generator().manual_seed(3),
    )
    ro = rollout(
        start,
        reference,
        tok,
        PROMPT,
        pizza_reward,
        GRPO,
        torch.Generator().manual_seed(4),
    )
    adv = grpo_advantages(ro.scores.view(-1, 8)).flatten()
    model = copy.deepcopy(start)
    mask = ro.batch.completion_mask
    loss = grpo_loss(
        batch_token_logprobs(model, ro.batch),
        ro.logps,
        ro.ref_logps,
        adv,
        mask,
        0.05,
        0.2,
    )
    grads = torch.autograd.grad(loss, list(model.parameters()))
    ours = {n: g for (n, _), g in zip(model.named_parameters(), grads)}

    recorder = gradient_recorder()
    config = grpo_config(tmp_path, replace(GRPO, max_steps=1, num_iterations=1))
    hf_policy = to_hf_model(start, tok)
    _, history, _ = train_trl_grpo(
        hf_policy,
        hf_tok,
        [PROMPT] * 8,
        trl_reward_function(pizza_reward, tok.eos_id),
        config,
        reference=to_hf_model(reference, tok),
        rollout_func=fixed_rollout(*sample_ids(tok, PROMPT, ro.samples)),
        callbacks=[recorder],
    )
    assert len(history) == len(recorder.gradients) == 1
    loss = float(loss.detach())
    assert abs(history[0]["loss"] - loss) <= 1e-6 and loss > 1e-4
    assert _relative(recorder.gradients[0], ours) <= 1e-4
    assert history[0]["reward"] == pytest.approx(float(ro.scores.mean()))
    assert hf_policy.config._name_or_path == ""  # the temporary name is gone again


def test_trl_grpo_run_learns_the_pizza(setup, tmp_path):
    reference, tok, hf_tok, _ = setup
    hf_policy = to_hf_model(reference, tok)
    before = completion_distribution(reference, tok, PROMPT)["pizza"]
    config = grpo_config(tmp_path, replace(GRPO, max_steps=2))
    _, history, _ = train_trl_grpo(
        hf_policy,
        hf_tok,
        [PROMPT] * 16,
        trl_reward_function(pizza_reward, tok.eos_id),
        config,
    )
    assert [r["step"] for r in history] == [1, 2, 3, 4]  # 2 batches, 2 updates each
    assert "reward" in history[0] and "reward" not in history[1]  # one draw per batch
    after = completion_distribution(from_hf_model(hf_policy), tok, PROMPT)["pizza"]
    assert after > before + 0.1


def test_train_trl_grpo_rejects_bad_input(setup, tmp_path):
    reference, tok, hf_tok, _ = setup
    fn = trl_reward_function(pizza_reward, tok.eos_id)
    config = grpo_config(tmp_path, replace(GRPO, max_steps=1))
    with pytest.raises(TypeError, match="in-memory"):
        train_trl_grpo("gpt2", hf_tok, [PROMPT], fn, config)
    with pytest.raises(ValueError, match="non-empty list of strings"):
        train_trl_grpo(to_hf_model(reference, tok), hf_tok, [], fn, config)
    with pytest.raises(TypeError, match="trl.GRPOConfig"):
        train_trl_grpo(to_hf_model(reference, tok), hf_tok, [PROMPT], fn, GRPO)


def test_a_reward_model_is_read_as_trained_only_through_trl_reward_function(
    setup, tmp_path
):
    """trl_reward_function reads a RewardModel at <eos> (dpolib's reading); handed to
    GRPOTrainer directly, the transformers model scores text without <bos>/<eos>."""
    reference, tok, hf_tok, _ = setup
    model = _random_head(reference, tok, seed=1)
    fn = trl_reward_function(model, tok.eos_id)
    assert fn.__name__ == "reward_model"
    completions, ids = ["pizza", "pizzapizzapizzap"], [[5, tok.eos_id], [5] * 16]
    got = fn(prompts=[PROMPT] * 2, completions=completions, completion_ids=ids)
    want = model.score([PROMPT] * 2, completions, [True, False])
    assert torch.allclose(torch.tensor(got), want, atol=1e-6)

    samples = reference.sample_batch(
        tok, PROMPT, 8, generator=torch.Generator().manual_seed(2)
    )
    fixed = fixed_rollout(*sample_ids(tok, PROMPT, samples))
    config = grpo_config(
        tmp_path, replace(GRPO, batch_size=8, max_steps=1, num_iterations=1)
    )

    def mean_reward(reward_funcs, **options):
        _, history, _ = train_trl_grpo(
            to_hf_model(reference, tok), hf_tok, [PROMPT], reward_funcs, config,
            rollout_func=fixed, **options,
        )  # fmt: skip
        return history[0]["reward"]

    as_trained = model.score(
        [PROMPT] * 8, [s.completion for s in samples], [s.finished for s in samples]
    )
    assert mean_reward(fn) == pytest.approx(float(as_trained.mean()), abs=1e-5)
    direct = mean_reward(to_hf_reward_model(model), reward_processing_classes=hf_tok)
    assert abs(direct - float(as_trained.mean())) > 1e-3
