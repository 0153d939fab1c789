"""Launchers: a sweep's runs in a process pool (each process with its share of the cores), through
submitit (its local executor runs real jobs here; SLURM's job array is checked with stand-ins for
srun and sbatch), in waves (no-filter first), and a spec that names a suite."""

from __future__ import annotations

import importlib.util
import json
import os

import pytest
from typer.testing import CliRunner

import unlearnbench.launch as launch
import unlearnbench.runner as runner
import unlearnbench.suites as suites
from unlearnbench.cli import app
from unlearnbench.config import ConfigError
from unlearnbench.results.store import RunStore
from unlearnbench.sweep import plan, run_sweep

TINY = {
    "steps": 2, "batch_size": 4, "micro_batch_size": 4, "eval_blocks": 2, "context": 32,
    "n_stories": 300, "vocab_size": 300, "warmup_steps": 1,
}  # fmt: skip
SPEC = {"benchmark": "storyworld-lang", "model": "tiny", "seeds": [0], "set": TINY}


def _spec_file(tmp_path, **spec) -> str:
    import yaml

    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({**SPEC, **spec}))
    return str(path)


def test_pool_waves_shards_and_threads(tmp_path, monkeypatch):
    """No-filter runs form the first wave; each pool process gets cores // processes threads."""
    waves = []

    def fake_wave(batch, jobs, executor=None):
        waves.append(batch)
        for job in batch:
            for label in job.labels:
                yield {"run_id": label, "label": label, "status": "done", "error": "", "seconds": 0}

    monkeypatch.setattr(launch, "_pool_wave", fake_wave)
    monkeypatch.setattr(launch, "available_cores", lambda: 12)
    store = RunStore(tmp_path)
    runs = plan({**SPEC, "seeds": [0, 1, 2], "methods": ["filter", "no-filter", "sgtm"]}, store)
    got = launch.launch(runs, store, "pool", jobs=4, runs_per_job=2)
    assert len(got) == 9
    first, second = waves
    assert {c["method"] for j in first for c in j.configs} == {"no-filter"}
    assert [len(j.configs) for j in first] == [2, 1]  # 3 runs, 2 per job
    assert all(j.threads == 6 for j in first)  # 2 processes at once share 12 cores
    assert {c["method"] for j in second for c in j.configs} == {"filter", "sgtm"}
    assert [len(j.configs) for j in second] == [2, 2, 2] and all(j.threads == 4 for j in second)


def test_run_job_sets_the_thread_count(monkeypatch):
    import torch

    before = torch.get_num_threads()
    try:
        launch.run_job(launch.Job(configs=(), labels=(), store="unused", threads=1))
        assert torch.get_num_threads() == 1 and os.environ["OMP_NUM_THREADS"] == "1"
    finally:
        torch.set_num_threads(before)


@pytest.mark.slow
def test_pool_of_two_processes_runs_the_sweep(tmp_path):
    store = tmp_path / "store"
    spec = _spec_file(tmp_path, seeds=[0, 1], methods=["no-filter"])
    res = CliRunner().invoke(app, ["sweep", spec, "--out", str(store), "--jobs", "2"])
    assert res.exit_code == 0, res.output
    assert "2 ran, 0 skipped" in res.stderr and res.stderr.count("done no-filter s") == 2
    records = [json.loads(p.read_text()) for p in (store / "records").glob("*.json")]
    threads = max(1, launch.available_cores() // 2)
    assert sorted(r["seed"] for r in records) == [0, 1]
    assert all(r["device"].endswith(f"{threads} threads)") for r in records)
    again = CliRunner().invoke(app, ["sweep", spec, "--out", str(store), "--jobs", "2"])
    assert again.exit_code == 0 and "0 ran, 2 skipped" in again.stderr  # nothing sent


@pytest.mark.slow
def test_submitit_local_executor_runs_jobs_in_waves_with_plain_progress(tmp_path):
    pytest.importorskip("submitit")
    store = tmp_path / "store"
    spec = _spec_file(tmp_path, methods=["filter", "no-filter"])
    res = CliRunner().invoke(
        app, ["sweep", spec, "--out", str(store), "--launcher", "submitit-local"]
    )
    assert res.exit_code == 0, res.output
    assert "2 ran" in res.stderr
    records = {
        r["method"]: r
        for r in (json.loads(p.read_text()) for p in (store / "records").glob("*.json"))
    }
    assert set(records) == {"no-filter", "filter"}
    # one job per run, each its own log; the training progress is in it as plain lines
    logs = sorted((store / "submitit").glob("*_log.err"))
    assert len(logs) == 2
    joined = "\n".join(p.read_text() for p in logs)
    assert "no-filter s0: step 2/2 (100%) loss" in joined and "\nfilter s0: step 2/2" in joined
    assert "tokens/s" in joined
    # waves: the filter job was submitted after the no-filter job had written its result
    folder = store / "submitit"
    job_of = {
        ("no-filter" if "no-filter s0:" in p.read_text() else "filter"): p.name.split("_")[0]
        for p in logs
    }
    submitted = (folder / f"{job_of['filter']}_submitted.pkl").stat().st_mtime
    assert submitted >= (folder / f"{job_of['no-filter']}_0_result.pkl").stat().st_mtime


def test_slurm_job_array_from_the_spec_and_options(tmp_path, monkeypatch):
    """One array job per wave, one task per run, with the spec's and --slurm's parameters (the
    SLURM commands are stand-ins that record what they were given)."""
    pytest.importorskip("submitit")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "sbatch").write_text(
        f'#!/bin/sh\nfor a; do last="$a"; done\ncp "$last" {tmp_path}/submitted.sh\n'
        'echo "Submitted batch job 4242"\n'
    )
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    store = RunStore(tmp_path / "store")
    runs = plan({**SPEC, "seeds": [0, 1, 2], "methods": ["no-filter"]}, store)
    params = launch.submitit_parameters(  # --jobs 2: at most 2 of the array's tasks at once
        {"slurm_partition": "gpu", "timeout_min": 60}, ["gpus_per_node=1", "cpus_per_task=8"], 2
    )
    executor = launch.make_executor("slurm", tmp_path / "store" / "submitit", params)
    jobs = launch.submit(
        executor, [launch.Job((r.config.to_dict(),), (r.label,), "s") for r in runs]
    )
    assert [j.job_id for j in jobs] == ["4242_0", "4242_1", "4242_2"]
    script = (tmp_path / "submitted.sh").read_text()
    for line in (
        "#SBATCH --array=0-2%2",
        "#SBATCH --partition=gpu",
        "#SBATCH --time=60",
        "#SBATCH --cpus-per-task=8",
        "#SBATCH --gpus-per-node=1",
    ):
        assert line in script, line


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--launcher", "serial", "--jobs", "2"], "runs one run at a time"),
        (["--launcher", "kubernetes"], "unknown launcher 'kubernetes'"),
        (["--jobs", "0"], "--jobs must be at least 1"),
        (["--launcher", "submitit-local", "--slurm", "bogus=1"], "bogus"),
        (["--launcher", "submitit-local", "--slurm", "timeout_min"], "--slurm expects KEY=VALUE"),
    ],
)
def test_launcher_mistakes_are_one_line_before_anything_runs(tmp_path, args, needle):
    if "submitit-local" in args:
        pytest.importorskip("submitit")
    spec = _spec_file(tmp_path, methods=["no-filter"])
    res = CliRunner().invoke(app, ["sweep", spec, "--out", str(tmp_path / "store"), *args])
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.exit_code == 2 and len(lines) == 1 and needle in lines[0], res.output
    assert not (tmp_path / "store" / "records").exists()


