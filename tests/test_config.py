import argparse
import math
from dataclasses import FrozenInstanceError, asdict, replace
from pathlib import Path

import pytest

from dpolib.config import DPOConfig, add_arguments, cli, from_arguments
from dpolib.losses import ABLATIONS, LOSS_TYPES


def test_defaults_follow_trl_names():
    cfg = DPOConfig()
    assert (cfg.beta, cfg.loss_type, cfg.label_smoothing) == (0.1, "sigmoid", 0.0)
    assert cfg.num_train_epochs == 1 and cfg.per_device_train_batch_size is None
    with pytest.raises(FrozenInstanceError):
        cfg.beta = 2.0  # type: ignore[misc]
    assert replace(cfg, beta=0.5).beta == 0.5


@pytest.mark.parametrize(
    "kw, error, match",
    [
        (dict(beta=0), ValueError, "beta must be"),
        (dict(beta=math.nan), ValueError, "beta must be"),
        (dict(loss_type="dpo"), ValueError, "loss_type must be one of"),
        (
            dict(label_smoothing=0.5),
            ValueError,
            r"label_smoothing must be in \[0, 0.5\)",
        ),
        (dict(label_smoothing=-0.1), ValueError, "label_smoothing must be >= 0"),
        (dict(num_train_epochs=2.5), TypeError, "num_train_epochs must be an integer"),
        (dict(num_train_epochs="3"), TypeError, "num_train_epochs must be an integer"),
        (dict(num_train_epochs=True), TypeError, "num_train_epochs must be an integer"),
        (dict(per_device_train_batch_size=0), ValueError, "batch_size must be >= 1"),
        (dict(checkpoint_every=3), ValueError, "needs a checkpoint_dir"),
        (dict(checkpoint_dir="d", checkpoint_every=0), ValueError, "must be >= 1"),
        (dict(checkpoint_dir=3), TypeError, "checkpoint_dir must be a path"),
        (dict(merge_identical_rows=1), TypeError, "True or False"),
        (dict(print_every=-2), ValueError, "print_every must be >= 1"),
    ],
)
def test_bad_values_are_refused(kw, error, match):
    with pytest.raises(error, match=match):
        DPOConfig(**kw)


def test_every_loss_type_is_accepted_and_paths_become_text():
    for t in LOSS_TYPES + ABLATIONS:  # the ablations too (chapter 3 trains one)
        DPOConfig(loss_type=t)
    cfg = DPOConfig(checkpoint_dir=Path("runs") / "a", checkpoint_every=2)
    assert cfg.checkpoint_dir == "runs/a" and isinstance(
        asdict(cfg)["checkpoint_dir"], str
    )
    assert "checkpoint_dir" not in cfg.training_settings()
    assert set(cfg.training_settings()) | set(DPOConfig.BOOKKEEPING) == set(asdict(cfg))


def test_command_line_from_a_config_class(capsys):
    from dataclasses import dataclass

    from dpolib.config import check_int

    @dataclass(frozen=True)
    class Demo:
        steps: int = cli("how many", default=3, flags=("-n",))
        fast: bool = cli("go fast", default=False)

        def __post_init__(self):
            check_int("steps", self.steps, 1)

    ap = argparse.ArgumentParser()
    add_arguments(ap, Demo)
    assert from_arguments(Demo, ap.parse_args(["-n", "5", "--fast"])) == Demo(5, True)
    assert from_arguments(Demo, ap.parse_args([])) == Demo()
    with pytest.raises(SystemExit):
        ap.parse_args(["--steps", "0"])
    assert "steps must be >= 1" in capsys.readouterr().err
