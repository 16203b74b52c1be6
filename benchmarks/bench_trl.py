"""Speed of the pizza run in dpolib (rows merged, unmerged) and in TRL's DPOTrainer.

Prints, from one run on the same model and pairs: the median CPU ms per training step
of each (this process's CPU time between consecutive steps, taken by a callback, so a
busy machine's other programs do not count), the wall-clock time of 20 steps
including setup (TRL: trainer construction and dataset tokenization; dpolib: the
reference's log-probs), and the ratios. One torch thread, CPU.
With --rlhf it also times the RLHF half: the reward model (train_reward_model against
RewardTrainer, CPU ms per full-batch step) and GRPO (train_grpo against GRPOTrainer,
CPU ms per batch of 64 sampled completions with its two updates).
Usage: HF_HUB_OFFLINE=1 python benchmarks/bench_trl.py [--steps 20] [--repeats 3]
       [--rlhf]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import tempfile
import time
import warnings

import torch

from dpolib import load_food_model, run_dpo_episodes, seed_everything
from dpolib.hf import to_hf_model, to_hf_tokenizer
from dpolib.pizza.trl import pizza_pairs
from dpolib.trl_run import dpo_config, train_trl_dpo


def timed_run(fn) -> tuple[float, float]:
    """(median CPU seconds between steps, wall seconds end to end) of fn(callback)."""
    stamps: list[float] = []
    t0 = time.perf_counter()
    fn(lambda record: stamps.append(time.process_time()))
    total = time.perf_counter() - t0
    return statistics.median(b - a for a, b in zip(stamps, stamps[1:])), total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rlhf", action="store_true", help="also time RewardTrainer, GRPO")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    warnings.filterwarnings("ignore")
    import transformers

    transformers.logging.set_verbosity_error()
    seed_everything(0)
    reference, tok = load_food_model("cpu")
    pairs, _ = pizza_pairs(reference, tok, 100, 0)
    hf_tok = to_hf_tokenizer(tok)
    workdir = tempfile.mkdtemp(prefix="bench_trl_")

    def dpolib_run(merge: bool):
        def fn(callback):
            policy = copy.deepcopy(reference)
            opt = torch.optim.Adam(policy.parameters(), lr=1e-4)
            run_dpo_episodes(
                args.steps, pairs, policy, reference, opt, tok, beta=0.5,
                progress=False, merge_identical=merge, callback=callback,
            )  # fmt: skip

        return fn

    def trl_run(callback, **settings):
        config = dpo_config(
            workdir, beta=0.5, learning_rate=1e-4, num_train_epochs=args.steps,
            per_device_train_batch_size=len(pairs), **settings,
        )  # fmt: skip
        ref = (
            None
            if settings.get("precompute_ref_log_probs")
            else to_hf_model(reference, tok)
        )
        train_trl_dpo(to_hf_model(reference, tok), ref, hf_tok, pairs, config, callback)

    runs = {
        "dpolib (merged rows)": dpolib_run(True),
        "dpolib (unmerged)": dpolib_run(False),
        "TRL": trl_run,
        "TRL (precomputed reference)": lambda cb: trl_run(
            cb, precompute_ref_log_probs=True
        ),
    }
    trl_run(lambda r: None)  # warm-up: first-import and first-trainer costs
    results = {}
    for name, fn in runs.items():
        samples = [timed_run(fn) for _ in range(args.repeats)]
        results[name] = {
            "ms_per_step": 1000 * statistics.median(s[0] for s in samples),
            "seconds_end_to_end": statistics.median(s[1] for s in samples),
        }
    base = results["dpolib (merged rows)"]["ms_per_step"]
    unmerged = results["dpolib (unmerged)"]["ms_per_step"]
    print(f"pizza run, {args.steps} full-batch steps of 100 pairs, medians of "
          f"{args.repeats} runs, one thread")  # fmt: skip
    print(
        f"{'':<28} {'CPU ms/step':>11} {f'{args.steps} steps, s':>14} {'x dpolib':>9}"
    )
    for name, r in results.items():
        print(
            f"{name:<28} {r['ms_per_step']:>11.1f} {r['seconds_end_to_end']:>14.2f} "
            f"{r['ms_per_step'] / base:>9.1f}"
        )
    trl = results["TRL"]["ms_per_step"]
    print(f"TRL / dpolib per step: {trl / base:.1f}x (goal >= 10x)")
    print(f"at equal row count (unmerged): {trl / unmerged:.1f}x (goal >= 3x)")
    print(json.dumps(results))
    if args.rlhf:
        rlhf(reference, tok, hf_tok, pairs, args.repeats, workdir)


def rlhf(reference, tok, hf_tok, pairs, repeats: int, workdir: str) -> None:
    """CPU ms per reward-model step and per GRPO batch, dpolib against TRL."""
    from dataclasses import replace

    from dpolib.hf import to_hf_reward_model
    from dpolib.pizza.corpus import prompt_for
    from dpolib.pizza.run import PERSON, pizza_reward
    from dpolib.reward import RewardModel, train_reward_model
    from dpolib.rl import GRPOConfig, fresh_policy, train_grpo
    from dpolib.trl_rl import (
        grpo_config,
        reward_config,
        train_trl_grpo,
        train_trl_reward,
        trl_reward_function,
    )

    steps, batches = 40, 6
    prompt = prompt_for(PERSON)
    rl = replace(
        GRPOConfig(batch_size=64, num_generations=8, beta=0.05, learning_rate=3e-4),
        max_steps=batches,
    )
    reward = trl_reward_function(pizza_reward, tok.eos_id)

    def dpolib_rm() -> float:  # no per-step callback: the mean over the run
        t0 = time.process_time()
        train_reward_model(reference, tok, pairs, steps=steps, lr=1e-3)
        return (time.process_time() - t0) / steps

    def trl_rm(callback) -> None:
        config = reward_config(workdir, learning_rate=1e-3, max_steps=steps)
        model = to_hf_reward_model(RewardModel(reference, tok))
        train_trl_reward(model, hf_tok, pairs, config, callback)

    def dpolib_grpo(callback) -> None:
        policy = fresh_policy(reference)
        g = torch.Generator().manual_seed(0)
        train_grpo(policy, reference, tok, prompt, pizza_reward, rl, generator=g,
                   callback=callback)  # fmt: skip

    def trl_grpo(callback) -> None:
        def per_batch(record):  # one sampled batch = num_iterations updates
            if record["step"] % rl.num_iterations == 0:
                callback(record)

        config = grpo_config(workdir, rl)
        model = to_hf_model(reference, tok)
        train_trl_grpo(model, hf_tok, [prompt] * 8 * batches, reward, config,
                       callback=per_batch)  # fmt: skip

    ms = {
        "reward model, dpolib": 1000
        * statistics.median(dpolib_rm() for _ in range(repeats)),
        "reward model, TRL": 1000
        * statistics.median(timed_run(trl_rm)[0] for _ in range(repeats)),
        "GRPO batch, dpolib": 1000
        * statistics.median(timed_run(dpolib_grpo)[0] for _ in range(repeats)),
        "GRPO batch, TRL": 1000
        * statistics.median(timed_run(trl_grpo)[0] for _ in range(repeats)),
    }
    print(f"RLHF half, medians of {repeats} runs, one thread: CPU ms per step "
          f"({steps} reward-model steps; GRPO: {batches} batches of 64)")  # fmt: skip
    for name, v in ms.items():
        print(f"{name:<28} {v:>11.1f}")
    rm = ms["reward model, TRL"] / ms["reward model, dpolib"]
    grpo = ms["GRPO batch, TRL"] / ms["GRPO batch, dpolib"]
    print(f"TRL / dpolib: reward model {rm:.1f}x, GRPO {grpo:.1f}x")
    print(json.dumps(ms))


if __name__ == "__main__":
    main()
