"""Speed of DPO, PPO, RLOO and GRPO on the pizza run, from the same food model.

Prints, for each method, the wall-clock time until exact p(pizza) >= 0.95 (median over
seeds; the exact measurement after each step is left out) and the per-step cost split
into sampling, scoring (reward, and log-probs under policy and reference) and update.
RL uses the reward model fitted on DPO's 100 pairs; --exact uses `pizza_reward`.
Times are wall-clock except cpu_seconds_per_run (process CPU time, which other load on
the machine does not inflate).
Usage: python benchmarks/bench_rlhf.py [--seeds 3] [--exact] [--device cpu]
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time

import torch

from dpolib import (
    build_preference_pairs,
    completion_distribution,
    get_device,
    load_food_model,
    prompt_for,
    run_dpo_episodes,
    seed_everything,
)
from dpolib.pizza import pizza_reward
from dpolib.reward import train_reward_model
from dpolib.rl import (
    GRPOConfig,
    PPOConfig,
    RLOOConfig,
    fresh_policy,
    train_grpo,
    train_ppo,
    train_rloo,
)

TARGET = 0.95


def dpo(reference, tok, prompt, seed):
    g = seed_everything(seed)
    t = time.perf_counter()
    cands = [
        s.completion for s in reference.sample_batch(tok, prompt, 500, generator=g)
    ]
    sampling = time.perf_counter() - t
    pairs = build_preference_pairs(prompt, cands, pizza_reward, 100, g)
    policy = copy.deepcopy(reference)
    opt = torch.optim.Adam(policy.parameters(), lr=1e-4)
    # time between steps, with the exact measurement after each step left out
    marks, measured, reached = [time.perf_counter()], [0.0], None

    def after_step(record):
        nonlocal reached
        marks.append(time.perf_counter())
        p = completion_distribution(policy, tok, prompt)["pizza"]
        if reached is None and p >= TARGET:
            reached = record["step"]
        measured.append(time.perf_counter() - marks[-1])

    run_dpo_episodes(
        30,
        pairs,
        policy,
        reference,
        opt,
        tok,
        beta=0.5,
        progress=False,
        callback=after_step,
    )
    steps = [b - a - m for a, b, m in zip(marks, marks[1:], measured)]
    seconds = sum(steps[:reached]) if reached else 0.0
    return {
        "steps": reached,
        "seconds": sampling + seconds if reached else None,
        "sampling": sampling,
        "scoring": 0.0,
        "update": statistics.median(steps),
    }


def rl(method, reference, tok, prompt, reward, seed, device):
    g = seed_everything(seed)
    policy = fresh_policy(reference).to(device)
    spent = []

    def stop(record):
        spent.append(
            record["time/sampling"] + record["time/scoring"] + record["time/update"]
        )
        return completion_distribution(policy, tok, prompt)["pizza"] >= TARGET

    common = dict(batch_size=64, learning_rate=3e-4, max_steps=30)
    if method == "PPO":
        _, _, hist = train_ppo(
            policy,
            reference,
            tok,
            prompt,
            reward,
            PPOConfig(**common),
            generator=g,
            callback=stop,
        )
    elif method == "RLOO":
        _, hist = train_rloo(
            policy,
            reference,
            tok,
            prompt,
            reward,
            RLOOConfig(**common),
            generator=g,
            callback=stop,
        )
    else:
        _, hist = train_grpo(
            policy,
            reference,
            tok,
            prompt,
            reward,
            GRPOConfig(**common),
            generator=g,
            callback=stop,
        )
    reached = completion_distribution(policy, tok, prompt)["pizza"] >= TARGET
    return {
        "steps": len(hist) if reached else None,
        "seconds": sum(spent) if reached else None,
        **{
            k: statistics.median(h[f"time/{k}"] for h in hist)
            for k in ("sampling", "scoring", "update")
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--exact", action="store_true", help="reward = pizza_reward")
    ap.add_argument("--device", default=None)
    args = ap.parse_args()
    device = get_device(args.device)
    g = seed_everything(0)
    reference, tok = load_food_model(device)
    prompt = prompt_for("ravin")
    cands = [
        s.completion for s in reference.sample_batch(tok, prompt, 500, generator=g)
    ]
    pairs = build_preference_pairs(prompt, cands, pizza_reward, 100, g)
    t = time.perf_counter()
    reward = (
        pizza_reward
        if args.exact
        else train_reward_model(reference, tok, pairs, steps=60, lr=1e-3).model
    )
    rm_seconds = time.perf_counter() - t
    # warm-up: the first optimizer step pays one-off import and allocation costs
    rl("RLOO", reference, tok, prompt, pizza_reward, 99, device)
    out = {
        "device": str(device),
        "threads": torch.get_num_threads(),
        "reward": "exact" if args.exact else "learned",
        "reward_model_seconds": round(rm_seconds, 3),
    }
    for method in ("DPO", "PPO", "RLOO", "GRPO"):
        cpu = time.process_time()  # CPU time: robust to other load on a shared machine
        runs = [
            dpo(reference, tok, prompt, s)
            if method == "DPO"
            else rl(method, reference, tok, prompt, reward, s, device)
            for s in range(args.seeds)
        ]
        hit = [r["seconds"] for r in runs if r["seconds"] is not None]
        out[method] = {
            "seeds_reaching_95": len(hit),
            "steps_to_95": [r["steps"] for r in runs],
            "seconds_to_95_median": round(statistics.median(hit), 3) if hit else None,
            # the whole runs, the exact measurement after each step included
            "cpu_seconds_per_run": round((time.process_time() - cpu) / args.seeds, 3),
            **{
                f"ms_per_step_{k}": round(
                    1000 * statistics.median(r[k] for r in runs), 1
                )
                for k in ("sampling", "scoring", "update")
            },
        }
        print(method, json.dumps(out[method]), flush=True)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
