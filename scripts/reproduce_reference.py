#!/usr/bin/env python
"""Reproduce the committed reference results in `results/`.

Every registered method on `storyworld-lang` and `storyworld-topic`, model `tiny`, seeds 0-2,
recall 1.0 and 0.9, then the default attack suite (`robust`) on every run, then the
leaderboard, figures and one HTML report per benchmark, all written to `results/`.

    python scripts/reproduce_reference.py --dry-run      # list the runs, run nothing
    python scripts/reproduce_reference.py                # everything (hours on a CPU)
    python scripts/reproduce_reference.py --quick        # smoke test: seed 0, 5 steps, quick suite
    python scripts/reproduce_reference.py --only-results --runs runs   # tables/figures from a store
    python scripts/reproduce_reference.py --jobs 4       # 4 local processes
    python scripts/reproduce_reference.py --launcher slurm --slurm slurm_partition=gpu \
        --slurm gpus_per_node=1 --slurm timeout_min=120 --set train.device=cuda   # SLURM

Runs already recorded (with the suite's results) are skipped, so an interrupted reproduction
continues where it stopped. With a launcher each job trains its run and then attacks it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

BENCHMARKS = ("storyworld-lang", "storyworld-topic")
RECALLS = (1.0, 0.9)
SEEDS = (0, 1, 2)


def specs(seeds, quick: bool, fixed: dict | None = None) -> list[dict]:
    from unlearnbench.registry import methods

    fixed = {**({"train.steps": 5, "train.warmup_steps": 1} if quick else {}), **(fixed or {})}
    return [
        {
            "benchmark": b,
            "model": "tiny",
            "seeds": list(seeds),
            "methods": methods.names(),
            "grid": {"recall": list(RECALLS)},
            "set": fixed,
        }
        for b in BENCHMARKS
    ]


def run_everything(
    store, seeds, suite: str, quick: bool, dry_run: bool, console, **how
) -> list[str]:
    """Plan both benchmarks' grids and run them: each run trained, then attacked with `suite`.
    `how`: launcher, jobs, runs_per_job, submitit_params, log, fixed (overrides of every run)."""
    from unlearnbench.sweep import launch_sweep, plan, print_plan, print_summary

    launcher = how.get("launcher", "serial")
    planned = []
    for spec in specs(seeds, quick, how.get("fixed")):
        runs = plan({**spec, "suite": suite}, store)
        console.print(f"[bold]{spec['benchmark']}[/]")
        print_plan(runs, console)
        planned.append(runs)
    if dry_run:
        return []
    run_ids = []
    for runs in planned:
        summary = launch_sweep(
            runs,
            store,
            console,
            launcher,
            how.get("jobs", 1),
            how.get("runs_per_job", 1),
            suite=suite,
            log=how.get("log", ()),
            submitit_params=how.get("submitit_params"),
        )
        print_summary(summary, console)
        run_ids += summary.done + summary.skipped
    return run_ids


def write_results(records: list[dict], out: Path, note: str) -> None:
    from unlearnbench.results.leaderboard import leaderboard_rows, to_csv, to_markdown
    from unlearnbench.results.plots import write_plots
    from unlearnbench.results.report import write_reports
    from unlearnbench.results.store import write_text_atomic

    out.mkdir(parents=True, exist_ok=True)
    rows = leaderboard_rows(records)
    write_text_atomic(out / "leaderboard.md", to_markdown(rows))
    write_text_atomic(out / "leaderboard.csv", to_csv(rows))
    benches = sorted({r["benchmark"] for r in records})
    figures = {b: write_plots(records, b, out / "figures") for b in benches}
    reports = write_reports(records, out)
    devices = sorted({str(r.get("device")) for r in records})
    wall = sum(r.get("wall_seconds") or 0 for r in records)
    evals = sum(
        (e.get("seconds") or 0)
        for r in records
        for e in (r.get("evals") or {}).values()
        if isinstance(e, dict)
    )
    git = sorted({str((r.get("versions") or {}).get("git")) for r in records})
    lines = [
        "# Reference results",
        "",
        note,
        "",
        f"- runs: {len(records)} ({', '.join(benches)}); device: {'; '.join(devices)}",
        f"- wall time: {wall / 60:.1f} min training and evaluating the runs, "
        f"{evals / 60:.1f} min in attack/probe suites; code revision(s): {', '.join(git)}",
        "- [leaderboard (markdown)](leaderboard.md), [CSV](leaderboard.csv)",
    ]
    lines += [f"- [report: {p.stem.removeprefix('report-')}]({p.name})" for p in reports]
    for b, figs in figures.items():
        lines += [
            f"- {b} {k}: [PNG](figures/{p[0].name}), [SVG](figures/{p[1].name})"
            for k, p in figs.items()
        ]
    lines += [
        "",
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
    lines += ["", "## Leaderboard", "", to_markdown(rows)]
    write_text_atomic(out / "README.md", "\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=Path, default=Path("runs/reference"), help="run store")
    ap.add_argument("--results", type=Path, default=Path("results"), help="output directory")
    ap.add_argument("--suite", default="robust", help="attack suite (a name or a YAML path)")
    ap.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    ap.add_argument("--dry-run", action="store_true", help="list the runs and stop")
    ap.add_argument("--quick", action="store_true", help="seed 0, 5 steps, the quick suite")
    ap.add_argument("--only-results", action="store_true", help="no runs: results from the store")
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
    from unlearnbench.results.store import RunStore
    from unlearnbench.tracking import parse_trackers

    launcher = args.launcher or ("pool" if args.jobs > 1 else "serial")
    if launcher == "serial":  # pool and SLURM jobs set their own thread counts
        torch.set_num_threads(max(1, min(torch.get_num_threads(), 4)))
    console = Console(stderr=True)
    store = RunStore(args.runs)
    if args.quick:
        args.seeds, args.suite = [0], "quick"
    start = time.perf_counter()
    try:
        check_launcher(launcher, args.jobs, args.runs_per_job)
        params = submitit_parameters(None, args.slurm, args.jobs)
        check_submitit(launcher, params)
        how = {
            "launcher": launcher,
            "jobs": args.jobs,
            "runs_per_job": args.runs_per_job,
            "submitit_params": params,
            "log": parse_trackers(args.log),
            "fixed": parse_assignments(args.set),
        }
        run_ids = (
            []
            if args.only_results
            else run_everything(
                store, args.seeds, args.suite, args.quick, args.dry_run, console, **how
            )
        )
    except ConfigError as e:
        console.print(f"[bold red]error:[/] {escape(str(e))}")
        sys.exit(2)
    if args.dry_run:
        return
    records = [r for r in store.records() if r.get("benchmark") in BENCHMARKS]
    if run_ids:  # exactly the planned runs and the bases/references they used
        keep = set(run_ids) | {r.get("base") for r in records if r["run_id"] in run_ids}
        records = [r for r in records if r["run_id"] in keep]
    if not records:
        console.print(f"[bold red]error:[/] no records of {', '.join(BENCHMARKS)} in {args.runs}")
        sys.exit(1)
    note = args.note or (
        f"All registered methods on {', '.join(BENCHMARKS)}, model tiny, seeds "
        f"{', '.join(map(str, args.seeds))}, recall {' and '.join(map(str, RECALLS))}, "
        f"suite `{args.suite}`; produced by `scripts/reproduce_reference.py`."
    )
    write_results(records, args.results, note)
    console.print(f"results in {args.results} ({(time.perf_counter() - start) / 60:.1f} min)")


if __name__ == "__main__":
    main()
