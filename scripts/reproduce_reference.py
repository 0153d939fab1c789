#!/usr/bin/env python
"""Reproduce the committed reference results in `results/`.

The grid (`PARTS`): every registered method on `storyworld-lang` and `storyworld-topic`, model
`tiny`, seeds 0-2, recall 1.0, with the `robust` suite; the label-using training-time methods also
at recall 0.9 (`robust`) and at 0.5 (losses and fact probes: the `probes` suite); sgtm and rmu
at recall 1.0 also with the SGTM paper's relearning protocol (`sgtm-paper`). Then the
leaderboard, figures, one HTML report per benchmark and the papers' claims (`claims.md`), all
written to `results/`.

    python scripts/reproduce_reference.py --dry-run      # list the runs and what is recorded
    python scripts/reproduce_reference.py                # everything (hours on a CPU)
    python scripts/reproduce_reference.py --quick        # smoke test: seed 0, 5 steps, quick suite
    python scripts/reproduce_reference.py --only-results # results/ from results/records/, no runs
    python scripts/reproduce_reference.py --jobs 2       # 2 local processes
    python scripts/reproduce_reference.py --launcher slurm --slurm slurm_partition=gpu \
        --slurm gpus_per_node=1 --slurm timeout_min=120 --set train.device=cuda   # SLURM

The records are committed (`results/records/`, no weights): a run starts by copying them into the
run store, so a run whose committed record matches its config and code version (its run id) and
holds its suite's results is skipped, on any machine; a post-hoc run whose base has no model
there trains the base again from its record (same seed and config: the same weights). Each
finished part's records are copied back into `results/records/`, so an interrupted reproduction
continues where it stopped, here or elsewhere; `results/` is rebuilt from them when the script ends.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

BENCHMARKS = ("storyworld-lang", "storyworld-topic")
SEEDS = (0, 1, 2)
# the training-time methods that read labels: what they remove depends on how much of the forget
# data is labeled (issue: SGTM vs filtering under undiscovered forget data, ERA and DEMix at
# partial labels)
LABELED_TRAINING = ("filter", "sgtm", "gradient-routing", "activation-masking", "era", "demix")
# (methods, recall, suite): None = every registered method
PARTS = (
    (None, 1.0, "robust"),
    (LABELED_TRAINING, 0.9, "robust"),
    (LABELED_TRAINING, 0.5, "probes"),
    # the SGTM paper's relearning protocol (forget data mixed ~50/50 with the rest, 1000 steps) on
    # the runs its SGTM-vs-RMU claim compares: the robust suite's forget-only attack breaks the
    # retain tolerance of a model that never learned the forget data (SGTM, the filter) within
    # 5-25 steps, so it cannot tell how many steps that model takes to recover
    (("sgtm", "rmu"), 1.0, "sgtm-paper"),
)
RESULTS = Path(__file__).resolve().parents[1] / "results"


def specs(seeds, quick: bool, fixed: dict | None = None, only=None) -> list[dict]:
    """One sweep spec per (part, benchmark), each naming its suite (`quick` for a smoke test);
    `only`: the methods to keep (a chunk of the grid), None = all."""
    from unlearnbench.registry import methods

    fixed = {**({"train.steps": 5, "train.warmup_steps": 1} if quick else {}), **(fixed or {})}
    return [
        {
            "benchmark": b,
            "model": "tiny",
            "seeds": list(seeds),
            "methods": [m for m in (names or methods.names()) if only is None or m in only],
            "grid": {"recall": [recall]},
            "set": fixed,
            "suite": "quick" if quick else suite,
        }
        for names, recall, suite in PARTS
        for b in BENCHMARKS
        if only is None or set(names or methods.names()) & set(only)
    ]


def in_grid(record: dict) -> bool:
    """A record the results are made of: a run of the grid or a base or reference it used."""
    return record.get("benchmark") in BENCHMARKS and record.get("model") == "tiny"


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
    for spec in specs(seeds, quick, how.get("fixed"), how.get("only")):
        if how.get("train_only"):
            spec = {**spec, "suite": None}
        runs = plan(spec, store)
        recall = spec["grid"]["recall"][0]
        console.print(f"[bold]{spec['benchmark']}, recall {recall}, suite {spec['suite']}[/]")
        print_plan(runs, console)
        planned.append((spec, runs))
    total = sum(len(r) for _, r in planned)
    done = sum(run.recorded for _, r in planned for run in r)
    console.print(f"{done} of {total} runs recorded with their suite's results")
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
    return run_ids


def progress_lines(progress) -> list[str]:
    """The grid's progress as a table: per benchmark and method, runs done of planned per part
    (a recall and its suite)."""
    parts = list(dict.fromkeys((r, s) for _, r, s in PARTS))
    done, total = sum(c[3] for c in progress), sum(c[4] for c in progress)
    trained = sum(c[5] for c in progress)
    lines = [
        "## Progress of the grid",
        "",
        f"{done} of {total} cells are recorded with their suite's results "
        f"(a run counts when its record holds every result of its suite; a run in two parts "
        f"counts once per part); {trained} are trained. "
        "A cell: runs done / planned, and how many of them are trained when that is more.",
        "",
        "| benchmark | method | " + " | ".join(f"recall {r} ({s})" for r, s in parts) + " |",
        "|---|---|" + "---|" * len(parts),
    ]
    cells = {(b, m, part): (d, t, n) for b, m, part, d, t, n in progress}

    def cell(d: int, t: int, n: int) -> str:
        return f"{d}/{t}" + (f" ({n} trained)" if n > d else "")

    for b, m in dict.fromkeys((c[0], c[1]) for c in progress):
        row = [cell(*cells[b, m, part]) if (b, m, part) in cells else "" for part in parts]
        lines.append(f"| {b} | {m} | " + " | ".join(row) + " |")
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


def write_results(records: list[dict], out: Path, note: str, progress=None) -> None:
    from unlearnbench.results.claims import claims_markdown
    from unlearnbench.results.leaderboard import headline_markdown, leaderboard_rows, render, to_csv
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
    benches = sorted({r["benchmark"] for r in records})
    figures = {b: write_plots(records, b, out / "figures") for b in benches}
    reports = write_reports(records, out)
    devices = sorted({str(r.get("device")) for r in records})
    wall = sum(r.get("wall_seconds") or 0 for r in records)
    evals = sum(_eval_seconds(r) for r in records)
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
        lines += progress_lines(progress)
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


def grid_progress(store, seeds) -> list[tuple[str, str, tuple, int, int, int]]:
    """(benchmark, method, (recall, suite), runs recorded with their suite's results, runs planned, runs
    trained) per cell of the grid, as `store` holds it."""
    from unlearnbench.sweep import plan

    cells = []
    for spec in specs(seeds, quick=False):
        runs = plan(spec, store)
        for name in spec["methods"]:
            mine = [r for r in runs if r.config.method == name]
            done = sum(r.recorded for r in mine)
            trained = sum(store.exists(r.run_id) for r in mine)
            part = (spec["grid"]["recall"][0], spec["suite"])
            cells.append((spec["benchmark"], name, part, done, len(mine), trained))
    return cells


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=Path, default=Path("runs/reference"), help="run store")
    ap.add_argument("--results", type=Path, default=RESULTS, help="output directory")
    ap.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    ap.add_argument("--dry-run", action="store_true", help="list the runs and stop")
    ap.add_argument("--quick", action="store_true", help="seed 0, 5 steps, the quick suite")
    ap.add_argument(
        "--only-results", action="store_true", help="no runs: results from RESULTS/records"
    )
    ap.add_argument(
        "--export", action="store_true", help="first copy the store's records to RESULTS/records"
    )
    ap.add_argument("--train-only", action="store_true", help="train the grid's runs, no suites")
    ap.add_argument("--methods", default="", help="comma-separated: run only these (a chunk)")
    ap.add_argument("--skip-methods", default="", help="comma-separated: leave these out")
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
    from unlearnbench.results.committed import export_records, import_records
    from unlearnbench.results.store import RunStore
    from unlearnbench.tracking import parse_trackers

    launcher = args.launcher or ("pool" if args.jobs > 1 else "serial")
    if launcher == "serial":  # pool and SLURM jobs set their own thread counts
        torch.set_num_threads(max(1, min(torch.get_num_threads(), 4)))
    console = Console(stderr=True)
    store = RunStore(args.runs)
    records_dir = args.results / "records"
    committed = RunStore(args.results)  # its records/ are the committed records
    if args.quick:
        args.seeds = [0]
    start = time.perf_counter()
    try:
        if args.export:
            n = export_records(store, records_dir, in_grid)
            console.print(f"{n} record(s) of {args.runs} written to {records_dir}")
        if not args.only_results:
            check_launcher(launcher, args.jobs, args.runs_per_job)
            params = submitit_parameters(None, args.slurm, args.jobs)
            check_submitit(launcher, params)
            if not args.quick:
                n = import_records(records_dir, store)
                console.print(f"{n} committed record(s) copied into {args.runs}")
            how = {
                "launcher": launcher,
                "jobs": args.jobs,
                "runs_per_job": args.runs_per_job,
                "submitit_params": params,
                "log": parse_trackers(args.log),
                "fixed": parse_assignments(args.set),
                "train_only": args.train_only,
                "only": chosen_methods(args.methods, args.skip_methods),
            }
            run_everything(store, args.seeds, args.quick, args.dry_run, console, records_dir, **how)
        progress = None if args.quick else grid_progress(committed, args.seeds)
    except (ConfigError, UnknownName) as e:
        console.print(f"[bold red]error:[/] {escape(str(e).strip(chr(39)))}")
        sys.exit(2)
    if args.dry_run:
        return
    source = store if args.quick else committed
    records = [r for r in source.records() if in_grid(r)]
    if not records:
        console.print(f"[bold red]error:[/] no records of {', '.join(BENCHMARKS)} in {source.root}")
        sys.exit(1)
    note = args.note or (
        f"Every registered method on {', '.join(BENCHMARKS)}, model tiny, seeds "
        f"{', '.join(map(str, args.seeds))}: at recall 1.0 with the `robust` suite, and the "
        f"label-using training-time methods ({', '.join(LABELED_TRAINING)}) also at recall 0.9 "
        "(`robust`) and 0.5 (`probes`: losses and fact probes); produced by "
        "`scripts/reproduce_reference.py` from the committed records in `records/`."
    )
    write_results(records, args.results, note, progress)
    console.print(f"results in {args.results} ({(time.perf_counter() - start) / 60:.1f} min)")


if __name__ == "__main__":
    main()
