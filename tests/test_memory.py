"""The RLHF vs DPO memory calculator: unit rules, the 7B numbers, and a check against
real torch tensors."""

import math

import pytest
import torch

from dpolib.course.memory import (
    GB,
    TrainingRecipe,
    bytes_per_param,
    format_memory_table,
    generation_time_share,
    measure_activation_bytes,
    measure_training_memory,
    memory_table,
    model_memory,
    pipeline_memory,
    sequences_per_step,
)
from dpolib.model import GPT, GPTConfig


def test_bytes_per_param():
    assert bytes_per_param("fp32") == 4
    assert bytes_per_param("bf16") == bytes_per_param("fp16") == 2
    assert bytes_per_param("int8") == 1


def test_mixed_precision_adam_is_16_bytes_per_param():
    recipe = TrainingRecipe()
    assert (recipe.weight_bytes(), recipe.grad_bytes(), recipe.optimizer_bytes()) == (
        2,
        2,
        12,
    )
    assert recipe.bytes_per_trained_param() == 16
    m = model_memory("policy", 1e9, trained=True)
    assert m.total == 16e9 and m.bytes_per_param == 16
    # pure fp32 Adam: 4 + 4 + 8, no master copy, also 16
    assert TrainingRecipe(precision="fp32").bytes_per_trained_param() == 16
    # plain SGD in bf16 without a master copy: weights + grads only
    assert (
        TrainingRecipe(master_weights=False, n_moments=0).bytes_per_trained_param() == 4
    )


def test_frozen_models_cost_weights_only():
    m = model_memory("reference", 7e9, trained=False)
    assert (m.weights, m.grads, m.optimizer_states) == (14e9, 0.0, 0.0)
    assert (
        model_memory("reference", 7e9, trained=False, frozen_precision="int8").total
        == 7e9
    )


def test_7b_numbers():
    ppo = pipeline_memory("ppo", 7e9)
    dpo = pipeline_memory("dpo", 7e9)
    assert [m.name for m in ppo.models] == ["policy", "value", "reference", "reward"]
    assert [m.name for m in dpo.models] == ["policy", "reference"]
    assert ppo.n_trained == 2 and dpo.n_trained == 1
    assert model_memory("w", 7e9, trained=False).weights / GB == pytest.approx(14.0)
    # four 16-bit copies of a 7B model are 56 GB; 28 GB would be 1 byte per parameter
    assert ppo.weights / GB == pytest.approx(56.0)
    assert ppo.weights / GB != pytest.approx(28.0)
    assert 4 * model_memory(
        "w", 7e9, trained=False, frozen_precision="int8"
    ).weights / GB == pytest.approx(28.0)
    # model states: PPO 2 * 112 + 2 * 14 = 252 GB, DPO 112 + 14 = 126 GB
    assert ppo.total / GB == pytest.approx(252.0)
    assert dpo.total / GB == pytest.approx(126.0)
    assert pipeline_memory(
        "dpo", 7e9, precomputed_reference=True
    ).total / GB == pytest.approx(112.0)
    assert "252.0" in ppo.breakdown()


def test_table_sizes_and_ratio():
    rows = memory_table()
    assert [r.size for r in rows] == ["125M", "1B", "7B", "70B"]
    for r in rows:
        # (16 + 16 + 2 + 2) / (16 + 2) = 2 with every model the policy's size
        assert r.ratio == pytest.approx(2.0)
        assert r.dpo == pytest.approx(18 * r.n_params)
    text = format_memory_table(rows)
    assert "70B" in text and "2520.00" in text and "2.25" in text


def test_smaller_value_and_reward_models():
    ppo = pipeline_memory("ppo", 7e9, value_params=1e9, reward_params=1e9)
    assert ppo.total / GB == pytest.approx(112 + 16 + 14 + 2)


def test_bad_input():
    with pytest.raises(ValueError, match="precision"):
        bytes_per_param("fp8")
    with pytest.raises(ValueError, match="precision"):
        TrainingRecipe(precision="float16")
    with pytest.raises(ValueError, match=">= 0"):
        model_memory("policy", -1, trained=True)
    with pytest.raises(ValueError):
        model_memory("policy", math.inf, trained=True)
    with pytest.raises(TypeError):
        model_memory("policy", "7B", trained=True)
    with pytest.raises(ValueError, match="pipeline"):
        pipeline_memory("rloo", 7e9)
    with pytest.raises(ValueError, match="DPO only"):
        pipeline_memory("ppo", 7e9, precomputed_reference=True)
    with pytest.raises(ValueError, match="no value"):
        pipeline_memory("dpo", 7e9, value_params=1e9)
    with pytest.raises(ValueError, match="n_moments"):
        TrainingRecipe(n_moments=-1)
    with pytest.raises(ValueError, match="empty"):
        memory_table({})


def _gpt_loss(model: GPT) -> torch.Tensor:
    ids = torch.randint(
        0, model.config.vocab_size, (2, 8), generator=torch.Generator().manual_seed(0)
    )
    logits = model(ids)
    return torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), ids.reshape(-1)
    )


