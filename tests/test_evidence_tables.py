"""scripts/evidence_tables.py: means and 95% t half-widths over seeds, Δ paired by seed and starred
only when its interval excludes zero, and columns nobody measured left out."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "evidence_tables.py"


def _module():
    spec = importlib.util.spec_from_file_location("evidence_tables", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _record(method, seed, forget, retain, forget_acc, non_default=None):
    probes = {"headline": [{"name": "forget_accuracy", "value": forget_acc}]}
    return {
        "method": method,
        "benchmark": "storyworld-lang",
        "seed": seed,
        "non_default": non_default or {},
        "metrics": {"forget_loss": forget, "retain_loss": retain, "adjacent_loss": None},
        "evals": {"suite/fact-probes": probes},
    }


def test_cells_are_means_with_intervals_and_deltas_are_paired_by_seed():
    mod = _module()
    records = [
        _record("no-filter", 0, 1.0, 2.0, 0.8),
        _record("no-filter", 1, 2.0, 2.2, 0.7),
        _record("no-filter", 2, 3.0, 2.4, 0.9),
        # forget loss +5 at every seed (a sure Δ), retain the no-filter values give or take 0.1
        _record("filter", 0, 6.0, 2.1, 0.3),
        _record("filter", 1, 7.0, 2.1, 0.2),
        _record("filter", 2, 8.0, 2.5, 0.25),
        _record("filter", 0, 99.0, 99.0, 0.0, non_default={"labels": {"recall": 0.9}}),
    ]
    text = mod.tables(records, "storyworld-lang")
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in text.splitlines()}
    header = next(line for line in text.splitlines() if line.startswith("| method | forget loss"))
    assert "adjacent loss" not in header  # measured by nobody
    nf, fl = rows["no-filter"], rows["filter"]
    # no-filter's forget loss: mean 2, sd 1, t(0.975, 2) = 4.303 -> half-width 2.484
    assert nf[1] == "2.000 ± 2.484 (n=3)"
    assert fl[1] == "7.000 ± 2.484 (n=3)"  # the recall-0.9 run is another setting: not averaged in
    assert fl[2] == "5.000 ± 0.000 (n=3) *"  # Δ paired by seed: exactly +5 each time
    assert fl[4].startswith("0.033 ± ") and not fl[4].endswith("*")  # Δretain: within noise
