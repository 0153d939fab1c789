"""One run, end to end: resolve the config, build data and model, train, finalize, evaluate, record.

Every step is a plain function call on plain data (design section 1); the CLI is a thin layer on
`resolve_run_config` and `execute`.
"""

from __future__ import annotations

import platform
import subprocess
import time
from pathlib import Path

import torch

from unlearnbench import __version__
from unlearnbench.config import ConfigError, RunConfig, load_config_file, resolve
from unlearnbench.data.benchmarks import load_benchmark
from unlearnbench.data.pipeline import test_blocks, training_groups
from unlearnbench.losses import split_losses
from unlearnbench.methods import MethodSpec, RunContext
from unlearnbench.models.build import build_model, load_model, save_model
from unlearnbench.models.presets import MODEL_PRESETS
from unlearnbench.registry import UnknownName, benchmarks, methods
from unlearnbench.results.store import RunStore
from unlearnbench.training import train


def resolve_run_config(
    method: str,
    benchmark: str,
    model: str | None,
    seed: int,
    overrides: dict | None = None,
    config_file: str | Path | None = None,
) -> RunConfig:
    """Look up the method and benchmark, layer file and overrides, and validate. `model` None means
    the config file's `model:` (a preset names its model), else `tiny`."""
    spec: MethodSpec = methods.get(method)
    bspec = benchmarks.get(benchmark)
    file_values = load_config_file(config_file) if config_file is not None else {}
    model = model or str(file_values.pop("model", None) or "tiny")
    file_values.pop("model", None)
    if model not in MODEL_PRESETS:
        import difflib

        close = difflib.get_close_matches(model, MODEL_PRESETS, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UnknownName(f"unknown model {model!r}{hint} (known: {', '.join(MODEL_PRESETS)})")
    layered: dict = dict(file_values)
    layered.update(overrides or {})
    return resolve(
        method,
        benchmark,
        model,
        seed,
        layered,
        method_options_cls=spec.options,
        benchmark_options_cls=bspec.options,
        method_train_defaults=spec.train_defaults,
    )


def versions() -> dict:
    import transformers

    return {
        "unlearnbench": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "git": _git_revision(),
    }


def _git_revision() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def device_name(device: str) -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def _losses_record(losses: dict) -> dict:
    return {f"{s}_loss": losses.get(s) for s in ("forget", "adjacent", "retain")}


def base_model_for(cfg: RunConfig, store: RunStore, progress: bool) -> tuple[object, str]:
    """The base of a post-hoc method: `method_options.base` (a path or hub name) when given, else the
    `no-filter` run of the same benchmark, model, labels and seed, trained first if missing."""
    base = cfg.method_options.get("base") or ""
    if base:
        try:
            return load_model(base), base
        except (OSError, ValueError) as e:
            raise ConfigError(f"cannot load base model {base!r}: {str(e).splitlines()[0]}") from None
    nf = resolve_run_config(
        "no-filter",
        cfg.benchmark,
        cfg.model,
        cfg.seed,
        {f"benchmark.{k}": v for k, v in cfg.benchmark_options.items()}
        | {f"labels.{k}": v for k, v in cfg.labels.__dict__.items()},
    )
    record = execute(nf, store, force=False, progress=progress)
    return load_model(record["model_path"]), record["run_id"]


def execute(
    cfg: RunConfig, store: RunStore, force: bool = False, progress: bool = True
) -> dict:
    """Run `cfg` unless its record exists (or `force`), write the record atomically, return it."""
    if store.exists(cfg.run_id) and not force:
        return store.load(cfg.run_id)
    spec: MethodSpec = methods.get(cfg.method)
    t = cfg.train
    start = time.perf_counter()
    bench = load_benchmark(cfg.benchmark, cfg.benchmark_options)
    context = t.context or MODEL_PRESETS[cfg.model].context
    groups, label_counts = training_groups(bench, cfg.labels, cfg.seed, context)
    evaluation = test_blocks(bench, context, t.eval_blocks)

    base_ref = None
    if spec.kind == "posthoc":
        model, base_ref = base_model_for(cfg, store, progress)
    else:
        model = build_model(cfg.model, len(bench.tokenizer), bench.eos_id, cfg.seed)
    model.to(t.device)

    def evaluate(m) -> dict:
        return split_losses(m, evaluation, bench.eos_id, t.micro_batch_size, t.device, t.bf16)

    ctx = RunContext(
        config=cfg, benchmark=bench, model=model, base_model_path=base_ref, evaluate=evaluate
    )
    try:
        objective = spec.setup(ctx, spec.options(**cfg.method_options))
    except ValueError as e:  # an option out of range for this model: the user's mistake
        raise ConfigError(f"{cfg.method}: {e}") from None

    result = train(
        objective,
        groups,
        t,
        cfg.seed,
        bench.eos_id,
        evaluate=evaluate,
        progress=progress,
        description=f"{cfg.method} s{cfg.seed}",
    )
    pre = evaluate(objective.model)
    model = objective.finalize(objective.model)
    post = evaluate(model)

    model_path = None
    if t.save_model:
        model_path = str(save_model(model, bench.tokenizer, store.model_path(cfg.run_id)))
    record = {
        "run_id": cfg.run_id,
        "config_hash": cfg.config_hash,
        "method": cfg.method,
        "kind": spec.kind,
        "benchmark": cfg.benchmark,
        "model": cfg.model,
        "seed": cfg.seed,
        "config": cfg.to_dict(),
        "metrics": {
            **_losses_record(post),
            "pre_finalize": _losses_record(pre),
            **objective.extra_metrics,
        },
        "tokens_seen": result.tokens_seen,
        "tokens_by_split": result.tokens_by_split,
        "label_counts": label_counts,
        "base": base_ref,
        "history": result.history,
        "train_seconds": result.seconds,
        "wall_seconds": time.perf_counter() - start,
        "device": device_name(t.device),
        "versions": versions(),
        "model_path": model_path,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    store.write(record)
    return record
