"""TRL's DPOTrainer against run_dpo_episodes on the pizza run, the mapping table, the
real-model recipe on the food model, and the two-process launch."""

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("trl")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from dpolib.hf import from_hf_model, to_hf_model, to_hf_tokenizer  # noqa: E402
from dpolib.losses import dpo_loss  # noqa: E402
from dpolib.pizza.trl import pizza_pairs  # noqa: E402
from dpolib.train import run_dpo_episodes  # noqa: E402
from dpolib.trl_map import (  # noqa: E402
    config_mapping,
    format_rows,
    loss_mapping,
    trl_loss_types,
)
from dpolib.trl_run import (  # noqa: E402
    METRICS,
    dpo_config,
    pairs_to_dataset,
    real_model_run,
    train_trl_dpo,
)

ROOT = Path(__file__).resolve().parents[1]
BETA, LR = 0.5, 1e-4


@pytest.fixture(scope="module")
def setup(food):
    reference, tok = food
    pairs, _ = pizza_pairs(reference, tok, 100, 0)
    return reference, tok, to_hf_tokenizer(tok), pairs


def _dpolib(reference, tok, pairs, steps, **kw):
    policy = copy.deepcopy(reference)
    opt = torch.optim.Adam(policy.parameters(), lr=LR)
    return run_dpo_episodes(
        steps, pairs, policy, reference, opt, tok, beta=BETA, progress=False, **kw
    )


def _trl(reference, tok, hf_tok, pairs, tmp_path, steps, **kw):
    config = dpo_config(
        tmp_path,
        beta=BETA,
        learning_rate=LR,
        num_train_epochs=steps,
        per_device_train_batch_size=len(pairs),
        **kw,
    )
    ref = None if kw.get("precompute_ref_log_probs") else to_hf_model(reference, tok)
    return train_trl_dpo(to_hf_model(reference, tok), ref, hf_tok, pairs, config)


def _max_diff(a, b, key):
    return max(abs(x[key] - y[key]) for x, y in zip(a, b, strict=True))


def test_pizza_pairs_are_the_cli_pairs(setup):
    reference, tok, _, pairs = setup
    assert len(pairs) == 100 and {p.chosen for p in pairs} == {"pizza"}
    again, before = pizza_pairs(reference, tok, 100, 0)
    assert again == pairs and 0.05 < before.target_frequency < 0.2


def test_trl_matches_dpolib_step_by_step(setup, tmp_path):
    reference, tok, hf_tok, pairs = setup
    steps = 6
    _, ours = _dpolib(reference, tok, pairs, steps)
    model, theirs = _trl(reference, tok, hf_tok, pairs, tmp_path, steps)
    assert [r["step"] for r in theirs] == list(range(1, steps + 1))
    assert _max_diff(ours, theirs, "loss") <= 1e-5
    for key in METRICS[1:]:
        assert _max_diff(ours, theirs, key) <= 1e-4, key
    assert ours[-1]["rewards/margins"] > 0.5  # it did train
    assert isinstance(from_hf_model(model), torch.nn.Module)


def test_clipping_changes_the_run(setup, tmp_path):
    """The parity test can fail: TRL's default max_grad_norm=1.0 gives another run."""
    reference, tok, hf_tok, pairs = setup
    _, ours = _dpolib(reference, tok, pairs, 4)
    _, clipped = _trl(reference, tok, hf_tok, pairs, tmp_path, 4, max_grad_norm=1.0)
    assert _max_diff(ours, clipped, "rewards/margins") > 1e-3


def test_precomputed_reference_and_sft_term(setup, tmp_path):
    reference, tok, hf_tok, pairs = setup
    _, plain = _trl(reference, tok, hf_tok, pairs, tmp_path, 2)
    _, pre = _trl(
        reference, tok, hf_tok, pairs, tmp_path, 2, precompute_ref_log_probs=True
    )
    assert _max_diff(plain, pre, "loss") <= 1e-6
    _, sft = _trl(
        reference,
        tok,
        hf_tok,
        pairs,
        tmp_path,
        1,
        loss_type=["sigmoid", "sft"],
        loss_weights=[1.0, 0.5],
    )
    # at the start: log 2 + 0.5 * (mean NLL per chosen token); "pizza<eos>" is 6 tokens
    nll = -plain[0]["logps/chosen"] / 6
    assert sft[0]["loss"] == pytest.approx(0.693147 + 0.5 * nll, abs=1e-5)


