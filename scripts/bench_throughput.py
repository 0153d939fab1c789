"""Training and evaluation throughput of the harness, against a plain Hugging Face training step.

For each model preset: tokens per second of THE training loop for `no-filter` and every masking
method, of the plain Hugging Face step (`hf-plain`: model(labels=...), backward, AdamW) on the same
config and batches, and of evaluation (`split_losses`). Batches mix forget, retain and unlabeled
blocks, so masking methods mask every label of a step: in one pass (their default) and, with
`--paths one-pass,per-label`, also in the per-label reference path (`one_pass=False`, rows named
"<method> per-label"). Measurements are interleaved (one short burst per configuration,
round-robin, several rounds) and summarized by the median step time, because a shared machine's
speed drifts more than the effects being measured.

    python scripts/bench_throughput.py --models tiny --out bench.json
    python scripts/bench_throughput.py --models 64M --device cuda --bf16 --out bench-gpu.json

The masking target (every masking method >= 0.97x no-filter at the default step, on a quiet
machine; each ratio is paired with no-filter round by round and printed with its 95% interval):

    python scripts/bench_throughput.py --models tiny,small --rounds 40 --fused on \
        --paths one-pass,per-label --out bench-masking.json

Model FLOPs utilization (MFU): matmul FLOPs per token from the preset (PaLM's 6N + 12 L d T for a
training step, a third of it for evaluation) times tokens/s, over the device's dense peak (known
GPUs, or `--peak-tflops`).

Peak memory: on CUDA the peak allocated by torch per configuration; on CPU the process's peak
resident set so far (the OS keeps one high-water mark per process), so read it as an upper bound.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import resource
import statistics
import time

import torch

from unlearnbench.config import TrainConfig
from unlearnbench.data.packing import IGNORE, BlockGroup
from unlearnbench.losses import autocast, split_losses
from unlearnbench.methods import RunContext
from unlearnbench.models.build import build_model
from unlearnbench.models.kernels import use_fused_kernels
from unlearnbench.models.presets import MODEL_PRESETS
from unlearnbench.registry import methods
from unlearnbench.training import BlockSampler, Objective, make_optimizer, train

EOS = 0
MASKING = ["sgtm", "gradient-routing", "activation-masking"]


def synthetic_groups(vocab: int, context: int, n: int, seed: int = 0) -> list[BlockGroup]:
    """Random token blocks in three label groups (throughput does not depend on the text)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for split, label in (("forget", "forget"), ("retain", "retain"), ("retain", "unlabeled")):
        blocks = torch.randint(1, vocab, (n, context + 1), generator=g)
        blocks[:, context // 2] = EOS  # a document boundary inside each block
        out.append(BlockGroup(split, label, False, blocks))
    return out


PER_LABEL = " per-label"  # a masking method's row name suffix for its per-label reference path


def harness_burst(method, model_name, groups, cfg, vocab, steps) -> list[float]:
    """Per-step seconds of `steps` steps of THE loop (the first, warm-up step excluded)."""
    model = build_model(model_name, vocab, EOS, 0)
    if method == "no-filter":
        objective = Objective(model=model)
    else:
        name = method.removesuffix(PER_LABEL)
        spec = methods.get(name)
        ctx = RunContext(config=None, benchmark=None, model=model.to(cfg.device))
        options = spec.options(**({"one_pass": False} if name != method else {}))
        objective = spec.setup(ctx, options)
    stamps: list[float] = []
    inner = objective.on_step

    def on_step(step, total):
        _sync(cfg.device)
        stamps.append(time.perf_counter())
        if inner:
            inner(step, total)

    objective.on_step = on_step
    train(
        objective,
        groups,
        TrainConfig(**{**cfg.__dict__, "steps": steps + 1}),
        0,
        EOS,
        progress=False,
    )
    _sync(cfg.device)
    stamps.append(time.perf_counter())
    return [b - a for a, b in zip(stamps[1:-1], stamps[2:], strict=True)]


def hf_burst(model_name, groups, cfg, vocab, steps) -> list[float]:
    """The peer baseline: a plain Hugging Face step on the same batches (same sampler and seed)."""
    model = build_model(model_name, vocab, EOS, 0).to(cfg.device).train()
    optimizer = make_optimizer(list(model.named_parameters()), cfg)
    sampler = BlockSampler(groups, Objective(model=model), 0)
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        blocks = torch.cat(list(sampler.next_batch(cfg.batch_size).values()))  # (B, T + 1)
        inputs = blocks[:, :-1].to(cfg.device)  # (B, T); HF shifts labels itself
        labels = inputs.masked_fill(inputs == EOS, IGNORE)
        with autocast(cfg.device, cfg.bf16):
            loss = model(input_ids=inputs, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        _sync(cfg.device)
        times.append(time.perf_counter() - start)
    return times[1:]


def eval_burst(model_name, groups, cfg, vocab, steps) -> list[float]:
    model = build_model(model_name, vocab, EOS, 0).to(cfg.device)
    use_fused_kernels(model, cfg.fused_kernels)
    blocks = {"retain": groups[1].blocks[: cfg.batch_size]}
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        split_losses(model, blocks, EOS, None, cfg.device, cfg.bf16)  # the harness's eval batching
        _sync(cfg.device)
        times.append(time.perf_counter() - start)
    return times[1:]


# dense peak TFLOP/s by device name, for model FLOPs utilization (vendor data sheets)
PEAK_TFLOPS = {  # (bf16, fp32 or tf32 matmul)
    "H200": (989.0, 494.0),
    "H100": (989.0, 494.0),
    "A100": (312.0, 156.0),
}


def model_flops_per_token(model_name: str, vocab: int, context: int, phase: str) -> float:
    """Matmul FLOPs per token (PaLM, appendix B): training 6N + 12 L d T, evaluation a third of
    it; N counts the blocks' weight matrices and the (tied) unembedding, not lookups or norms."""
    p = MODEL_PRESETS[model_name]
    d, L = p.hidden_size, p.num_layers
    n = L * (4 * d * d + 2 * d * p.intermediate_size) + vocab * d
    train = 6 * n + 12 * L * d * context
    return train if phase == "train" else train / 3


def peak_tflops(device: str, bf16: bool, given: float) -> float | None:
    if given:
        return given
    if not device.startswith("cuda"):
        return None
    name = torch.cuda.get_device_name(torch.device(device))
    for key, (b, f) in PEAK_TFLOPS.items():
        if key in name:
            return b if bf16 else f
    return None


def _sets_up(method: str, vocab: int) -> bool:
    """Methods that need a real benchmark (e.g. a tokenizer for routed tokens) are skipped."""
    spec = methods.get(method)
    try:
        ctx = RunContext(config=None, benchmark=None, model=build_model("tiny", vocab, EOS, 0))
        spec.setup(ctx, spec.options())
        return True
    except (AttributeError, TypeError, ValueError) as e:
        print(f"skipping {method}: its setup needs a benchmark ({type(e).__name__}: {e})")
        return False


def _has_one_pass(method: str) -> bool:
    """Whether the method has a one-pass step that `one_pass=False` turns off."""
    return "one_pass" in {f.name for f in dataclasses.fields(methods.get(method).options)}


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _peak_mb(device: str) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="tiny,small", help="comma-separated presets (e.g. 64M)")
    ap.add_argument(
        "--methods", default=",".join(MASKING), help="masking methods besides no-filter"
    )
    # ours: 20 rounds of 3 steps gave a masking method's ratio to no-filter a 95% interval of
    # +-4-5% on a quiet 2-core CPU (tiny, batch 4 and 16; 5 rounds scattered SGTM's ratio by +-8%
    # between invocations); 80 rounds should halve that (1/sqrt(n); not measured), enough to
    # resolve a 3% difference. The interval is printed with each ratio
    ap.add_argument("--rounds", type=int, default=80, help="round-robin rounds")
    ap.add_argument("--steps", type=int, default=3, help="timed steps per burst (after 1 warm-up)")
    ap.add_argument(
        "--batch-size", type=int, default=TrainConfig.batch_size, help="blocks per step"
    )
    ap.add_argument(
        "--micro-batch-size", type=int, default=TrainConfig.micro_batch_size, help="training"
    )
    ap.add_argument("--context", type=int, default=0, help="tokens per block (0: the preset's)")
    ap.add_argument("--vocab", type=int, default=2048, help="for presets without a vocabulary")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast for every configuration")
    ap.add_argument(
        "--fused",
        default="off,on",
        help="harness kernels to measure: off, on, or off,on (fused attention and GELU); hf-plain "
        "is always Hugging Face's eager GPT-Neo",
    )
    ap.add_argument(
        "--paths",
        default="one-pass",
        help="masking methods' step: one-pass (their default), per-label (the reference path, "
        "one_pass=False), or one-pass,per-label",
    )
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument(
        "--peak-tflops",
        type=float,
        default=0.0,
        help="the device's dense peak TFLOP/s for MFU (default: known GPUs; none on CPU)",
    )
    ap.add_argument("--out", default=None, help="write the rows as JSON here")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    wanted = [m for m in args.methods.split(",") if m]
    available = [m for m in wanted if m in methods and _sets_up(m, args.vocab)]
    for m in sorted(set(wanted) - set(methods.names())):
        print(f"skipping {m}: not registered")
    paths = args.paths.split(",")
    if not paths or set(paths) - {"one-pass", "per-label"}:
        raise SystemExit(f"--paths: one-pass, per-label or both, got {args.paths!r}")
    timed = [m for m in available if "one-pass" in paths]
    timed += [m + PER_LABEL for m in available if "per-label" in paths and _has_one_pass(m)]

    configs = []  # (model, method, phase, burst function, cfg, groups, vocab)
    for name in args.models.split(","):
        preset = MODEL_PRESETS[name]
        context = args.context or preset.context
        vocab = preset.vocab_size or args.vocab
        groups = synthetic_groups(vocab, context, max(4 * args.batch_size, 32))
        eager = TrainConfig(
            batch_size=args.batch_size,
            micro_batch_size=args.micro_batch_size,
            context=context,
            device=args.device,
            bf16=args.bf16,
            warmup_steps=0,
            fused_kernels=False,  # hf-plain is HF's eager GPT-Neo: paired with eager no-filter
        )
        configs.append((name, "hf-plain", "train", hf_burst, eager, groups, vocab))
        for fused in (f == "on" for f in args.fused.split(",")):
            cfg = dataclasses.replace(eager, fused_kernels=fused)
            run = (cfg, groups, vocab)
            for method in ["no-filter", *timed]:
                fn = lambda *a, m=method: harness_burst(m, *a)  # noqa: E731
                configs.append((name, method, "train", fn, *run))
            configs.append((name, "no-filter", "eval", eval_burst, *run))

    samples: dict[int, list[float]] = {i: [] for i in range(len(configs))}
    per_round: dict[int, list[float]] = {i: [] for i in range(len(configs))}  # burst medians
    peaks: dict[int, float] = {}
    order = random.Random(0)  # a fixed seed: the same orders on every machine
    for r in range(args.rounds):
        # each round in its own order: a configuration's place in the round (cache, clock, what
        # ran before it) must not bias its ratio; pairing by round removes the drift between rounds
        for i in order.sample(range(len(configs)), len(configs)):
            name, _, _, fn, cfg, groups, vocab = configs[i]
            if args.device.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats()
            burst = fn(name, groups, cfg, vocab, args.steps)
            samples[i] += burst
            per_round[i].append(statistics.median(burst))
            peaks[i] = max(peaks.get(i, 0.0), _peak_mb(args.device))
        print(f"round {r + 1}/{args.rounds} done", flush=True)

    peak = peak_tflops(args.device, args.bf16, args.peak_tflops)
    baseline = {  # the no-filter training configuration each row is paired with, round by round
        (c[0], c[4].fused_kernels): i
        for i, c in enumerate(configs)
        if c[1] == "no-filter" and c[2] == "train"
    }
    rows = []
    for i, (name, method, phase, _, cfg, _, vocab) in enumerate(configs):
        seconds = statistics.median(samples[i])
        base = baseline.get((name, cfg.fused_kernels))  # hf-plain's: eager, unless not measured
        nan = float("nan")
        ratio, low, high = (
            paired_ratio(per_round[base], per_round[i]) if base is not None else (nan,) * 3
        )
        twin = next(  # the same configuration with eager kernels (the fused kernels' speed-up)
            (
                j
                for j, c in enumerate(configs)
                if c[:3] == (name, method, phase) and not c[4].fused_kernels
            ),
            None,
        )
        vs_eager = (
            paired_ratio(per_round[twin], per_round[i])
            if cfg.fused_kernels and twin is not None
            else None
        )
        tps = cfg.batch_size * cfg.context / seconds
        tflops = tps * model_flops_per_token(name, vocab, cfg.context, phase) / 1e12
        rows.append(
            {
                "model": name,
                "method": method,
                "phase": phase,
                "tokens_per_second": tps,
                "model_tflops": tflops,
                "mfu": tflops / peak if peak else None,
                "peak_memory_mb": round(peaks[i], 1),
                "device": args.device + (" bf16" if args.bf16 else ""),
                "fused_kernels": cfg.fused_kernels,
                "median_step_seconds": seconds,
                "steps_timed": len(samples[i]),
                "rounds": len(per_round[i]),
                # speed relative to no-filter (same kernels), paired per round: the geometric mean
                # of the rounds' ratios and its 95% t-interval
                "vs_no_filter": ratio,
                "vs_no_filter_95": [low, high],
                **(
                    {"vs_eager": vs_eager[0], "vs_eager_95": list(vs_eager[1:])} if vs_eager else {}
                ),
            }
        )
    _print_table(rows)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=2)
            f.write("\n")


