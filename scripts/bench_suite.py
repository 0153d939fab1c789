"""The robust suite's cost and conclusions, before and after its relearning attack kept the model whole.

On the same trained runs (by default no-filter, filter, sgtm and rmu at one seed of each built-in
benchmark, taken from a run store), the `robust` suite runs twice per round in fresh copies of the
store, interleaved benchmark by benchmark:

- `before`: the suite as it was before (issue 34): the relearning attack on forget documents only,
  full fine-tuning over lrs {1e-4, 3e-4, 1e-3}, and no soft-prompt attack;
- `after`: the shipped suite (forget documents mixed half and half with retain+adjacent, full
  fine-tuning over {3e-5 .. 1e-3} and LoRA over {3e-4, 1e-3}, and the soft-prompt attack).

Both evaluate the attacks every 5 steps to 50, 10 to 100, 25 to 200, and a setting stops where its
retain loss breaks the tolerance.

Both use today's attack loop otherwise (fused kernels, the training micro-batch, step 0 measured
once per attack: up to rounding, the same numbers; `scripts/bench_throughput.py` measures what the
kernels give). Printed per run: the suite's seconds and its ratio to the run's training seconds
(the references are the runs themselves, attacked first), the attacks' worst-case forget loss per
budget and steps to recover under both, and the attack-seed spread (the two attack seeds' worst
cases apart) that a difference is to be read against.

    python scripts/bench_suite.py --store runs/reference --out bench-suite.json

The runs are the reference grid's (recall 1.0, tiny; the same run ids as
`scripts/reproduce_reference.py`); one the store lacks, or holds without its model (a committed
record), is trained first, here, so its training seconds are this machine's. `--record-after`
copies the shipped suite's results into the store, where the grid counts them.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ATTACKS = ("relearn", "benign-finetune")
# the suite before the change: relearn's options then, and the entries it did not have
BEFORE = {"relearn": {"forget_fraction": 1.0, "lrs": [1e-4, 3e-4, 1e-3], "modes": ["full"]}}
BEFORE_ABSENT = ("soft-prompt",)


# --smoke: the attacks at toy budgets and nothing else (checks the script, measures nothing)
SMOKE = {"budgets": [2, 4], "lrs": [1e-3], "eval_every": 1, "eval_blocks": 2, "n_docs": 16}


def suite_files(directory: Path, smoke: bool = False) -> dict[str, Path]:
    """The shipped robust suite ("after") and the suite as it was before the change ("before"),
    both named robust (so their results have the same keys)."""
    from unlearnbench.package_files import SUITES_DIR

    shipped = yaml.safe_load((Path(SUITES_DIR) / "robust.yaml").read_text())
    if smoke:
        shipped["evals"] = [
            {
                "eval": e["eval"],
                "options": {**e.get("options", {}), **SMOKE, "eval_steps": [1, 2, 4]},
            }
            for e in shipped["evals"]
            if e["eval"] in ATTACKS
        ]
    out = {}
    for name in ("before", "after"):
        suite = json.loads(json.dumps(shipped))
        if name == "before":
            suite["evals"] = [e for e in suite["evals"] if e["eval"] not in BEFORE_ABSENT]
            for entry in suite["evals"]:
                if entry["eval"] in BEFORE:
                    entry["options"] = {**(entry.get("options") or {}), **BEFORE[entry["eval"]]}
        path = directory / name / "robust.yaml"
        path.parent.mkdir(parents=True)
        path.write_text(yaml.safe_dump(suite, sort_keys=False))
        out[name] = path
    return out


def fresh_store(source, run_ids: list[str], root: Path):
    """A store holding the runs' records (without evaluations) and their models."""
    from unlearnbench.results.store import RunStore

    store = RunStore(root)
    for run_id in run_ids:
        record = source.load(run_id)
        model = store.model_path(run_id)
        shutil.copytree(record["model_path"], model)
        store.write(
            {k: v for k, v in record.items() if k not in ("evals", "curves")}
            | {"model_path": str(model)}
        )
    return store


