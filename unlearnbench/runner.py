"""One run, end to end: resolve the config, build data and model, train, finalize, evaluate, record.

Every step is a plain function call on plain data (design section 1); the CLI is a thin layer on
`resolve_run_config` and `execute`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import platform
import shutil
import subprocess
import time
from pathlib import Path

import torch

from unlearnbench import __version__
from unlearnbench.checkpoint import Checkpointer
from unlearnbench.config import SCRATCH, ConfigError, RunConfig, load_config_file, resolve
from unlearnbench.data.benchmarks import load_benchmark
from unlearnbench.data.packing import BlockGroup
from unlearnbench.data.pipeline import test_blocks, training_groups
from unlearnbench.distributed import barrier, init_from_env, is_main
from unlearnbench.losses import split_losses
from unlearnbench.methods import MethodSpec, Phase, RunContext, Stage, as_plan, labeled_view
from unlearnbench.models.build import build_model, load_model, save_model
from unlearnbench.models.card import write_model_card
from unlearnbench.models.compat import check_base_model
from unlearnbench.models.kernels import use_fused_kernels
from unlearnbench.models.presets import MODEL_PRESETS
from unlearnbench.package_files import current_source_digest
from unlearnbench.progress import say
from unlearnbench.registry import UnknownName, benchmarks, methods, require
from unlearnbench.results.matching import (
    matching_no_filter,
    recorded_base,
    reference_overrides,
)
from unlearnbench.results.store import RunStore, run_locked
from unlearnbench.run_presets import preset_path
from unlearnbench.suggest import unknown_name
from unlearnbench.tracking import open_tracker
from unlearnbench.training import Objective, select_trainable, train


def train_defaults(spec: MethodSpec, bspec) -> dict:
    """A run's training defaults: its benchmark's budget (`BenchmarkSpec.train_defaults`) when the
    method trains from scratch, under the method's own. A post-hoc method's steps are its own
    unlearning budget; the no-filter base it starts from is a training-time run with the budget."""
    budget = bspec.train_defaults if spec.kind == "training" else {}
    return {**budget, **(spec.train_defaults or {})}


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
    require(spec.requires, f"method {method!r}")  # a missing package is named before training
    bspec = benchmarks.get(benchmark)
    file_values = load_config_file(preset_path(config_file)) if config_file is not None else {}
    model = model or str(file_values.pop("model", None) or "tiny")
    file_values.pop("model", None)
    if model not in MODEL_PRESETS:
        raise UnknownName(unknown_name("model", model, MODEL_PRESETS))
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
        method_train_defaults=train_defaults(spec, bspec),
        method_version=spec.version,
        method_kind=spec.kind,
    )


def versions() -> dict:
    import transformers

    return {
        "unlearnbench": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "git": _git_revision(),
        "source": current_source_digest(),  # the package code itself: package_files.py
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


def base_model_for(
    cfg: RunConfig, store: RunStore, progress: bool, before_training=None
) -> tuple[object, str]:
    """The base of a post-hoc method by its run-level `base` setting: a saved model (a path or hub
    name), or by default the matching `no-filter` run (results/matching.py), trained first when
    the store holds none (the method's `base_settings` variant of it, when it names one). ("scratch"
    is handled by the caller: a fresh model, no base.)

    That no-filter run shares the post-hoc run's data and evaluation settings
    (`BASE_SHARED_TRAIN_KEYS` there), so both records measure losses on the same test blocks; its
    training budget is no-filter's own. `before_training(base_config)` is called before the base
    is trained (or trained again), so the post-hoc run's own mistakes are found first."""
    if cfg.base:
        try:
            model = load_model(cfg.base)
        except (OSError, ValueError) as e:
            raise ConfigError(
                f"cannot load base model {cfg.base!r}: {str(e).splitlines()[0]}"
            ) from None
        return check_base_model(model, cfg.base, cfg), cfg.base  # same tokenizer, enough positions
    # the method's variant of the no-filter run, if it names one (checkpoint-transfer: a curriculum)
    settings = methods.get(cfg.method).base_settings
    variant = {k.split(".", 1)[1]: v for k, v in settings.items() if k.startswith("method.")}
    run = cfg.to_dict() | {"kind": "posthoc"}
    method, overrides = reference_overrides(run, [], "no-filter", variant or None)
    overrides |= {k: v for k, v in settings.items() if not k.startswith("method.")}
    nf = resolve_run_config(method, cfg.benchmark, cfg.model, cfg.seed, overrides)
    # the run those settings name, or one that differs only in where it ran or what it kept
    record = matching_no_filter(nf.to_dict(), saved_records(store), variant or None)
    if record is None:
        record = matching_no_filter(nf.to_dict(), store.records(), variant or None)
    if record is None or not _model_saved(record):  # the base is trained (again) first
        if before_training is not None:
            before_training(nf)
        if record is None:
            record = execute(nf, store, force=False, progress=progress)
    record = with_model(record, store, progress)
    return load_model(record["model_path"]), record["run_id"]


