"""The reference-results script: its grid and the results directory it writes (hand-made records)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from results_fixtures import record, sample_records

from unlearnbench.registry import methods

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "reproduce_reference.py"


def _script():
    spec = importlib.util.spec_from_file_location("reproduce_reference", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_grid_is_every_method_on_both_benchmarks():
    mod = _script()
    specs = mod.specs([0, 1, 2], quick=False)
    assert [s["benchmark"] for s in specs] == ["storyworld-lang", "storyworld-topic"]
    for s in specs:
        assert s["methods"] == methods.names() and s["seeds"] == [0, 1, 2]
        assert s["grid"] == {"recall": [1.0, 0.9]} and s["model"] == "tiny" and s["set"] == {}


def test_write_results_writes_tables_figures_reports_and_readme(tmp_path):
    mod = _script()
    recs = sample_records() + [record("filter", 0, 4.0, 1.5, benchmark="storyworld-lang")]
    mod.write_results(recs, tmp_path, "Hand-made records.")
    readme = (tmp_path / "README.md").read_text()
    assert "Hand-made records." in readme and "cpu (x86_64, 1 threads)" in readme
    for r in recs:
        assert r["run_id"] in readme  # says exactly which runs it contains
    assert (tmp_path / "leaderboard.md").read_text().count("\n| storyworld-") == 6
    assert (tmp_path / "report-storyworld-topic.html").is_file()
    assert (tmp_path / "report-storyworld-lang.html").is_file()
    assert (tmp_path / "figures" / "storyworld-topic-tradeoff.png").is_file()
    assert (tmp_path / "figures" / "storyworld-topic-relearn.svg").is_file()
