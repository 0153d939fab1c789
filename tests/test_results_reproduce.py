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
    parts = [(s["benchmark"], s["grid"]["recall"][0], s["suite"], s["model"]) for s in specs]
    parts_in_order = (
        (1.0, "robust", "tiny"),
        (0.9, "robust", "tiny"),
        (0.5, "probes", "tiny"),
        (1.0, "sgtm-paper", "tiny"),
        (1.0, "robust", "small"),
        (0.9, "robust", "small"),
    )
    assert parts == [
        (b, recall, suite, model)
        for recall, suite, model in parts_in_order
        for b in ("storyworld-lang", "storyworld-topic")
    ]
    for s in specs:
        assert s["seeds"] == [0, 1, 2] and s["set"] == {}
        if s["suite"] == "sgtm-paper":  # the SGTM-vs-RMU claim under the paper's protocol
            assert s["methods"] == ["sgtm", "rmu"] and s["grid"]["recall"] == [1.0]
        elif s["model"] == "small":  # the second size: the core methods
            core = ["no-filter", "filter", "sgtm", "rmu", "circuit-breakers", "era"]
            assert s["methods"] == (core if s["grid"]["recall"] == [1.0] else ["filter", "sgtm"])
        elif s["grid"]["recall"] == [1.0]:
            assert s["methods"] == methods.names()
        else:
            assert s["methods"] == list(mod.LABELED_TRAINING)
    # a chunk: one size, some methods
    chunk = mod.specs([0], quick=False, only=["sgtm", "rmu"], models=("small",))
    assert [(s["model"], s["grid"]["recall"][0], s["methods"]) for s in chunk] == [
        ("small", 1.0, ["sgtm", "rmu"]),
        ("small", 1.0, ["sgtm", "rmu"]),
        ("small", 0.9, ["sgtm"]),
        ("small", 0.9, ["sgtm"]),
    ]
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
    tiny = len(methods.names()) * 2 * 3 + len(mod.LABELED_TRAINING) * 2 * 2 * 3 + 2 * 2 * 3
    n = tiny + len(mod.SMALL_METHODS) * 2 * 3 + 2 * 2 * 3
    assert sum(c.planned for c in cells) == n
    assert sum(c.done for c in cells) == sum(c.trained for c in cells) == 0
    lines = mod.progress_lines(cells, "abc")
    assert f"0 of {n} runs" in lines[2]
    # per part: no cell started
    assert f"| tiny | 1.0 (robust) | 0 | 0 | 0 | {2 * len(methods.names())} | 0 | 0 |" in lines
    assert "| small | 0.9 (robust) | 0 | 0 | 0 | 4 | 0 | 0 |" in lines
    header = next(line for line in lines if line.startswith("| benchmark | model | method |"))
    assert header.endswith(
        "recall 1.0 (robust) | recall 0.9 (robust) | recall 0.5 (probes) | recall 1.0 (sgtm-paper) |"
    )
    assert "| storyworld-topic | tiny | sgtm | 0/3 | 0/3 | 0/3 | 0/3 |" in lines
    assert "| storyworld-lang | tiny | rmu | 0/3 |  |  | 0/3 |" in lines
    assert "| storyworld-lang | tiny | era | 0/3 | 0/3 | 0/3 |  |" in lines
    assert "| storyworld-lang | small | sgtm | 0/3 | 0/3 |  |  |" in lines
    assert "| storyworld-topic | small | rmu | 0/3 |  |  |  |" in lines
    # made by the current code, by other code, by both
    part = (1.0, "robust", "tiny")
    made = [
        mod.Cell("storyworld-lang", "sgtm", part, 3, 3, 3, ((0, "abc"), (1, "abc"), (2, "abc"))),
        mod.Cell("storyworld-lang", "rmu", part, 3, 3, 3, ((0, "old"), (1, "old"), (2, "old"))),
        mod.Cell("storyworld-lang", "npo", part, 2, 3, 2, ((0, "abc"), (1, "unknown"))),
    ]
    assert [c.state("abc") for c in made] == ["current", "stale", "mixed"]
    lines = mod.progress_lines(made, "abc")
    assert "| tiny | 1.0 (robust) | 1 | 1 | 1 | 0 | 4 | 4 |" in lines
    assert "| storyworld-lang | tiny | rmu | 3/3 stale |" in lines
    assert "| storyworld-lang | tiny | npo | 2/3 mixed |" in lines


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


