import math

import pytest
import torch

from dpolib.data import PreferencePair, build_preference_pairs, validate_pairs

PROMPT = "ravin likes "


@pytest.mark.parametrize("bad", [None, 3, ["pizza"], b"pizza"])
@pytest.mark.parametrize("field", ["prompt", "chosen", "rejected"])
def test_non_text_fields_are_refused_with_the_pairs_index(field, bad):
    good = PreferencePair(PROMPT, "pizza", "pasta")
    fields = {"prompt": PROMPT, "chosen": "pizza", "rejected": "pasta", field: bad}
    pairs = [good, good, PreferencePair(**fields)]
    with pytest.raises(TypeError, match=f"pair 2 has {field}=.* must be a str"):
        validate_pairs(pairs)


def test_nan_reward_is_refused():
    reward = {"pizza": 1.0, "pasta": math.nan, "curry": 0.0}
    with pytest.raises(ValueError, match="gave nan for candidate 'pasta'"):
        build_preference_pairs(PROMPT, list(reward), lambda p, c: reward[c], 5)


@pytest.mark.parametrize("n", [2.5, "3", True, 0, -1])
def test_n_pairs_must_be_a_positive_integer(n):
    with pytest.raises(ValueError, match="n_pairs must be an integer >= 1"):
        build_preference_pairs(PROMPT, ["pizza", "pasta"], lambda p, c: c == "pizza", n)


def test_pairs_follow_the_reward():
    pairs = build_preference_pairs(
        PROMPT,
        ["pizza", "pasta", "curry", "pizza"],
        lambda p, c: float(c == "pizza"),
        20,
        torch.Generator().manual_seed(0),
    )
    assert len(pairs) == 20 and validate_pairs(pairs) == pairs
    assert all(p.chosen == "pizza" and p.rejected in ("pasta", "curry") for p in pairs)
