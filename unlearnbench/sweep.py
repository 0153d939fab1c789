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

Every run is resolved (and so validated) before the first one starts. Runs already recorded are
skipped; a failed run is reported (traceback under `<store>/failures/`) and the sweep goes on.
Within each seed `no-filter` runs first, then training-time methods, then post-hoc methods (which
start from the `no-filter` model).
"""

from __future__ import annotations

import itertools
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from unlearnbench.config import ConfigError

SPEC_KEYS = {"benchmark", "model", "seeds", "methods", "grid", "set", "description", "notes"}


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
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"sweep spec not found: {p}")
    try:
        spec = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"sweep spec {p} is not valid YAML: {str(e).splitlines()[0]}") from None
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


def _methods(spec: dict) -> list[tuple[str, dict]]:
    out = []
    for entry in _as_list(spec.get("methods"), "methods"):
        if isinstance(entry, str):
            out.append((entry, {}))
        elif isinstance(entry, dict) and len(entry) == 1:
            name, opts = next(iter(entry.items()))
            if not isinstance(opts, dict | type(None)):
                raise ConfigError(f"sweep spec: options of method {name!r} must be a mapping")
            out.append((str(name), dict(opts or {})))
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
    keys = list(grid)
    values = [_as_list(grid[k], f"grid.{k}") for k in keys]
    if any(not v for v in values):
        raise ConfigError("sweep spec: every grid key needs at least one value")
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*values)]


def plan(spec: dict, store) -> list[PlannedRun]:
    """Resolve every run of the grid (raising ConfigError on any mistake) in execution order."""
    from unlearnbench.registry import methods as method_registry
    from unlearnbench.runner import resolve_run_config

    unknown = set(spec) - SPEC_KEYS
    if unknown:
        raise ConfigError(f"sweep spec: unknown keys {sorted(unknown)}; valid: {sorted(SPEC_KEYS)}")
    benchmark = spec.get("benchmark")
    model = spec.get("model", "tiny")
    if not benchmark:
        raise ConfigError("sweep spec: benchmark is required")
    try:
        seeds = [int(s) for s in _as_list(spec.get("seeds", [0]), "seeds")]
    except (TypeError, ValueError):
        raise ConfigError("sweep spec: seeds must be integers") from None
    fixed = spec.get("set") or {}
    if not isinstance(fixed, dict):
        raise ConfigError("sweep spec: set must be a mapping of key: value")

    def order(name: str) -> int:  # bases first: post-hoc methods start from no-filter
        if name == "no-filter":
            return 0
        return 1 if method_registry.get(name).kind == "training" else 2

    entries = _methods(spec)
    entries = sorted(entries, key=lambda e: order(e[0]))  # stable: spec order within a kind
    runs: list[PlannedRun] = []
    seen: set[str] = set()
    for seed in seeds:
        for name, per_method in entries:
            for point in _grid(spec):
                overrides = {**fixed, **point, **per_method}
                cfg = resolve_run_config(name, benchmark, model, seed, overrides)
                if cfg.run_id in seen:
                    continue  # the same run listed twice
                seen.add(cfg.run_id)
                shown = {**point, **per_method}
                runs.append(PlannedRun(name, seed, shown, cfg, store.exists(cfg.run_id)))
    return runs


def run_sweep(runs: list[PlannedRun], store, console=None, force: bool = False) -> SweepSummary:
    """Execute the planned runs with one overall progress bar; never stops on a failed run."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from unlearnbench.runner import execute

    console = console or Console(stderr=True)
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
            if store.exists(run.run_id) and not force:
                summary.skipped.append(run.run_id)
                bar.update(task, advance=1, description=f"skipped {run.label} (recorded)")
                continue
            bar.update(task, description=f"running {run.label}")
            t0 = time.perf_counter()
            try:
                execute(run.config, store, force=force, progress=False)
            except Exception as e:  # one failed run must not end the sweep
                line = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                summary.failed.append((run.run_id, line))
                log = store.root / "failures" / f"{run.run_id}.txt"
                log.parent.mkdir(parents=True, exist_ok=True)
                log.write_text(traceback.format_exc())
                bar.console.print(f"[red]failed[/] {run.label}: {line} (traceback: {log})")
            else:
                summary.done.append(run.run_id)
                bar.console.print(f"[green]done[/] {run.label} in {time.perf_counter() - t0:.0f}s")
            bar.update(task, advance=1)
    summary.seconds = time.perf_counter() - start
    return summary


def print_plan(runs: list[PlannedRun], console) -> None:
    from rich.table import Table

    table = Table(title=f"{len(runs)} runs ({sum(r.recorded for r in runs)} already recorded)")
    for col in ("#", "method", "seed", "setting", "status", "run id"):
        table.add_column(col)
    for i, r in enumerate(runs, 1):
        setting = ", ".join(f"{k}={v}" for k, v in r.overrides.items())
        status = "recorded" if r.recorded else "to run"
        table.add_row(str(i), r.method, str(r.seed), setting, status, r.run_id)
    console.print(table)


def print_summary(summary: SweepSummary, console) -> None:
    console.print(
        f"[bold]sweep finished[/] in {summary.seconds / 60:.1f} min: {len(summary.done)} ran, "
        f"{len(summary.skipped)} skipped (already recorded), {len(summary.failed)} failed"
    )
    for run_id, line in summary.failed:
        console.print(f"  [red]failed[/] {run_id}: {line}")
