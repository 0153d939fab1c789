#!/usr/bin/env python
"""How many grid runs at once: one process with every core's threads against N processes that
share the cores (each with its share of threads, as `--jobs N` sets them: launch.py).

Each configuration runs THE training loop of `no-filter` on random blocks (the grid's model and
step: `tiny`, 4 blocks of 256 tokens, fused kernels) for `--steps` steps after one warm-up step, in
freshly spawned processes that start their loops together (a barrier), so process start-up and
imports are not timed. Throughput is every process's tokens over the slowest one's loop time.
Rounds alternate which configuration goes first; the ratio is paired per round (geometric mean
and 95% t-interval), because a shared machine's speed drifts more than the effect.

    python scripts/bench_jobs.py --jobs 2 --rounds 5 --steps 100
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import statistics
import time

EOS = 0


def worker(threads: int, steps: int, batch: int, context: int, vocab: int, barrier, out) -> None:
    """Time `steps` steps of the loop (after one warm-up step) with `threads` torch threads."""
    import os

    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)
    from unlearnbench.config import TrainConfig
    from unlearnbench.data.packing import BlockGroup
    from unlearnbench.models.build import build_model
    from unlearnbench.training import Objective, train

    g = torch.Generator().manual_seed(0)
    blocks = torch.randint(1, vocab, (64, context + 1), generator=g)  # (n, T + 1)
    groups = [BlockGroup("retain", "unlabeled", False, blocks)]
    model = build_model("tiny", vocab, EOS, 0)
    stamps: list[float] = []
    objective = Objective(
        model=model, on_step=lambda step, total: stamps.append(time.perf_counter())
    )
    cfg = TrainConfig(batch_size=batch, context=context, steps=steps + 1, warmup_steps=0)
    barrier.wait()  # every process of the configuration starts its loop together
    train(objective, groups, cfg, 0, EOS, progress=False)
    stamps.append(time.perf_counter())
    out.put(stamps[-1] - stamps[1])  # the loop after its first (warm-up) step


def measure(jobs: int, threads: int, args) -> float:
    """Tokens per second of `jobs` processes of `threads` threads each, run together."""
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(jobs), ctx.Queue()
    procs = [
        ctx.Process(
            target=worker,
            args=(threads, args.steps, args.batch_size, args.context, args.vocab, barrier, out),
        )
        for _ in range(jobs)
    ]
    for p in procs:
        p.start()
    seconds = [out.get() for _ in procs]
    for p in procs:
        p.join()
    return jobs * args.steps * args.batch_size * args.context / max(seconds)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=2, help="processes at once, against 1")
    ap.add_argument("--cores", type=int, default=0, help="cores to share (0: this process's)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=100, help="timed steps per process per round")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--context", type=int, default=256)
    ap.add_argument("--vocab", type=int, default=1266, help="storyworld-lang's vocabulary")
    args = ap.parse_args()
    from unlearnbench.launch import available_cores
    from unlearnbench.results.stats import t_interval

    cores = args.cores or available_cores()
    share = max(1, cores // args.jobs)
    configs = {
        f"1 x {cores} threads": (1, cores),
        f"{args.jobs} x {share} threads": (args.jobs, share),
    }
    names = list(configs)
    tps: dict[str, list[float]] = {n: [] for n in names}
    for r in range(args.rounds):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            tps[name].append(measure(*configs[name], args))
        line = ", ".join(f"{n}: {tps[n][-1]:,.0f} tokens/s" for n in names)
        print(f"round {r + 1}/{args.rounds}: {line}", flush=True)
    logs = [math.log(b / a) for a, b in zip(tps[names[0]], tps[names[1]], strict=True)]
    iv = t_interval(logs)
    for n in names:
        print(f"{n}: median {statistics.median(tps[n]):,.0f} tokens/s over {args.rounds} rounds")
    interval = (
        f" (95% interval {math.exp(iv.low):.3f}-{math.exp(iv.high):.3f})"
        if iv.low is not None
        else ""
    )
    print(f"{names[1]} / {names[0]}: {math.exp(iv.mean):.3f}x{interval}")


if __name__ == "__main__":
    main()
