"""Sweeps: the grid methods x seeds x settings on one benchmark and model.

A spec (YAML or a dict):

    benchmark: storyworld-lang
    model: tiny
    seeds: [0, 1, 2]
    methods:                 # names, or {name: {key: value}} for per-method overrides
      - no-filter
      - filter
      - sgtm: {optimizer: strict}
    grid:                    # every combination of these values (the settings axis)
      recall: [1.0, 0.9]
    set:                     # fixed overrides for every run
      train.steps: 100
    suite: robust            # optional: an evaluation suite run on every run after it trains
    slurm:                   # optional: submitit parameters for `--launcher slurm`
      timeout_min: 120
      slurm_partition: gpu

A paper setup (sweeps/paper/*.yaml) names several models and the run preset of each:

    model: [8M, 64M]
    config: {8M: sgtm-tinystories-8M, 64M: sgtm-tinystories-64M}   # or one preset for every model
    methods: [no-filter, sgtm, {rmu: {config: rmu-wikipedia-254M}}]

A preset's `train:` section is the setup's training: every training-time method runs with it (the
reference trains its baselines from the same config file); its `labels:` and `method:` sections
are its own method's (the method its name starts with). A method's own `config:` replaces the
setup's preset for that method (a post-hoc method's unlearning settings). Layers, lowest first:
preset, `set`, the grid's point, the method's options.

Every run is resolved (and so validated) before the first one starts. Runs already recorded (with
the suite's results, when the spec names one) are skipped; a failed run is reported (traceback
under `<store>/failures/`) and the sweep goes on. Within each seed `no-filter` runs first, then
training-time methods, then post-hoc methods (which start from the `no-filter` model). Runs go
one after another here, or to a process pool or SLURM (launch.py).
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from pathlib import Path

from unlearnbench.config import ConfigError

SPEC_KEYS = {
    "benchmark",
    "model",
    "seeds",
    "methods",
    "grid",
    "set",
    "suite",
    "slurm",
    "config",
    "description",
    "notes",
}


@dataclass
class PlannedRun:
    method: str
    seed: int
    overrides: dict
    config: object  # RunConfig
    recorded: bool

    @property
    def run_id(self) -> str:
        return self.config.run_id

    @property
    def label(self) -> str:
        extra = ", ".join(f"{k}={v}" for k, v in self.overrides.items())
        return f"{self.method} s{self.seed}" + (f" ({extra})" if extra else "")


@dataclass
class SweepSummary:
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (run id, one-line error)
    seconds: float = 0.0


def load_spec(path: str | Path) -> dict:
    from unlearnbench.config import read_yaml

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"sweep spec not found: {p}")
    spec = read_yaml(p, "sweep spec")
    if not isinstance(spec, dict):
        raise ConfigError(
            f"sweep spec {p} must be a mapping (benchmark, model, seeds, methods, grid, set)"
        )
    return spec


def _as_list(x, key: str) -> list:
    if x is None:
        return []
    if isinstance(x, list | tuple):
        return list(x)
    if isinstance(x, str | int | float):
        return [x]
    raise ConfigError(f"sweep spec: {key} must be a list")


def _names(mapping: dict, key: str) -> dict:
    """`mapping` (the spec's `key`) when every key of it is a name."""
    bad = [k for k in mapping if not isinstance(k, str)]
    if bad:
        raise ConfigError(f"sweep spec: the keys of {key} must be names, got {bad[0]!r}")
    return mapping


def _methods(spec: dict) -> list[tuple[str, dict]]:
    out = []
    for entry in _as_list(spec.get("methods"), "methods"):
        if isinstance(entry, str):
            out.append((entry, {}))
        elif isinstance(entry, dict) and len(entry) == 1 and isinstance(next(iter(entry)), str):
            name, opts = next(iter(entry.items()))
            if not isinstance(opts, dict | type(None)):
                raise ConfigError(f"sweep spec: options of method {name!r} must be a mapping")
            out.append((name, _names(dict(opts or {}), f"method {name}")))
        else:
            raise ConfigError(
                f"sweep spec: a method is a name or {{name: {{key: value}}}}, got {entry!r}"
            )
    if not out:
        raise ConfigError("sweep spec: methods must list at least one method")
    return out


def _grid(spec: dict) -> list[dict]:
    grid = spec.get("grid") or {}
    if not isinstance(grid, dict):
        raise ConfigError("sweep spec: grid must be a mapping of key: [values]")
    keys = list(_names(grid, "grid"))
    values = [_as_list(grid[k], f"grid.{k}") for k in keys]
    if any(not v for v in values):
        raise ConfigError("sweep spec: every grid key needs at least one value")
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*values)]


