"""Committed records say nothing of the machine they ran on: no path where a run's model, snapshots
or chosen checkpoint lay."""

from __future__ import annotations

import json
from pathlib import Path

from unlearnbench.results.committed import _without_paths

RECORDS = Path(__file__).resolve().parents[1] / "results" / "records"


def _paths(o, at=""):
    if isinstance(o, dict):
        for k, v in o.items():
            yield from ([(f"{at}.{k}", v)] if k == "path" and isinstance(v, str) else [])
            yield from _paths(v, f"{at}.{k}")
    elif isinstance(o, list):
        for i, v in enumerate(o):
            yield from _paths(v, f"{at}[{i}]")


def test_a_committed_record_loses_every_measured_path():
    record = {
        "run_id": "x",
        "config": {"benchmark_options": {"path": "data/corpus.jsonl"}},  # a setting: kept
        "model_path": "/store/models/x",
        "history": [{"step": 25, "snapshot": {"path": "/store/models/x/snapshots/step-25"}}],
        "metrics": {"checkpoint": {"path": "/store/models/y/snapshots/step-600", "step": 600}},
    }
    out = _without_paths(record)
    assert out["model_path"] is None
    assert out["history"][0]["snapshot"] == {"path": None}
    assert out["metrics"]["checkpoint"] == {"path": None, "step": 600}
    assert out["config"]["benchmark_options"]["path"] == "data/corpus.jsonl"


def test_the_committed_records_hold_no_measured_path():
    found = []
    for p in sorted(RECORDS.glob("*.json")):
        r = json.loads(p.read_text())
        found += [
            (p.name, where) for where, _ in _paths({k: r.get(k) for k in ("history", "metrics")})
        ]
        if r.get("model_path"):
            found.append((p.name, "model_path"))
    assert not found, found[:5]
