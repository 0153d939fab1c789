"""Evaluation suites on saved runs (relearning attacks, probes, ...).

A suite's results are merged into the run's record under "evals" and "curves"; nothing else in the
record changes. An evaluation measures its own run and nothing else: a run's comparison with its
references (the matching `no-filter` run and perfect filter) is made at table time from their own
results of the same suite (results/references.py). So a suite that compares (every shipped one
unless it says `references: false`) is run on the references too: `run_suite` finds them in the
store (results/matching.py), trains them when missing, and runs the suite on them, once each.
"""

from __future__ import annotations

import time
from pathlib import Path

from unlearnbench.config import RunConfig
from unlearnbench.data.benchmarks import load_benchmark
from unlearnbench.data.pipeline import test_blocks
from unlearnbench.models.build import load_model
from unlearnbench.models.kernels import use_fused_kernels
from unlearnbench.models.presets import MODEL_PRESETS
from unlearnbench.results.matching import REFERENCES, matching_reference, reference_overrides
from unlearnbench.results.store import RunStore
from unlearnbench.runner import execute, resolve_run_config, saved_records, with_model


def reference_record(record: dict, name: str, store: RunStore, progress: bool = True) -> dict:
    """The matching `no-filter` or perfect-filter run of `record` (results/matching.py): from the
    store when it holds one with a saved model; else one recorded without its model (a committed
    record: its model is trained again only when an evaluation needs it); else trained with the
    settings the rule names."""
    saved = saved_records(store)  # every record read once
    found = matching_reference(record, saved, name)
    if found is None:
        found = matching_reference(record, store.records(), name)  # e.g. committed, no model
    if found is not None:
        return found
    method, overrides = reference_overrides(record, saved, name)
    ref = resolve_run_config(
        method, record["benchmark"], record["model"], record["seed"], overrides
    )
    return with_model(execute(ref, store, force=False, progress=progress), store, progress)


def merge_eval(store: RunStore, run_id: str, key: str, summary: dict, curves: list | None) -> dict:
    """Re-read the record, set `evals[key]` (and `curves[key]`), write it back atomically."""
    with store.lock(run_id, wait_message=False):
        record = store.load(run_id)
        record.setdefault("evals", {})[key] = summary
        if curves is not None:
            record.setdefault("curves", {})[key] = curves
        store.write(record)
        model_dir = Path(record.get("model_path") or "")
        if record.get("model_path") and (model_dir / "config.json").is_file():
            from unlearnbench.models.card import write_model_card

            write_model_card(model_dir, record)  # the card's metrics include the new result
    return record


def evaluate_entry(
    record: dict, entry, store: RunStore, progress: bool = True, force: bool = False, model=None
) -> dict:
    """Run one suite entry on a saved run (unless its result with the same options is recorded)
    and merge the result into the record; returns the summary."""
    import copy
    import dataclasses

    from unlearnbench.evals import EvalContext, EvalSpec, headline
    from unlearnbench.registry import evals

    spec: EvalSpec = evals.get(entry.eval)
    options = spec.options(**entry.options)
    opts = json_safe(dataclasses.asdict(options))
    key = entry.record_key
    _adopt_unsuited(store, record["run_id"], entry, spec, opts)
    existing = (store.load(record["run_id"]).get("evals") or {}).get(key)
    if existing is not None and not force and existing.get("options") == opts:
        return _with_headline(store, record["run_id"], key, spec, existing)
    if model is None:
        # a run recorded without its model (a committed record) is trained again, now that this
        # result needs it (a save_model=false run is refused in one line)
        record = with_model(record, store, progress)
        model = load_model(record["model_path"])
    cfg = RunConfig.from_dict(record["config"])
    t = cfg.train
    bench = load_benchmark(cfg.benchmark, cfg.benchmark_options)
    context = t.context or MODEL_PRESETS[cfg.model].context
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
    `SUITE/KEY` when its options are this entry's, so it is read, not rerun; one with other options
    stays where it is."""
    if not entry.suite:
        return
    with store.lock(run_id, wait_message=False):
        record = store.load(run_id)
        results, curves = record.get("evals") or {}, record.get("curves") or {}
        old = results.get(entry.key)
        if entry.record_key in results or not isinstance(old, dict) or "suite" in old:
            return
        if (old.get("options") or {}) != opts:
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
    references: bool = True,
) -> dict:
    """Run every entry of `suite` on the saved run `run_id`, then (with `references`, when the
    suite compares) on its references (`run_references`); returns the run's updated record. With
    `progress`, one line per entry as it starts and ends; `log` names trackers (tracking.py) that
    get the results this call measured (headline metrics and curves)."""
    record = _run_entries(run_id, suite, store, progress, force, log)
    if references and suite_compares(suite):
        run_references(record, suite, store, progress, log)
    return store.load(run_id)


def suite_compares(suite: str) -> bool:
    """Whether a suite's results are compared with the references' (its `references:`, default
    true): then the references must hold the suite too."""
    from unlearnbench.evals import suite_field

    return bool(suite_field(suite, "references", True))


def run_references(record: dict, suite: str, store: RunStore, progress: bool = True, log=()):
    """Train `record`'s references when missing and run `suite` on each that lacks it; under a lock
    per reference and suite, so parallel runs that share a reference measure it once."""
    from unlearnbench.launch import suite_recorded
    from unlearnbench.progress import say

    for name in REFERENCES:
        ref = reference_record(record, name, store, progress)
        if ref["run_id"] == record["run_id"]:
            continue  # a reference is its own reference
        with store.lock(f"{ref['run_id']}~suite~{Path(suite).stem}", wait_message=False):
            if suite_recorded(store.load(ref["run_id"]), suite):
                continue
            if progress:
                say(f"{record['run_id']}: its {name} reference {ref['run_id']} gets suite {suite}")
            _run_entries(ref["run_id"], suite, store, progress, False, log)


def _run_entries(run_id, suite, store, progress, force, log) -> dict:
    """Every entry of `suite` on the run `run_id`, one progress line each; trackers told."""
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