def grid_runs(benchmark: str, methods: list[str], seed: int, store) -> list:
    """The runs the reference grid trains for these methods (recall 1.0, model tiny, the same
    config and run id as `scripts/reproduce_reference.py`), references first."""
    from unlearnbench.sweep import plan

    spec = {
        "benchmark": benchmark, "model": "tiny", "seeds": [seed], "methods": methods,
        "grid": {"recall": [1.0]},
    }  # fmt: skip
    return [run.config for run in plan(spec, store)]


def prepare(cfg, store) -> None:
    """The run trained and saved in `store`: trained when the store lacks it, trained again when
    its record (a committed one) lacks its model. Both train here, so the training seconds the
    suite is compared with were measured on this machine with the suite's threads."""
    from unlearnbench.runner import execute, with_model

    if store.exists(cfg.run_id):
        with_model(store.load(cfg.run_id), store)
    else:
        execute(cfg, store)


def attack_seconds(run_id: str, suite: Path, store_root: Path) -> float:
    start = time.perf_counter()
    cmd = [sys.executable, "-m", "unlearnbench", "attack", run_id, "--suite", str(suite)]
    subprocess.run([*cmd, "--out", str(store_root), "--quiet"], check=True)
    return time.perf_counter() - start


def conclusions(record: dict) -> dict:
    """Per attack: the worst-case forget loss per budget, the steps to recover and to close the
    gap, and the attack seeds' spread (|seed 0 - seed 1| of the per-seed worst case per budget)."""
    from unlearnbench.evals.relearn import summarize

    out = {}
    for key in ATTACKS:
        summary = (record.get("evals") or {}).get(f"robust/{key}")
        if not summary:
            continue
        rows = (record.get("curves") or {}).get(f"robust/{key}") or []
        budgets = tuple(e["budget"] for e in summary["worst_case"])
        seeds = sorted({r["attack_seed"] for r in rows})
        per_seed = [
            summarize(
                [r for r in rows if r["attack_seed"] == s], budgets, summary["retain_tolerance"]
            )["worst_case"]
            for s in seeds
        ]
        spread = {}
        if len(per_seed) == 2:
            for a, b in zip(*per_seed, strict=True):
                if a["forget_loss"] is not None and b["forget_loss"] is not None:
                    spread[a["budget"]] = abs(a["forget_loss"] - b["forget_loss"])
        out[key] = {
            "worst_case": {e["budget"]: e["forget_loss"] for e in summary["worst_case"]},
            "steps_to_recover": summary.get("steps_to_recover"),
            "steps_to_close_gap": summary.get("steps_to_close_gap"),
            "attack_seed_spread": spread,
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, help="run store holding the trained runs (required)")
    ap.add_argument("--benchmarks", default="storyworld-lang,storyworld-topic")
    ap.add_argument("--methods", default="no-filter,filter,sgtm,rmu", help="references first")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=1, help="before/after pairs per benchmark")
    ap.add_argument("--out", type=Path, default=None, help="write the measurements as JSON")
    ap.add_argument("--compare", type=Path, default=None, help="print a --out file's comparison")
    ap.add_argument("--smoke", action="store_true", help="toy budgets: check the script only")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    ap.add_argument(
        "--prepare-only", action="store_true", help="train the runs' missing models and stop"
    )
    ap.add_argument(
        "--record-after",
        action="store_true",
        help="copy the first round's `after` results (the shipped suite's) into --store's records",
    )
    args = ap.parse_args()

    if args.compare:
        print_comparison(json.loads(args.compare.read_text()))
        return
    if args.store is None:
        ap.error("--store is required")
    if args.smoke and args.record_after:  # toy results under the robust suite's keys
        ap.error("--record-after records the shipped suite's results: not with --smoke")
    from unlearnbench.launch import set_threads
    from unlearnbench.results.store import RunStore, write_json_atomic

    source = RunStore(args.store)
    benchmarks = args.benchmarks.split(",")
    runs = {b: grid_runs(b, args.methods.split(","), args.seed, source) for b in benchmarks}
    set_threads(args.threads)
    for b in benchmarks:
        for cfg in runs[b]:
            prepare(cfg, source)
    runs = {b: [cfg.run_id for cfg in cfgs] for b, cfgs in runs.items()}
    if args.prepare_only:
        return

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        suites = suite_files(Path(tmp) / "suites", args.smoke)
        for rnd in range(args.rounds):
            for i, b in enumerate(benchmarks):  # before, after, next benchmark: interleaved
                # the order alternates by round and benchmark: one round already measures both
                order = ("before", "after") if (rnd + i) % 2 == 0 else ("after", "before")
                for which in order:
                    root = Path(tmp) / f"{which}-{b}-{rnd}"
                    store = fresh_store(source, runs[b], root)
                    for run_id in runs[b]:
                        seconds = attack_seconds(run_id, suites[which], root)
                        record = store.load(run_id)
                        results.append(
                            {
                                "round": rnd, "suite": which, "benchmark": b,
                                "method": record["method"], "run_id": run_id,
                                "suite_seconds": seconds,
                                "train_seconds": record["train_seconds"],
                                "per_eval_seconds": {
                                    k: e.get("seconds") for k, e in record["evals"].items()
                                },
                                "conclusions": conclusions(record),
                            }
                        )  # fmt: skip
                        if args.out:  # after every run: an interrupted measurement keeps its runs
                            write_json_atomic(args.out, results)
                        print(
                            f"{which:6} {b} {record['method']:10} suite {seconds:7.0f}s = "
                            f"{seconds / record['train_seconds']:.2f}x training",
                            flush=True,
                        )
                    if which == "after" and rnd == 0 and args.record_after:
                        for run_id in runs[b]:  # the shipped suite's results: the grid's own
                            source.merge_results(run_id, store.load(run_id), replace=True)
                    shutil.rmtree(root)
    print_comparison(results)