def _model_saved(record: dict) -> bool:
    return bool(record.get("model_path")) and Path(record["model_path"]).is_dir()


def check_setup(cfg: RunConfig, bench, groups, base: RunConfig) -> None:
    """Set the post-hoc run `cfg` up on a stand-in for its base (a fresh model of the same shape;
    a snapshot of it when the base `base` records snapshots), so that a mistake in the run's
    options is refused before its base is trained, not after. The global RNG state is kept."""
    import tempfile

    spec: MethodSpec = methods.get(cfg.method)
    with torch.random.fork_rng(devices=[]), tempfile.TemporaryDirectory() as tmp:
        model = build_model(cfg.model, len(bench.tokenizer), bench.eos_id, cfg.seed)
        record = {"run_id": base.run_id, "config": base.to_dict(), "metrics": {}}
        # the snapshots the base will record (checkpoint-transfer reads them): one at least when
        # its steps reach the first; none otherwise, so a run that needs them is refused now
        if 0 < base.train.snapshot_every <= base.train.steps:
            path = save_model(model, bench.tokenizer, Path(tmp) / "snapshot")
            snapshot = {"step": base.train.snapshot_every, "path": str(path), "forget_loss": 1.0}
            record["metrics"]["snapshots"] = [snapshot]
        ctx = RunContext(
            config=cfg,
            benchmark=bench,
            model=model,
            base_record=record,
            training_blocks=labeled_view(groups),
        )
        method_plan(spec, ctx)


def method_plan(spec: MethodSpec, ctx: RunContext):
    """The method's phases and stages for the run in `ctx`; an option out of range for this model
    or data (a ValueError of its setup) is the user's mistake: a ConfigError."""
    try:
        return as_plan(spec.setup(ctx, spec.options(**ctx.config.method_options)))
    except ValueError as e:
        raise ConfigError(f"{ctx.config.method}: {e}") from None


def check_suite_request(cfg: RunConfig, suite: str | None) -> None:
    """A suite evaluates the run's saved model: refuse, before anything trains, a run that would
    keep none."""
    if suite and not cfg.train.save_model:
        raise ConfigError(
            f"the suite {suite!r} evaluates the run's saved model, but save_model=false keeps "
            "none: drop save_model=false or the suite"
        )


def saved_records(store: RunStore) -> list[dict]:
    """Records of the store whose model was saved (a reference or a base is loaded from it)."""
    return [r for r in store.records() if r.get("model_path") and Path(r["model_path"]).is_dir()]


# final losses of a retrained run that differ by more than this from its record: not the same run
RETRAIN_TOLERANCE = 1e-4


