"""Evaluation suites on saved runs (relearning attacks, probes, ...).

A suite's results are merged into the run's record under "evals" and "curves"; nothing else in the
record changes. The reference runs an evaluation compares with (the `no-filter` model, the perfect
filter) are found in the store or trained first.
"""

from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path

from unlearnbench.config import RunConfig
from unlearnbench.data.benchmarks import load_benchmark
from unlearnbench.data.pipeline import test_blocks
from unlearnbench.models.build import load_model
from unlearnbench.models.kernels import use_fused_kernels
from unlearnbench.models.presets import MODEL_PRESETS
from unlearnbench.results.matching import matching_reference, reference_overrides
from unlearnbench.results.store import RunStore
from unlearnbench.runner import execute, resolve_run_config, saved_records, with_model


def reference_record(record: dict, name: str, store: RunStore, progress: bool = True) -> dict:
    """The matching `no-filter` or perfect-filter run of `record` (results/matching.py): from the
    store when it holds one with a saved model; else one recorded without its model (a committed
    record), as it is: what is asked of it may be recorded already, and its model is trained again
    only when an evaluation needs it (`_evaluate`), since a retraining on another machine rounds
    to other weights and drops the record's results; else trained with the settings the rule
    names."""
    saved = saved_records(store)
    found = matching_reference(record, saved, name)
    if found is not None:
        return found
    recorded = matching_reference(record, store.records(), name)  # e.g. committed, no model
    if recorded is not None:
        return recorded
    method, overrides = reference_overrides(record, saved, name)
    ref = resolve_run_config(
        method, record["benchmark"], record["model"], record["seed"], overrides
    )
    return with_model(execute(ref, store, force=False, progress=progress), store, progress)


def stale_references(record: dict, key: str, lookup) -> list[str]:
    """The references (`no-filter`, `perfect-filter`) whose numbers `record`'s result `key` copied
    and which are no longer theirs: the reference run was trained again since (on another machine
    it rounds to other weights and its results are dropped), so its own result under `key` now
    differs from the copy, or it has none yet. Everything derived from a reference (steps to
    recover, the gap to the perfect filter) is then stale with it. `lookup(run_id)`: a record or
    None. A run that is its own reference holds its own numbers and is never stale."""
    result = (record.get("evals") or {}).get(key) or {}
    stale = []
    for name, held in (result.get("references") or {}).items():
        run_id = (held or {}).get("run_id")
        if run_id is None or run_id == record["run_id"]:
            continue
        own = ((lookup(run_id) or {}).get("evals") or {}).get(key)
        kept = {k: v for k, v in held.items() if k != "run_id"}
        if own is None or not _agrees(kept, own):
            stale.append(name)
    return stale


def _agrees(held, own) -> bool:
    """Whether every value `held` keeps (a reference's summary cut down by its evaluation's
    `keep`: a subset of keys, lists element by element) is the same in `own`."""
    if isinstance(held, dict):
        return isinstance(own, dict) and all(_agrees(v, own.get(k)) for k, v in held.items())
    if isinstance(held, list):
        return isinstance(own, list) and len(held) == len(own) and all(map(_agrees, held, own))
    if isinstance(held, float) and isinstance(own, float):
        # a number measured twice on the same weights (the reference's own result, and the copy
        # computed for another run in another process) may differ in its last digits with the
        # thread count; a model trained again differs by far more (runner.RETRAIN_TOLERANCE)
        return math.isclose(held, own, rel_tol=1e-6, abs_tol=1e-9) or (held != held and own != own)
    return held == own


def store_lookup(store: RunStore):
    """`lookup(run_id)` for `stale_references`: the store's record, or None."""
    return lambda run_id: store.load(run_id) if store.exists(run_id) else None


