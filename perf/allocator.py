"""What fixing glibc's mmap threshold (`lm.memory.keep_large_blocks_off_the_c_heap`) costs.

    python -m perf.allocator [--requests 200] [--repeats 2] [--threads 2]

An explicit CPU budget (`--max-memory`) fixes the threshold so that RSS follows the live
tensors; the default budget does not, because it makes allocation slower. This measures by how
much: scoring `--requests` CounterFact test requests (new targets) and generating 30 greedy
tokens for 16 of them with the default model, each repeat in a fresh process with glibc's
dynamic threshold and with the fixed one, alternately. Prints each time and the ratio of the
medians (fixed / dynamic).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

MODES = ("dynamic", "fixed")


def timed_run(mode: str, requests: int, threads: int) -> float:
    """Seconds for the scoring and generation in this process, after a warm-up call."""
    import torch

    from data.benchmarks import load_benchmark
    from lm.loading import load
    from lm.memory import keep_large_blocks_off_the_c_heap
    from lm.scoring import LMScorer

    torch.set_num_threads(threads)
    if mode == "fixed":
        keep_large_blocks_off_the_c_heap()
    model, tok = load("default")
    chosen = load_benchmark("counterfact", "test")[:requests]
    scorer = LMScorer(model, tok)
    scorer.score([r.prompt for r in chosen[:10]], [r.target_new for r in chosen[:10]])  # warm-up
    started = time.perf_counter()
    scorer.score([r.prompt for r in chosen], [r.target_new for r in chosen])
    scorer.generate([r.prompt for r in chosen[:16]], 30)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--run", choices=MODES, help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.run:
        print(timed_run(args.run, args.requests, args.threads))
        return
    seconds: dict[str, list[float]] = {mode: [] for mode in MODES}
    for _ in range(args.repeats):
        for mode in MODES:
            done = subprocess.run([sys.executable, "-m", "perf.allocator", "--run", mode, "--requests",
                                   str(args.requests), "--threads", str(args.threads)],
                                  capture_output=True, text=True, check=True)
            seconds[mode].append(float(done.stdout.strip().splitlines()[-1]))
            print(f"{mode:<8} {seconds[mode][-1]:6.2f} s", flush=True)
    ratio = statistics.median(seconds["fixed"]) / statistics.median(seconds["dynamic"])
    print(f"fixed / dynamic threshold, median time: {ratio:.2f}")


if __name__ == "__main__":
    main()
