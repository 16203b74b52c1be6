"""train_dpo, DPOConfig and run_dpo_episodes: the same run three ways, and every way a
run can go wrong (bad settings, NaN, resume with other data, ...) caught clearly."""

import copy
import math
from dataclasses import asdict

import pytest
import torch

from dpolib.checkpoint import load_dpo_checkpoint, read_checkpoint, save_checkpoint
from dpolib.config import DPOConfig
from dpolib.data import PreferencePair
from dpolib.logprobs import batch_logprobs, build_batch, build_pair_batch
from dpolib.losses import dpo_loss, token_kl_to_reference
from dpolib.pretrain import NonFiniteLossError
from dpolib.train import (
    Anchor,
    PreparedPairs,
    dpo_step,
    run_dpo_episodes,
    train_dpo,
)

PROMPT = "ravin likes "
FOODS = ["pizza", "pasta", "curry", "falafel", "noodles", "dumplings"]


@pytest.fixture
def toy(tiny, tok):
    """A tiny random policy and reference, 12 pairs with repeats, an anchor."""
    g = torch.Generator().manual_seed(3)
    idx = torch.randint(1, len(FOODS), (12,), generator=g).tolist()
    pairs = [PreferencePair(PROMPT, "pizza", FOODS[i]) for i in idx]
    anchor = Anchor(["zoe likes ", "leo likes "], ["soup", "ramen"], [3.0, 1.0], 2.0)
    return copy.deepcopy(tiny), copy.deepcopy(tiny), tok, pairs, anchor