# ---- one code per cell: the source digest of each record ----


def _grid_record(mod, method: str, seed: int, digest: str | None, model: str = "tiny") -> dict:
    """A record of the grid's run (its planned run id and config) made by the code `digest`
    (None: made before records named their code)."""
    from unlearnbench.sweep import plan

    spec = {"benchmark": "storyworld-lang", "model": model, "seeds": [seed], "methods": [method]}
    (run,) = plan(spec, mod.Records())
    versions = {"git": "abc1234"} | ({"source": digest} if digest else {})
    base = record(method, seed, 4.0, 1.5, benchmark="storyworld-lang")
    return base | {
        "run_id": run.run_id,
        "model": model,
        "config": run.config.to_dict(),
        "versions": versions,
    }


def test_a_record_made_by_other_code_is_made_again(tmp_path):
    """Committed records made by other code are not copied into the store, the store's own are
    set aside: the grid plans their runs again; one made by this code stays recorded."""
    from unlearnbench.results.store import RunStore
    from unlearnbench.sweep import plan

    mod = _script()
    current = mod.current_digest()
    committed, store = RunStore(tmp_path / "results"), RunStore(tmp_path / "store")
    old, now, before = (
        _grid_record(mod, "filter", 0, "0123456789abcdef"),
        _grid_record(mod, "filter", 1, current),
        _grid_record(mod, "filter", 2, None),
    )
    committed.write(old)
    committed.write(now)
    store.write(before)  # the store's own, made before records named their code
    copied, aside = mod.take_committed(committed.records_dir, store)
    assert copied == 1 and aside == [before["run_id"]]
    assert store.exists(now["run_id"]) and not store.exists(old["run_id"])
    assert (store.root / "stale" / "records" / f"{before['run_id']}.json").is_file()
    spec = {
        "benchmark": "storyworld-lang",
        "model": "tiny",
        "seeds": [0, 1, 2],
        "methods": ["filter"],
    }
    assert [r.recorded for r in plan(spec, store)] == [False, True, False]
    # the cells as the dry run shows them: which seeds, by which code, current or not
    cells = mod.grid_progress(mod.Records(store, committed), [0, 1, 2], ("tiny",))
    (cell,) = [
        c
        for c in cells
        if (c.benchmark, c.method, c.part) == ("storyworld-lang", "filter", (1.0, "robust", "tiny"))
    ]
    assert cell.state(current) == "mixed"  # seed 0 by other code, 1 by this: 2 not recorded
    assert mod.cell_lines([cell], current) == [
        f"storyworld-lang, tiny, filter, recall 1.0, robust: seeds 0 by 0123456789abcdef; "
        f"1 by {current} (mixed)"
    ]


