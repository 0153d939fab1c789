#!/usr/bin/env python
"""GPU-hours of a sweep spec (sweeps/paper/*.yaml), an estimate from FLOPs, before any GPU runs.

    python scripts/paper_scale.py sweeps/paper/sgtm-tinystories.yaml
    python scripts/paper_scale.py sweeps/paper/*.yaml --mfu 0.3 --peak-tflops 989

Per run: the training tokens (steps x batch_size blocks x context), plus the fine-tuning of the
spec's suite (relearning: every setting to its largest budget; logit calibration: forward passes
of its steps), times the matmul FLOPs per token of the model (PaLM's 6N + 12 L d T for a training
token, a third of it for a forward-only token: `model_flops_per_token` of
scripts/bench_throughput.py), over an assumed throughput of `mfu` x `peak` (default: 40% of an
H100's 989 dense bf16 TFLOP/s). Not counted: the runs' loss evaluations, fact probes and the
other evaluations (forward passes over a few thousand blocks), data loading and tokenizing, and a
post-hoc method's frozen-model forward passes. Runs already recorded in `--out` are left out.

This is an assumption, not a measurement: replace `--mfu` with the MFU that
`python scripts/bench_throughput.py --models 64M --device cuda --bf16` measures on the card
(it prints tokens/s and MFU), then read the hours again.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent
# assumptions, stated: an H100 SXM's dense bf16 peak (scripts/bench_throughput.py PEAK_TFLOPS) and
# 40% of it, a typical MFU for a GPT of this size in bf16 on one GPU (ours: unmeasured here)
DEFAULT_DEVICE = "H100"
DEFAULT_MFU = 0.40


def _bench():
    """scripts/bench_throughput.py as a module: its FLOP count and peak table are the one place."""
    spec = importlib.util.spec_from_file_location(
        "bench_throughput", SCRIPTS / "bench_throughput.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_context(cfg) -> int:
    """The tokens per block a run trains on: its `context`, or its model's."""
    from unlearnbench.models.presets import MODEL_PRESETS

    return cfg.train.context or MODEL_PRESETS[cfg.model].context


def suite_steps(suite: str | None, cfg) -> tuple[int, int]:
    """(fine-tuning block-steps, forward-only block-steps) of `suite` on one run: relearning
    trains every setting (attacker x lr x attack seed) to its largest budget, `batch_size` blocks
    a step (the run's whole forget set when 0: counted as its `n_docs`); logit calibration runs
    `steps` forward passes of `batch_size` blocks per split (its gradient reaches only the head's
    bias). Other evaluations: not counted (module doc)."""
    import dataclasses

    from unlearnbench.evals import load_suite
    from unlearnbench.registry import evals

    if not suite:
        return 0, 0
    entries, _ = load_suite(suite)
    train = forward = 0
    for entry in entries:
        opts = evals.get(entry.eval).options(**entry.options)
        fields = {f.name for f in dataclasses.fields(opts)}
        if entry.eval == "relearn":
            settings = len(opts.seeds) * sum(
                len(opts.lora_lrs if mode == "lora" else opts.lrs) for mode in opts.modes
            )
            batch = opts.batch_size or opts.n_docs
            train += settings * max(opts.budgets) * batch
        elif entry.eval == "calibrated-loss" and "steps" in fields:
            splits = 3 if cfg.benchmark == "wikipedia-bio" else 2  # forget, retain (adjacent)
            forward += opts.steps * opts.batch_size * splits
    return train, forward