def test_a_missing_submitit_names_the_extra(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "submitit" else real(n, *a)
    )
    spec = _spec_file(tmp_path, methods=["no-filter"])
    res = CliRunner().invoke(app, ["sweep", spec, "--launcher", "slurm", "--out", str(tmp_path)])
    assert res.exit_code == 2 and 'pip install "unlearnbench[cluster]"' in res.stderr


def test_a_spec_names_a_suite_run_after_each_run(tmp_path, monkeypatch):
    store = RunStore(tmp_path)
    trained, attacked = [], []

    def fake_execute(cfg, store, force=False, progress=True, **kw):
        trained.append(cfg.run_id)
        store.write({"run_id": cfg.run_id, "method": cfg.method})

    def fake_suite(run_id, suite, store, progress=True, force=False, log=()):
        attacked.append((run_id, suite))

    monkeypatch.setattr(runner, "execute", fake_execute)
    monkeypatch.setattr(suites, "run_suite", fake_suite)
    spec = {**SPEC, "methods": ["no-filter", "filter"], "suite": "quick"}
    runs = plan(spec, store)
    store.write({"run_id": runs[0].run_id})  # trained, but without the suite's results
    assert not runs[0].recorded  # so the sweep still has work on it
    summary = run_sweep(runs, store, suite="quick")
    assert trained == [runs[1].run_id]
    assert attacked == [(r.run_id, "quick") for r in runs]
    assert len(summary.done) == 2
    with pytest.raises(ConfigError, match="unknown suite"):
        plan({**spec, "suite": "quik"}, store)


def test_a_recorded_run_without_its_model_is_trained_again_for_its_suite(tmp_path):
    """A committed record has no weights: the grid's suite on it trains the run again from its own
    config (the same final losses) when an entry needs the model, instead of failing for want of
    one."""
    import shutil
    from pathlib import Path

    from unlearnbench.launch import suite_recorded

    store = RunStore(tmp_path)
    cfg = runner.resolve_run_config("no-filter", "storyworld-lang", "tiny", 0, TINY)
    record = runner.execute(cfg, store, progress=False)
    shutil.rmtree(record["model_path"])
    store.write(dict(record, model_path=None))  # as results/records/ brings it
    outcome = launch.run_one(cfg, "no-filter s0", store, suite="probes")
    assert outcome["status"] == "done", outcome
    again = store.load(cfg.run_id)
    assert again["model_path"] and Path(again["model_path"]).is_dir()
    assert suite_recorded(again, "probes")
    assert again["metrics"] == record["metrics"]  # the same run, trained again


def test_the_local_executor_runs_at_most_jobs_at_once():
    """submitit's local executor would start every job of a wave at once; we keep `jobs` running."""

    class Handle:
        def __init__(self, job, log):
            self.job, self.log, self.polls, self.job_id = job, log, 0, job.labels[0]

        def done(self):
            self.polls += 1
            return self.polls > 1

        def result(self):
            self.log.append(("end", self.job_id))
            return [{"run_id": self.job_id, "label": self.job_id, "status": "done"}]

    class Executor:
        cluster = "local"

        def __init__(self):
            self.log = []

        def submit(self, fn, job):
            assert fn is launch.run_job
            self.log.append(("start", job.labels[0]))
            return Handle(job, self.log)

    ex = Executor()
    batch = [launch.Job((), (f"r{i}",), "s") for i in range(5)]
    outcomes = list(launch._submitit_wave(batch, 2, ex))
    assert sorted(o["run_id"] for o in outcomes) == [f"r{i}" for i in range(5)]
    running, most = 0, 0
    for event, _ in ex.log:
        running += 1 if event == "start" else -1
        most = max(most, running)
    assert most == 2
