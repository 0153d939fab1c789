"""The `unlearnbench` command line: thin commands over library functions.

Heavy imports (torch, transformers) happen inside commands so `--help` is instant. A user mistake
prints one red line to stderr and exits with code 2; nothing is half-written.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Benchmark harness for removing capabilities from language models.",
)

OUT_HELP = "Run store directory (records and models)."


def fail(message: str, code: int = 2) -> None:
    from rich.console import Console

    Console(stderr=True).print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


class _user_errors:
    """Turn user mistakes into one-line errors."""

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc is None:
            return False
        from unlearnbench.config import ConfigError
        from unlearnbench.registry import UnknownName

        if isinstance(exc, ConfigError | UnknownName):
            fail(str(exc))
        if isinstance(exc, FileNotFoundError):
            fail(str(exc))
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
    out: Path = typer.Option(Path("runs"), "--out", help=OUT_HELP),
    force: bool = typer.Option(False, "--force", help="Run again even if a record exists."),
    as_json: bool = typer.Option(False, "--json", help="Print the record as JSON to stdout."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Train or unlearn, evaluate, and write the run record."""
    with _user_errors():
        from unlearnbench.config import parse_assignments
        from unlearnbench.results.store import RunStore
        from unlearnbench.runner import execute, resolve_run_config

        cfg = resolve_run_config(method, benchmark, model, seed, parse_assignments(set_), config)
        store = RunStore(out)
        existed = store.exists(cfg.run_id) and not force
        record = execute(cfg, store, force=force, progress=not (quiet or as_json))
    if as_json:
        sys.stdout.write(json.dumps(record, indent=2) + "\n")
        return
    _print_run(record, existed)


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
    Console().print(
        f"tokens seen {record['tokens_seen']:,}  wall {record['wall_seconds']:.0f}s  "
        f"model {record['model_path']}"
    )


@app.command("list")
def list_(what: str = typer.Argument(..., help="methods | benchmarks | models | presets")) -> None:
    """List registered methods, benchmarks, model presets or YAML run presets."""
    from rich.console import Console
    from rich.table import Table

    table = Table()
    if what == "methods":
        from unlearnbench.registry import methods

        table.add_column("method")
        table.add_column("kind")
        table.add_column("description")
        for name in methods.names():
            spec = methods.get(name)
            table.add_row(name, spec.kind, spec.description)
    elif what == "benchmarks":
        from unlearnbench.registry import benchmarks

        table.add_column("benchmark")
        table.add_column("description")
        for name in benchmarks.names():
            table.add_row(name, benchmarks.get(name).description.strip().splitlines()[0])
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

        for col in ("preset (methods/NAME.yaml)", "model", "source"):
            table.add_column(col)
        for p in run_presets():
            table.add_row(p.name, p.model, p.source)
    else:
        fail(f"unknown list {what!r}; choose methods, benchmarks, models or presets")
    Console().print(table)


@app.command()
def leaderboard(
    out: Path = typer.Option(Path("runs"), "--out", help=OUT_HELP),
    benchmark: str | None = typer.Option(None, "--benchmark", "-b"),
) -> None:
    """Print the leaderboard (markdown) from the run records and write it to OUT/leaderboard.md."""
    from unlearnbench.results.leaderboard import leaderboard_rows, to_markdown
    from unlearnbench.results.store import RunStore, write_text_atomic

    records = RunStore(out).records()
    if not records:
        fail(f"no run records in {out / 'records'}", code=1)
    text = to_markdown(leaderboard_rows(records, benchmark))
    write_text_atomic(out / "leaderboard.md", text)
    sys.stdout.write(text)


DEMO_RUNS = [
    ("no-filter", {}),
    ("filter", {"recall": "1.0"}),
    ("filter", {"recall": "0.9"}),
    ("sgtm", {"recall": "0.9"}),
]


@app.command()
def demo(
    out: Path = typer.Option(Path("runs"), "--out", help=OUT_HELP),
    force: bool = typer.Option(False, "--force"),
) -> None:
    """storyworld-lang, model tiny, seed 0: no-filter, perfect filter, filter and sgtm at recall 0.9."""
    import time

    from rich.console import Console

    with _user_errors():
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
        records = [store.load(r) for r in run_ids]
        text = to_markdown(leaderboard_rows(records))
        write_text_atomic(out / "demo.md", text)
    sys.stdout.write(text)
    console.print(f"demo finished in {time.perf_counter() - start:.0f}s; records in {out}/records")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