def test_results_refuse_a_cell_whose_runs_mix_code_versions(tmp_path):
    import json
    import subprocess
    import sys

    mod = _script()
    current = mod.current_digest()
    records = tmp_path / "results" / "records"
    records.mkdir(parents=True)
    recs = [
        record("sgtm", 0, 4.0, 1.5) | {"versions": {"source": current}},
        record("sgtm", 1, 4.1, 1.5),  # made before records named their code: "unknown"
        record("filter", 0, 4.0, 1.5),
        record("filter", 1, 4.0, 1.5),
        # seed 0 of the same cell by earlier code, under another run id: made again, so dropped
        record("sgtm", 0, 3.0, 1.5) | {"run_id": "sgtm__old-version__s0"},
    ]
    for r in recs:
        (records / f"{r['run_id']}.json").write_text(json.dumps(r))
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--only-results", "--results", str(tmp_path / "results")],
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "COLUMNS": "300"},
    )
    assert out.returncode == 1, out.stderr
    assert (
        f"storyworld-topic, tiny, sgtm (recall=1.0): runs made by different code "
        f"(seeds 0 by {current}; 1 by unknown)" in out.stderr
    )
    assert "filter" not in out.stderr  # one code: not named
    assert "--models tiny --methods sgtm" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "results" / "README.md").exists()  # nothing written
    assert not (records / "sgtm__old-version__s0.json").exists()
    # the cell made by one code: results are built
    (records / f"{recs[1]['run_id']}.json").write_text(
        json.dumps(recs[1] | {"versions": {"source": current}})
    )
    assert mod.mixed_rows([recs[0], recs[1] | {"versions": {"source": current}}]) == {}


def test_dry_run_lists_the_small_parts_and_each_cell_s_code(tmp_path):
    import os
    import subprocess
    import sys

    from unlearnbench.results.store import RunStore

    mod = _script()
    current = mod.current_digest()
    committed = RunStore(tmp_path / "results")
    committed.write(_grid_record(mod, "no-filter", 0, current, model="small"))
    committed.write(_grid_record(mod, "filter", 0, None, model="small"))
    cmd = [sys.executable, str(SCRIPT), "--dry-run", "--models", "small"]
    cmd += ["--runs", str(tmp_path / "store"), "--results", str(tmp_path / "results")]
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "COLUMNS": "300"})
    assert out.returncode == 0, out.stderr
    for part in ("recall 1.0, suite robust", "recall 0.9, suite robust"):
        for b in ("storyworld-lang", "storyworld-topic"):
            assert f"{b}, model small, {part}" in out.stderr
    assert "model tiny" not in out.stderr
    # every method at seeds 0-2 (none holds the suite's results), then filter and sgtm at 0.9
    assert out.stderr.count("18 runs (0 already recorded)") == 2
    assert out.stderr.count("6 runs (0 already recorded)") == 2  # filter and sgtm at 0.9
    assert all(name in out.stderr for name in mod.SMALL_METHODS)
    assert (
        f"storyworld-lang, small, no-filter, recall 1.0, robust: seeds 0 by {current} (current)"
        in out.stderr
    )
    assert (
        "storyworld-lang, small, filter, recall 1.0, robust: seeds 0 by unknown (stale)"
        in out.stderr
    )
    assert not (tmp_path / "store" / "stale").exists()  # a dry run moves nothing


def test_models_option_names_only_sizes_of_the_grid():
    import pytest

    from unlearnbench.config import ConfigError

    mod = _script()
    assert mod.chosen_models("") == ("tiny", "small") and mod.chosen_models("small") == ("small",)
    with pytest.raises(ConfigError, match="'huge' is not a size of the grid"):
        mod.chosen_models("tiny,huge")


def test_a_slurm_dry_run_plans_gpu_runs_without_a_gpu_here(tmp_path):
    """SLURM jobs run on the cluster's GPUs: planning them (here, off a cluster) needs neither a
    local CUDA device nor `srun`; a serial run here does need the device."""
    import os
    import subprocess
    import sys

    import torch

    cmd = [sys.executable, str(SCRIPT), "--dry-run", "--models", "small"]
    cmd += ["--set", "train.device=cuda"]
    cmd += ["--runs", str(tmp_path / "store"), "--results", str(tmp_path / "results")]
    env = {**os.environ, "COLUMNS": "300"}
    out = subprocess.run(cmd + ["--launcher", "slurm"], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert "storyworld-lang, model small, recall 1.0, suite robust" in out.stderr
    if not torch.cuda.is_available():
        here = subprocess.run(cmd, capture_output=True, text=True, env=env)
        assert here.returncode != 0 and "no CUDA device" in here.stderr
