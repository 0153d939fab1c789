"""Launchers: where the runs of a sweep go.

- `serial`: one after another in this process (the default).
- `pool` (`--jobs N`): N local processes at a time, each with torch's thread count set to the
  cores it may use divided by N, so N processes do not oversubscribe the machine.
- `slurm`: one SLURM job per run (or per shard of `runs_per_job` runs), submitted as a job array
  through submitit, with its parameters (`timeout_min`, `cpus_per_task`, `gpus_per_node`,
  `mem_gb`, `slurm_partition`, ...) from the spec's `slurm:` mapping and `--slurm KEY=VALUE`;
  `--jobs N` caps how many run at once (`slurm_array_parallelism`).
- `submitit-local`: the same submitit path with submitit's local executor (each job a process on
  this machine, `--jobs N` at a time): the cluster path, checked without a cluster.

Runs go in waves: the `no-filter` runs first (post-hoc methods start from their models and attacks
compare with them), then everything else, so no two jobs train the same base. Every job runs its
runs with `run_one` (train unless recorded, then the spec's suite) and reports each as done,
skipped or failed; a failed run leaves its traceback under `<store>/failures/` and the others go on.
Submitit's files (pickled jobs, each job's stdout and stderr) are under `<store>/submitit/`.
"""

from __future__ import annotations

import os
import shutil
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from unlearnbench.config import ConfigError
from unlearnbench.results.store import write_text_atomic

LAUNCHERS = ("serial", "pool", "slurm", "submitit-local")
SUBMITIT_CLUSTER = {"slurm": "slurm", "submitit-local": "local"}
INSTALL = 'pip install "unlearnbench[cluster]"'
# ours: a job's wall-clock limit unless the spec or --slurm sets one; a tiny run with the robust
# suite took 7-12 min on a 2-core CPU, a paper-size run takes longer (submitit's default is 5 min)
DEFAULT_TIMEOUT_MIN = 240


@dataclass(frozen=True)
class Job:
    """What one job runs: plain data, so it pickles into a process or a SLURM job."""

    configs: tuple[dict, ...]  # RunConfig.to_dict() of each run, run in order
    labels: tuple[str, ...]
    store: str  # the store's root
    suite: str | None = None
    force: bool = False
    log: tuple[str, ...] = ()
    threads: int | None = None  # torch threads; None: the cores this process may use
    progress: bool = True


def available_cores() -> int:
    """Cores this process may run on (a SLURM job's allocation, a taskset), not the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def set_threads(threads: int | None) -> int:
    """Set torch's intra-op threads (and OMP's, for libraries started later); returns the count."""
    import torch

    n = max(1, threads or available_cores())
    os.environ["OMP_NUM_THREADS"] = str(n)
    torch.set_num_threads(n)
    return n


def run_job(job: Job) -> list[dict]:
    """Run a job's runs in this process; one outcome per run (see `run_one`)."""
    set_threads(job.threads)
    os.environ.setdefault("UNLEARNBENCH_PROGRESS", "lines")  # a job's log is not a terminal
    from unlearnbench.config import RunConfig
    from unlearnbench.results.store import RunStore

    store = RunStore(job.store)
    return [
        run_one(RunConfig.from_dict(c), label, store, job.suite, job.force, job.log, job.progress)
        for c, label in zip(job.configs, job.labels, strict=True)
    ]