def estimate(runs, suite: str | None, tflops: float, trained: set[str]) -> dict:
    """{model: {"runs", "tokens", "flops", "gpu_hours"}} of the planned runs, and the total. A
    run in `trained` (recorded, or counted by an earlier spec: a run trains once) costs only its
    suite; the others are added to it."""
    from unlearnbench.models.presets import MODEL_PRESETS

    flops_per = _bench().model_flops_per_token
    rows: dict = defaultdict(lambda: {"runs": 0, "tokens": 0, "flops": 0.0})
    for run in runs:
        cfg = run.config
        context = run_context(cfg)
        vocab = MODEL_PRESETS[cfg.model].vocab_size
        assert vocab, f"{cfg.model}: a paper preset names its vocabulary (GPT-2's)"
        tune, forward = suite_steps(suite, cfg)
        steps = 0 if cfg.run_id in trained else cfg.train.steps * cfg.train.batch_size
        trained.add(cfg.run_id)
        tokens = (steps + tune) * context  # blocks x tokens per block
        row = rows[cfg.model]
        row["runs"] += 1
        row["tokens"] += tokens
        row["flops"] += tokens * flops_per(cfg.model, vocab, context, "train")
        row["flops"] += forward * context * flops_per(cfg.model, vocab, context, "eval")
    total = {"runs": 0, "tokens": 0, "flops": 0.0}
    for row in rows.values():
        for k in total:
            total[k] += row[k]
    out = {**rows, "total": total}
    for row in out.values():
        row["gpu_hours"] = row["flops"] / (tflops * 1e12) / 3600
    return out


def plan_spec(path: str, store_dir: str | None):
    """The spec's runs still to do as `unlearnbench sweep --launcher slurm` plans them (no device
    needed here, no data loaded), the run ids of those already trained, and the spec's suite."""
    from unlearnbench.results.store import RunStore
    from unlearnbench.sweep import load_spec, plan, spec_suite

    spec = load_spec(path)
    with tempfile.TemporaryDirectory() as empty:
        store = RunStore(store_dir or empty)
        planned = plan(spec, store, device_here=False)
        trained = {r.run_id for r in planned if store.exists(r.run_id)}
    return [r for r in planned if not r.recorded], trained, spec_suite(spec)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("specs", nargs="+", help="sweep spec YAML files")
    ap.add_argument("--mfu", type=float, default=DEFAULT_MFU, help="assumed MFU (0-1]")
    ap.add_argument(
        "--peak-tflops", type=float, default=0.0, help=f"dense bf16 peak [{DEFAULT_DEVICE}'s]"
    )
    ap.add_argument("--out", default=None, help="a run store: its recorded runs are left out")
    args = ap.parse_args(argv)
    if not 0 < args.mfu <= 1 or args.peak_tflops < 0:
        print("error: --mfu must be in (0, 1] and --peak-tflops >= 0", file=sys.stderr)
        return 2
    from unlearnbench.config import ConfigError

    peak = args.peak_tflops or _bench().PEAK_TFLOPS[DEFAULT_DEVICE][0]
    tflops = args.mfu * peak
    print(
        f"assumed throughput: {args.mfu:.0%} MFU x {peak:g} TFLOP/s = {tflops:g} TFLOP/s per GPU "
        "(an estimate: measure with scripts/bench_throughput.py on the card)"
    )
    trained: set[str] = set()  # a run shared by two specs trains once
    hours = 0.0
    for path in args.specs:
        try:
            runs, recorded, suite = plan_spec(path, args.out)
        except ConfigError as e:
            print(f"error: {path}: {e}", file=sys.stderr)
            return 2
        trained |= recorded
        print(f"\n{path} (suite {suite or 'none'}): {len(runs)} runs to do")
        print(
            f"  {'model':<10} {'runs':>5} {'tokens':>10} {'PFLOPs':>9} {'GPU-h':>8} {'GPU-h/run':>9}"
        )
        for model, row in estimate(runs, suite, tflops, trained).items():
            per_run = row["gpu_hours"] / max(row["runs"], 1)
            print(
                f"  {model:<10} {row['runs']:>5} {row['tokens']:>10.3g} {row['flops'] / 1e15:>9.0f} "
                f"{row['gpu_hours']:>8.1f} {per_run:>9.2f}"
            )
            hours += row["gpu_hours"] if model == "total" else 0.0
    if len(args.specs) > 1:
        print(
            f"\nall {len(args.specs)} specs: {hours:.1f} GPU-hours (a run shared by two trains once)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
