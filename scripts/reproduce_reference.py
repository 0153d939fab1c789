#!/usr/bin/env python
"""Reproduce the committed reference results in `results/`.

The grid (`PARTS`): every registered method on `storyworld-lang` and `storyworld-topic`, model
`tiny`, seeds 0-2, recall 1.0, with the `robust` suite; the label-using training-time methods also
at recall 0.9 (`robust`) and at 0.5 (losses and fact probes: the `probes` suite); sgtm and rmu
at recall 1.0 also with the SGTM paper's relearning protocol (`sgtm-paper`). At model `small`,
the core methods at recall 1.0 and filter and sgtm at 0.9 (`robust`). Then the leaderboard,
figures, one HTML report per benchmark and the papers' claims (`claims.md`), all written to
`results/`.

    python scripts/reproduce_reference.py --dry-run      # list the runs and what is recorded
    python scripts/reproduce_reference.py                # everything (hours on a CPU)
    python scripts/reproduce_reference.py --quick        # smoke test: seed 0, 5 steps, quick suite
    python scripts/reproduce_reference.py --only-results # results/ from results/records/, no runs
    python scripts/reproduce_reference.py --jobs 2       # 2 local processes
    python scripts/reproduce_reference.py --models tiny --methods sgtm,rmu --seeds 0 --no-results
                                                         # a chunk: its records, no results/
    python scripts/reproduce_reference.py --launcher slurm --slurm slurm_partition=gpu \
        --slurm gpus_per_node=1 --slurm timeout_min=120 --set train.device=cuda   # SLURM

The records are committed (`results/records/`, no weights): a run starts by copying them into the
run store, so a run whose committed record matches its config and code version (its run id) and
holds its suite's results is skipped, on any machine; a post-hoc run whose base has no model
there trains the base again from its record (same seed and config: the same weights). Each
finished part's records are copied back into `results/records/`, so an interrupted reproduction
continues where it stopped, here or elsewhere; `results/` is rebuilt from them when the script ends.

A cell of the grid (a method on a benchmark and model, at a recall, with a suite, over the seeds)
holds runs made by one package code: each record names the digest of the package source that made
it (`versions.source`; none: "unknown", made before records named it). A record made by other code
than this checkout's is stale: it is not copied into the store, one the store holds is set aside
(under `stale/`), and the run is made again. `results/` is never built from a cell whose runs
mix digests: the script names each such cell and the command that makes it again, and stops.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import NamedTuple

BENCHMARKS = ("storyworld-lang", "storyworld-topic")
MODELS = ("tiny", "small")  # unlearnbench/models/presets.py: ~1M and ~5M parameters
SEEDS = (0, 1, 2)
# the training-time methods that read labels: what they remove depends on how much of the forget
# data is labeled (issue: SGTM vs filtering under undiscovered forget data, ERA and DEMix at
# partial labels)
LABELED_TRAINING = ("filter", "sgtm", "gradient-routing", "activation-masking", "era", "demix")
# the methods measured at the second size (issue: are tiny's results properties of the methods or
# of the scale?): the references, the training-time methods the claims compare, and the post-hoc
# ones they are compared with
SMALL_METHODS = ("no-filter", "filter", "sgtm", "rmu", "circuit-breakers", "era")
# (methods, recall, suite, model): None = every registered method
PARTS = (
    (None, 1.0, "robust", "tiny"),
    (LABELED_TRAINING, 0.9, "robust", "tiny"),
    (LABELED_TRAINING, 0.5, "probes", "tiny"),
    # the SGTM paper's relearning protocol (forget data mixed ~50/50 with the rest, 1000 steps) on
    # the runs its SGTM-vs-RMU claim compares: the robust suite's forget-only attack breaks the
    # retain tolerance of a model that never learned the forget data (SGTM, the filter) within
    # 5-25 steps, so it cannot tell how many steps that model takes to recover
    (("sgtm", "rmu"), 1.0, "sgtm-paper", "tiny"),
    (SMALL_METHODS, 1.0, "robust", "small"),
    (("filter", "sgtm"), 0.9, "robust", "small"),  # SGTM minus filter under unlabeled forget data
)
UNKNOWN = "unknown"  # the source digest of a record made before records named it
RESULTS = Path(__file__).resolve().parents[1] / "results"


def specs(seeds, quick: bool, fixed: dict | None = None, only=None, models=MODELS) -> list[dict]:
    """One sweep spec per (part, benchmark), each naming its suite (`quick` for a smoke test);
    `only`: the methods to keep (a chunk of the grid), None = all; `models`: the sizes to keep."""
    from unlearnbench.registry import methods

    fixed = {**({"train.steps": 5, "train.warmup_steps": 1} if quick else {}), **(fixed or {})}
    return [
        {
            "benchmark": b,
            "model": model,
            "seeds": list(seeds),
            "methods": [m for m in (names or methods.names()) if only is None or m in only],
            "grid": {"recall": [recall]},
            "set": fixed,
            "suite": "quick" if quick else suite,
        }
        for names, recall, suite, model in PARTS
        for b in BENCHMARKS
        if model in models and (only is None or set(names or methods.names()) & set(only))
    ]


def in_grid(record: dict) -> bool:
    """A record the results are made of: a run of the grid or a base or reference it used."""
    return record.get("benchmark") in BENCHMARKS and record.get("model") in MODELS


# ---- which code made a record ----


def digest_of(record: dict) -> str:
    """The digest of the package source that made `record` (UNKNOWN: made before records named it)."""
    return (record.get("versions") or {}).get("source") or UNKNOWN


def current_digest() -> str:
    from unlearnbench.package_files import current_source_digest

    return current_source_digest()


def set_aside_stale(store) -> list[str]:
    """Move the store's grid records made by other code than this (stale) to `stale/records/`,
    so that the grid makes them again, and anything that needs them (a post-hoc run's base, a
    suite's reference) gets one made by this code; returns their run ids."""
    current, moved = current_digest(), []
    for record in store.records():
        if in_grid(record) and digest_of(record) != current:
            path = store.record_path(record["run_id"])
            target = store.root / "stale" / "records" / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                path.replace(target)
            except FileNotFoundError:  # another grid process moved it first
                continue
            moved.append(record["run_id"])
    return moved


def take_committed(records_dir: Path, store, dry_run: bool = False) -> tuple[int, list[str]]:
    """Copy into `store` the committed records made by this code (the others are made again),
    and (unless `dry_run`) set aside the store's grid records made by other code: (how many
    copied, the run ids set aside)."""
    from unlearnbench.results.committed import import_records

    current = current_digest()
    copied = import_records(records_dir, store, lambda r: digest_of(r) == current)
    return copied, ([] if dry_run else set_aside_stale(store))


class Records:
    """The records a grid reads, first found first: e.g. a run store, then the committed ones
    (what `plan` asks of a store: exists, load)."""

    def __init__(self, *stores):
        self.stores = stores

    def exists(self, run_id: str) -> bool:
        return any(s.exists(run_id) for s in self.stores)

    def load(self, run_id: str) -> dict:
        return next(s.load(run_id) for s in self.stores if s.exists(run_id))


def run_everything(
    store, seeds, quick: bool, dry_run: bool, console, records_dir: Path, **how
) -> list[str]:
    """Plan every part of the grid and run it: each run trained, then attacked with its part's
    suite (none with `train_only`). After each part its records go to `records_dir`.
    `how`: launcher, jobs, runs_per_job, submitit_params, log, fixed, train_only."""
    from unlearnbench.results.committed import export_records
    from unlearnbench.sweep import launch_sweep, plan, print_plan, print_summary

    launcher = how.get("launcher", "serial")
    planned = []
    current = current_digest()
    for spec in specs(seeds, quick, how.get("fixed"), how.get("only"), how.get("models", MODELS)):
        if how.get("train_only"):
            spec = {**spec, "suite": None}
        runs = plan(spec, store, device_here=launcher != "slurm")  # SLURM: the job's device
        for run in runs:  # a stale record (other code made it) counts as not recorded
            if run.recorded and digest_of(store.load(run.run_id)) != current:
                run.recorded = False
        recall = spec["grid"]["recall"][0]
        console.print(
            f"[bold]{spec['benchmark']}, model {spec['model']}, recall {recall}, "
            f"suite {spec['suite']}[/]"
        )
        print_plan(runs, console)
        planned.append((spec, runs))
    total = sum(len(r) for _, r in planned)
    done = sum(run.recorded for _, r in planned for run in r)
    console.print(
        f"{done} of {total} runs recorded with their suite's results by this code "
        f"(source digest {current})"
    )
    if dry_run:
        return []
    run_ids = []
    for spec, runs in planned:
        summary = launch_sweep(
            runs,
            store,
            console,
            launcher,
            how.get("jobs", 1),
            how.get("runs_per_job", 1),
            suite=spec["suite"],
            log=how.get("log", ()),
            submitit_params=how.get("submitit_params"),
        )
        print_summary(summary, console)
        run_ids += summary.done + summary.skipped
        if not quick:
            export_records(store, records_dir, in_grid)
            drop_superseded(records_dir, current)
    return run_ids


class Cell(NamedTuple):
    """One cell of the grid as a store holds it."""

    benchmark: str
    method: str
    part: tuple  # (recall, suite, model)
    done: int  # runs recorded with their suite's results
    planned: int
    trained: int  # runs recorded (trained), with or without their suite's results
    digests: tuple  # ((seed, source digest), ...) of the recorded runs

    @property
    def label(self) -> str:
        recall, suite, model = self.part
        return f"{self.benchmark}, {model}, {self.method}, recall {recall}, {suite}"

    def state(self, current: str) -> str:
        """The cell's code: current (every recorded run made by the code with digest `current`),
        stale (by one other code), mixed (by more than one), or "" (no run recorded)."""
        found = {d for _, d in self.digests}
        if not found:
            return ""
        if len(found) > 1:
            return "mixed"
        return "current" if found == {current} else "stale"

    def seeds_by_digest(self) -> str:
        return seeds_by_digest(self.digests)


def seeds_by_digest(digests) -> str:
    """((seed, digest), ...) as e.g. "0, 2 by 1a2b3c4d5e6f7a8b; 1 by unknown"."""
    by: dict[str, list[int]] = {}
    for seed, digest in sorted(digests, key=str):
        by.setdefault(digest, []).append(seed)
    return "; ".join(f"{', '.join(map(str, s))} by {d}" for d, s in by.items())


def grid_progress(store, seeds, models=MODELS) -> list[Cell]:
    """Every cell of the grid (its `models`), as `store` holds it."""
    from unlearnbench.sweep import plan

    cells = []
    for spec in specs(seeds, quick=False, models=models):
        runs = plan(spec, store)
        for name in spec["methods"]:
            mine = [r for r in runs if r.config.method == name]
            trained = [r for r in mine if store.exists(r.run_id)]
            digests = tuple((r.seed, digest_of(store.load(r.run_id))) for r in trained)
            part = (spec["grid"]["recall"][0], spec["suite"], spec["model"])
            done = sum(r.recorded for r in mine)
            cells.append(
                Cell(spec["benchmark"], name, part, done, len(mine), len(trained), digests)
            )
    return cells


def cell_lines(cells: list[Cell], current: str) -> list[str]:
    """One line per cell with runs recorded: which seeds, made by which code, and whether that is
    this code (`--dry-run`)."""
    lines = []
    for c in cells:
        if c.digests:
            state = c.state(current)
            lines.append(f"{c.label}: seeds {c.seeds_by_digest()} ({state})")
    return lines


# ---- one code per cell in results/ ----


def row_of(record: dict) -> tuple:
    """The results' cell a record is a seed of: a leaderboard row (benchmark, model, method and
    setting: the recall and every option away from its defaults, the seed aside)."""
    from unlearnbench.results.leaderboard import setting_of

    return (record["benchmark"], record.get("model"), record["method"], setting_of(record))


def row_label(row: tuple) -> str:
    benchmark, model, method, setting = row
    return f"{benchmark}, {model}, {method}" + (f" ({setting})" if setting else "")


def drop_superseded(directory: Path, current: str) -> list[str]:
    """Delete the committed records made by other code than this of a run that this code has
    made again under another run id (the same cell and seed: e.g. after a method's version bump),
    so that a cell of results/ never pools them; returns their run ids (git keeps them).
    `current`: the digest of the code the grid is made by."""
    from unlearnbench.results.committed import committed_records

    records = [r for r in committed_records(directory) if in_grid(r)]
    remade = {(row_of(r), r.get("seed")) for r in records if digest_of(r) == current}
    dropped = []
    for r in records:
        if digest_of(r) != current and (row_of(r), r.get("seed")) in remade:
            (Path(directory) / f"{r['run_id']}.json").unlink(missing_ok=True)
            dropped.append(r["run_id"])
    return dropped


def mixed_rows(records: list[dict]) -> dict[tuple, tuple]:
    """{row: ((seed, digest), ...)} for each cell of results/ whose records (its seeds) were
    made by different code."""
    seeds: dict[tuple, list] = {}
    for r in records:
        seeds.setdefault(row_of(r), []).append((r.get("seed"), digest_of(r)))
    return {row: tuple(s) for row, s in seeds.items() if len({d for _, d in s}) > 1}


def refusal_lines(mixed: dict[tuple, tuple]) -> list[str]:
    """One line per cell whose runs were made by different code, then the commands that make
    them again (a stale run is made again by any grid run that includes it)."""
    lines = [
        f"{row_label(row)}: runs made by different code (seeds {seeds_by_digest(digests)})"
        for row, digests in mixed.items()
    ]
    by_model: dict[str, list[str]] = {}
    for _, model, method, _ in mixed:
        if method not in by_model.setdefault(model, []):
            by_model[model].append(method)
    lines.append(f"{len(mixed)} cell(s) mix code versions; to make their stale runs again:")
    lines += [
        f"  python scripts/reproduce_reference.py --models {model} --methods {','.join(methods)}"
        for model, methods in by_model.items()
    ]
    return lines


def progress_lines(progress: list[Cell], current: str) -> list[str]:
    """The grid's progress: per part, how many cells and runs are current (made by this code),
    stale (by other code) or mixed; then per benchmark, model and method, runs done of planned
    per part (a recall and its suite)."""
    parts = list(dict.fromkeys(c.part[:2] for c in progress))
    done, total = sum(c.done for c in progress), sum(c.planned for c in progress)
    trained = sum(c.trained for c in progress)
    lines = [
        "## Progress of the grid",
        "",
        f"{done} of {total} runs are recorded with their suite's results "
        f"(a run counts when its record holds every result of its suite; a run in two parts "
        f"counts once per part); {trained} are trained. Current: made by the package source "
        f"with digest `{current}` (`versions.source` of a record); stale: made by other code "
        "(unknown: before records named it); mixed: a cell whose runs were made by different code.",
        "",
        "| model | recall (suite) | cells current | stale | mixed | not started "
        "| runs current | stale |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for part in dict.fromkeys(c.part for c in progress):
        mine = [c for c in progress if c.part == part]
        states = [c.state(current) for c in mine]
        runs = [d for c in mine for _, d in c.digests]
        counts = [states.count(s) for s in ("current", "stale", "mixed", "")]
        fresh = sum(d == current for d in runs)
        lines.append(
            f"| {part[2]} | {part[0]} ({part[1]}) | "
            + " | ".join(map(str, counts))
            + f" | {fresh} | {len(runs) - fresh} |"
        )
    lines += [
        "",
        "A cell: runs done / planned, how many of them are trained when that is more, and "
        "whether they are stale or mixed.",
        "",
        "| benchmark | model | method | "
        + " | ".join(f"recall {r} ({s})" for r, s in parts)
        + " |",
        "|---|---|---|" + "---|" * len(parts),
    ]
    cells = {(c.benchmark, c.part[2], c.method, c.part[:2]): c for c in progress}

    def cell(c: Cell) -> str:
        state = c.state(current)
        return (
            f"{c.done}/{c.planned}"
            + (f" ({c.trained} trained)" if c.trained > c.done else "")
            + (f" {state}" if state in ("stale", "mixed") else "")
        )

    for b, model, m in dict.fromkeys((c.benchmark, c.part[2], c.method) for c in progress):
        row = [cell(cells[b, model, m, p]) if (b, model, m, p) in cells else "" for p in parts]
        lines.append(f"| {b} | {model} | {m} | " + " | ".join(row) + " |")
    return lines + [""]


def chunk_lines(records: list[dict]) -> list[str]:
    """Wall time and machine of each chunk of the grid (the runs made on one machine on one day)."""
    chunks: dict[tuple, list[dict]] = {}
    for r in records:
        chunks.setdefault((str(r.get("device")), str(r.get("created", ""))[:10]), []).append(r)
    lines = [
        "## Chunks",
        "",
        "| machine | day (UTC) | runs | training (h) | evaluation suites (h) |",
        "|---|---|---|---|---|",
    ]
    for (device, day), rs in sorted(chunks.items(), key=lambda kv: kv[0][1]):
        train = sum(r.get("train_seconds") or 0 for r in rs) / 3600
        evals = sum(_eval_seconds(r) for r in rs) / 3600
        lines.append(f"| {device} | {day} | {len(rs)} | {train:.2f} | {evals:.2f} |")
    return lines + [""]


def _eval_seconds(record: dict) -> float:
    return sum(
        (e.get("seconds") or 0) for e in (record.get("evals") or {}).values() if isinstance(e, dict)
    )


def write_results(
    records: list[dict], out: Path, note: str, progress=None, current: str | None = None
) -> None:
    """results/ from `records`; `progress`: the grid's cells, current when made by the code with
    digest `current` (default: this code)."""
    from unlearnbench.results.claims import SIZES, claims_markdown
    from unlearnbench.results.leaderboard import (
        headline_markdown,
        leaderboard_rows,
        render,
        to_csv,
        write_ranking,
    )
    from unlearnbench.results.plots import write_plots
    from unlearnbench.results.report import write_reports
    from unlearnbench.results.store import write_text_atomic

    out.mkdir(parents=True, exist_ok=True)
    rows = leaderboard_rows(records)
    # what these records are (e.g. made by earlier code) stands above the tables themselves
    about = f"> {note}\n\n" if note else ""
    write_text_atomic(out / "leaderboard.md", about + render(rows, "md"))  # headline, full table
    write_text_atomic(out / "leaderboard.csv", to_csv(rows))
    write_text_atomic(out / "claims.md", about + claims_markdown(records))
    if out.resolve() == RESULTS.resolve():  # the repository's results: its README's ranking too
        write_ranking(RESULTS.parent / "README.md", rows, SIZES)
    benches = sorted({r["benchmark"] for r in records})
    figures = {b: write_plots(records, b, out / "figures") for b in benches}
    reports = write_reports(records, out)
    devices = sorted({str(r.get("device")) for r in records})
    wall = sum(r.get("wall_seconds") or 0 for r in records)
    evals = sum(_eval_seconds(r) for r in records)
    git = sorted({str((r.get("versions") or {}).get("git")) for r in records})
    sources = sorted({digest_of(r) for r in records})
    lines = [
        "# Reference results",
        "",
        note,
        "",
        f"- runs: {len(records)} ({', '.join(benches)}); device: {'; '.join(devices)}",
        f"- wall time: {wall / 60:.1f} min training and evaluating the runs, "
        f"{evals / 60:.1f} min in attack/probe suites; code revision(s): {', '.join(git)}; "
        f"package source digest(s): {', '.join(sources)}",
        "- [leaderboard (markdown)](leaderboard.md), [CSV](leaderboard.csv)",
        "- [the papers' claims on the grid](claims.md): each with its paired differences over "
        "seeds and a verdict",
    ]
    lines += [f"- [report: {p.stem.removeprefix('report-')}]({p.name})" for p in reports]
    for b, figs in figures.items():
        lines += [
            f"- {b} {k}: [PNG](figures/{p[0].name}), [SVG](figures/{p[1].name})"
            for k, p in figs.items()
        ]
    lines.append("")
    if progress:
        lines += progress_lines(progress, current or current_digest())
    lines += chunk_lines(records)
    lines += [
        "## Runs",
        "",
        "| run id | method | seed | recall | wall (s) | evaluations |",
        "|---|---|---|---|---|---|",
    ]
    for r in sorted(records, key=lambda r: (r["benchmark"], r["method"], r["run_id"])):
        recall = ((r.get("config") or {}).get("labels") or {}).get("recall")
        lines.append(
            f"| `{r['run_id']}` | {r['method']} | {r['seed']} | {recall} | "
            f"{(r.get('wall_seconds') or 0):.0f} | {', '.join(sorted(r.get('evals') or {})) or 'none'} |"
        )
    lines += [
        "",
        "## Leaderboard (headline; the full table: leaderboard.md)",
        "",
        headline_markdown(rows),
    ]
    write_text_atomic(out / "README.md", "\n".join(lines) + "\n")
    # figures and reports of an earlier build that this one did not write would be stale
    written = {p for figs in figures.values() for pair in figs.values() for p in pair}
    written |= set(reports)
    stale = [*(out / "figures").glob("*.png"), *(out / "figures").glob("*.svg")]
    stale += list(out.glob("report-*.html"))
    for path in stale:
        if path not in written:
            path.unlink()


def chosen_methods(methods_arg: str, skip_arg: str) -> list[str] | None:
    """The methods named by --methods / --skip-methods (checked against the registry), or None."""
    from unlearnbench.config import ConfigError
    from unlearnbench.registry import methods

    names = [m for m in methods_arg.split(",") if m] or methods.names()
    skip = [m for m in skip_arg.split(",") if m]
    for m in names + skip:
        methods.get(m)  # an unknown name: one error line with close matches
    if not methods_arg and not skip:
        return None
    kept = [m for m in names if m not in skip]
    if not kept:
        raise ConfigError("--methods and --skip-methods leave no method to run")
    return kept


def chosen_models(models_arg: str) -> tuple[str, ...]:
    """The sizes named by --models (checked against the grid's), or every size."""
    from unlearnbench.config import ConfigError

    names = tuple(m for m in models_arg.split(",") if m) or MODELS
    unknown = [m for m in names if m not in MODELS]
    if unknown:
        raise ConfigError(
            f"--models: {unknown[0]!r} is not a size of the grid ({', '.join(MODELS)})"
        )
    return names


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=Path, default=Path("runs/reference"), help="run store")
    ap.add_argument("--results", type=Path, default=RESULTS, help="output directory")
    ap.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    ap.add_argument("--dry-run", action="store_true", help="list the runs and cells, and stop")
    ap.add_argument("--quick", action="store_true", help="seed 0, 5 steps, the quick suite")
    ap.add_argument(
        "--only-results", action="store_true", help="no runs: results from RESULTS/records"
    )
    ap.add_argument(
        "--no-results", action="store_true", help="runs and their records only (a chunk)"
    )
    ap.add_argument(
        "--export", action="store_true", help="first copy the store's records to RESULTS/records"
    )
    ap.add_argument("--train-only", action="store_true", help="train the grid's runs, no suites")
    ap.add_argument("--methods", default="", help="comma-separated: run only these (a chunk)")
    ap.add_argument("--skip-methods", default="", help="comma-separated: leave these out")
    ap.add_argument("--models", default="", help=f"comma-separated sizes: {', '.join(MODELS)}")
    ap.add_argument(
        "--source",
        default="",
        help="with --only-results: the source digest the grid is made by (default: this code's)",
    )
    ap.add_argument("--note", default="", help="a sentence for results/README.md on what this is")
    ap.add_argument("--jobs", type=int, default=1, help="runs at once (a process pool when > 1)")
    ap.add_argument(
        "--launcher", default=None, help="serial | pool | slurm | submitit-local (launch.py)"
    )
    ap.add_argument("--runs-per-job", type=int, default=1, help="runs per pool or SLURM job")
    ap.add_argument("--slurm", action="append", default=[], help="submitit parameter KEY=VALUE")
    ap.add_argument("--set", action="append", default=[], help="override of every run KEY=VALUE")
    ap.add_argument("--log", action="append", default=[], help="tracker: tensorboard | wandb")
    args = ap.parse_args()

    import torch
    from rich.console import Console
    from rich.markup import escape

    from unlearnbench.config import ConfigError, parse_assignments
    from unlearnbench.launch import check_launcher, check_submitit, submitit_parameters
    from unlearnbench.registry import UnknownName
    from unlearnbench.results.committed import export_records
    from unlearnbench.results.store import RunStore
    from unlearnbench.tracking import parse_trackers

    launcher = args.launcher or ("pool" if args.jobs > 1 else "serial")
    if launcher == "serial":  # pool and SLURM jobs set their own thread counts
        torch.set_num_threads(max(1, min(torch.get_num_threads(), 4)))
    console = Console(stderr=True)
    store = RunStore(args.runs)
    records_dir = args.results / "records"
    committed = RunStore(args.results)  # its records/ are the committed records
    current = args.source or current_digest()
    if args.quick:
        args.seeds = [0]
    start = time.perf_counter()
    try:
        models = chosen_models(args.models)
        if args.source and not args.only_results:  # runs are made by this code, and say so
            raise ConfigError(
                "--source names the grid's code for --only-results; runs use this code's"
            )
        if args.export:
            n = export_records(store, records_dir, in_grid)
            console.print(f"{n} record(s) of {args.runs} written to {records_dir}")
        if not args.only_results:
            check_launcher(launcher, args.jobs, args.runs_per_job)
            params = submitit_parameters(None, args.slurm, args.jobs)
            check_submitit(launcher, params, args.dry_run)  # a dry run: off a cluster too
            if not args.quick:
                n, stale = take_committed(records_dir, store, args.dry_run)
                console.print(f"{n} committed record(s) made by this code copied into {args.runs}")
                if stale:
                    console.print(
                        f"{len(stale)} record(s) of {args.runs} made by other code set aside "
                        f"in {args.runs / 'stale'}: their runs are made again"
                    )
            how = {
                "launcher": launcher,
                "jobs": args.jobs,
                "runs_per_job": args.runs_per_job,
                "submitit_params": params,
                "log": parse_trackers(args.log),
                "fixed": parse_assignments(args.set),
                "train_only": args.train_only,
                "only": chosen_methods(args.methods, args.skip_methods),
                "models": models,
            }
            run_everything(store, args.seeds, args.quick, args.dry_run, console, records_dir, **how)
        if args.dry_run:  # each cell: its seeds recorded (here or committed), by which code
            cells = grid_progress(Records(store, committed), args.seeds, models)
            console.print(f"[bold]cells with runs recorded[/] (this code: source digest {current})")
            for line in cell_lines(cells, current) or ["none"]:
                console.print(escape(line), highlight=False, soft_wrap=True)
            return
        if args.quick or args.no_results:
            progress = None
        else:  # the whole grid, whatever this invocation ran: results/ shows all of it
            dropped = drop_superseded(records_dir, current)
            if dropped:
                console.print(f"{len(dropped)} committed record(s) made again by this code dropped")
            progress = grid_progress(committed, SEEDS)
            mixed = mixed_rows([r for r in committed.records() if in_grid(r)])
            if mixed:  # nothing is written: results/ keeps its earlier build
                for line in refusal_lines(mixed):
                    console.print(
                        f"[bold red]error:[/] {escape(line)}", highlight=False, soft_wrap=True
                    )
                sys.exit(1)
    except (ConfigError, UnknownName) as e:
        console.print(f"[bold red]error:[/] {escape(str(e).strip(chr(39)))}")
        sys.exit(2)
    if args.no_results:
        console.print(f"records in {records_dir}; results/ not rebuilt (--no-results)")
        return
    source = store if args.quick else committed
    records = [r for r in source.records() if in_grid(r)]
    if not records:
        console.print(f"[bold red]error:[/] no records of {', '.join(BENCHMARKS)} in {source.root}")
        sys.exit(1)
    note = args.note or (
        f"Every registered method on {', '.join(BENCHMARKS)}, model tiny, seeds "
        f"{', '.join(map(str, SEEDS))}: at recall 1.0 with the `robust` suite, and the "
        f"label-using training-time methods ({', '.join(LABELED_TRAINING)}) also at recall 0.9 "
        "(`robust`) and 0.5 (`probes`: losses and fact probes); at model small, "
        f"{', '.join(SMALL_METHODS)} at recall 1.0 and filter and sgtm at 0.9 (`robust`); "
        "produced by `scripts/reproduce_reference.py` from the committed records in `records/`."
    )
    write_results(records, args.results, note, progress, current)
    console.print(f"results in {args.results} ({(time.perf_counter() - start) / 60:.1f} min)")


if __name__ == "__main__":
    main()
