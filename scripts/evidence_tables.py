#!/usr/bin/env python
"""Per-method tables over seeds from a run store: losses, fact probes, facts in context, and the
attacks of `results/evidence/suite.yaml` (benign fine-tuning, quantization, hidden-state probes,
disjoint facts). Each cell is the mean over seeds and its 95% Student-t half-width, with n.

    unlearnbench sweep results/evidence/lang.yaml --out STORE      # the runs (and their suite)
    unlearnbench sweep results/evidence/topic.yaml --out STORE
    unlearnbench attack RUN --suite results/evidence/disjoint.yaml --out STORE   # each run
    python scripts/evidence_tables.py STORE > docs/evidence.md

Rows are the runs at each method's defaults (recall 1.0), paired by seed; a Δ column is the
method minus the no-filter run of the same seed, marked * where its interval excludes zero.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from unlearnbench.results.leaderboard import get, metric_value  # noqa: E402

METHODS = ("no-filter", "filter", "sgtm", "rmu", "circuit-breakers")
E = "suite/"  # the evidence suite's key prefix (results/evidence/suite.yaml)
SPLITS = ("forget", "adjacent", "retain")


def metric(name):
    return lambda r: get(r, "metrics", name)


def headline(key: str, name: str):
    """The value of headline metric `name` of evaluation `key` (SUITE/KEY), when a number."""

    def read(r):
        value = metric_value(r, key, name)
        return value if isinstance(value, float) else None  # not NotReached nor "excluded"

    return read


def summary(key: str, *path):
    """A number inside evaluation `key`'s summary."""
    return lambda r: get(r, "evals", key, *path)


# each table: (column title, reader, with a Δ column); a reader takes a record, gives a number or None
TABLES = {
    "Losses (nats) and fact probes (accuracy, chance 0.25)": [
        *((f"{s} loss", metric(f"{s}_loss"), True) for s in SPLITS),
        *((f"{s} facts", headline(E + "fact-probes", f"{s}_accuracy"), True) for s in SPLITS),
    ],
    "Facts stated in context (accuracy; the probe preceded by a document stating the fact)": [
        ("forget, no context", summary(E + "in-context", "forget", "no_context"), False),
        ("forget, fact in context", summary(E + "in-context", "forget", "fact_in_context"), False),
        ("forget, control context", summary(E + "in-context", "forget", "control_context"), False),
        (
            "forget, follows a wrong value",
            summary(E + "in-context", "forget", "counterfactual", "follows_context"),
            False,
        ),
        ("retain, fact in context", summary(E + "in-context", "retain", "fact_in_context"), False),
    ],  # fmt: skip
    "Attacks: forget-fact accuracy (and forget loss) after each": [
        (
            "benign FT 50 steps: forget facts",
            headline(E + "benign-finetune", "forget_accuracy@50"),
            False,
        ),
        (
            "benign FT 50 steps: forget loss",
            headline(E + "benign-finetune", "forget_loss@50"),
            False,
        ),
        ("4-bit: forget facts", headline(E + "quantization", "forget_accuracy@4"), False),
        ("4-bit: forget loss", headline(E + "quantization", "forget_loss@4"), False),
        ("hidden probe: chance", summary(E + "hidden-probes", "forget", "chance"), False),
        (
            "hidden probe: forget facts (best layer)",
            headline(E + "hidden-probes", "forget_probe_accuracy"),
            False,
        ),
        (
            "hidden probe: retain facts",
            headline(E + "hidden-probes", "retain_probe_accuracy"),
            False,
        ),
        (
            "disjoint facts: held-out forget-fact gain",
            headline("disjoint/disjoint-facts", "held_out_gain"),
            False,
        ),
    ],  # fmt: skip
}


PREFACE = """# Evidence: methods over seeds at the calibrated defaults

Written by `python scripts/evidence_tables.py STORE` from the records in
`results/evidence/records/` (the runs of `results/evidence/lang.yaml` and `topic.yaml`, each
evaluated with `results/evidence/suite.yaml`). Model `tiny`, the default run (1,200 steps of 4
blocks), every method at its defaults and recall 1.0, seeds 0-2. Each cell is the mean over seeds
± the half-width of its 95% Student-t interval, and n; with n=2 or 3 the interval is wide (t =
12.7 or 4.3). Δ is the method minus the no-filter run of the same seed, then the interval of
those differences; * marks a Δ whose interval excludes zero. Accuracies are over every fact probe
of the split (storyworld-lang: 240 per split; storyworld-topic: 120 forget, 80 adjacent, 200
retain; chance 0.25 for the probes, lower for the hidden-state probes, whose classes are a fact's
values). `rmu` and `circuit-breakers` start from the no-filter model of their seed.
"""


def fmt(iv) -> str:
    if iv.mean is None:
        return "-"
    if iv.half_width is None:
        return f"{iv.mean:.3f} (n={iv.n})"
    return f"{iv.mean:.3f} ± {iv.half_width:.3f} (n={iv.n})"


def tables(records: list[dict], benchmark: str) -> str:
    from unlearnbench.results.stats import t_interval

    def default_run(r):  # each method at its defaults: no setting changed but the seed
        nd = r.get("non_default") or {}
        return r["benchmark"] == benchmark and not any(nd.get(k) for k in nd)

    runs = [r for r in records if default_run(r) and r["method"] in METHODS]
    by_method = {m: {r["seed"]: r for r in runs if r["method"] == m} for m in METHODS}
    reference = by_method["no-filter"]
    out = [f"## {benchmark}", ""]
    for title, cols in TABLES.items():
        measured = [r for seeds in by_method.values() for r in seeds.values()]
        cols = [c for c in cols if any(c[1](r) is not None for r in measured)]  # e.g. adjacent
        if not cols:
            continue
        out += [f"### {title}", ""]
        heads = []
        for name, _, delta in cols:
            heads += [name] + ([f"Δ {name}"] if delta else [])
        out += ["| method | " + " | ".join(heads) + " |", "|---" * (len(heads) + 1) + "|"]
        for method, seeds in by_method.items():
            if not seeds:
                continue
            cells = []
            for _, read, delta in cols:
                values = {s: read(r) for s, r in seeds.items()}
                cells.append(fmt(t_interval(values.values())))
                if delta:
                    if method == "no-filter":
                        cells.append("")
                        continue
                    diffs = [
                        values[s] - read(reference[s])
                        for s in sorted(values)
                        if s in reference and values[s] is not None
                        and read(reference[s]) is not None
                    ]  # fmt: skip
                    iv = t_interval(diffs)
                    cells.append(fmt(iv) + (" *" if iv.excludes_zero else ""))
            out.append(f"| {method} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("store", type=Path)
    ap.add_argument("--benchmarks", nargs="+", default=["storyworld-lang", "storyworld-topic"])
    args = ap.parse_args()
    from unlearnbench.results.store import RunStore

    records = RunStore(args.store).records()
    print(PREFACE)
    print("\n".join(tables(records, b) for b in args.benchmarks))


if __name__ == "__main__":
    main()
