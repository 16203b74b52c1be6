"""Property-based tests (hypothesis): the loss family, the tokenizer, batch building."""

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dpolib.logprobs import batch_logprobs, build_batch
from dpolib.losses import (
    ABLATIONS,
    LOSS_TYPES,
    dpo_gradient_weight,
    dpo_loss,
    preference_losses,
)
from dpolib.model import GPT, GPTConfig
from dpolib.tokenizer import CharTokenizer

# derandomized: the same examples on every run and every machine, so CI cannot flake
FAST = settings(max_examples=60, deadline=None, derandomize=True)

logps = st.lists(
    st.floats(-1e4, 0.0, allow_nan=False), min_size=4, max_size=4
)  # one pair: policy chosen, policy rejected, reference chosen, reference rejected
pairs = st.lists(logps, min_size=1, max_size=8)
betas = st.floats(1e-3, 1e3)
smoothing = st.sampled_from([0.0, 0.1, 0.3, 0.49])
kinds = st.sampled_from(LOSS_TYPES + ABLATIONS)


def tensors(rows):
    return [torch.tensor(col, dtype=torch.float64) for col in zip(*rows)]


def eps_for(loss_type, eps):
    return eps if loss_type in ("sigmoid", "robust") else 0.0


def log_sigmoid(z):
    return -math.log1p(math.exp(-z)) if z >= 0 else z - math.log1p(math.exp(z))


def plain(d, beta, loss_type, eps):
    """The formulas of preference_losses' docstring, one pair at a time, in floats."""
    z = beta * d
    if loss_type == "sigmoid":
        return -(1 - eps) * log_sigmoid(z) - eps * log_sigmoid(-z)
    if loss_type == "robust":
        return (-(1 - eps) * log_sigmoid(z) + eps * log_sigmoid(-z)) / (1 - 2 * eps)
    if loss_type == "ipo":
        return (d - 1 / (2 * beta)) ** 2
    if loss_type == "hinge":
        return max(0.0, 1 - z)
    return -z


@FAST
@given(pairs, betas, kinds, smoothing)
def test_loss_family_is_finite_for_finite_inputs(rows, beta, loss_type, eps):
    eps = eps_for(loss_type, eps)
    out = dpo_loss(*tensors(rows), beta=beta, loss_type=loss_type, label_smoothing=eps)
    assert torch.isfinite(out.losses).all() and torch.isfinite(out.loss)
    assert all(math.isfinite(v) for v in out.metrics().values())


@FAST
@given(pairs, betas, kinds, smoothing)
def test_loss_equals_the_plain_formula(rows, beta, loss_type, eps):
    eps = eps_for(loss_type, eps)
    out = dpo_loss(*tensors(rows), beta=beta, loss_type=loss_type, label_smoothing=eps)
    for (pc, pr, rc, rr), got in zip(rows, out.losses.tolist()):
        want = plain((pc - rc) - (pr - rr), beta, loss_type, eps)
        assert math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-9)


@FAST
@given(pairs, betas, kinds, smoothing)
def test_swapping_chosen_and_rejected_mirrors_the_loss(rows, beta, loss_type, eps):
    """Swapping y_w and y_l turns d into -d; what that does, loss by loss:
    sigmoid L(d) - L(-d) = -(1 - 2 eps) beta d, robust -beta d / (1 - 2 eps),
    ipo -2 d / beta, hinge relu(1 - beta d) - relu(1 + beta d), unweighted -2 beta d."""
    eps = eps_for(loss_type, eps)
    pc, pr, rc, rr = tensors(rows)
    fwd = dpo_loss(pc, pr, rc, rr, beta, loss_type, eps)
    back = dpo_loss(pr, pc, rr, rc, beta, loss_type, eps)
    d = (pc - rc) - (pr - rr)
    z = beta * d
    gap = {
        "sigmoid": -(1 - 2 * eps) * z,
        "robust": -z / (1 - 2 * eps),
        "ipo": -2 * d / beta,
        "hinge": torch.relu(1 - z) - torch.relu(1 + z),
        "unweighted": -2 * z,
    }[loss_type]
    scale = 1 + fwd.losses.abs() + back.losses.abs()
    assert ((fwd.losses - back.losses - gap).abs() <= 1e-9 * scale).all()
    # the rewards trade places, the reward margin changes sign, the weights add to 1
    assert torch.equal(fwd.chosen_rewards, back.rejected_rewards)
    m, mb = fwd.metrics(), back.metrics()
    assert math.isclose(m["rewards/margins"], -mb["rewards/margins"], abs_tol=1e-9)
    w = dpo_gradient_weight(fwd.chosen_rewards, fwd.rejected_rewards)
    wb = dpo_gradient_weight(back.chosen_rewards, back.rejected_rewards)
    assert torch.allclose(w + wb, torch.ones_like(w), atol=1e-12)


@FAST
@given(st.floats(-1e6, 1e6), betas)
def test_sigmoid_loss_is_minus_log_sigma_of_the_reward_margin(d, beta):
    got = float(preference_losses(torch.tensor([d], dtype=torch.float64), beta)[0])
    assert math.isclose(got, -log_sigmoid(beta * d), rel_tol=1e-9, abs_tol=1e-12)


texts = st.text(min_size=0, max_size=40)


@FAST
@given(st.lists(texts, min_size=1, max_size=5))
def test_tokenizer_round_trips_any_text(corpus):
    tok = CharTokenizer.from_texts(corpus + ["a"])
    for text in corpus:
        ids = tok.encode(text, bos=True, eos=True)
        assert len(ids) == len(text) + 2 and ids[0] == tok.bos_id
        assert all(3 <= i < tok.vocab_size for i in ids[1:-1])
        assert tok.decode(ids) == text
        assert tok.decode(ids, skip_special=False) == f"<bos>{text}<eos>"
        assert tok.decode(torch.tensor(ids)) == text
    assert CharTokenizer.from_dict(tok.to_dict()) == tok


ALPHABET = " abcdefghijklmnopqrstuvwxyz"
TOK = CharTokenizer(tuple(ALPHABET))
torch.manual_seed(1)
MODEL = GPT(GPTConfig(TOK.vocab_size, block_size=32, n_layer=1, n_head=2, n_embd=16))
rows = st.lists(
    st.tuples(
        st.text(ALPHABET, min_size=0, max_size=12),
        st.text(ALPHABET, min_size=0, max_size=12),
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=30, deadline=None, derandomize=True)
@given(rows, st.booleans())
def test_a_batch_equals_its_rows_one_at_a_time(pairs_of_text, shared):
    if shared:  # one prompt for every row: the shared-prefix path
        pairs_of_text = [(pairs_of_text[0][0], c) for _, c in pairs_of_text]
    prompts = [p for p, _ in pairs_of_text]
    completions = [c for _, c in pairs_of_text]
    batch = build_batch(TOK, prompts, completions, block_size=32)
    with torch.no_grad():
        together = batch_logprobs(MODEL, batch)
        for i, (p, c) in enumerate(pairs_of_text):
            alone = build_batch(TOK, [p], [c], block_size=32)
            n = alone.input_ids.shape[1]
            # the row is the lone batch, right-padded
            assert torch.equal(batch.input_ids[i, :n], alone.input_ids[0])
            assert torch.equal(batch.targets[i, :n], alone.targets[0])
            assert torch.equal(batch.completion_mask[i, :n], alone.completion_mask[0])
            assert not batch.completion_mask[i, n:].any()
            assert batch.completion_mask[i].sum() == len(c) + 1  # completion + <eos>
            want = batch_logprobs(MODEL, alone)[0]
            assert abs(float(together[i] - want)) <= 1e-5