def print_comparison(results: list[dict]) -> None:
    """Cost ratios (median over rounds) and the conclusions side by side."""
    print(
        "\nmethod / benchmark: suite / training before -> after; attack: before | after (seed spread)"
    )
    keys = sorted({(r["benchmark"], r["method"]) for r in results}, key=str)
    for b, m in keys:
        mine = {
            w: [r for r in results if (r["benchmark"], r["method"], r["suite"]) == (b, m, w)]
            for w in ("before", "after")
        }
        if not mine["before"] or not mine["after"]:
            continue
        ratio = {
            w: statistics.median(r["suite_seconds"] / r["train_seconds"] for r in rs)
            for w, rs in mine.items()
        }
        print(f"{m} / {b}: {ratio['before']:.2f}x -> {ratio['after']:.2f}x training")
        first = {w: rs[0]["conclusions"] for w, rs in mine.items()}
        for attack in ATTACKS:
            old, new = first["before"].get(attack), first["after"].get(attack)
            if not old or not new:
                continue
            cells = []
            for budget, loss in old["worst_case"].items():
                after = new["worst_case"].get(budget)
                spread = old["attack_seed_spread"].get(budget)
                cells.append(
                    f"@{budget} {_fmt(loss)} | {_fmt(after)}"
                    + (f" ({spread:.3f})" if spread is not None else "")
                )
            steps = f"recover {old['steps_to_recover']} | {new['steps_to_recover']}, "
            steps += f"close gap {old['steps_to_close_gap']} | {new['steps_to_close_gap']}"
            print(f"  {attack}: {'; '.join(cells)}; {steps}")
    totals = {
        w: sum(r["suite_seconds"] for r in results if r["suite"] == w)
        / sum(r["train_seconds"] for r in results if r["suite"] == w)
        for w in ("before", "after")
    }
    print(f"all runs: suite / training {totals['before']:.2f}x -> {totals['after']:.2f}x")


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.3f}"


if __name__ == "__main__":
    main()