def test_measured_matches_calculator_on_tiny_gpt():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=20, n_layer=1, n_embd=16, n_head=2, block_size=8))
    before = [p.detach().clone() for p in model.parameters()]
    measured = measure_training_memory(model, _gpt_loss, lr=1e-3)
    # the caller's model is untouched
    assert all(torch.equal(a, p) for a, p in zip(before, model.parameters()))
    assert all(p.grad is None for p in model.parameters())
    n = model.num_parameters()
    assert measured.n_params == n
    calc = model_memory("gpt", n, trained=True, recipe=TrainingRecipe(precision="fp32"))
    assert measured.weights == calc.weights == 4 * n
    assert measured.grads == calc.grads
    assert measured.optimizer_states == calc.optimizer_states == 8 * n
    assert measured.state_names == ("exp_avg", "exp_avg_sq", "step")
    # Adam's step counters: one fp32 scalar per parameter tensor, independent of model
    # size
    assert measured.optimizer_other == 4 * len(list(model.parameters()))


def test_measured_bf16_weights():
    model = torch.nn.Linear(4, 3).to(torch.bfloat16)
    measured = measure_training_memory(
        model, lambda m: m(torch.ones(2, 4, dtype=torch.bfloat16)).float().sum()
    )
    assert measured.weights == measured.grads == 2 * 15
    with pytest.raises(TypeError):
        measure_training_memory("not a model", _gpt_loss)


def test_numpy_numbers_are_accepted():
    np = pytest.importorskip("numpy")
    assert model_memory("policy", np.int64(10), trained=True).total == 160
    assert model_memory("policy", np.float64(1e9), trained=False).total == 2e9


def test_grpo_has_no_value_model_and_a_verifiable_reward_drops_the_reward_model():
    grpo = pipeline_memory("grpo", 7e9)
    assert [m.name for m in grpo.models] == ["policy", "reference", "reward"]
    assert grpo.total / GB == pytest.approx(112 + 14 + 14)
    verifiable = pipeline_memory("grpo", 7e9, reward_params=0)
    assert [m.name for m in verifiable.models] == ["policy", "reference"]
    # critic-free with a verifiable reward: the same model states as DPO
    assert verifiable.total == pipeline_memory("dpo", 7e9).total
    with pytest.raises(ValueError, match="no value model"):
        pipeline_memory("grpo", 7e9, value_params=1e9)
    with pytest.raises(ValueError, match="DPO only"):
        pipeline_memory("grpo", 7e9, precomputed_reference=True)


def test_inference_engine_adds_one_frozen_copy_of_the_policy():
    for pipeline in ("ppo", "grpo"):
        plain = pipeline_memory(pipeline, 7e9)
        served = pipeline_memory(pipeline, 7e9, inference_engine=True)
        assert served.models[-1].name == "engine" and not served.models[-1].trained
        assert (served.total - plain.total) / GB == pytest.approx(14.0)
    int8 = pipeline_memory("ppo", 7e9, frozen_precision="int8", inference_engine=True)
    assert int8.models[-1].total / GB == pytest.approx(7.0)
    with pytest.raises(ValueError, match="never samples"):
        pipeline_memory("dpo", 7e9, inference_engine=True)


def test_sequences_per_step():
    assert sequences_per_step("dpo", 8) == 16 == 2 * sequences_per_step("sft", 8)
    assert sequences_per_step("ppo", 8) == 8
    assert sequences_per_step("grpo", 8, group_size=16) == 128
    with pytest.raises(ValueError, match="GRPO only"):
        sequences_per_step("dpo", 8, group_size=4)
    with pytest.raises(ValueError, match="batch_size"):
        sequences_per_step("dpo", 0)
    with pytest.raises(ValueError, match="unknown pipeline"):
        sequences_per_step("kto", 8)


def _rows_loss(rows: int):
    ids = torch.randint(0, 20, (rows, 8), generator=torch.Generator().manual_seed(1))

    def loss(model: GPT) -> torch.Tensor:
        return model(ids).float().logsumexp(-1).mean()

    return loss


def test_dpo_holds_twice_the_activations_of_sft():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=20, n_layer=2, n_embd=16, n_head=2, block_size=8))
    sizes = {
        rows: measure_activation_bytes(model, _rows_loss(rows)) for rows in (1, 2, 3, 6)
    }
    per_row = sizes[2] - sizes[1]
    # exactly linear in the rows: a per-sequence part, plus a few bytes (the position
    # indices) that do not depend on the batch
    assert sizes[6] - sizes[3] == 3 * per_row and sizes[3] - sizes[1] == 2 * per_row
    constant = sizes[1] - per_row
    assert 0 <= constant < 0.01 * per_row
    # chosen + rejected: a DPO batch of 3 pairs holds the activations of 6 sequences
    assert sizes[6] - constant == 2 * (sizes[3] - constant)
    with pytest.raises(ValueError, match="scalar"):
        measure_activation_bytes(model, lambda m: m(torch.zeros(1, 4).long()))
    with pytest.raises(TypeError):
        measure_activation_bytes("policy", _rows_loss(1))


def test_generation_time_share():
    # decoding at the training utilisation: 2N of 8N FLOPs per token
    assert generation_time_share(0.4, 0.4) == pytest.approx(0.25)
    # a third of training's utilisation: half the time
    assert generation_time_share(0.1, 0.3) == pytest.approx(0.5)
    assert generation_time_share(0.05, 0.4) > 0.7
    for bad in (0, 1.5, -0.1, True, "0.1"):
        with pytest.raises(ValueError, match="decode_utilisation"):
            generation_time_share(bad)
