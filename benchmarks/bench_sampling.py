"""Speed of sampling from the food model: key/value-cached vs uncached decoding.

Prints, from one run on the same model and prompt, the median ms per `sample_batch` call
for 64, 256 and 1000 completions with and without the cache, the ratio, and whether the
two paths drew the same tokens. Usage: python benchmarks/bench_sampling.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from dpolib import load_food_model, seed_everything


def median_ms(fn, repeats: int) -> float:
    fn()  # warm-up: allocator, first-call overheads
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--prompt", default="ravin likes ")
    ap.add_argument("--device", default=None, help="cpu or cuda (default: get_device)")
    args = ap.parse_args()

    seed_everything(0)
    model, tok = load_food_model(args.device)
    print(
        f"device {model.device}, {torch.get_num_threads()} thread(s), "
        f"prompt {args.prompt!r}"
    )
    print(
        f"{'completions':>11} {'cached ms':>10} {'uncached ms':>12} {'ratio':>6} same"
    )
    for n in (64, 256, 1000):

        def draw(use_cache: bool, n: int = n) -> list:
            g = torch.Generator().manual_seed(n)
            return model.sample_batch(
                tok, args.prompt, n, generator=g, use_cache=use_cache
            )

        same = draw(True) == draw(False)
        cached = median_ms(lambda: draw(True), args.repeats)
        plain = median_ms(lambda: draw(False), args.repeats)
        print(f"{n:>11} {cached:>10.1f} {plain:>12.1f} {plain / cached:>5.1f}x {same}")


if __name__ == "__main__":
    main()
