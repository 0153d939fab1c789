"""Calibrate the built-in storyworld benchmarks for knowledge: how fact-probe accuracy of a no-filter
model and of the perfect filter grows with the world's size, the density of fact sentences and the
training steps.

Each grid point trains `no-filter` and `filter` (recall 1.0) with the harness (`runner.execute`,
the same code `unlearnbench run` uses), saving a snapshot every `--every` steps; every snapshot and
the final model are then scored on every fact probe of every split. The snapshots lie on one
learning-rate schedule (the run's), so the accuracy at step 300 of a 600-step run is not that of a
300-step run: the curve shows how fast facts form, the final column is a real run of that length.

    python scripts/calibrate_storyworld.py --out calibration-store --table docs/storyworld-calibration.md

The table lists, per benchmark, grid point and step: probe accuracy per split for both models, and
the final test losses per split. Runs already in the store are not retrained (the store is a run
store: rerunning the script continues it).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

# the original generator's world; a grid point changes some of these (the benchmarks' defaults
# are now the calibrated world, so every point states them all)
ORIGINAL = dict(entities_per_topic=26, main_facts=(2, 4), other_facts=(1, 3), profiles=0.0)
ORIGINAL_TOPIC = dict(forget_entities=0, adjacent_entities=0, adjacent_in_forget=0.0)  # topic only
DENSE = dict(entities_per_topic=4, main_facts=(3, 5), other_facts=(2, 4))


def topic_world(profiles: float, forget: int, moved: float = 0.0) -> dict:
    """storyworld-topic only: `forget` forget entities, 16 adjacent, `moved` of the adjacent
    profiles in forget documents."""
    return DENSE | dict(profiles=profiles, forget_entities=forget, adjacent_entities=16,
                        adjacent_in_forget=moved)  # fmt: skip


# grid points: name -> benchmark options
WORLDS = {
    "original": {},
    "e4": dict(entities_per_topic=4),
    "e4-dense": DENSE,
    "e4-dense-p50": DENSE | dict(profiles=0.5),
    "e4-dense-p80": DENSE | dict(profiles=0.8),
    "e4-dense-p95": DENSE | dict(profiles=0.95),  # 1 document in 20 a story
    "e4-dense-p100": DENSE | dict(profiles=1.0),  # storyworld-lang's defaults
    "e4-dense-p100-f16": topic_world(1.0, 16),
    "e4-dense-p100-f32": topic_world(1.0, 32),
    "e4-dense-p95-f16": topic_world(0.95, 16),
    "e4-dense-p95-f32": topic_world(0.95, 32),
    "e4-dense-p100-f24-m50": topic_world(1.0, 24, 0.5),
    "e4-dense-p100-f24-m75": topic_world(1.0, 24, 0.75),  # storyworld-topic's defaults
    "e4-dense-p100-f24-m90": topic_world(1.0, 24, 0.9),
}


def score(model_path: str, bench) -> dict:
    """Probe accuracy per split (every probe) and per fact type, for a saved model."""
    from unlearnbench.evals.fact_probes import probe_correct, probes_by_split
    from unlearnbench.models.build import load_model

    model = load_model(model_path)
    out = {}
    for split, probes in sorted(probes_by_split(bench).items()):
        correct = probe_correct(model, bench.tokenizer, probes)
        out[split] = round(sum(correct) / len(probes), 4)
        by_fact: dict[str, list[bool]] = {}
        for p, c in zip(probes, correct, strict=True):
            by_fact.setdefault(p.fact, []).append(c)
        out[f"{split}_by_fact"] = {f: round(sum(v) / len(v), 3) for f, v in by_fact.items()}
        out[f"{split}_n"] = len(probes)
    return out


def run_point(benchmark, world: dict, method, args, store) -> dict:
    """Train one grid point (or load its record) and score its snapshots and final model."""
    from unlearnbench.data.benchmarks import load_benchmark
    from unlearnbench.runner import execute, resolve_run_config

    world = ORIGINAL | (ORIGINAL_TOPIC if benchmark == "storyworld-topic" else {}) | world
    overrides = {f"benchmark.{k}": ",".join(map(str, v)) if isinstance(v, tuple) else str(v)
                 for k, v in world.items()}  # fmt: skip
    overrides |= {
        "steps": str(args.steps),
        "warmup_steps": str(max(1, args.steps // 10)),
        "snapshot_every": str(args.every),
        "save_model": "true",
    }
    overrides |= dict(kv.split("=", 1) for kv in args.set)
    cfg = resolve_run_config(method, benchmark, args.model, args.seed, overrides)
    if args.no_train and not store.exists(cfg.run_id):
        return None  # shown as "-" in the table
    t0 = time.perf_counter()
    execute(cfg, store, progress=False)
    record = store.load(cfg.run_id)  # paths located in the store
    bench = load_benchmark(cfg.benchmark, cfg.benchmark_options)
    cache = Path(store.root) / "calibration" / f"{cfg.run_id}.json"
    if cache.exists():
        scored = json.loads(cache.read_text())
    else:
        points = [(s["step"], s["path"]) for s in record["metrics"].get("snapshots", [])]
        points = [p for p in points if p[0] < args.steps] + [(args.steps, record["model_path"])]
        scored = {"steps": {str(step): score(path, bench) for step, path in points}}
        m = record["metrics"]
        scored["losses"] = {s: m.get(f"{s}_loss") for s in ("forget", "adjacent", "retain")}
        scored["train_seconds"] = record.get("train_seconds")
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(scored, indent=1))
    print(f"{benchmark} {method} {world} done in {time.perf_counter() - t0:.0f} s", flush=True)
    return scored


def _accuracies(scored: dict) -> str:
    return " / ".join(
        f"{scored[s]:.2f}" if s in scored else "-" for s in ("forget", "adjacent", "retain")
    )


def _losses(run: dict) -> str:
    m = run["losses"]
    return " / ".join(
        f"{m[s]:.3f}" for s in ("forget", "adjacent", "retain") if m.get(s) is not None
    )


def table(results: list[dict]) -> str:
    """One row per benchmark, world and scored step; losses on the final step's row."""
    lines = [
        "| benchmark | world | step | no-filter facts: forget / adjacent / retain | "
        "filter facts: forget / adjacent / retain | no-filter loss: forget / (adjacent /) retain | "
        "filter loss: forget / (adjacent /) retain |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        nf, fl = r.get("no-filter"), r.get("filter")
        if nf is None:  # a filter-only invocation: its runs are in the store for the next table
            continue
        final = max(nf["steps"], key=int)
        for step in nf["steps"]:
            losses = f"{_losses(nf)} | {_losses(fl) if fl else '-'}" if step == final else " | "
            lines.append(
                f"| {r['benchmark']} | {r['world']} | {step} | {_accuracies(nf['steps'][step])} | "
                f"{_accuracies(fl['steps'].get(step, {}) if fl else {})} | {losses} |"
            )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="calibration-store", help="run store for the grid's runs")
    ap.add_argument("--table", default=None, help="write the markdown table here")
    ap.add_argument("--benchmarks", nargs="+", default=["storyworld-lang", "storyworld-topic"])
    ap.add_argument("--worlds", nargs="+", default=list(WORLDS), choices=list(WORLDS))
    ap.add_argument("--methods", nargs="+", default=["no-filter", "filter"])
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--every", type=int, default=100, help="steps between scored snapshots")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--no-train", action="store_true", help="score what the store holds; train nothing"
    )
    ap.add_argument(
        "--set", nargs="*", default=[], help="extra KEY=VALUE run settings (after the defaults)"
    )
    args = ap.parse_args()

    from unlearnbench.results.store import RunStore

    store = RunStore(args.out)
    results = []
    for benchmark in args.benchmarks:
        for name in args.worlds:
            row = {"benchmark": benchmark, "world": name}
            for method in args.methods:
                scored = run_point(benchmark, WORLDS[name], method, args, store)
                if scored is not None:
                    row[method] = scored
            results.append(row)
    text = table(results)
    print(text or json.dumps(results, indent=1))
    if args.table:
        Path(args.table).write_text(text + "\n")


if __name__ == "__main__":
    main()