def recorded_threads(record: dict) -> int | None:
    """The torch thread count a CPU run was trained with: its record's `torch_threads`, or for a
    record written before that field, read off its `device` ("cpu (x86_64, 2 threads)"); None
    for a GPU run or a record that does not say."""
    import re

    if "torch_threads" in record:
        return record["torch_threads"]
    found = re.fullmatch(r"cpu \(.*, (\d+) threads\)", str(record.get("device") or ""))
    return int(found.group(1)) if found else None


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Run the block with `n` torch threads (None: as they are), then restore the count."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def with_model(record: dict, store: RunStore, progress: bool = True) -> dict:
    """`record` with its saved model. A run recorded without it (a committed record: the weights
    are not committed; or a store whose models were deleted) is trained again from its own config
    with the thread count its record names: same seed, settings and threads, so the same weights
    on the same machine and software (tested; other thread counts round differently, and the
    record's evaluations would then describe another model). Under the run's lock: a process that
    waited for another's retraining finds the model and does not train it again. Its evaluations
    are kept when the retrained run's final losses match the record's; otherwise a warning line
    says they are dropped."""
    if _model_saved(record):
        return record
    cfg = RunConfig.from_dict(record["config"])
    if not cfg.train.save_model:
        raise ConfigError(
            f"run {record['run_id']} was trained with save_model=false: its model is needed here; "
            "train it with save_model=true"
        )
    assert cfg.run_id == record["run_id"], f"{record['run_id']}: its config names {cfg.run_id}"
    with store.lock(cfg.run_id):
        current = store.load(cfg.run_id) if store.exists(cfg.run_id) else record
        if current.get("model_path") and Path(current["model_path"]).is_dir():
            return current  # another process trained it again while this one waited
        threads = recorded_threads(record) if cfg.train.device == "cpu" else None
        if progress:
            say(
                f"{cfg.run_id}: recorded without its model; training it again"
                + (f" ({threads} threads, as recorded)" if threads else "")
            )
        with torch_threads(threads):
            fresh = execute(cfg, store, force=True, progress=progress)
    final = ("forget_loss", "adjacent_loss", "retain_loss")
    old, new = record.get("metrics") or {}, fresh["metrics"]
    gaps = [
        abs(old[k] - new[k]) for k in final if old.get(k) is not None and new.get(k) is not None
    ]
    if gaps and max(gaps) <= RETRAIN_TOLERANCE:
        store.merge_results(cfg.run_id, record, replace=False)
        return store.load(cfg.run_id)
    say(
        f"warning: {cfg.run_id} trained again ends {max(gaps, default=float('nan')):.2g} nats "
        "from its record; its recorded evaluations are dropped (they measured another model)"
    )
    return fresh


def _snapshot_dir(model_dir: Path, step: int) -> Path:
    return model_dir / "snapshots" / f"step-{step}"


def _save_keeping_snapshots(model, tokenizer, model_dir: Path, steps: list[int]) -> Path:
    """Save the final model (save_model replaces the directory) and keep the snapshots of `steps`
    (from this run's history) under it; snapshots of an earlier run of the same id are removed."""
    snaps = model_dir / "snapshots"
    aside = model_dir.parent / f".{model_dir.name}.snapshots"
    shutil.rmtree(aside, ignore_errors=True)
    if snaps.is_dir():
        os.replace(snaps, aside)
    path = save_model(model, tokenizer, model_dir)
    if aside.is_dir():
        keep = {f"step-{s}" for s in steps}
        for d in aside.iterdir():
            if d.name not in keep:
                shutil.rmtree(d, ignore_errors=True)
        os.replace(aside, snaps)
    return path


def _plain(v):
    return [_plain(x) for x in v] if isinstance(v, list | tuple) else v


def _field_defaults(cls) -> dict:
    import dataclasses

    return {
        f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
        for f in dataclasses.fields(cls)
    }


def record_identity(cfg: RunConfig, spec: MethodSpec) -> dict:
    """The fields of a run's record that say which run it is (what tables and matching read)."""
    return {
        "run_id": cfg.run_id,
        "config_hash": cfg.config_hash,
        "method": cfg.method,
        "kind": spec.kind,
        "benchmark": cfg.benchmark,
        "model": cfg.model,
        "seed": cfg.seed,
        "config": cfg.to_dict(),
        "non_default": non_default_options(cfg, spec),  # what tables call the run's setting
    }


def non_default_options(cfg: RunConfig, spec: MethodSpec) -> dict:
    """What the run sets away from the defaults of its method options, labels and training (the
    method's own training defaults included), as its record keeps it: tables label a run from its
    record alone, and a default changed later does not relabel it. Settings outside the run id
    (`checkpoint_every`, `snapshot_every`) are left out."""
    import dataclasses

    from unlearnbench.config import _UNHASHED_TRAIN_FIELDS, LabelConfig, TrainConfig

    def changed(values: dict, defaults: dict, skip=()) -> dict:
        return {
            k: v
            for k, v in values.items()
            if k not in skip and (k not in defaults or _plain(v) != _plain(defaults[k]))
        }

    return {
        "method_options": changed(cfg.method_options, _field_defaults(spec.options)),
        "labels": changed(dataclasses.asdict(cfg.labels), _field_defaults(LabelConfig)),
        "train": changed(
            dataclasses.asdict(cfg.train),
            _field_defaults(TrainConfig) | train_defaults(spec, benchmarks.get(cfg.benchmark)),
            _UNHASHED_TRAIN_FIELDS,
        ),
    }