def run_one(cfg, label: str, store, suite=None, force=False, log=(), progress=False) -> dict:
    """Train `cfg` unless it is recorded (or `force`), then run `suite` on it (a recorded run whose
    model is missing is trained again when an entry needs it: `suites._evaluate`); never raises
    for a failed run: its outcome says `failed`, with the error's first line, and its traceback is kept
    under `<store>/failures/<run_id>.txt`."""
    from unlearnbench import runner  # looked up per call (tests replace runner.execute)

    start = time.perf_counter()
    outcome = {"run_id": cfg.run_id, "label": label, "status": "done", "error": ""}
    try:
        if store.exists(cfg.run_id) and not force:
            outcome["status"] = "skipped"
        else:
            # a job that was killed (a SLURM time limit, a preemption) continues from the run's
            # last checkpoint (`checkpoint_every`) when the sweep is started again: the same
            # final metrics as an uninterrupted run (tests/test_reliability_resume.py); --force starts afresh
            runner.execute(cfg, store, force=force, progress=progress, log=log, resume=not force)
        if suite:
            from unlearnbench.suites import run_references, run_suite, suite_compares

            if not suite_recorded(store.load(cfg.run_id), suite):
                run_suite(cfg.run_id, suite, store, progress=progress, log=log)
                outcome["status"] = "done"
            elif suite_compares(suite):  # recorded: its references may still lack the suite
                run_references(store.load(cfg.run_id), suite, store, progress, log)
    except Exception as e:  # one failed run must not end the sweep
        outcome["status"] = "failed"
        outcome["error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        kept = Path(store.root) / "failures" / f"{cfg.run_id}.txt"
        try:
            write_text_atomic(kept, traceback.format_exc())
            outcome["traceback"] = str(kept)
        except OSError as why:  # a store that cannot be written: the sweep still reports the run
            outcome["error"] += f" (its traceback was not kept: {why})"
    outcome["seconds"] = time.perf_counter() - start
    return outcome


def suite_recorded(record: dict, suite: str) -> bool:
    """Whether `record` holds every entry of `suite` with the options the suite asks for."""
    import dataclasses

    from unlearnbench.evals import load_suite
    from unlearnbench.registry import evals
    from unlearnbench.suites import json_safe

    entries, _ = load_suite(suite)
    results = record.get("evals") or {}
    for entry in entries:
        spec = evals.get(entry.eval)
        opts = json_safe(dataclasses.asdict(spec.options(**entry.options)))
        if (results.get(entry.record_key) or {}).get("options") != opts:
            return False
    return True


def waves(runs: list) -> list[list]:
    """The planned runs in waves: `no-filter` first, then the rest (each in plan order)."""
    first = [r for r in runs if r.method == "no-filter"]
    rest = [r for r in runs if r.method != "no-filter"]
    return [w for w in (first, rest) if w]


def shards(runs: list, runs_per_job: int) -> list[list]:
    return [runs[i : i + runs_per_job] for i in range(0, len(runs), runs_per_job)]


def check_launcher(launcher: str, jobs: int, runs_per_job: int) -> None:
    """Refuse a launcher that cannot work here, before anything runs."""
    if launcher not in LAUNCHERS:
        raise ConfigError(f"unknown launcher {launcher!r}; choose {', '.join(LAUNCHERS)}")
    if jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, got {jobs}")
    if runs_per_job < 1:
        raise ConfigError(f"--runs-per-job must be at least 1, got {runs_per_job}")
    if launcher == "serial" and jobs > 1:
        raise ConfigError("--launcher serial runs one run at a time; drop --jobs or use pool")
    if launcher in SUBMITIT_CLUSTER:
        import importlib.util

        if importlib.util.find_spec("submitit") is None:
            raise ConfigError(f"--launcher {launcher} needs the submitit package: {INSTALL}")


def submitit_parameters(spec_params: dict | None, assignments: list[str], jobs: int) -> dict:
    """Submitit's parameters: ours, then the spec's `slurm:` mapping, then `--slurm KEY=VALUE`
    (values read as YAML scalars: `timeout_min=60` is a number)."""
    import yaml

    if spec_params is not None and not isinstance(spec_params, dict):
        raise ConfigError("sweep spec: slurm must be a mapping of submitit parameters")
    params: dict = {"timeout_min": DEFAULT_TIMEOUT_MIN, "name": "unlearnbench"}
    params |= dict(spec_params or {})
    for a in assignments:
        key, sep, value = a.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--slurm expects KEY=VALUE, got {a!r}")
        params[key.strip()] = yaml.safe_load(value) if value else ""
    if jobs > 1:
        params.setdefault("slurm_array_parallelism", jobs)
    return params


def make_executor(launcher: str, folder: Path, params: dict):
    """A submitit executor for `launcher` with `params`; a ConfigError naming a bad parameter."""
    import submitit

    try:
        executor = submitit.AutoExecutor(folder=folder, cluster=SUBMITIT_CLUSTER[launcher])
    except RuntimeError as e:  # slurm: no srun here (not a cluster's login node)
        raise ConfigError(f"--launcher {launcher}: {str(e).splitlines()[0]}") from None
    try:
        executor.update_parameters(**params)
    except (NameError, AssertionError, ValueError, TypeError) as e:
        raise ConfigError(f"submitit parameters {params}: {str(e).splitlines()[0]}") from None
    return executor


def check_submitit(launcher: str, params: dict, dry_run: bool = False) -> None:
    """Refuse bad submitit parameters (or a SLURM launcher off a cluster) before anything runs:
    an executor is built in a scratch folder and dropped. A dry run off a cluster (no `srun`)
    checks the parameters' names and types with submitit's local executor instead, which knows
    the SLURM ones (`slurm_partition`, ...): a plan can be checked before it goes to a cluster."""
    if launcher not in SUBMITIT_CLUSTER:
        return
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        try:
            make_executor(launcher, Path(scratch), params)
        except ConfigError:
            if not (dry_run and launcher == "slurm" and shutil.which("srun") is None):
                raise
            make_executor("submitit-local", Path(scratch), params)


def launch(
    runs: list,
    store,
    launcher: str = "pool",
    jobs: int = 1,
    runs_per_job: int = 1,
    suite: str | None = None,
    force: bool = False,
    log: tuple[str, ...] = (),
    submitit_params: dict | None = None,
    report=None,
) -> list[dict]:
    """Run the planned runs with a process pool or submitit, wave by wave; returns one outcome
    per run. `report(outcome, finished, total)` is called as each run's outcome arrives."""
    check_launcher(launcher, jobs, runs_per_job)
    root = str(Path(store.root).absolute())  # jobs may start in another directory
    total, outcomes = len(runs), []
    executor = None
    if launcher in SUBMITIT_CLUSTER:
        executor = make_executor(launcher, Path(root) / "submitit", submitit_params or {})
    for wave in waves(runs):
        groups = shards(wave, runs_per_job)
        # a pool's or a local executor's jobs share this machine's cores; a SLURM job has its own
        at_once = min(jobs, len(groups))
        threads = None if launcher == "slurm" else max(1, available_cores() // at_once)
        batch = [
            Job(
                configs=tuple(r.config.to_dict() for r in g),
                labels=tuple(r.label for r in g),
                store=root,
                suite=suite,
                force=force,
                log=tuple(log),
                threads=threads,
            )
            for g in groups
        ]
        run_wave = _pool_wave if launcher == "pool" else _submitit_wave
        for outcome in run_wave(batch, jobs, executor):
            outcomes.append(outcome)
            if report is not None:
                report(outcome, len(outcomes), total)
    return outcomes


def _pool_wave(batch: list[Job], jobs: int, executor=None):
    """The wave's jobs in `jobs` spawned processes (a forked one would inherit torch's threads)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(jobs, len(batch)), mp_context=context) as pool:
        futures = {pool.submit(run_job, job): job for job in batch}
        for future in as_completed(futures):
            try:
                yield from future.result()
            except Exception as e:  # the process died (killed, out of memory)
                yield from _job_failed(futures[future], f"{type(e).__name__}: {e}")


def _submitit_wave(batch: list[Job], jobs: int, executor):
    """The wave's jobs through submitit, their outcomes as they finish. On SLURM all at once (one
    job array; `slurm_array_parallelism` caps how many run); with the local executor, which would
    start every job at once on this machine, at most `jobs` at a time."""
    if executor.cluster != "local":
        from submitit.helpers import as_completed

        submitted = dict(zip(submit(executor, batch), batch, strict=True))
        for j in as_completed(list(submitted), poll_frequency=15.0):
            yield from _job_outcomes(j, submitted[j])
        return
    pending, running = list(batch), {}
    while pending or running:
        while pending and len(running) < jobs:
            job = pending.pop(0)
            running[executor.submit(run_job, job)] = job
        finished = [j for j in running if j.done()]
        if not finished:
            time.sleep(0.5)
        for j in finished:
            yield from _job_outcomes(j, running.pop(j))


def _job_outcomes(handle, job: Job):
    """A finished submitit job's outcomes; every run of it failed when the job itself did."""
    try:
        yield from handle.result()
    except Exception as e:  # timed out, cancelled, killed
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        error = f"job {handle.job_id} {type(e).__name__}: {first} (log: {handle.paths.stderr})"
        yield from _job_failed(job, error)


def submit(executor, batch: list[Job]) -> list:
    """Submit the jobs at once (on SLURM: one job array); returns submitit's job handles."""
    with executor.batch():  # submitted when the block ends
        jobs = [executor.submit(run_job, job) for job in batch]
    return jobs


def _job_failed(job: Job, error: str):
    for c, label in zip(job.configs, job.labels, strict=True):
        from unlearnbench.config import RunConfig

        run_id = RunConfig.from_dict(c).run_id
        yield {"run_id": run_id, "label": label, "status": "failed", "error": error, "seconds": 0.0}