def plan(spec: dict, store, device_here: bool = True) -> list[PlannedRun]:
    """Resolve every run of the grid (raising ConfigError on any mistake) in execution order.
    `device_here=False`: the runs go to other machines (SLURM), so a CUDA device is not required
    here (a login node has none); its name is still checked."""
    from unlearnbench.config import device_checked_elsewhere
    from unlearnbench.registry import methods as method_registry
    from unlearnbench.runner import check_suite_request, resolve_run_config

    unknown = set(spec) - SPEC_KEYS
    if unknown:
        raise ConfigError(f"sweep spec: unknown keys {sorted(unknown)}; valid: {sorted(SPEC_KEYS)}")
    benchmark = spec.get("benchmark")
    model = spec.get("model", "tiny")
    models = model if isinstance(model, list) else [model]  # a paper setup names its sizes
    if not benchmark:
        raise ConfigError("sweep spec: benchmark is required")
    if not isinstance(benchmark, str):
        raise ConfigError(f"sweep spec: benchmark must be a name, got {benchmark!r}")
    if not all(isinstance(m, str) for m in models):
        raise ConfigError(f"sweep spec: model must be a name or a list of names, got {model!r}")
    if not models:
        raise ConfigError("sweep spec: model must name at least one model")
    seeds = _as_list(spec.get("seeds", [0]), "seeds")
    if not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):  # not 1.5 -> 1
        raise ConfigError(f"sweep spec: seeds must be integers, got {seeds}")
    fixed = spec.get("set") or {}
    if not isinstance(fixed, dict):
        raise ConfigError("sweep spec: set must be a mapping of key: value")
    _names(fixed, "set")
    suite = spec_suite(spec)

    def order(name: str) -> int:  # bases first: post-hoc methods start from no-filter
        if name == "no-filter":
            return 0
        return 1 if method_registry.get(name).kind == "training" else 2

    entries = _methods(spec)
    entries = sorted(entries, key=lambda e: order(e[0]))  # stable: spec order within a kind
    presets = _setup_presets(spec, models)
    runs: list[PlannedRun] = []
    seen: set[str] = set()
    with device_checked_elsewhere(not device_here):
        for model, seed in itertools.product(models, seeds):
            for name, per_method in entries:
                own = per_method.get("config")  # the method's own preset, instead of the setup's
                if own is not None and not isinstance(own, str):
                    raise ConfigError(f"sweep spec: config of method {name} must be a preset name")
                layers = {} if own else presets[model].values_for(name, order(name) < 2)
                for point in _grid(spec):
                    options = {k: v for k, v in per_method.items() if k != "config"}
                    overrides = {**layers, **fixed, **point, **options}
                    cfg = resolve_run_config(name, benchmark, model, seed, overrides, own)
                    check_suite_request(cfg, suite)  # a suite needs the run's saved model
                    if cfg.run_id in seen:
                        continue  # the same run listed twice
                    seen.add(cfg.run_id)
                    shown = {**point, **per_method}
                    runs.append(PlannedRun(name, seed, shown, cfg, _recorded(store, cfg, suite)))
    return runs


