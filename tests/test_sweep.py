"""Sweeps: the planned grid, skipping recorded runs, continuing past a failure (no training: the
runner's `execute` is replaced by a fake that writes a record)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

import unlearnbench.runner as runner
from unlearnbench.cli import app
from unlearnbench.config import ConfigError
from unlearnbench.results.store import RunStore
from unlearnbench.sweep import plan, run_sweep

SPEC = {
    "benchmark": "storyworld-lang",
    "model": "tiny",
    "seeds": [0, 1],
    "methods": ["sgtm", "no-filter", "filter", {"sgtm": {"optimizer": "strict"}}],
    "grid": {"recall": [1.0, 0.9]},
    "set": {"train.steps": 3},
}


def test_plan_is_the_full_grid_in_order(tmp_path):
    runs = plan(SPEC, RunStore(tmp_path))
    assert len(runs) == 2 * 4 * 2  # seeds x method entries x recalls
    assert len({r.run_id for r in runs}) == len(runs)
    assert [r.method for r in runs[:2]] == ["no-filter", "no-filter"]  # bases first, per seed
    assert [r.seed for r in runs] == [0] * 8 + [1] * 8
    assert all(r.config.train.steps == 3 for r in runs)
    strict = [r for r in runs if r.overrides.get("optimizer") == "strict"]
    assert len(strict) == 4 and all(
        r.config.method_options["optimizer"] == "strict" for r in strict
    )
    assert {r.config.labels.recall for r in runs} == {1.0, 0.9}


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"methods": ["sgtmm"]}, "did you mean sgtm"),
        ({"grid": {"recal": [1.0]}}, "unknown key"),
        ({"seeds": ["x"]}, "seeds must be integers"),
        ({"colour": 1}, "unknown keys"),
        ({"methods": []}, "at least one method"),
    ],
)
def test_spec_mistakes_fail_before_anything_runs(tmp_path, bad, message):
    with pytest.raises((ConfigError, KeyError)) as e:
        plan({**SPEC, **bad}, RunStore(tmp_path))
    assert message in str(e.value)


def test_sweep_skips_recorded_runs_and_continues_after_a_failure(tmp_path, monkeypatch):
    monkeypatch.setenv("UNLEARNBENCH_PROGRESS", "bar")  # as on a terminal
    store = RunStore(tmp_path)
    calls = []

    def fake_execute(cfg, store, force=False, progress=True, **kw):
        calls.append(cfg.run_id)
        assert progress is False  # one overall bar; inner bars would fight it
        if cfg.method == "filter" and cfg.labels.recall == 0.9:
            raise RuntimeError("boom")
        rec = {
            "run_id": cfg.run_id,
            "method": cfg.method,
            "benchmark": cfg.benchmark,
            "seed": cfg.seed,
        }
        store.write(rec)
        return rec

    monkeypatch.setattr(runner, "execute", fake_execute)
    spec = {**SPEC, "seeds": [0], "methods": ["no-filter", "filter"]}
    runs = plan(spec, store)
    store.write({"run_id": runs[0].run_id})  # already recorded
    summary = run_sweep(runs, store)
    assert summary.skipped == [runs[0].run_id]
    assert len(calls) == 3 and runs[0].run_id not in calls
    assert len(summary.failed) == 1 and "RuntimeError: boom" in summary.failed[0][1]
    assert len(summary.done) == 2  # the run after the failure still ran
    assert (tmp_path / "failures" / f"{summary.failed[0][0]}.txt").read_text().count("boom")
    # a second sweep re-runs only the failed one
    calls.clear()
    again = run_sweep(plan(spec, store), store)
    assert calls == [summary.failed[0][0]] and len(again.skipped) == 3


@pytest.mark.parametrize("mode, inner", [("lines", True), ("bar", False), ("off", False)])
def test_in_a_batch_log_each_run_of_a_sweep_prints_its_own_progress(
    tmp_path, monkeypatch, mode, inner
):
    """A grid's run takes minutes: in a log (plain lines) it reports its steps and suite entries;
    on a terminal the sweep's bar is the only live display."""
    monkeypatch.setenv("UNLEARNBENCH_PROGRESS", mode)
    seen = []

    def fake_execute(cfg, store, force=False, progress=True, **kw):
        seen.append(progress)
        store.write({"run_id": cfg.run_id, "method": cfg.method})

    monkeypatch.setattr(runner, "execute", fake_execute)
    store = RunStore(tmp_path)
    run_sweep(plan({**SPEC, "seeds": [0], "methods": ["no-filter"], "grid": {}}, store), store)
    assert seen == [inner]


def test_cli_sweep_dry_run_and_errors(tmp_path):
    spec = tmp_path / "sweep.yaml"
    spec.write_text("benchmark: storyworld-lang\nseeds: [0, 1]\nmethods: [no-filter, filter]\n")
    res = CliRunner().invoke(app, ["sweep", str(spec), "--out", str(tmp_path), "--dry-run"])
    assert res.exit_code == 0, res.output
    assert "4 runs (0 already recorded)" in res.output
    assert not (tmp_path / "records").exists()
    spec.write_text("benchmark: storyworld-lang\nmethods: [nofilter]\n")
    res = CliRunner().invoke(app, ["sweep", str(spec), "--out", str(tmp_path)])
    assert res.exit_code == 2 and "unknown method" in res.output
    res = CliRunner().invoke(app, ["sweep", str(tmp_path / "missing.yaml")])
    assert res.exit_code == 2 and "not found" in res.output