@run_locked  # a writable store, and one process at a time per run id
def execute(
    cfg: RunConfig,
    store: RunStore,
    force: bool = False,
    progress: bool = True,
    resume: bool = False,
    log: tuple[str, ...] = (),
) -> dict:
    """Run `cfg` unless its record exists (or `force`), write the record atomically, return it.

    With `resume`, training continues from the run's checkpoint when one exists. `log` names
    trackers (tracking.py) that get the training curves and the final metrics. Under `torchrun`
    every rank trains its shard; only rank 0 evaluates, saves and writes, the others wait for its
    record and return it."""
    init_from_env(cfg.train.device)
    if store.exists(cfg.run_id) and not force:
        return store.load(cfg.run_id)
    spec: MethodSpec = methods.get(cfg.method)
    t = cfg.train
    start = time.perf_counter()
    bench = load_benchmark(cfg.benchmark, cfg.benchmark_options)
    context = t.context or MODEL_PRESETS[cfg.model].context
    groups, label_counts = training_groups(bench, cfg.labels, cfg.seed, context)
    evaluation = test_blocks(bench, context, t.eval_blocks)

    checkpoint = Checkpointer(
        store.checkpoint_path(cfg.run_id),
        every=t.checkpoint_every,
        resume=resume,
        writer=is_main(),
        run_key=cfg.run_id,
    )
    checkpoint.read()  # a damaged checkpoint to resume from is refused before anything trains

    base_ref = None
    if spec.kind == "posthoc" and cfg.base != SCRATCH:
        model, base_ref = base_model_for(
            cfg, store, progress, lambda base: check_setup(cfg, bench, groups, base)
        )
    else:  # a training-time method, or a post-hoc one asked to start from a fresh model
        model = build_model(cfg.model, len(bench.tokenizer), bench.eos_id, cfg.seed)
    model.to(t.device)
    use_fused_kernels(model, t.fused_kernels)

    def evaluate(m, mode=None) -> dict:
        """Test losses per split; `mode(split)`: how the model runs on that split."""
        if mode is None:
            return split_losses(m, evaluation, bench.eos_id, None, t.device, t.bf16)
        out = {}
        for split, blocks in evaluation.items():
            with mode(split):
                out |= split_losses(m, {split: blocks}, bench.eos_id, None, t.device, t.bf16)
        return out

    ctx = RunContext(
        config=cfg,
        benchmark=bench,
        model=model,
        base_model_path=base_ref,
        base_record=recorded_base({"config": {}, "base": base_ref}, store.records()),
        training_blocks=labeled_view(groups),
    )
    plan = method_plan(spec, ctx)

    def snapshot(m, step: int) -> dict:
        """Save the model under training (HF format) and measure its test losses."""
        path = save_model(m, bench.tokenizer, _snapshot_dir(store.model_path(cfg.run_id), step))
        return {"step": step, "path": str(path), **_losses_record(evaluate(m))}

    tracker = (
        open_tracker(log, store.root, cfg.run_id, "train", cfg.to_dict()) if is_main() else None
    )
    try:
        model, phases, metrics = run_plan(
            plan, ctx.model, groups, cfg, bench.eos_id, checkpoint, evaluate, progress, snapshot,
            on_log=tracker.log_step if tracker else None,
        )  # fmt: skip
    except BaseException:
        if tracker:  # the curves up to a failure (a diverged loss) are kept
            tracker.close()
        raise
    if not is_main():
        barrier()  # rank 0 evaluated and writes the record
        return store.load(cfg.run_id)

    snapshots = [h["snapshot"] for p in phases for h in p["history"] if "snapshot" in h]
    model_path = None
    if t.save_model:
        steps = [s["step"] for s in snapshots]
        model_dir = store.model_path(cfg.run_id)
        model_path = str(_save_keeping_snapshots(model, bench.tokenizer, model_dir, steps))
    history = phases[0]["history"] if len(phases) == 1 else _phase_history(phases)
    curve = training_curve(phases, metrics.get("pre_finalize"))
    tokens_by_split: dict[str, int] = {}
    for p in phases:
        for split, n in p["tokens_by_split"].items():
            tokens_by_split[split] = tokens_by_split.get(split, 0) + n
    # the phase a resumed run continued in (the completed ones before it were not retrained)
    resumed_in = next((p["name"] for p in phases if p["trained"]), None)
    resumed = any(not p["trained"] or p["resumed_from"] for p in phases)
    record = {
        **record_identity(cfg, spec),
        "metrics": {
            **metrics.pop("final"),
            **metrics,
            **plan.metrics,
            **({"snapshots": snapshots} if snapshots else {}),
        },
        # every phase counted: the run's tokens and training time are the phases' sums
        "tokens_seen": sum(p["tokens_seen"] for p in phases),
        "tokens_by_split": tokens_by_split,
        "phases": [{k: v for k, v in p.items() if k not in ("history", "trained")} for p in phases],
        "label_counts": label_counts,
        "base": base_ref,
        "history": history,
        **({"training_curve": curve} if curve else {}),  # the method's (no-filter's)
        "train_seconds": sum(p["seconds"] for p in phases),
        "resumed_from_step": max((p["resumed_from"] for p in phases), default=0),
        **({"resumed_in_phase": resumed_in} if resumed else {}),
        "wall_seconds": time.perf_counter() - start,
        "device": device_name(t.device),
        # the count a retraining must use to round the same way (with_model); None on a GPU
        "torch_threads": None if t.device.startswith("cuda") else torch.get_num_threads(),
        "versions": versions(),
        "model_path": model_path,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if model_path:
        write_model_card(model_path, record)  # README.md: method, config, metrics
    store.write(record, trained=True)
    if tracker:
        tracker.log_metrics(record, step=sum(p["steps"] for p in phases))
        tracker.close()
    checkpoint.discard()  # the run is complete: its record replaces it
    barrier()
    return record


def training_curve(phases: list[dict], end: dict | None) -> list[dict]:
    """Long-format rows {step, split, loss} of the test losses the method's training curve measured
    (`MethodSpec.training_curve`: the last training phase, every 1/N of its steps), closed by the
    losses at its last step (`end`: the pre-finalize measurement); [] when the method records none.
    The compute penalty reads it (results/compute_penalty.py)."""
    curved = [p for p in phases if "curve_seconds" in p]
    if not curved:
        return []
    phase = curved[-1]
    rows = [
        {"step": h["step"], "split": split, "loss": loss}
        for h in phase["history"]
        for split, loss in (h.get("eval") or {}).items()
        if loss is not None
    ]
    for key, loss in (end or {}).items():
        if loss is not None:
            rows.append({"step": phase["steps"], "split": key.removesuffix("_loss"), "loss": loss})
    return rows


def _phase_logger(on_log, phase: str | None):
    """`on_log` for one phase's steps, or None."""
    if on_log is None:
        return None
    return lambda entry: on_log(entry, phase)


def _phase_history(phases: list[dict]) -> list[dict]:
    """The phases' histories one after the other, each entry naming its phase."""
    return [{"phase": p["name"], **h} for p in phases for h in p["history"]]


def _phase_groups(groups: list, blocks: dict | None) -> list:
    """The run's groups restricted to `blocks` (label -> row indices into the label's blocks in
    the runner's group order, as `RunContext.labeled_blocks` gives them); the true split of each
    row is kept for the token accounting."""
    if blocks is None:
        return groups
    out = []
    for label, rows in blocks.items():
        rows = torch.as_tensor(rows, dtype=torch.long)
        offset = 0
        for g in (g for g in groups if g.label == label):
            n = len(g.blocks)
            local = rows[(rows >= offset) & (rows < offset + n)] - offset
            if len(local):
                out.append(BlockGroup(g.split, g.label, g.flagged_adjacent, g.blocks[local]))
            offset += n
    return out


def run_plan(
    plan,
    model,
    groups,
    cfg: RunConfig,
    eos_id: int,
    checkpoint,
    evaluate,
    progress,
    snapshot,
    on_log=None,
):
    """Train every phase of `plan` with THE loop and apply its finalize stages, measuring the test
    losses after the phases (`pre_finalize`), after the stages that ask (e.g. `post_ablation`) and
    at the end (`final`). Returns (the final model, one summary per phase, the measurements).

    Resume: the checkpoint names the phase it belongs to and carries what came before it (the
    completed phases' counts and extra parameters, the measurements). Completed phases and the
    stages before the checkpoint's phase are rebuilt or re-applied (for the model's structure) but
    not retrained or measured again; the checkpoint's phase continues mid-phase. `on_log(entry,
    phase)` gets every training step's history entry (phase: its name when there are several)."""
    saved = checkpoint.read() if checkpoint is not None else None
    position = int(saved.get("phase", 0)) if saved else 0
    done: list[dict] = list(saved.get("done", [])) if saved else []
    metrics: dict = dict(saved.get("metrics", {})) if saved else {}
    n_phases = len(plan.phases) + sum(isinstance(s, Phase) for s in plan.finalize)
    steps = [("phase", p) for p in plan.phases] + [("evaluate", "pre_finalize")]
    for item in plan.finalize:
        steps.append(("phase", item) if isinstance(item, Phase) else ("stage", item))
        if isinstance(item, Stage) and item.evaluate:
            steps.append(("evaluate", item.evaluate))
    steps.append(("evaluate", "final"))
    last_training = len(plan.phases) - 1
    phases: list[dict] = []
    index = 0  # of the next phase
    for kind, item in steps:
        if kind == "stage":
            model = item.apply(model)
            continue
        if kind == "evaluate":
            if item not in metrics and is_main():
                mode = plan.pre_finalize_mode if item == "pre_finalize" else None
                metrics[item] = _losses_record(evaluate(model, mode))
            continue
        objective = (
            item.objective if isinstance(item.objective, Objective) else item.objective(model)
        )
        if index < position:  # completed before the checkpoint: its state, not its training
            select_trainable(objective.model, objective)
            with torch.no_grad():
                for p, value in zip(objective.extra_parameters, done[index]["extra"], strict=True):
                    p.copy_(value)
            phases.append(done[index]["summary"])
        else:
            if index == position and saved:
                plan.metrics.update(saved.get("method_metrics", {}))
            phase_cfg = dataclasses.replace(cfg.train, **item.train)
            # the method's training curve: test losses every 1/N of the last training phase's
            # steps, unless the run evaluates on its own; the time they take is not training time
            # (a resumed phase's seconds keep the evaluations of the process before)
            points = methods.get(cfg.method).training_curve if index == last_training else 0
            curve = bool(points) and not phase_cfg.eval_every
            if curve:
                every = max(1, phase_cfg.steps // points)
                phase_cfg = dataclasses.replace(phase_cfg, eval_every=every)
            curve_seconds = [0.0]

            def phase_evaluate(m, spent=curve_seconds):
                start = time.perf_counter()
                out = evaluate(m)
                spent[0] += time.perf_counter() - start
                return out

            select = None
            if item.select_blocks is not None:
                held = {"held-out": item.select_blocks}

                def select(m, held=held, device=phase_cfg.device):
                    return split_losses(m, held, eos_id, None, device)["held-out"]

            if checkpoint is not None:
                checkpoint.phase = index
                checkpoint.at_phase_end = index < n_phases - 1
                checkpoint.header = {
                    "done": done,
                    "metrics": metrics,
                    "method_metrics": plan.metrics,
                }
            trained_phase = index <= last_training
            name = f"{cfg.method} s{cfg.seed}"
            result = train(
                objective,
                _phase_groups(groups, item.blocks),
                phase_cfg,
                cfg.seed,
                eos_id,
                evaluate=(phase_evaluate if curve else evaluate) if trained_phase else None,
                progress=progress,
                description=name if n_phases == 1 else f"{name} {item.name}",
                checkpoint=checkpoint,
                snapshot=snapshot if index == last_training and cfg.train.snapshot_every else None,
                select=select,
                on_log=_phase_logger(on_log, item.name if n_phases > 1 else None),
            )
            summary = {
                "name": item.name,
                "steps": result.steps,
                "tokens_seen": result.tokens_seen,
                "tokens_by_split": result.tokens_by_split,
                "seconds": result.seconds - curve_seconds[0],
                **({"curve_seconds": curve_seconds[0]} if curve else {}),
                "resumed_from": result.resumed_from,
                "history": result.history,
                "trained": True,
            }
            if result.selection is not None:
                metrics[item.name] = result.selection
            phases.append(summary)
            done.append(
                {
                    "summary": summary | {"trained": False},
                    "extra": [p.detach().clone() for p in objective.extra_parameters],
                }
            )
        model = objective.model
        index += 1
    return model, phases, metrics
