"""Records that outlive a machine: a run store's records copied into a directory that is committed
(`results/records/*.json`, no model weights), and copied back into a store, where runs already
recorded are not run again.

The committed directory is laid out as a store's `records/` (a `RunStore` rooted one level up reads
it), with `model_path` and the snapshots' paths empty: the weights stay in the store they were
trained in. A record copied back into a store points at that store's model of the run when the
store has it; otherwise the run is recorded without its model, and a run that needs it (a post-hoc
run's base, an attack's reference) trains it again from the record's config (`runner.with_model`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from unlearnbench.results.store import RunStore, _with_paths, write_text_atomic


def _without_paths(record: dict) -> dict:
    """The record without the paths of the machine it ran on: its model's, its snapshots', and any
    other `path` in what it measured (the history's snapshots, the checkpoint a method chose)."""
    out = _with_paths(record, lambda _path: None)
    for key in ("history", "metrics"):
        if key in out:
            out[key] = _blank_paths(out[key])
    return out


def _blank_paths(o):
    if isinstance(o, dict):
        return {
            k: None if k == "path" and isinstance(v, str) else _blank_paths(v) for k, v in o.items()
        }
    if isinstance(o, list):
        return [_blank_paths(v) for v in o]
    return o


def export_records(store: RunStore, directory: Path, keep: Callable[[dict], bool]) -> int:
    """Write every record of `store` that `keep` accepts to `directory/RUN_ID.json`, without
    model paths, each atomically; returns how many files changed."""
    directory = Path(directory)
    changed = 0
    for record in store.records():
        if not keep(record):
            continue
        path = directory / f"{record['run_id']}.json"
        text = json.dumps(_without_paths(record), indent=1, default=str) + "\n"
        if path.is_file() and path.read_text() == text:
            continue
        write_text_atomic(path, text)
        changed += 1
    return changed


def committed_records(directory: Path) -> list[dict]:
    """The records in a committed directory, as a store reads them."""
    reader = RunStore(Path(directory).parent)
    reader.records_dir = Path(directory)  # the files themselves, whatever the folder's name
    return reader.records()


def import_records(
    directory: Path, store: RunStore, keep: Callable[[dict], bool] | None = None
) -> int:
    """Copy every committed record the store lacks (and `keep` accepts) into it (its model: the
    store's, when the store holds the run's model directory); a record the store has is left as
    the store has it. Returns how many were copied."""
    copied = 0
    for record in committed_records(directory):
        if store.exists(record["run_id"]) or (keep is not None and not keep(record)):
            continue
        model = store.model_path(record["run_id"])
        store.write(dict(record, model_path=str(model) if model.is_dir() else None))
        copied += 1
    return copied
