"""A benchmark as a Hugging Face `datasets` dataset, so other harnesses and notebooks use exactly
the documents, splits and probes our runs use.

`benchmark_dataset(name, options)` gives a `DatasetDict`:
- `train`, `test`: one row per document: `id`, `text`, `split` (the true forget / adjacent /
  retain; a method sees only its labels, drawn from these by the run's labeling model) and the
  document's metadata (storyworld: `language`, `topic`, `entities`, `plan`);
- `probes` (where the world has them): one row per fact probe: `id`, `prompt`, `options`,
  `answer` (index into options), `entity`, `fact`, `topic`, `language`, `split`.
`export_benchmark` writes it with `save_to_disk` (DIR/dataset) and as parquet (DIR/parquet/*.parquet).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import typing
from pathlib import Path

from unlearnbench.config import ConfigError, parse_value
from unlearnbench.suggest import unknown_name


def benchmark_options(name: str, assignments: dict[str, str]) -> dict:
    """`--set key=value` strings as the benchmark's typed options (a typo: did you mean)."""
    from unlearnbench.data.benchmarks import option_defaults
    from unlearnbench.registry import benchmarks

    hints = typing.get_type_hints(benchmarks.get(name).options)
    out = {}
    for key, raw in assignments.items():
        if key not in hints:
            raise ConfigError(f"{name}: " + unknown_name("option", key, option_defaults(name)))
        out[key] = parse_value(raw, hints[key], key)
    return out


def _document_rows(pairs) -> list[dict]:
    """(Document, true split) pairs as rows; metadata keys every row has (None where absent)."""
    keys = sorted({k for doc, _ in pairs for k in doc.meta if k not in ("id", "text", "split")})
    return [
        {"id": doc.id, "text": doc.text, "split": split, **{k: doc.meta.get(k) for k in keys}}
        for doc, split in pairs
    ]


def benchmark_dataset(name: str, options: dict | None = None):
    """The benchmark `name` (with `options`, as `run --set` gives them) as a `DatasetDict`."""
    from datasets import Dataset, DatasetDict

    from unlearnbench.data.benchmarks import load_benchmark

    bench = load_benchmark(name, options or {})
    test = [(doc, split) for split, docs in bench.test.items() for doc in docs]
    parts = {"train": _document_rows(bench.train), "test": _document_rows(test)}
    if bench.probes:
        parts["probes"] = [
            {**dataclasses.asdict(p), "options": list(p.options), "split": split}
            for p, split in bench.probes
        ]
    return DatasetDict({part: Dataset.from_list(rows) for part, rows in parts.items()})


def export_benchmark(name: str, dest: Path, options: dict | None = None) -> dict[str, int]:
    """Write the benchmark to `dest` (a new or empty folder): `dataset/` (`load_from_disk`) and
    `parquet/<part>.parquet`. Written in a temporary folder and moved: nothing half-written.
    Returns the rows per part."""
    import datasets

    dest = Path(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ConfigError(f"{dest} exists and is not an empty folder; name a new one")
    data = benchmark_dataset(name, options)
    dest.parent.mkdir(parents=True, exist_ok=True)
    bars = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # the command prints one line per part instead
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    try:
        data.save_to_disk(str(tmp / "dataset"))
        (tmp / "parquet").mkdir()
        for part, ds in data.items():
            ds.to_parquet(str(tmp / "parquet" / f"{part}.parquet"))
        if dest.exists():
            dest.rmdir()  # empty (checked above)
        os.replace(tmp, dest)
    finally:
        if bars:
            datasets.enable_progress_bars()
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return {part: len(ds) for part, ds in data.items()}