def paired_ratio(base: list[float], other: list[float]) -> tuple[float, float, float]:
    """Speed of `other` relative to `base` from per-round step times measured side by side:
    the geometric mean of base/other over rounds and its 95% Student-t interval (pairing by
    round removes the machine's drift between rounds)."""
    import math

    logs = [math.log(b / o) for b, o in zip(base, other, strict=True)]
    mean = statistics.fmean(logs)
    if len(logs) < 2:
        return math.exp(mean), float("nan"), float("nan")
    from unlearnbench.results.stats import t_quantile

    half = t_quantile(0.975, len(logs) - 1) * statistics.stdev(logs) / math.sqrt(len(logs))
    return math.exp(mean), math.exp(mean - half), math.exp(mean + half)


def _print_table(rows: list[dict]) -> None:
    """Ratios: against no-filter training with the same kernels, and against hf-plain."""
    hf = {r["model"]: r["tokens_per_second"] for r in rows if r["method"] == "hf-plain"}
    print(
        f"{'model':8} {'method':30} {'fused':5} {'phase':6} {'tokens/s':>10} {'vs no-filter':>13} "
        f"{'95% interval':>14} {'vs hf':>7} {'TFLOP/s':>8} {'MFU':>6}"
    )
    for r in rows:
        low, high = r["vs_no_filter_95"]
        vs_hf = r["tokens_per_second"] / hf[r["model"]]
        print(
            f"{r['model']:8} {r['method']:30} {'on' if r['fused_kernels'] else 'off':5} {r['phase']:6} "
            f"{r['tokens_per_second']:10.0f} {r['vs_no_filter']:12.3f}x {low:6.3f}-{high:5.3f}x "
            f"{vs_hf:6.2f}x {r['model_tflops']:8.3f} "
            + (f"{r['mfu']:6.1%}" if r["mfu"] is not None else f"{'-':>6}")
        )
    for r in rows:
        if "vs_eager" in r:
            low, high = r["vs_eager_95"]
            print(
                f"fused vs eager: {r['model']} {r['method']} {r['phase']}: {r['vs_eager']:.3f}x "
                f"({low:.3f}-{high:.3f})"
            )
    print("ratios: paired per round (geometric mean of the rounds' ratios, 95% t-interval)")


if __name__ == "__main__":
    main()