@dataclass(frozen=True)
class SetupPreset:
    """A model's run preset as a setup's shared training (see the module doc); empty: none."""

    name: str = ""
    method: str = ""  # the method the preset is for (its name's prefix)
    values: dict = field(default_factory=dict)  # flat: "train.lr", "labels.recall", "method.x"

    def values_for(self, method: str, training: bool) -> dict:
        """The preset's layer for a run of `method`: its train section for a training-time method,
        its labels and method sections for its own method only."""
        out = {}
        for key, value in self.values.items():
            section = key.split(".", 1)[0]
            if (section == "train" and training) or method == self.method:
                out[key] = value
        return out


def _setup_presets(spec: dict, models: list[str]) -> dict[str, SetupPreset]:
    """{model: its SetupPreset} from the spec's `config` (one preset, or a mapping model ->
    preset); a preset that names another model than the one it is given for is refused."""
    from unlearnbench.config import load_config_file
    from unlearnbench.registry import methods as method_registry
    from unlearnbench.run_presets import preset_path

    given = spec.get("config")
    if given is None:
        return {m: SetupPreset() for m in models}
    if isinstance(given, str):
        given = {m: given for m in models}
    if not isinstance(given, dict):
        raise ConfigError("sweep spec: config must be a run preset, or a mapping model: preset")
    missing = [m for m in models if m not in given]
    extra = [m for m in given if m not in models]
    if missing or extra:
        raise ConfigError(
            f"sweep spec: config must name one preset per model (models without one: {missing}; "
            f"presets for models not in the spec: {extra})"
        )
    out = {}
    for model in models:
        name = given[model]
        if not isinstance(name, str):
            raise ConfigError(f"sweep spec: config of {model} must be a preset name, got {name!r}")
        values = load_config_file(preset_path(name))
        named = values.pop("model", model)
        if named != model:
            raise ConfigError(f"sweep spec: preset {name} is for model {named}, not {model}")
        stem = Path(name).stem
        owners = [m for m in method_registry.names() if stem.startswith(m + "-")]
        if not owners:
            raise ConfigError(f"sweep spec: preset {name} does not start with a method's name")
        unknown = sorted(
            k for k in values if k.split(".", 1)[0] not in ("train", "labels", "method")
        )
        if unknown:
            raise ConfigError(
                f"sweep spec: preset {name}: {unknown} are not under train, labels or method"
            )
        out[model] = SetupPreset(name, max(owners, key=len), values)  # gradient-routing-..
    return out


def spec_suite(spec: dict) -> str | None:
    """The suite a spec names (validated: a bad suite fails before anything runs), or None."""
    suite = spec.get("suite")
    if suite is None:
        return None
    if not isinstance(suite, str) or not suite:
        raise ConfigError("sweep spec: suite must be the name (or path) of an evaluation suite")
    from unlearnbench.evals import load_suite

    load_suite(suite)
    return suite


def _recorded(store, cfg, suite: str | None) -> bool:
    """Whether the run is recorded with every result of `suite`."""
    if not store.exists(cfg.run_id):
        return False
    if suite is None:
        return True
    from unlearnbench.launch import suite_recorded

    return suite_recorded(store.load(cfg.run_id), suite)


