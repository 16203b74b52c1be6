import json

import pytest

from dpolib import pizza


def test_pipeline_end_to_end(tmp_path, capsys):
    pizza.main(["--epochs", "20", "--out", str(tmp_path)])
    summary = json.loads(capsys.readouterr().out)
    assert summary["pizza_frequency_before"] < 0.2
    assert (
        summary["pizza_frequency_after"] >= 0.95
        and summary["well_formed_after"] >= 0.98
    )
    assert (tmp_path / "pizza_policy.pt").is_file()
    from dpolib.checkpoint import load_dpo_checkpoint

    ck = load_dpo_checkpoint(tmp_path / "pizza_policy.pt")
    assert ck.step == 20 and len(ck.extra["history"]) == 20


def test_beta_must_be_positive(capsys):
    with pytest.raises(SystemExit):
        pizza.main(["--beta", "0"])
    assert "--beta must be > 0" in capsys.readouterr().err
