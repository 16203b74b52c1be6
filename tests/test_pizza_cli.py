import json
from dataclasses import asdict, fields

import pytest
import torch

from dpolib import pizza
from dpolib.checkpoint import load_dpo_checkpoint
from dpolib.config import DPOConfig
from dpolib.pizza.food import FoodRecipe
from dpolib.pizza.food import main as food_main
from dpolib.pizza.run import PizzaRunConfig, run


@pytest.mark.slow
def test_pipeline_end_to_end(tmp_path, capsys):
    pizza.main(["--epochs", "20", "--out", str(tmp_path)])
    summary = json.loads(capsys.readouterr().out)
    assert summary["pizza_frequency_before"] < 0.2
    assert (
        summary["pizza_frequency_after"] >= 0.95
        and summary["well_formed_after"] >= 0.98
    )
    ck = load_dpo_checkpoint(tmp_path / "pizza_policy.pt")
    assert ck.step == 20 and len(ck.extra["history"]) == 20
    # the checkpoint stores the run's settings and the DPO config, field for field
    assert set(ck.extra["run"]) == {f.name for f in fields(PizzaRunConfig)}
    assert ck.extra["config"] == asdict(DPOConfig(beta=0.5, num_train_epochs=20))
    assert PizzaRunConfig(**ck.extra["run"]).dpo_config() == DPOConfig(
        **ck.extra["config"]
    )


def options(main, capsys) -> set[str]:
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    return {w.strip("[],") for w in text.split() if w.startswith(("--", "[--"))}


def test_cli_options_are_the_config_fields(capsys):
    opts = options(pizza.main, capsys) - {"--help"}
    names = {"--" + f.name.replace("_", "-") for f in fields(PizzaRunConfig)}
    assert names <= opts  # one option per field ...
    assert opts - names == {"--epochs", "--lr", "--pairs"}  # ... plus the old aliases
    food = options(food_main, capsys) - {"--help", "--out"}
    assert food == {"--" + f.name.replace("_", "-") for f in fields(FoodRecipe)}
    # the settings the pizza run shares with DPOConfig have DPOConfig's names
    dpo = {f.name for f in fields(DPOConfig)}
    assert {"beta", "num_train_epochs"} <= dpo & {
        f.name for f in fields(PizzaRunConfig)
    }


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--beta", "0"], "beta must be > 0"),
        (["--beta", "nan"], "beta must be a finite number"),
        (["--beta", "inf"], "beta must be a finite number"),
        (["--seed", str(2**70)], "seed must be below 2**63"),
        (["--seed", "-1"], "seed must be >= 0"),
        (["--epochs", "-1"], "num_train_epochs must be >= 1"),
        (["--epochs", "2.5"], "invalid"),
        (["--lr", "-1"], "learning_rate must be > 0"),
        (["--lr", "nan"], "learning_rate must be a finite number"),
        (["--pairs", "0"], "n_pairs must be >= 1"),
        (["--anchor-weight", "-1"], "anchor_weight must be >= 0"),
        (["--device", "foo"], "not a device"),
        (["--device", "cuda:99"], "no such CUDA device"),
    ],
)
def test_bad_options_are_usage_errors_before_any_work(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        pizza.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "usage:" in err


def test_out_that_cannot_be_a_folder_is_a_usage_error(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    for out in (tmp_path / "file", tmp_path / "file" / "below"):
        with pytest.raises(SystemExit) as e:
            pizza.main(["--out", str(out)])
        assert e.value.code == 2 and "is a file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        food_main(["--out", str(tmp_path)])
    assert e.value.code == 2 and "is a folder" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        food_main(["--out", str(tmp_path / "file" / "m.pt")])
    assert e.value.code == 2 and "is a file" in capsys.readouterr().err


def test_food_options_are_checked(capsys):
    with pytest.raises(SystemExit) as e:
        food_main(["--steps", "0"])
    assert e.value.code == 2 and "steps must be >= 1" in capsys.readouterr().err
    with pytest.raises(ValueError, match="divisible"):
        FoodRecipe(n_head=3)


def test_run_config_checks_itself():
    with pytest.raises(TypeError, match="retrain must be True or False"):
        PizzaRunConfig(retrain=1)
    with pytest.raises(ValueError, match="beta"):
        run(beta=-1.0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        pizza.main(["--device", "cuda"])
    assert e.value.code == 2 and "no such CUDA device" in capsys.readouterr().err