def run_sweep(
    runs: list[PlannedRun],
    store,
    console=None,
    force: bool = False,
    suite: str | None = None,
    log: tuple[str, ...] = (),
) -> SweepSummary:
    """Execute the planned runs here, one after another, with one overall progress bar (and the
    suite on each; in a batch log, each run's own progress lines too); never stops on a failed
    run."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from unlearnbench.launch import run_one
    from unlearnbench.progress import mode

    console = console or Console(stderr=True)
    # in a batch log each run prints its own plain lines (steps, suite entries): a grid's run can
    # take minutes; on a terminal the sweep's bar is the one live display
    run_progress = mode() == "lines"
    summary = SweepSummary()
    start = time.perf_counter()
    columns = [
        TextColumn("[bold]sweep[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
    ]
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("", total=len(runs))
        for run in runs:
            bar.update(task, description=f"running {run.label}")
            outcome = run_one(run.config, run.label, store, suite, force, log, run_progress)
            _add(summary, outcome, bar.console)
            bar.update(task, advance=1, description=_said(outcome))
    summary.seconds = time.perf_counter() - start
    return summary


def launch_sweep(
    runs: list[PlannedRun],
    store,
    console=None,
    launcher: str = "pool",
    jobs: int = 1,
    runs_per_job: int = 1,
    force: bool = False,
    suite: str | None = None,
    log: tuple[str, ...] = (),
    submitit_params: dict | None = None,
) -> SweepSummary:
    """Execute the planned runs with a process pool or submitit (launch.py), one line per run as
    it finishes; runs already recorded are not sent anywhere. The `serial` launcher runs them here
    (`run_sweep`)."""
    from rich.console import Console

    from unlearnbench.launch import launch

    if launcher == "serial":
        return run_sweep(runs, store, console, force=force, suite=suite, log=log)
    console = console or Console(stderr=True)
    summary = SweepSummary()
    start = time.perf_counter()
    todo = [r for r in runs if force or not r.recorded]
    summary.skipped = [r.run_id for r in runs if r not in todo]

    def report(outcome: dict, finished: int, total: int) -> None:
        _add(summary, outcome, console, prefix=f"({finished}/{total}) ")

    launch(
        todo,
        store,
        launcher,
        jobs,
        runs_per_job,
        suite=suite,
        force=force,
        log=log,
        submitit_params=submitit_params,
        report=report,
    )
    summary.seconds = time.perf_counter() - start
    return summary


def _add(summary: SweepSummary, outcome: dict, console, prefix: str = "") -> None:
    """Count a run's outcome and say it."""
    status, label = outcome["status"], outcome["label"]
    if status == "skipped":
        summary.skipped.append(outcome["run_id"])
        console.print(f"{prefix}skipped {label} (recorded)", highlight=False)
    elif status == "failed":
        summary.failed.append((outcome["run_id"], outcome["error"]))
        where = f" (traceback: {outcome['traceback']})" if outcome.get("traceback") else ""
        console.print(f"{prefix}[red]failed[/] {label}: {outcome['error']}{where}", highlight=False)
    else:
        summary.done.append(outcome["run_id"])
        console.print(
            f"{prefix}[green]done[/] {label} in {outcome['seconds']:.0f}s", highlight=False
        )


def _said(outcome: dict) -> str:
    return f"{outcome['status']} {outcome['label']}" + (
        " (recorded)" if outcome["status"] == "skipped" else ""
    )


def print_plan(runs: list[PlannedRun], console) -> None:
    from rich.table import Table

    table = Table(title=f"{len(runs)} runs ({sum(r.recorded for r in runs)} already recorded)")
    several = len({r.config.model for r in runs}) > 1  # a paper setup's sizes: say which
    for col in ("#", *(("model",) if several else ()), "method", "seed", "setting", "status"):
        table.add_column(col)
    table.add_column("run id")
    for i, r in enumerate(runs, 1):
        setting = ", ".join(f"{k}={v}" for k, v in r.overrides.items())
        status = "recorded" if r.recorded else "to run"
        model = (r.config.model,) if several else ()
        table.add_row(str(i), *model, r.method, str(r.seed), setting, status, r.run_id)
    console.print(table)


def print_summary(summary: SweepSummary, console) -> None:
    console.print(
        f"[bold]sweep finished[/] in {summary.seconds / 60:.1f} min: {len(summary.done)} ran, "
        f"{len(summary.skipped)} skipped (already recorded), {len(summary.failed)} failed"
    )
    for run_id, line in summary.failed:
        console.print(f"  [red]failed[/] {run_id}: {line}")
