#!/usr/bin/env python
"""Paired fact-probe comparison: did a method change what the model knows, beyond noise?

Accuracy near chance moves by a few points between any two models; on the same probes a paired
test separates a real change from noise. For each split, every probe is scored with the base and
with each other model; the probes that flipped (right -> wrong: lost, wrong -> right: gained) give
an exact McNemar p-value.

    python scripts/compare_fact_probes.py --runs runs BASE_RUN_ID RUN_ID [RUN_ID ...]

Run ids are looked up in the run store (their records give the benchmark and its options); a
directory holding a saved model may be given instead of a run id, with --benchmark.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def resolve(item: str, store) -> tuple[str, Path, dict | None]:
    """(name, model directory, record or None) of a run id in the store or a model directory."""
    if store.exists(item):
        return item, store.model_path(item), store.load(item)
    path = Path(item)
    if (path / "config.json").is_file():
        return path.name, path, None
    raise SystemExit(
        f"error: {item!r} is neither a run of {store.root} nor a saved model directory"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("base", help="run id or model directory: the reference")
    ap.add_argument("others", nargs="+", help="run ids or model directories to compare with it")
    ap.add_argument("--runs", type=Path, default=Path("runs"), help="run store")
    ap.add_argument("--benchmark", default=None, help="benchmark when no run record names it")
    ap.add_argument(
        "--max-per-split",
        type=int,
        default=0,
        help="score a fixed seeded subset of this many probes per split (0: every probe)",
    )
    args = ap.parse_args()

    from rich.console import Console
    from rich.table import Table

    from unlearnbench.config import ConfigError
    from unlearnbench.data.benchmarks import load_benchmark
    from unlearnbench.evals.fact_probes import probe_correct, probes_by_split
    from unlearnbench.models.build import load_model
    from unlearnbench.results.stats import mcnemar_p
    from unlearnbench.results.store import RunStore

    store = RunStore(args.runs)
    models = [resolve(x, store) for x in [args.base, *args.others]]
    record = next((r for _, _, r in models if r), None)
    name = args.benchmark or (record and record["config"]["benchmark"])
    if not name:
        raise SystemExit("error: no run record names the benchmark; pass --benchmark")
    options = record["config"].get("benchmark_options", {}) if record and not args.benchmark else {}
    try:
        bench = load_benchmark(name, options)
    except (ConfigError, KeyError) as e:
        raise SystemExit(f"error: {e}") from None
    groups = probes_by_split(bench, args.max_per_split)
    if not groups:
        raise SystemExit(f"error: benchmark {name!r} has no fact probes")

    correct = {}
    for label, path, _ in models:
        model = load_model(path)
        correct[label] = {s: probe_correct(model, bench.tokenizer, ps) for s, ps in groups.items()}

    base = models[0][0]
    table = Table(title=f"fact probes on {name}: paired against {base}")
    for col in ("model", "split", "probes", "base acc", "acc", "lost", "gained", "McNemar p"):
        left = col in ("model", "split")
        # a run id is the only name a model has here: wrap it, never cut it to an ellipsis
        table.add_column(col, justify="left" if left else "right", overflow="fold")
    for label, _, _ in models[1:]:
        for split in sorted(groups):
            b, c = correct[base][split], correct[label][split]
            lost = sum(x and not y for x, y in zip(b, c, strict=True))
            gained = sum(y and not x for x, y in zip(b, c, strict=True))
            n = len(b)
            table.add_row(
                label, split, str(n), f"{sum(b) / n:.3f}", f"{sum(c) / n:.3f}",
                str(lost), str(gained), f"{mcnemar_p(lost, gained):.3g}",
            )  # fmt: skip
    Console().print(table)


if __name__ == "__main__":
    sys.exit(main())