def old_loop(epochs, pairs, policy, reference, opt, tok, beta, batch, gen, anchor):
    """A plain re-derivation of run_dpo_episodes as it was before train_dpo existed."""
    block, dev = policy.config.block_size, policy.device
    data = build_pair_batch(tok, pairs, block, True, dev)
    with torch.no_grad():
        ref = batch_logprobs(reference, data.rows)
        rows = build_batch(tok, anchor.prompts, anchor.completions, block, dev)
        ref_logits = reference(rows.input_ids)
    counts = torch.tensor(anchor.counts)
    history = []
    policy.train()
    for epoch in range(epochs):
        for idx in torch.randperm(len(pairs), generator=gen).split(batch):
            ci, ri = data.chosen_index[idx], data.rejected_index[idx]
            needed, inv = torch.unique(torch.cat([ci, ri]), return_inverse=True)
            logps = batch_logprobs(policy, data.rows.select(needed))
            n = len(idx)
            out = dpo_loss(
                logps[inv[:n]], logps[inv[n:]], ref[ci], ref[ri], beta, "sigmoid", 0.0
            )
            rec = out.metrics()
            kl = token_kl_to_reference(
                policy(rows.input_ids), ref_logits, rows.completion_mask, counts
            )
            loss = out.loss + anchor.weight * kl
            rec["anchor/kl"], rec["loss/total"] = (
                float(kl.detach()),
                float(loss.detach()),
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            history.append({"epoch": epoch + 1, "step": len(history) + 1, **rec})
    return history


def test_run_dpo_episodes_equals_train_dpo_and_the_original_loop(toy):
    policy, reference, tok, pairs, anchor = toy
    runs = []
    for how in ("wrapper", "train_dpo", "original"):
        p = copy.deepcopy(policy)
        opt = torch.optim.Adam(p.parameters(), lr=1e-2)
        gen = torch.Generator().manual_seed(7)
        if how == "wrapper":
            _, h = run_dpo_episodes(
                3, pairs, p, reference, opt, tok, beta=0.3, batch_size=5,
                anchor=anchor, generator=gen, progress=False,
            )  # fmt: skip
        elif how == "train_dpo":
            cfg = DPOConfig(beta=0.3, num_train_epochs=3, per_device_train_batch_size=5)
            _, h = train_dpo(
                p, reference, tok, pairs, opt, cfg, anchor=anchor, generator=gen,
                progress=False,
            )  # fmt: skip
        else:
            h = old_loop(3, pairs, p, reference, opt, tok, 0.3, 5, gen, anchor)
        runs.append((h, [t.clone() for t in p.parameters()]))
    (h0, w0), (h1, w1), (h2, w2) = runs
    assert len(h0) == 9 and h0 == h1 == h2  # bitwise: floats compared with ==
    assert all(torch.equal(a, b) and torch.equal(a, c) for a, b, c in zip(w0, w1, w2))


def test_dpo_step_is_the_dpo_loss_of_the_batch(toy):
    policy, reference, tok, pairs, _ = toy
    cfg = DPOConfig(beta=0.5)
    prepared = PreparedPairs.prepare(pairs, policy, reference, tok, cfg)
    idx = torch.tensor([0, 3, 4])
    loss, record = dpo_step(policy, prepared, idx, cfg)
    c = build_batch(tok, [PROMPT] * 3, [pairs[i].chosen for i in idx], 32)
    r = build_batch(tok, [PROMPT] * 3, [pairs[i].rejected for i in idx], 32)
    with torch.no_grad():
        u_w = batch_logprobs(policy, c) - batch_logprobs(reference, c)
        u_l = batch_logprobs(policy, r) - batch_logprobs(reference, r)
    plain = -torch.nn.functional.logsigmoid(0.5 * (u_w - u_l)).mean()
    assert float(loss) == pytest.approx(float(plain), abs=1e-6)
    assert record["rewards/margins"] == pytest.approx(float(0.5 * (u_w - u_l).mean()))


def test_config_is_stored_in_checkpoints(toy, tmp_path):
    policy, reference, tok, pairs, _ = toy
    opt = torch.optim.Adam(policy.parameters(), lr=1e-3)
    cfg = DPOConfig(beta=0.2, num_train_epochs=2, checkpoint_dir=tmp_path)
    train_dpo(policy, reference, tok, pairs, opt, cfg, progress=False)
    # no checkpoint_every: one checkpoint, after the last epoch
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dpo_epoch_0002.pt"]
    ck = load_dpo_checkpoint(tmp_path / "dpo_epoch_0002.pt")
    assert ck.extra["config"] == asdict(cfg) and DPOConfig(**ck.extra["config"]) == cfg
    assert ck.extra["optimizer_settings"] == {"class": "Adam", "lr": [1e-3]}


def test_optimizer_on_the_reference_is_refused(toy):
    policy, reference, tok, pairs, _ = toy
    wrong = torch.optim.Adam(reference.parameters(), lr=1e-3)
    with pytest.raises(ValueError, match="holds the reference's parameters"):
        run_dpo_episodes(2, pairs, policy, reference, wrong, tok)
    other = torch.optim.Adam(torch.nn.Linear(2, 2).parameters())
    with pytest.raises(ValueError, match="none of the policy's parameters"):
        run_dpo_episodes(2, pairs, policy, reference, other, tok)
    with pytest.raises(TypeError, match="torch.optim.Optimizer"):
        run_dpo_episodes(2, pairs, policy, reference, "adam", tok)


class Overflowing(torch.optim.SGD):
    """SGD whose second step overflows one weight to inf, as a far too high lr does."""

    def step(self, closure=None):
        super().step(closure)
        self.steps = getattr(self, "steps", 0) + 1
        if self.steps == 2:
            with torch.no_grad():
                self.param_groups[0]["params"][0].mul_(1e38).mul_(1e38)


def test_step_that_overflows_the_weights_is_undone(toy, tmp_path):
    policy, reference, tok, pairs, _ = toy
    opt = Overflowing(policy.parameters(), lr=1e-3)
    kw = dict(checkpoint_dir=tmp_path, checkpoint_every=1, progress=False)
    after_one = []
    cb = lambda r: after_one.append([t.clone() for t in policy.parameters()])  # noqa
    with pytest.raises(NonFiniteLossError, match="restored to its state before") as e:
        run_dpo_episodes(3, pairs, policy, reference, opt, tok, callback=cb, **kw)
    assert "its weights are finite; the last checkpoint is" in str(e.value)
    assert all(torch.equal(a, b) for a, b in zip(after_one[0], policy.parameters()))
    # only the finite epoch-1 checkpoint exists, and it holds the restored weights
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dpo_epoch_0001.pt"]
    saved = load_dpo_checkpoint(tmp_path / "dpo_epoch_0001.pt").model
    assert all(torch.equal(a, b) for a, b in zip(saved.parameters(), after_one[0]))


def test_far_too_high_lr_stops_with_finite_weights(toy, tmp_path):
    policy, reference, tok, pairs, _ = toy
    opt = torch.optim.SGD(policy.parameters(), lr=1e38)
    with pytest.raises(NonFiniteLossError, match="Lower the learning rate"):
        run_dpo_episodes(
            5, pairs, policy, reference, opt, tok, checkpoint_dir=tmp_path,
            checkpoint_every=1, progress=False,
        )  # fmt: skip
    assert all(p.isfinite().all() for p in policy.parameters())
    for path in tmp_path.iterdir():  # load_checkpoint refuses non-finite weights
        load_dpo_checkpoint(path)


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(checkpoint_every=0), "checkpoint_every must be >= 1"),
        (dict(checkpoint_every=2.5), "checkpoint_every must be an integer"),
        (dict(checkpoint_every=-1), "checkpoint_every must be >= 1"),
        (dict(num_epochs=2.5), "num_train_epochs must be an integer"),
        (dict(num_epochs="3"), "num_train_epochs must be an integer"),
        (dict(num_epochs=-1), "num_train_epochs must be >= 0"),
    ],
)
def test_bad_settings_are_refused(toy, tmp_path, kw, match):
    policy, reference, tok, pairs, _ = toy
    opt = torch.optim.Adam(policy.parameters())
    n = kw.pop("num_epochs", 2)
    with pytest.raises((TypeError, ValueError), match=match):
        run_dpo_episodes(
            n, pairs, policy, reference, opt, tok, checkpoint_dir=tmp_path, **kw
        )


