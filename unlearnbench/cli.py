"""The `unlearnbench` command line: thin commands over library functions.

Heavy imports (torch, transformers) happen inside commands so `--help` is instant. A user mistake
prints one red line to stderr and exits with code 2; nothing is half-written.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path

import typer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Benchmark harness for removing capabilities from language models.",
)

OUT_HELP = "Run store directory (records and models)."
LOG_HELP = (
    "Track curves, metrics and hyperparameters (repeatable): tensorboard (event files under "
    "OUT/tensorboard) | wandb (under OUT/wandb; WANDB_MODE decides online or offline)."
)


def fail(message: str, code: int = 2) -> None:
    from rich.console import Console
    from rich.markup import escape

    # escaped: a message's own brackets (`unlearnbench[lm-eval]`, a list) are text, not markup
    Console(stderr=True).print(
        f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True
    )
    raise typer.Exit(code)


def _print_version(value: bool) -> None:
    if value:
        from unlearnbench import __version__

        sys.stdout.write(f"unlearnbench {__version__}\n")
        raise typer.Exit()


@app.callback()
def _check_environment(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version."
    ),
) -> None:
    """Before every command: the `UNLEARNBENCH_*` variables are ones the harness reads, with
    values it can use (a misspelt one would be ignored without a word)."""
    from unlearnbench.config import ConfigError, check_environment

    try:
        check_environment(os.environ)
    except ConfigError as e:
        fail(str(e))


def _folder(value) -> Path:
    """A folder given on the command line (`--out`, `--dest`): an empty one would be the current
    directory, which the user did not name."""
    if not str(value).strip():
        fail("an empty folder name was given (--out or --dest); name a folder, e.g. --out runs")
    return Path(value)


# what an interrupted command leaves (every file is written whole: temp file, then rename)
KEPT_RUNS = (
    "the records of the runs that finished, in {out}/records (a run is recorded when complete), "
    "and a run's last checkpoint where checkpoint_every is set (`run ... --resume` continues it)"
)
KEPT_EVALS = "the results of the evaluations that finished, merged into {out}/records"
KEPT_FILES = "every file written so far, each complete (nothing half-written)"


class _user_errors(contextlib.ContextDecorator):
    """Turn user mistakes into one-line errors (a `with` block, or a command's decorator), and
    Ctrl-C into one line saying what was kept (`kept`), exit 130 as a shell expects."""

    def __init__(self, kept: str = KEPT_FILES):
        self.kept = kept

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc is None:
            return False
        if isinstance(exc, KeyboardInterrupt):
            fail(f"interrupted; kept: {self.kept}", code=130)
        from unlearnbench.config import ConfigError
        from unlearnbench.registry import UnknownName

        if isinstance(exc, ConfigError | UnknownName):
            fail(str(exc))
        from unlearnbench.results.store import StoreWriteError

        if isinstance(exc, StoreWriteError):  # the disk or the store, not the input: exit 1
            fail(str(exc), code=1)
        if isinstance(exc, FileNotFoundError):
            fail(str(exc))
        if isinstance(exc, OSError):  # a destination that cannot be written (read-only, a file)
            fail(f"cannot write: {exc}", code=1)
        if isinstance(exc, FloatingPointError):
            fail(str(exc), code=1)
        return False


@app.command()
def run(
    method: str = typer.Argument(..., help="Method name (see `unlearnbench list methods`)."),
    benchmark: str = typer.Option("storyworld-lang", "--benchmark", "-b"),
    model: str | None = typer.Option(
        None, "--model", "-m", help="Model preset (default: the --config file's model, else tiny)."
    ),
    seed: int = typer.Option(0, "--seed", "-s"),
    set_: list[str] = typer.Option([], "--set", help="Override: key=value (repeatable)."),
    config: Path | None = typer.Option(None, "--config", help="YAML preset; --set wins."),
    out: Path = typer.Option(Path("runs"), "--out", help=OUT_HELP, parser=_folder),
    force: bool = typer.Option(False, "--force", help="Run again even if a record exists."),
    as_json: bool = typer.Option(False, "--json", help="Print the record as JSON to stdout."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
    resume: bool = typer.Option(
        False, "--resume", help="Continue from the run's last checkpoint (see checkpoint_every)."
    ),
    suite: str | None = typer.Option(
        None, "--suite", help="Evaluation suite to run afterwards (a name or a YAML path)."
    ),
    log: list[str] = typer.Option([], "--log", help=LOG_HELP),
) -> None:
    """Train or unlearn, evaluate (losses; with --suite also attacks and probes), write the record."""
    with _user_errors(KEPT_RUNS.format(out=out)):
        from unlearnbench.config import parse_assignments
        from unlearnbench.early_checks import check_run_request

        overrides = parse_assignments(set_)
        check_run_request(method, benchmark, model, overrides, config)  # a typo: before torch
        from unlearnbench.results.store import RunStore
        from unlearnbench.runner import execute, resolve_run_config
        from unlearnbench.tracking import parse_trackers

        trackers = parse_trackers(log)  # a missing package fails before training

        cfg = resolve_run_config(method, benchmark, model, seed, overrides, config)
        store = RunStore(out)
        if suite:
            from unlearnbench.evals import load_suite
            from unlearnbench.runner import check_suite_request

            load_suite(suite)  # a bad suite fails before training, not after
            check_suite_request(cfg, suite)
        existed = store.exists(cfg.run_id) and not force
        if resume and not existed and not store.checkpoint_path(cfg.run_id).is_file():
            _say(f"--resume: no checkpoint of {cfg.run_id} in {store.root}; starting from step 0")
        record = execute(
            cfg, store, force=force, progress=not (quiet or as_json), resume=resume, log=trackers
        )
        existed = cfg.run_id not in store.trained  # a run that waited for an identical one
        from unlearnbench.distributed import is_main

        if not is_main():
            return  # under torchrun, rank 0 reports
        if suite:
            from unlearnbench.suites import run_suite

            record = run_suite(
                record["run_id"], suite, store, progress=not (quiet or as_json), log=trackers
            )
    if as_json:
        sys.stdout.write(json.dumps(record, indent=2) + "\n")
        return
    _print_run(record, existed)
    if record.get("evals"):
        _print_evals(record)


@app.command()
def attack(
    run_id: str = typer.Argument(..., help="A run id in the store (see OUT/records)."),
    suite: str = typer.Option("robust", "--suite", help="Evaluation suite (a name or YAML path)."),
    out: Path = typer.Option(Path("runs"), "--out", help=OUT_HELP, parser=_folder),
    force: bool = typer.Option(False, "--force", help="Evaluate again even if recorded."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
    log: list[str] = typer.Option([], "--log", help=LOG_HELP),
) -> None:
    """Run an evaluation suite on an existing run's saved model; add the results to its record."""
    with _user_errors(KEPT_EVALS.format(out=out)):
        from unlearnbench.evals import load_suite
        from unlearnbench.results.store import RunStore
        from unlearnbench.suites import run_suite
        from unlearnbench.tracking import parse_trackers

        trackers = parse_trackers(log)
        load_suite(suite)
        store = RunStore(out)
        store.load(run_id)  # a missing run is a one-line error
        store.check_writable()  # results that could not be recorded are not computed
        record = run_suite(run_id, suite, store, progress=not quiet, force=force, log=trackers)
    _print_evals(record)


def _say(message: str) -> None:
    """One plain line on stderr (what happens, not an error)."""
    from rich.console import Console

    Console(stderr=True).print(message, highlight=False, markup=False, soft_wrap=True)


def _fmt(v, digits: int = 3) -> str:
    return "-" if v is None else (f"{v:.{digits}f}" if isinstance(v, float) else str(v))


def _print_evals(record: dict) -> None:
    """One line per recorded evaluation: the headline metrics it declared."""
    from rich.console import Console
    from rich.markup import escape

    from unlearnbench.results.leaderboard import summary_text

    for key, ev in (record.get("evals") or {}).items():
        Console().print(f"[bold]{escape(key)}[/]: {escape(summary_text(ev))}", highlight=False)


def _print_run(record: dict, existed: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    m = record["metrics"]
    table = Table(title=f"{record['run_id']}" + (" (existing record)" if existed else ""))
    table.add_column("split")
    table.add_column("pre-finalize loss", justify="right")
    table.add_column("final loss", justify="right")
    for split in ("forget", "adjacent", "retain"):
        post, pre = m.get(f"{split}_loss"), m["pre_finalize"].get(f"{split}_loss")
        if post is None:
            continue
        table.add_row(split, f"{pre:.3f}", f"{post:.3f}")
    Console().print(table)
    selection = m.get("forget_tokens")
    if selection:  # per-token unlearning: say which tokens the forget loss read
        shown = ", ".join(selection["tokens"][:20])
        more = " ..." if selection["count"] > 20 else ""
        Console().print(
            f"forget tokens ({selection.get('mode', '')}, {selection['count']}): {shown}{more}",
            markup=False,
        )
    Console().print(
        f"tokens seen {record['tokens_seen']:,}  wall {record['wall_seconds']:.0f}s  "
        f"model {record['model_path']}"
    )


@app.command("list")
def list_(
    what: str = typer.Argument(
        ..., help="methods | benchmarks | models | presets | evals | suites"
    ),
    defaults: bool = typer.Option(
        False, "--defaults", help="methods: every option's default and its source"
    ),
) -> None:
    """List registered methods, benchmarks, model presets, YAML run presets, evaluations (with
    their headline metrics) or evaluation suites (with what they run)."""
    from rich.console import Console
    from rich.table import Table

    table = Table()
    if defaults and what != "methods":
        fail(f"--defaults lists the defaults of methods only, not of {what}")
    if what == "methods" and defaults:
        from unlearnbench.method_defaults import method_rows, train_config_rows
        from unlearnbench.registry import methods

        console = Console()
        sections = [("training defaults (TrainConfig)", train_config_rows())]
        for name in methods.names():
            spec = methods.get(name)
            sections.append((f"{name} ({spec.kind}, version {spec.version})", method_rows(name)))
        for title, rows in sections:
            t = Table(title=title, title_justify="left")
            for col in ("option", "default", "source", "deviates"):
                t.add_column(col, overflow="fold")
            for r in rows:
                t.add_row(r.name, r.default, r.source, "ours" if r.ours else "")
            console.print(t)
        return
    if what == "methods":
        from unlearnbench.registry import methods

        table.add_column("method")
        table.add_column("kind")
        table.add_column("description")
        for name in methods.names():  # read from the sources: nothing (no torch) is imported
            entry = methods.static_entry(name) or methods.get(name)
            kind = entry.keywords["kind"] if hasattr(entry, "keywords") else entry.kind
            table.add_row(name, kind, entry.description)
    elif what == "benchmarks":
        from unlearnbench.registry import benchmarks

        table.add_column("benchmark")
        table.add_column("description")
        for name in benchmarks.names():
            entry = benchmarks.static_entry(name)
            text = entry.keywords.get("description") or entry.description if entry else ""
            text = text or benchmarks.get(name).description
            table.add_row(name, text.strip().splitlines()[0])
    elif what == "models":
        from unlearnbench.models.presets import MODEL_PRESETS

        for col in ("preset", "layers", "d", "heads", "d_mlp", "context", "vocab", "source"):
            table.add_column(col)
        for name, p in MODEL_PRESETS.items():
            table.add_row(
                name,
                str(p.num_layers),
                str(p.hidden_size),
                str(p.num_heads),
                str(p.intermediate_size),
                str(p.context),
                str(p.vocab_size or "tokenizer"),
                p.source,
            )
    elif what == "presets":
        from unlearnbench.run_presets import run_presets

        for col in ("preset (--config NAME)", "model", "source"):
            table.add_column(col)
        for p in run_presets():
            table.add_row(p.name, p.model, p.source)
    elif what == "evals":
        _eval_table(table)
    elif what == "suites":
        _suite_table(table)
    else:
        fail(f"unknown list {what!r}; choose methods, benchmarks, models, presets, evals or suites")
    Console().print(table)


def _eval_table(table) -> None:
    """One row per registered evaluation: what it does and its headline metrics, each with the
    direction that is better for the method (an attack's forget loss: higher)."""
    from rich.markup import escape

    from unlearnbench.evals import HIGHER
    from unlearnbench.registry import evals

    for col in ("evaluation", "description", "headline metrics (↑ higher is better)"):
        table.add_column(col, overflow="fold")
    for name in evals.names():
        spec = evals.get(name)
        metrics = ", ".join(
            f"{m.name} {'↑' if m.direction == HIGHER else '↓'}" for m in spec.metrics
        )
        table.add_row(name, escape(spec.description), metrics or "-")


def _suite_table(table) -> None:
    """One row per shipped suite: its description and the evaluations it runs (KEY: eval)."""
    from rich.markup import escape

    from unlearnbench.evals import load_suite
    from unlearnbench.package_files import SUITES_DIR

    for col in ("suite (--suite NAME)", "description", "runs"):
        table.add_column(col, overflow="fold")
    for name in sorted(p.stem for p in SUITES_DIR.glob("*.yaml")):
        entries, description = load_suite(name)
        runs = ", ".join(e.key if e.key == e.eval else f"{e.key} ({e.eval})" for e in entries)
        table.add_row(name, escape(" ".join(description.split())), runs)


@app.command("export-benchmark")
@_user_errors()
def export_benchmark(
    benchmark: str = typer.Argument(
        ..., help="Benchmark name (see `unlearnbench list benchmarks`)."
    ),
    dest: Path = typer.Argument(..., help="A new or empty folder.", parser=_folder),
    set_: list[str] = typer.Option([], "--set", help="Benchmark option key=value, as for `run`."),
) -> None:
    """Write a benchmark as a Hugging Face dataset: documents (text, true split, metadata) in its
    train and test parts, and its fact probes. DEST/dataset loads with `datasets.load_from_disk`;
    DEST/parquet/*.parquet with any parquet reader."""
    from unlearnbench.config import parse_assignments
    from unlearnbench.data.export import benchmark_options
    from unlearnbench.data.export import export_benchmark as export

    options = benchmark_options(benchmark, parse_assignments(set_))
    for part, n in export(benchmark, dest, options).items():
        sys.stdout.write(f"{part}: {n} rows\n")
    sys.stdout.write(
        f"datasets.load_from_disk({str(dest / 'dataset')!r}); parquet in {dest / 'parquet'}\n"
    )


DEST_HELP = "Directory for the written files (default: inside the run store)."


def _records_for(out: Path, benchmark: str | None) -> list[dict]:
    """The store's records (of `benchmark` when given); a user error when there are none."""
    from unlearnbench.results.store import RunStore

    records = RunStore(out).records()
    if not records:
        fail(f"no run records in {out / 'records'}", code=1)
    if benchmark is not None:
        known = sorted({str(r.get("benchmark")) for r in records})
        if benchmark not in known:
            fail(
                f"no run records for benchmark {benchmark!r} in {out} (recorded: {', '.join(known)})"
            )
    return records


def _benchmarks(records: list[dict], benchmark: str | None) -> list[str]:
    return [benchmark] if benchmark else sorted({str(r.get("benchmark")) for r in records})


@app.command()
@_user_errors()  # a destination that cannot be written is one line
def leaderboard(
    out: Path = typer.Option(Path("runs"), "--out", help=OUT_HELP, parser=_folder),
    benchmark: str | None = typer.Option(None, "--benchmark", "-b"),
    fmt: str = typer.Option("md", "--format", "-f", help="md | csv | html"),
    dest: Path | None = typer.Option(
        None, "--dest", parser=_folder, help=DEST_HELP + " [default: OUT]"
    ),
    retain_tolerance: float = typer.Option(
        0.1,  # results/stats.py RETAIN_TOLERANCE (a test holds the two equal)
        "--retain-tolerance",
        help="Rows whose mean Δretain (nats) is beyond this are marked ! (not cut).",
    ),
) -> None:
    """Print the headline table (95% intervals over seeds, ranked by the score that charges
    damage) and write the full table to DEST/leaderboard[-B].FORMAT."""
    from unlearnbench.results.leaderboard import leaderboard_rows, render
    from unlearnbench.results.store import write_text_atomic

    if fmt not in ("md", "csv", "html"):
        fail(f"unknown format {fmt!r}; choose md, csv or html")
    if not retain_tolerance >= 0:
        fail(f"--retain-tolerance must be a non-negative number of nats, got {retain_tolerance}")
    records = _records_for(out, benchmark)
    rows = leaderboard_rows(records, benchmark, retain_tolerance)
    path = (dest or out) / f"leaderboard{'-' + benchmark if benchmark else ''}.{fmt}"
    write_text_atomic(path, render(rows, fmt))
    _print_headline(rows, path)


def _print_headline(rows: list[dict], full: Path) -> None:
    """The headline of each benchmark and model as a terminal table, with the columns' sources,
    metric validity and the order; the file `full` keeps every column and the legend."""
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from unlearnbench.results.leaderboard import (
        SORT_RULE,
        _by_benchmark_model,
        _headline_table,
        headline_sources,
        separation_text,
    )

    console = Console()
    for title, group in _by_benchmark_model(rows):
        head, body = _headline_table(group)
        shown = [i for i in range(len(head)) if i == 0 or any(cells[i] for cells in body)]
        # no vertical rules, rows apart by a blank line; the name column 22 characters wide and
        # the others sharing the rest (rich alone lets ten columns overflow a 120-column terminal)
        table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_lines=True)
        share = max(8, (console.width - 24) // max(1, len(shown) - 1)) - 2  # less its padding
        for i in shown:
            table.add_column(
                Text(head[i]),
                justify="left" if i == 0 else "right",
                width=20 if i == 0 else share,
                overflow="fold",  # a word wider than its column is folded, never cut
            )
        for cells in body:  # a cell's own brackets are text, not markup (Text)
            table.add_row(*(Text(cells[i]) for i in shown))
        console.print(table)
        for note in (headline_sources(group), separation_text(group)):
            if note:
                console.print(Text(note, style="dim"))
    rule = rows[0]["rule"] if rows else SORT_RULE
    console.print(Text(f"Order: {rule}."))
    console.print(Text(f"Full table and legend: {full}"))


@app.command()
@_user_errors()  # a destination that cannot be written is one line
def plot(
    kind: str = typer.Argument(..., help="tradeoff | relearn | undiscovered | all"),
    out: Path = typer.Option(Path("runs"), "--out", help=OUT_HELP, parser=_folder),
    benchmark: str | None = typer.Option(None, "--benchmark", "-b", help="Default: every one."),
    dest: Path | None = typer.Option(
        None, "--dest", parser=_folder, help=DEST_HELP + " [default: OUT/figures]"
    ),
    retain_tolerance: float = typer.Option(
        0.1,  # results/stats.py RETAIN_TOLERANCE (a test holds the two equal)
        "--retain-tolerance",
        help="The trade-off's band and frontier (as `leaderboard`).",
    ),
) -> None:
    """Draw figures (PNG and SVG) from the run records: DEST/<benchmark>-<kind>.{png,svg}."""
    from unlearnbench.results.plots import PLOTS

    if kind not in (*PLOTS, "all"):
        fail(f"unknown plot {kind!r}; choose {', '.join(PLOTS)} or all")
    if not retain_tolerance >= 0:
        fail(f"--retain-tolerance must be a non-negative number of nats, got {retain_tolerance}")
    records = _records_for(out, benchmark)
    from unlearnbench.results.plots import write_plots

    dest = dest or out / "figures"
    kinds = PLOTS if kind == "all" else (kind,)
    for bench in _benchmarks(records, benchmark):
        written = write_plots(records, bench, dest, kinds, retain_tolerance)
        for k in kinds:
            if k in written:
                sys.stdout.write(f"{bench} {k}: {' '.join(str(p) for p in written[k])}\n")
            else:
                sys.stdout.write(f"{bench} {k}: nothing to draw (no such results in the records)\n")


@app.command()
@_user_errors()  # a destination that cannot be written is one line
def report(
    out: Path = typer.Option(Path("runs"), "--out", help=OUT_HELP, parser=_folder),
    benchmark: str | None = typer.Option(None, "--benchmark", "-b", help="Default: every one."),
    dest: Path | None = typer.Option(
        None, "--dest", parser=_folder, help=DEST_HELP + " [default: OUT/report]"
    ),
    retain_tolerance: float = typer.Option(
        0.1,  # results/stats.py RETAIN_TOLERANCE (a test holds the two equal)
        "--retain-tolerance",
        help="Ranking, trade-off band and frontier (as `leaderboard`).",
    ),
) -> None:
    """Write one self-contained HTML page per benchmark: DEST/report-<benchmark>.html."""
    if not retain_tolerance >= 0:
        fail(f"--retain-tolerance must be a non-negative number of nats, got {retain_tolerance}")
    records = _records_for(out, benchmark)
    from unlearnbench.results.report import write_reports

    for path in write_reports(records, dest or out / "report", benchmark, retain_tolerance):
        sys.stdout.write(f"{path}\n")


@app.command()
def sweep(
    spec: Path = typer.Argument(..., help="YAML: benchmark, model, seeds, methods, grid, set."),
    out: Path = typer.Option(Path("runs"), "--out", help=OUT_HELP, parser=_folder),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the runs; run nothing."),
    force: bool = typer.Option(False, "--force", help="Run again even where a record exists."),
    jobs: int = typer.Option(1, "--jobs", "-j", help="Runs at once (a process pool by default)."),
    launcher: str | None = typer.Option(
        None,
        "--launcher",
        help="serial | pool | slurm | submitit-local (default: serial, or pool with --jobs > 1).",
    ),
    runs_per_job: int = typer.Option(1, "--runs-per-job", help="Runs per pool or SLURM job."),
    slurm: list[str] = typer.Option(
        [], "--slurm", help="Submitit parameter KEY=VALUE (e.g. slurm_partition=gpu; repeatable)."
    ),
    log: list[str] = typer.Option([], "--log", help=LOG_HELP),
) -> None:
    """Run the grid methods x seeds x settings, skipping recorded runs; a failure does not stop it."""
    from rich.console import Console

    with _user_errors(KEPT_RUNS.format(out=out)):
        from unlearnbench.launch import check_launcher, check_submitit, submitit_parameters
        from unlearnbench.results.store import RunStore
        from unlearnbench.sweep import (
            launch_sweep,
            load_spec,
            plan,
            print_plan,
            print_summary,
            spec_suite,
        )
        from unlearnbench.tracking import parse_trackers

        launcher = launcher or ("pool" if jobs > 1 else "serial")
        check_launcher(launcher, jobs, runs_per_job)
        trackers = parse_trackers(log)
        store = RunStore(out)
        loaded = load_spec(spec)
        runs = plan(loaded, store, device_here=launcher != "slurm")  # SLURM: the job's device
        suite = spec_suite(loaded)
        params = submitit_parameters(loaded.get("slurm"), slurm, jobs)
        check_submitit(launcher, params, dry_run)
    console = Console(stderr=True)
    print_plan(runs, console)
    if dry_run:
        return
    with _user_errors(KEPT_RUNS.format(out=out)):
        summary = launch_sweep(
            runs,
            store,
            console,
            launcher,
            jobs,
            runs_per_job,
            force=force,
            suite=suite,
            log=trackers,
            submitit_params=params,
        )
    print_summary(summary, console)
    if summary.failed:
        raise typer.Exit(1)


DEMO_RUNS = [
    ("no-filter", {}),
    ("filter", {"recall": "1.0"}),
    ("filter", {"recall": "0.9"}),
    ("sgtm", {"recall": "0.9"}),
]


@app.command()
def demo(
    out: Path = typer.Option(Path("runs"), "--out", help=OUT_HELP, parser=_folder),
    force: bool = typer.Option(False, "--force"),
) -> None:
    """storyworld-lang, model tiny, seed 0: no-filter, perfect filter, filter and sgtm at recall 0.9."""
    import time

    from rich.console import Console

    with _user_errors(KEPT_RUNS.format(out=out)):
        from unlearnbench.results.leaderboard import leaderboard_rows, to_markdown
        from unlearnbench.results.store import RunStore, write_text_atomic
        from unlearnbench.runner import execute, resolve_run_config

        console = Console(stderr=True)
        store = RunStore(out)
        start = time.perf_counter()
        run_ids = []
        for method, overrides in DEMO_RUNS:
            cfg = resolve_run_config(method, "storyworld-lang", "tiny", 0, overrides)
            console.print(f"[bold]{method}[/] {overrides or ''}")
            run_ids.append(execute(cfg, store, force=force, progress=True)["run_id"])
        from unlearnbench.suites import run_suite

        for run_id in run_ids:  # the quick suite: a light relearning attack and the fact probes
            console.print(f"[bold]quick suite[/] {run_id}")
            run_suite(run_id, "quick", store, progress=True)
        records = [store.load(r) for r in run_ids]
        rows = leaderboard_rows(records)
        write_text_atomic(out / "demo.md", to_markdown(rows))  # the full table
    _print_headline(rows, out / "demo.md")
    _relearn_table(records, [o for _, o in DEMO_RUNS])
    console.print(f"demo finished in {time.perf_counter() - start:.0f}s; records in {out}/records")


def _relearn_table(records: list[dict], settings: list[dict]) -> None:
    """The relearning-attack summary: forget loss before and after each budget, steps to recover
    (computed as every table computes them: results/references.py)."""
    from rich.console import Console
    from rich.table import Table

    from unlearnbench.results import references

    key = "quick/relearn"
    joined = references.join(records)
    evs = [(r, (r.get("evals") or {}).get(key)) for r in records]
    budgets = sorted({e["budget"] for _, ev in evs if ev for e in ev["worst_case"]})
    table = Table(title="relearning attack (quick suite): worst-case forget loss")
    for col in ["run", "before", *[f"@{b} steps" for b in budgets], "steps to recover"]:
        table.add_column(col, justify="left" if col == "run" else "right")
    for (r, ev), setting in zip(evs, settings, strict=True):
        if not ev:
            continue
        # None at a budget: measured, every setting broke the retain tolerance within it
        by_b = {e["budget"]: e["forget_loss"] for e in ev["worst_case"]}
        name = r["method"] + "".join(f" {k}={v}" for k, v in setting.items())
        steps = references.attack_comparison(joined[r["run_id"]], key).get("steps_to_recover")
        table.add_row(
            name,
            _fmt(ev["before"]["forget_loss"]),
            *[_fmt(by_b[b]) if by_b.get(b) is not None else "no valid attack" for b in budgets],
            _steps_text(steps),
        )
    Console().print(table)


def _steps_text(steps) -> str:
    """Steps to recover as the tables write them: a number, "> N", or the named status."""
    from unlearnbench.results import references

    if isinstance(steps, references.NotReached):
        return f"> {steps.limit}"
    return "-" if steps is None else str(steps)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
