"""Speed of DPO on the pizza run: batched `run_dpo_episodes` vs a pair-at-a-time loop.

Prints per-epoch times measured in one run on the same model and data, the ratios, the
time of 200 epochs, and the end-to-end `python -m dpolib.pizza` time with the food model
retrained.
Usage: python benchmarks/bench_dpo.py [--epochs 200] [--naive-epochs 5] [--skip-cli]
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import time

import torch

from dpolib import (
    build_preference_pairs,
    load_food_model,
    naive_dpo_epoch,
    run_dpo_episodes,
    seed_everything,
)
from dpolib.pizza import pizza_reward


def per_epoch(fn, epochs: int) -> float:
    fn(1)  # warm-up: allocator, first-call overheads
    t = time.perf_counter()
    fn(epochs)
    return (time.perf_counter() - t) / epochs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--naive-epochs", type=int, default=5)
    ap.add_argument("--skip-cli", action="store_true")
    args = ap.parse_args()

    g = seed_everything(0)
    reference, tok = load_food_model()
    prompt = "ravin likes "
    cands = [
        s.completion for s in reference.sample_batch(tok, prompt, 500, generator=g)
    ]
    pairs = build_preference_pairs(prompt, cands, pizza_reward, 100, g)

    def trainer(**kw):
        policy = copy.deepcopy(reference)
        opt = torch.optim.Adam(policy.parameters(), lr=1e-4)
        return lambda n: run_dpo_episodes(
            n, pairs, policy, reference, opt, tok, beta=0.5, progress=False, **kw
        )

    def naive():
        policy = copy.deepcopy(reference)
        opt = torch.optim.Adam(policy.parameters(), lr=1e-4)

        def go(n):
            for _ in range(n):
                naive_dpo_epoch(pairs, policy, reference, opt, tok, beta=0.5)

        return go

    t_naive = per_epoch(naive(), args.naive_epochs)
    t_batched = per_epoch(trainer(merge_identical=False), args.epochs)
    t_merged = per_epoch(trainer(merge_identical=True), args.epochs)
    rows = len({(p.prompt, c) for p in pairs for c in (p.chosen, p.rejected)})
    result = {
        "torch_threads": torch.get_num_threads(),
        "pairs": len(pairs),
        "distinct_rows": rows,
        "ms_per_epoch": {
            "one_pair_at_a_time": round(1e3 * t_naive, 2),
            "batched": round(1e3 * t_batched, 2),
            "batched_merged": round(1e3 * t_merged, 2),
        },
        f"seconds_for_{args.epochs}_epochs": {
            "one_pair_at_a_time": round(args.epochs * t_naive, 1),
            "batched": round(args.epochs * t_batched, 2),
            "batched_merged": round(args.epochs * t_merged, 2),
        },
        "speedup_vs_one_pair_at_a_time": {
            "batched": round(t_naive / t_batched, 1),
            "batched_merged": round(t_naive / t_merged, 1),
        },
    }
    if not args.skip_cli:
        t = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "dpolib.pizza", "--retrain"],
            check=True,
            capture_output=True,
        )
        result["seconds_pizza_cli_with_pretraining"] = round(time.perf_counter() - t, 1)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
