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


def test_grid_is_every_method_at_recall_1_and_the_label_using_training_methods_below():
    mod = _script()
    specs = mod.specs([0, 1, 2], quick=False)
    parts = [(s["benchmark"], s["grid"]["recall"][0], s["suite"]) for s in specs]
    parts_in_order = ((1.0, "robust"), (0.9, "robust"), (0.5, "probes"), (1.0, "sgtm-paper"))
    assert parts == [
        (b, recall, suite)
        for recall, suite in parts_in_order
        for b in ("storyworld-lang", "storyworld-topic")
    ]
    for s in specs:
        assert s["seeds"] == [0, 1, 2] and s["model"] == "tiny" and s["set"] == {}
        if s["suite"] == "sgtm-paper":  # the SGTM-vs-RMU claim under the paper's protocol
            assert s["methods"] == ["sgtm", "rmu"] and s["grid"]["recall"] == [1.0]
        elif s["grid"]["recall"] == [1.0]:
            assert s["methods"] == methods.names()
        else:
            assert s["methods"] == list(mod.LABELED_TRAINING)
    for name in mod.LABELED_TRAINING:  # training-time methods that read the labels
        assert methods.get(name).kind == "training"
    from unlearnbench.evals import load_suite

    for suite in {s["suite"] for s in specs}:
        load_suite(suite)  # every part's suite exists


def test_records_go_to_the_committed_directory_without_paths_and_come_back(tmp_path):
    from unlearnbench.results.committed import committed_records, export_records, import_records
    from unlearnbench.results.store import RunStore

    mod = _script()
    store = RunStore(tmp_path / "store")
    recs = sample_records()
    for r in recs:
        store.write(r)
    (store.model_path(recs[0]["run_id"])).mkdir(parents=True)  # one run's model is here
    store.write(dict(recs[0], model_path=str(store.model_path(recs[0]["run_id"]))))
    committed = tmp_path / "results" / "records"
    assert export_records(store, committed, mod.in_grid) == len(recs)
    assert export_records(store, committed, mod.in_grid) == 0  # unchanged: nothing rewritten
    back = {r["run_id"]: r for r in committed_records(committed)}
    assert set(back) == {r["run_id"] for r in recs}
    assert all(r["model_path"] is None for r in back.values())  # weights are not committed
    assert "tmp" not in (committed / f"{recs[0]['run_id']}.json").read_text()  # no machine path

    # a fresh store gets every committed record; the run whose model it has points at it
    fresh = RunStore(tmp_path / "fresh")
    fresh.model_path(recs[0]["run_id"]).mkdir(parents=True)
    assert import_records(committed, fresh) == len(recs)
    assert import_records(committed, fresh) == 0  # a record the store has stays as it is
    loaded = {r["run_id"]: r for r in fresh.records()}
    assert loaded[recs[0]["run_id"]]["model_path"] == str(fresh.model_path(recs[0]["run_id"]))
    assert all(loaded[r["run_id"]]["model_path"] is None for r in recs[1:])
    assert loaded[recs[1]["run_id"]]["metrics"] == recs[1]["metrics"]


def test_progress_counts_the_grid_cells_the_store_holds(tmp_path):
    from unlearnbench.results.store import RunStore

    mod = _script()
    cells = mod.grid_progress(RunStore(tmp_path), [0, 1, 2])
    n = len(methods.names()) * 2 * 3 + len(mod.LABELED_TRAINING) * 2 * 2 * 3 + 2 * 2 * 3
    assert (
        sum(c[4] for c in cells) == n and sum(c[3] for c in cells) == sum(c[5] for c in cells) == 0
    )
    lines = mod.progress_lines(cells)
    assert f"0 of {n} cells" in lines[2]
    assert (
        "recall 1.0 (robust) | recall 0.9 (robust) | recall 0.5 (probes) | recall 1.0 (sgtm-paper)"
        in lines[4]
    )
    assert any(
        line.startswith("| storyworld-topic | sgtm | 0/3 | 0/3 | 0/3 | 0/3 |") for line in lines
    )
    assert any(line.startswith("| storyworld-lang | rmu | 0/3 |  |  | 0/3 |") for line in lines)
    assert any(line.startswith("| storyworld-lang | era | 0/3 | 0/3 | 0/3 |  |") for line in lines)


def test_write_results_writes_tables_figures_reports_and_readme(tmp_path):
    mod = _script()
    recs = sample_records() + [record("filter", 0, 4.0, 1.5, benchmark="storyworld-lang")]
    (tmp_path / "figures").mkdir()
    stale = [tmp_path / "figures" / "gone-benchmark-tradeoff.png", tmp_path / "report-gone.html"]
    for path in stale:  # an earlier build's files for a benchmark these records do not hold
        path.write_text("old")
    mod.write_results(recs, tmp_path, "Hand-made records.")
    assert not any(p.exists() for p in stale)
    readme = (tmp_path / "README.md").read_text()
    assert "Hand-made records." in readme and "cpu (x86_64, 1 threads)" in readme
    for r in recs:
        assert r["run_id"] in readme  # says exactly which runs it contains
    assert (tmp_path / "leaderboard.md").read_text().count("\n| storyworld-") == 6
    assert (tmp_path / "report-storyworld-topic.html").is_file()
    assert (tmp_path / "report-storyworld-lang.html").is_file()
    assert (tmp_path / "figures" / "storyworld-topic-tradeoff.png").is_file()
    assert (tmp_path / "figures" / "storyworld-topic-relearn.svg").is_file()
    claims = (tmp_path / "claims.md").read_text()
    assert "(claims.md)" in readme and "## SGTM vs RMU: steps to recover" in claims
    # the sample's filter and sgtm runs share no recall, so no comparison of them is a measurement
    row = (
        "| storyworld-topic | tiny | recall 0.9 | Δforget - Δretain - Δadjacent (net of damage) "
        "| claim |"
    )
    assert any(
        line.startswith(row) and "not measured (n=0)" in line for line in claims.splitlines()
    )


def test_a_committed_record_with_its_suite_results_is_skipped_on_a_fresh_machine(tmp_path):
    """The grid's plan on a store that got the committed records: the run whose record matches
    its config (its id) and holds its suite's results is recorded; without them it is not."""
    import dataclasses

    from unlearnbench.registry import evals
    from unlearnbench.results.committed import import_records
    from unlearnbench.results.store import RunStore
    from unlearnbench.suites import json_safe
    from unlearnbench.sweep import plan

    spec = {"benchmark": "storyworld-lang", "model": "tiny", "seeds": [0], "methods": ["filter"]}
    (run,) = plan({**spec, "suite": "probes"}, RunStore(tmp_path / "empty"))
    assert not run.recorded
    committed = RunStore(tmp_path / "results")
    base = record("filter", 0, 4.0, 1.5, benchmark="storyworld-lang")
    opts = json_safe(dataclasses.asdict(evals.get("fact-probes").options()))
    done = base | {
        "run_id": run.run_id,
        "config": run.config.to_dict(),
        "evals": {"probes/fact-probes": {"options": opts}},
    }
    committed.write(done)
    store = RunStore(tmp_path / "store")
    import_records(committed.records_dir, store)
    (again,) = plan({**spec, "suite": "probes"}, store)
    assert again.run_id == run.run_id and again.recorded
    # the same record without its suite's result: trained, but its suite still runs
    committed.write(dict(done, evals={}))
    fresh = RunStore(tmp_path / "fresh")
    import_records(committed.records_dir, fresh)
    (third,) = plan({**spec, "suite": "probes"}, fresh)
    assert not third.recorded and fresh.exists(run.run_id)
