"""Checks of a run request that need no torch: the method, benchmark and model names, and every
`--set` (and `--config`) key and value against the fields the sources declare.

`resolve_run_config` checks all of this again, and more (ranges, combinations, the method's own
checks), after importing the method; this answers the common mistakes (a typo in a name or a key,
a value of the wrong type) in well under a second, with the same messages, and never refuses what
`resolve_run_config` accepts: a field whose type it cannot read is left to it.
"""

from __future__ import annotations

from pathlib import Path

from unlearnbench.config import (
    RUN_KEYS,
    LabelConfig,
    TrainConfig,
    _fields,
    _locate,
    load_config_file,
    parse_value,
)
from unlearnbench.registry import UnknownName, benchmarks, methods


def check_run_request(
    method: str,
    benchmark: str,
    model: str | None,
    overrides: dict,
    config_file: str | Path | None = None,
) -> None:
    """Raise what `resolve_run_config` would raise for a bad name, key or value type."""
    method_entry = methods.static_entry(method)  # UnknownName for a typo
    benchmark_entry = benchmarks.static_entry(benchmark)
    from unlearnbench.models.presets import MODEL_PRESETS
    from unlearnbench.run_presets import preset_path

    values = load_config_file(preset_path(config_file)) if config_file is not None else {}
    model = model or str(values.get("model") or "tiny")
    if model not in MODEL_PRESETS:
        from unlearnbench.suggest import unknown_name

        raise UnknownName(unknown_name("model", model, MODEL_PRESETS))
    entries = (method_entry, benchmark_entry)
    if any(e is None or e.options is None for e in entries):
        return  # registered in a way the sources do not show: resolve_run_config checks it
    sections = {
        "train": _fields(TrainConfig),
        "labels": _fields(LabelConfig),
        "method": method_entry.options,
        "benchmark": benchmark_entry.options,
    }
    values.pop("model", None)
    values.update(overrides)
    for key, raw in values.items():
        if key in RUN_KEYS:
            continue  # the run-level base: checked against the method's kind later
        section, name = _locate(key, sections)
        parse_value(raw, sections[section][name], key)