def test_ipo_is_per_token_and_sigmoid_ignores_label_smoothing(setup, tmp_path):
    """One step at learning rate 0 logs TRL's loss at a trained policy."""
    reference, tok, hf_tok, pairs = setup
    policy, _ = _dpolib(reference, tok, pairs, 5)
    from dpolib.logprobs import build_pair_batch, pair_logprobs

    data = build_pair_batch(tok, pairs)
    pc, pr = (t.detach() for t in pair_logprobs(policy, data))
    rc, rr = (t.detach() for t in pair_logprobs(reference, data))
    pca, pra = (t.detach() for t in pair_logprobs(policy, data, average=True))
    rca, rra = (t.detach() for t in pair_logprobs(reference, data, average=True))

    def trl_loss(**kw):
        config = dpo_config(
            tmp_path,
            beta=BETA,
            learning_rate=0.0,
            max_steps=1,
            per_device_train_batch_size=100,
            **kw,
        )
        _, h = train_trl_dpo(
            to_hf_model(policy, tok), to_hf_model(reference, tok), hf_tok, pairs, config
        )
        return h[0]["loss"]

    ipo = trl_loss(loss_type="ipo")
    per_token = float(dpo_loss(pca, pra, rca, rra, BETA, "ipo").loss)
    summed = float(dpo_loss(pc, pr, rc, rr, BETA, "ipo").loss)
    assert ipo == pytest.approx(per_token, abs=1e-4)
    assert abs(ipo - summed) > 0.01
    smoothed = trl_loss(loss_type="sigmoid", label_smoothing=0.2)
    plain = float(dpo_loss(pc, pr, rc, rr, BETA).loss)
    cdpo = float(dpo_loss(pc, pr, rc, rr, BETA, label_smoothing=0.2).loss)
    assert smoothed == pytest.approx(plain, abs=1e-5)
    assert abs(smoothed - cdpo) > 0.01


def test_ref_model_none_with_an_in_memory_model_is_a_clear_error(setup, tmp_path):
    reference, tok, hf_tok, pairs = setup
    config = dpo_config(tmp_path, beta=BETA, per_device_train_batch_size=100)
    with pytest.raises(ValueError, match="ref_model is None.*deepcopy"):
        train_trl_dpo(to_hf_model(reference, tok), None, hf_tok, pairs, config)
    with pytest.raises(TypeError, match="trl.DPOConfig"):
        train_trl_dpo(to_hf_model(reference, tok), None, hf_tok, pairs, {"beta": BETA})


def test_parity_settings_are_what_dpolib_computes(tmp_path):
    config = dpo_config(tmp_path)
    assert config.bf16 is False and config.max_grad_norm == 0.0
    assert not config.activation_checkpointing and not config.gradient_checkpointing
    assert getattr(config.lr_scheduler_type, "value", None) == "constant"
    default = dpo_config(tmp_path, parity=False)
    assert default.max_grad_norm == 1.0 and default.activation_checkpointing


def test_mapping_covers_run_dpo_episodes_and_exists_in_trl():
    rows = config_mapping()
    import inspect

    from trl import DPOConfig

    names = {r.dpolib for r in rows} - {"(none)"}
    assert names == set(inspect.signature(run_dpo_episodes).parameters)
    fields = set(DPOConfig.__dataclass_fields__)
    for r in rows:
        if r.kind == "config":
            assert set(r.trl) <= fields, r
    beta = next(r for r in rows if r.dpolib == "beta")
    assert beta.trl == ("beta",) and beta.trl_default == repr(
        DPOConfig.__dataclass_fields__["beta"].default
    )
    assert {"sigmoid", "ipo", "hinge", "robust", "sft"} <= set(trl_loss_types())
    losses = {r.dpolib: r.trl for r in loss_mapping()}
    assert losses["ipo"] == ("ipo",) and losses["unweighted"] == ()
    assert "num_train_epochs" in format_rows(rows)


def test_mapping_breaks_on_a_renamed_field(monkeypatch):
    from dpolib import trl_map

    bad = dict(trl_map._ARGUMENTS)
    bad["beta"] = ("config", ("dpo_beta",), "renamed")
    monkeypatch.setattr(trl_map, "_ARGUMENTS", bad)
    with pytest.raises(ValueError, match="dpo_beta"):
        trl_map.config_mapping()


