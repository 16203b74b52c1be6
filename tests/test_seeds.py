"""The chapters' claims are not one seed's luck: the pizza run of the command line
(`python -m dpolib.pizza`, called in-process) for five seeds the chapters never use.

Each seed draws other candidate completions, other preference pairs and other evaluation
samples from the same shipped food model. Plain DPO (the CLI's defaults, chapter 5's
recipe) must reach pizza >= 0.95 with >= 0.98 well-formed samples out of 1000; the
anchored recipe (chapter 6) must also keep every other person's food distribution within
0.02 (total variation) of the reference.
"""

from __future__ import annotations

import json

import pytest

from dpolib.pizza.run import main

SEEDS = (11, 12, 13, 14, 15)
ANCHORED = ["--anchor-weight", "3", "--beta", "1", "--lr", "5e-5", "--epochs", "200"]


def pizza_run(capsys, *args: str) -> dict:
    main(list(args))
    return json.loads(capsys.readouterr().out)


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_plain_dpo_reaches_pizza_for_every_seed(capsys, seed):
    summary = pizza_run(capsys, "--seed", str(seed))
    assert summary["pizza_frequency_after"] >= 0.95, summary
    assert summary["well_formed_after"] >= 0.98, summary


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_anchored_recipe_keeps_the_others_for_every_seed(capsys, seed):
    summary = pizza_run(capsys, "--seed", str(seed), *ANCHORED)
    assert summary["pizza_frequency_after"] >= 0.95, summary
    assert summary["well_formed_after"] >= 0.98, summary
    assert summary["others_tvd_max"] <= 0.02, summary
