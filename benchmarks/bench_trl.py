"""Speed of the pizza run in dpolib (rows merged, unmerged) and in TRL's DPOTrainer.

Prints, from one run on the same model and pairs: the median CPU ms per training step
of each (this process's CPU time between consecutive steps, taken by a callback, so a
busy machine's other programs do not count), the wall-clock time of 20 steps
including setup (TRL: trainer construction and dataset tokenization; dpolib: the
reference's log-probs), and the ratios. One torch thread, CPU.
Usage: HF_HUB_OFFLINE=1 python benchmarks/bench_trl.py [--steps 20] [--repeats 3]
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


if __name__ == "__main__":
    main()