def test_unwritable_checkpoint_dir_is_found_before_training(toy, tmp_path):
    policy, reference, tok, pairs, _ = toy
    opt = torch.optim.Adam(policy.parameters())
    (tmp_path / "f").write_text("x")
    steps = []
    with pytest.raises(ValueError, match="cannot be written"):
        run_dpo_episodes(
            3, pairs, policy, reference, opt, tok, checkpoint_dir=tmp_path / "f" / "d",
            checkpoint_every=1, callback=steps.append,
        )  # fmt: skip
    assert steps == []


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: Anchor(["a "], ["b", "c"], [1.0]), "one completion and one count"),
        (lambda: Anchor(["a "], ["b"], [1.0, 2.0]), "one completion and one count"),
        (lambda: Anchor(["a "], ["b"], [0.0]), "finite numbers > 0"),
        (lambda: Anchor(["a "], ["b"], [math.nan]), "finite numbers > 0"),
        (lambda: Anchor(["a "], ["b"], [1.0], math.nan), "anchor weight must be a fin"),
        (lambda: Anchor(["a "], ["b"], [1.0], -1.0), "anchor weight must be >= 0"),
    ],
)
def test_bad_anchor_is_refused(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_anchor_changed_after_building_is_checked(toy):
    policy, reference, tok, pairs, anchor = toy
    anchor.counts = [1.0]
    opt = torch.optim.Adam(policy.parameters())
    with pytest.raises(ValueError, match="one completion and one count"):
        run_dpo_episodes(1, pairs, policy, reference, opt, tok, anchor=anchor)


def _checkpointed(toy, tmp_path, opt_class=torch.optim.Adam, **kw):
    policy, reference, tok, pairs, _ = toy
    opt = opt_class(policy.parameters(), lr=1e-3)
    run_dpo_episodes(
        2, pairs, policy, reference, opt, tok, checkpoint_dir=tmp_path,
        checkpoint_every=2, progress=False, **kw,
    )  # fmt: skip
    return tmp_path / "dpo_epoch_0002.pt"


def fresh(reference, opt_class=torch.optim.Adam, lr=1e-3):
    p = copy.deepcopy(reference)
    return p, opt_class(p.parameters(), lr=lr)


def test_resume_with_other_pairs_or_reference_is_refused(toy, tmp_path):
    _, reference, tok, pairs, _ = toy
    ckpt = _checkpointed(toy, tmp_path)
    p, o = fresh(reference)
    with pytest.raises(ValueError, match="other preference pairs"):
        run_dpo_episodes(4, pairs[1:], p, reference, o, tok, resume_from=ckpt)
    other_ref = copy.deepcopy(reference)
    with torch.no_grad():
        other_ref.head.weight.add_(0.01)
    with pytest.raises(ValueError, match="other reference model"):
        run_dpo_episodes(4, pairs, p, other_ref, o, tok, resume_from=ckpt)


def test_resume_from_adam_into_sgd_is_refused(toy, tmp_path):
    _, reference, tok, pairs, _ = toy
    ckpt = _checkpointed(toy, tmp_path)
    p, o = fresh(reference, torch.optim.SGD)
    with pytest.raises(ValueError, match="Adam optimizer, not of SGD"):
        run_dpo_episodes(4, pairs, p, reference, o, tok, resume_from=ckpt)


def test_resume_keeps_the_new_learning_rate_and_says_so(toy, tmp_path):
    _, reference, tok, pairs, _ = toy
    ckpt = _checkpointed(toy, tmp_path)
    p, o = fresh(reference, lr=1e-4)
    with pytest.warns(UserWarning, match="lr is the new"):
        run_dpo_episodes(3, pairs, p, reference, o, tok, resume_from=ckpt)
    assert o.param_groups[0]["lr"] == 1e-4
    assert o.state_dict()["state"][0]["step"] == 3  # the moments came from the file


def test_resume_needs_the_generator_and_enough_epochs(toy, tmp_path):
    _, reference, tok, pairs, _ = toy
    ckpt = _checkpointed(
        toy, tmp_path, batch_size=4, generator=torch.Generator().manual_seed(1)
    )
    p, o = fresh(reference)
    kw = dict(batch_size=4, resume_from=ckpt)
    with pytest.raises(ValueError, match="pass a torch.Generator"):
        run_dpo_episodes(4, pairs, p, reference, o, tok, **kw)
    with pytest.raises(ValueError, match="beyond num_train_epochs=1"):
        run_dpo_episodes(
            1, pairs, p, reference, o, tok, generator=torch.Generator(), **kw
        )


def test_checkpoint_of_dpo_settings_roundtrips_safely(toy, tmp_path):
    ckpt = _checkpointed(toy, tmp_path)
    raw = read_checkpoint(ckpt)  # weights_only=True: only plain values inside
    assert raw["extra"]["config"]["checkpoint_dir"] == str(tmp_path)
    policy, _, tok, _, _ = toy
    save_checkpoint(tmp_path / "again.pt", policy, tok, **raw["extra"])