def merge_eval(store: RunStore, run_id: str, key: str, summary: dict, curves: list | None) -> dict:
    """Re-read the record, set `evals[key]` (and `curves[key]`), write it back atomically."""
    with store.lock(run_id, wait_message=False):
        record = store.load(run_id)
        record.setdefault("evals", {})[key] = summary
        if curves is not None:
            record.setdefault("curves", {})[key] = curves
        store.write(record)
    return record


def evaluate_entry(
    record: dict, entry, store: RunStore, progress: bool = True, force: bool = False, model=None
) -> dict:
    """Run one suite entry on a saved run (unless its result with the same options is recorded)
    and merge the result into the record; returns the summary."""
    import dataclasses

    from unlearnbench.evals import EvalSpec
    from unlearnbench.registry import evals

    spec: EvalSpec = evals.get(entry.eval)
    options = spec.options(**entry.options)
    opts = json_safe(dataclasses.asdict(options))
    key = entry.record_key
    # a result without its additive parts (references) is what other runs ask of a reference run:
    # one process computes it, the others wait for it and read it (`evaluate_other` asks for just
    # that, and it asks nothing of other runs itself, so these locks never nest in a cycle)
    plain = bool(spec.additive) and not any(opts.get(k) for k in spec.additive)
    guard = (
        store.lock(f"{record['run_id']}~{key.replace('/', '~')}", wait_message=False)
        if plain
        else contextlib.nullcontext()
    )
    with guard:
        return _evaluate(record, entry, store, progress, force, model, spec, options, opts)


def _evaluate(record, entry, store, progress, force, model, spec, options, opts) -> dict:
    """`evaluate_entry`'s work, once its options are read (and, for a plain result, its lock held)."""
    import copy
    import dataclasses

    from unlearnbench.evals import EvalContext, headline

    key = entry.record_key
    _adopt_unsuited(store, record["run_id"], entry, spec, opts)
    stored = store.load(record["run_id"])
    existing = stored.get("evals", {}).get(key)
    previous_curves = None
    if existing is not None and not force:
        # only a result that asks for references holds copies of them (a plain one, asked of a
        # reference by another run, is that run's own numbers: asking nothing keeps it acyclic)
        asks_references = any(opts.get(k) for k in spec.additive)
        stale = stale_references(stored, key, store_lookup(store)) if asks_references else []
        if existing.get("options") == opts and not stale:
            return _with_headline(store, record["run_id"], key, spec, existing)
        if stale and progress:
            from unlearnbench.progress import say

            say(
                f"{record['run_id']}: {key} holds numbers of {' and '.join(stale)} from before "
                "it was trained again; comparing afresh"
            )
        old = existing.get("options") or {}
        if spec.additive and all(
            old.get(k) == v for k, v in opts.items() if k not in spec.additive
        ):
            if not stale and all(old.get(k) or not opts.get(k) for k in spec.additive):
                # it holds everything asked for, and more
                return _with_headline(store, record["run_id"], key, spec, existing)
            previous_curves = (stored.get("curves") or {}).get(key)
    if model is None:
        # a run recorded without its model (a committed record) is trained again, now that this
        # result needs it (a save_model=false run is refused in one line)
        record = with_model(record, store, progress)
        model = load_model(record["model_path"])
    cfg = RunConfig.from_dict(record["config"])
    t = cfg.train
    bench = load_benchmark(cfg.benchmark, cfg.benchmark_options)
    context = t.context or MODEL_PRESETS[cfg.model].context

    def evaluate_other(other: dict) -> dict:
        # the same entry on a reference run, without references of its own (no recursion)
        opts_other = (
            dict(entry.options, references=False) if "references" in opts else entry.options
        )
        return evaluate_entry(
            other, dataclasses.replace(entry, options=opts_other), store, progress
        )

    ctx = EvalContext(
        record=record,
        benchmark=bench,
        model=use_fused_kernels(copy.deepcopy(model).to(t.device), t.fused_kernels),
        context=context,
        eval_blocks=test_blocks(bench, context, t.eval_blocks),
        store=store,
        device=t.device,
        progress=progress,
        key=key,
        evaluate_other=evaluate_other,
        reference=lambda name: reference_record(record, name, store, progress),
        previous_curves=previous_curves,
    )
    start = time.perf_counter()
    result = spec.run(ctx, options)
    summary = {"options": opts, **result.summary, "seconds": time.perf_counter() - start}
    # what it is and its headline numbers, so tables need neither the registry nor the summary's shape
    summary = {"eval": spec.name, "suite": entry.suite, **summary}
    try:
        summary["headline"] = headline(spec.metrics, result.summary)
    finally:  # a metric reader's bug must not lose the measured result
        merge_eval(store, record["run_id"], key, json_safe(summary), result.curves)
    return summary