def test_real_model_recipe_runs_on_the_food_model(setup, tmp_path):
    """The Colab section's code path, with the food model and the pizza pairs in place
    of the hub model and dataset."""
    reference, tok, hf_tok, pairs = setup
    config = dpo_config(
        tmp_path,
        beta=BETA,
        learning_rate=1e-3,
        num_train_epochs=3,
        per_device_train_batch_size=50,
        parity=False,  # the Colab recipe keeps TRL's defaults, except these:
        bf16=False,
    )
    out = real_model_run(
        to_hf_model(reference, tok),
        hf_tok,
        pairs_to_dataset(pairs),
        config,
        ["ravin likes "] * 3,
        max_new_tokens=12,
    )
    assert len(out["history"]) == 6 and len(out["before"]) == len(out["after"]) == 3
    assert out["history"][-1]["rewards/margins"] > out["history"][0]["rewards/margins"]
    assert all(isinstance(s, str) for s in out["after"])


def test_colab_cells_call_the_tested_function():
    """The real-model cells do nothing off Colab (no stored outputs) and call the
    function the test above runs."""
    nb = json.loads((ROOT / "chapters" / "10_dpolib_to_trl.ipynb").read_text())
    colab = [
        c
        for c in nb["cells"]
        if c["cell_type"] == "code" and "if REAL_MODEL:" in "".join(c["source"])
    ]
    assert len(colab) == 2, "the real-model section is missing"
    assert 'REAL_MODEL = "google.colab" in sys.modules' in "".join(colab[0]["source"])
    assert any("real_model_run(" in "".join(c["source"]) for c in colab)
    for c in colab:
        assert not c.get("outputs")


@pytest.mark.slow
def test_two_processes_match_one(tmp_path):
    """accelerate launch with 2 CPU processes (gloo), 50 pairs each: the same global
    batch as one process with 100, the same run to float32 rounding (1e-5)."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
    }
    bin_dir = Path(sys.executable).parent
    common = ["--epochs", "3", "--workdir", str(tmp_path / "w")]
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    subprocess.run(
        [sys.executable, "-m", "dpolib.pizza.trl", *common, "--out", str(one)],
        env=env,
        check=True,
        capture_output=True,
    )
    launch = [str(bin_dir / "accelerate"), "launch", "--multi_gpu"]
    launch += ["--num_processes", "2", "--num_machines", "1"]
    launch += ["--mixed_precision", "no", "--dynamo_backend", "no"]
    subprocess.run(
        [*launch, "-m", "dpolib.pizza.trl", *common, "--out", str(two)],
        env=env,
        check=True,
        capture_output=True,
    )
    a, b = json.loads(one.read_text()), json.loads(two.read_text())
    assert (a["world_size"], b["world_size"]) == (1, 2)
    assert len(a["history"]) == len(b["history"]) == 3
    for key in METRICS:
        assert _max_diff(a["history"], b["history"], key) <= 1e-5, key


@pytest.mark.parametrize("name", ["1gpu", "ddp", "fsdp", "zero3"])
def test_accelerate_configs_parse(name, tmp_path):
    """As far as a CPU can test them: accelerate reads each file into its config."""
    from accelerate.commands.config.config_args import ClusterConfig

    from dpolib.course.trl_scale import ACCELERATE_CONFIGS

    path = tmp_path / f"{name}.yaml"
    path.write_text(ACCELERATE_CONFIGS[name])
    cfg = ClusterConfig.from_yaml_file(path)
    expected = {"1gpu": "NO", "ddp": "MULTI_GPU", "fsdp": "FSDP", "zero3": "DEEPSPEED"}
    assert str(cfg.distributed_type).split(".")[-1] == expected[name]
    if name == "zero3":
        assert cfg.deepspeed_config["zero_stage"] == 3
    if name == "fsdp":
        assert cfg.fsdp_config["fsdp_version"] == 2


def test_scale_table_from_the_memory_calculator():
    from dpolib.course.memory import GB, pipeline_memory
    from dpolib.course.trl_scale import scale_table

    rows = {r.size: r for r in scale_table(8)}
    assert rows["7B"].one_gpu == pytest.approx(7e9 * (16 + 2) / GB)
    assert rows["7B"].ddp == rows["7B"].one_gpu
    assert rows["70B"].sharded == pytest.approx(rows["70B"].one_gpu / 8)
    pre = pipeline_memory("dpo", 0.5e9, precomputed_reference=True).total / GB
    assert rows["0.5B"].sharded_precomputed == pytest.approx(pre / 8)
    with pytest.raises(ValueError, match="n_gpus"):
        scale_table(0)