def _with_headline(store: RunStore, run_id: str, key: str, spec, summary: dict) -> dict:
    """A recorded result with its headline metrics read afresh off its summary: a result recorded
    before its evaluation declared them (or declared them differently) gains them; nothing reruns."""
    from unlearnbench.evals import headline

    fresh = json_safe(headline(spec.metrics, summary))
    if summary.get("headline") == fresh and summary.get("eval") == spec.name:
        return summary
    summary = {**summary, "eval": spec.name, "headline": fresh}
    merge_eval(store, run_id, key, summary, None)
    return summary


def _adopt_unsuited(store: RunStore, run_id: str, entry, spec, opts: dict) -> None:
    """A result recorded before results were keyed by suite (`evals[KEY]`, no suite named) moves to
    `SUITE/KEY` when its options serve this entry (additive options aside), so it is read, not
    rerun; one with other options stays where it is."""
    if not entry.suite:
        return
    with store.lock(run_id, wait_message=False):
        record = store.load(run_id)
        results, curves = record.get("evals") or {}, record.get("curves") or {}
        old = results.get(entry.key)
        if entry.record_key in results or not isinstance(old, dict) or "suite" in old:
            return
        old_opts = old.get("options") or {}
        if any(old_opts.get(k) != v for k, v in opts.items() if k not in spec.additive):
            return
        results[entry.record_key] = {**results.pop(entry.key), "suite": entry.suite}
        if entry.key in curves:
            curves[entry.record_key] = curves.pop(entry.key)
        store.write(record)


def run_suite(
    run_id: str,
    suite: str,
    store: RunStore,
    progress: bool = True,
    force: bool = False,
    log: tuple[str, ...] = (),
) -> dict:
    """Run every entry of `suite` on the saved run `run_id`; returns the updated record. With
    `progress`, one line per entry as it starts and ends; `log` names trackers (tracking.py) that
    get the results this call measured (headline metrics and curves)."""
    from unlearnbench.evals import load_suite
    from unlearnbench.progress import say
    from unlearnbench.tracking import open_tracker

    entries, _ = load_suite(suite)
    record = store.load(run_id)
    before = record.get("evals") or {}
    model = None
    for i, entry in enumerate(entries, 1):
        if model is None and record.get("model_path") and Path(record["model_path"]).is_dir():
            model = load_model(record["model_path"])
        start = time.perf_counter()
        if progress:
            say(f"{run_id}: {entry.record_key} ({i}/{len(entries)}) ...")
        evaluate_entry(record, entry, store, progress=progress, force=force, model=model)
        if progress:
            say(f"{run_id}: {entry.record_key} done in {time.perf_counter() - start:.0f}s")
        if model is None:  # the entry may have trained a model-less run again
            record = store.load(run_id)
    record = store.load(run_id)
    tracker = open_tracker(log, store.root, run_id, Path(suite).stem, record.get("config"))
    if tracker:
        with tracker:
            for key, summary in (record.get("evals") or {}).items():
                if before.get(key) != summary:  # measured (or re-read) by this call
                    tracker.log_eval(key, summary, (record.get("curves") or {}).get(key))
    return record


def json_safe(x):
    """Tuples to lists (as the JSON record stores them), so stored and fresh options compare equal."""
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [json_safe(v) for v in x]
    return x
