"""The leaderboard: one row per (benchmark, model, method, setting), statistics over seeds.

A pure function of the run records (no torch, no method or evaluation registry). The records are
first flattened into one table row per run (`runs_frame`, a pandas DataFrame; `load_records` in
`unlearnbench.results` gives the same frame for a notebook), and every cell is computed from it:
the mean over seeds with its 95% Student-t interval (results/stats.py; one seed: the value, n=1).
What a run is compared with, and every comparison (Δs paired by seed, the score, steps to recover
and their validity, the gap to the perfect filter), comes from results/references.py, the one rule;
then the interval of the per-seed values, marked * when it excludes zero. Probe accuracies carry
their chance level and an exact McNemar test of the per-probe outcomes against the same no-filter
runs, stratified by seed. Missing metrics are blank, never zero; a measurement that did not happen
is named: "no valid attack" (every attack setting broke the retain tolerance), "reference not
measured", never a bound.

Rows are ranked by the score (`RANKING_RULE`), which charges retain and adjacent damage; reference
variants (a non-plain no-filter or perfect filter) are shown and never ranked. `headline_*` render
at most ten columns a reader can take in at once; the full table (`to_markdown`, `to_csv`,
`to_html`) keeps every column. Every forget-side column says whether it separates the
never-exposed perfect filter from no-filter on that benchmark (`separation`): one that does not is
marked uninformative there.

Evaluation columns are generic: each result `record["evals"][KEY]` carries the headline metrics its
evaluation declared (`headline`: name, title, direction, unit, value), one column per KEY and
metric; a record without an evaluation, or a metric without a value, gives a blank cell. A run's
setting is what its record states it set away from the defaults (`non_default`).
"""

from __future__ import annotations

import csv
import html
import io
import math
import os
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace

from unlearnbench.models.presets import MODEL_PRESETS
from unlearnbench.results import references as refs
from unlearnbench.results import stats
from unlearnbench.results.attack import EXCLUDED, budget_outcome
from unlearnbench.results.references import number
from unlearnbench.results.style import STYLE

UP, DOWN = "↑", "↓"  # higher is better, lower is better
RANKING_RULE = (
    "rows ranked by score within each benchmark and model, highest first; score = min(Δforget, "
    "the perfect filter's Δforget) - max(0, Δretain) - max(0, Δadjacent - the perfect filter's "
    "Δadjacent), per seed, then the mean over seeds (nats; results/references.py); rows without a "
    "score (a reference not measured) follow; reference variants are never ranked"
)
SORT_RULE = RANKING_RULE
LEGEND = (
    "Losses are mean token cross-entropy in nats on held-out test documents; "
    "cells: mean over seeds ± half-width of its 95% Student-t interval (n = seeds with the metric, "
    "shown when fewer than the row's seeds; n=1: the single value, no interval); "
    "Δ = change against the plain `no-filter` run of the same benchmark, model, seed and training "
    "settings (at any labels: it ignores them), paired by seed (* = its 95% interval excludes 0); "
    "Δ vs base = against a post-hoc run's own base where that is another run; "
    "score: see the order below; facts score: the same in fact-probe accuracy; "
    "! = mean Δretain beyond the retain tolerance (a marker, not a cut); "
    "steps to recover: first attack step at which a setting still within the retain tolerance "
    "reached the no-filter run's own pre-attack forget loss; vs filter: over the perfect filter's "
    "own steps (1.0 = as hard to relearn as data never seen); "
    "probe accuracies give their chance level and a p-value of the per-probe outcomes against "
    "no-filter from an exact McNemar test per seed, combined over seeds (the larger of "
    "Stouffer's combination and a t-test of the per-seed scores: seeds, not pooled probes, are "
    "the replicates; * = p < 0.05; no correction for the number of comparisons); "
    "an evaluation's columns are named SUITE/KEY: metric, the suite that ran it and its key there; "
    f"{UP} higher is better, {DOWN} lower is better; blank = not measured; "
    "no valid attack = measured, but every attack setting broke the retain tolerance within that "
    "budget; reference not measured = the reference run or its result is missing; "
    "† = the column does not separate the never-exposed perfect filter from no-filter on this "
    "benchmark (uninformative here)."
)


def get(record: dict | None, *path):
    """record[path[0]][path[1]]...; None when any step is missing."""
    x = record
    for k in path:
        if isinstance(x, dict) and k in x:
            x = x[k]
        elif isinstance(x, dict) and str(k) in x:
            x = x[str(k)]
        else:
            return None
    return x


# ---- evaluation results: the headline metrics each evaluation declared, stored with its summary ----


NotReached = refs.NotReached  # measured, validly attacked, not within `limit`


def headline(summary) -> list[dict]:
    """The headline metrics a stored evaluation result carries (empty for a result recorded before
    evaluations declared them, or one that is not a summary)."""
    entries = summary.get("headline") if isinstance(summary, dict) else None
    return [e for e in entries if isinstance(e, dict) and "name" in e] if entries else []


def metric_value(record: dict, key: str, name: str):
    """The value of metric `name` of the result `record["evals"][key]`: a number, NotReached,
    EXCLUDED (an attack budget at which no attack setting stayed within the retain tolerance) or
    None when not measured."""
    summary = get(record, "evals", key)
    for e in headline(summary):
        if e["name"] == name:
            value = number(e.get("value"))
            if "limit" in e and value is None:
                return NotReached(e["limit"])
            if value is None and "@" in name and isinstance(summary.get("worst_case"), list):
                return budget_outcome(summary, name.split("@", 1)[1])
            return value
    return None


def _probe_part(record: dict, key: str, name: str) -> dict | None:
    """The per-split part of an accuracy metric `SPLIT_accuracy` (fact probes: {"accuracy",
    "chance", "n", "outcomes"}), or None."""
    summary = get(record, "evals", key)
    if not isinstance(summary, dict) or not name.endswith("_accuracy"):
        return None
    split = name[: -len("_accuracy")]
    part = summary.get(split)
    if not isinstance(part, dict) and split.endswith("_probe"):  # hidden-probes: SPLIT_probe_...
        part = summary.get(split[: -len("_probe")])
    return part if isinstance(part, dict) else None


def chance_of(record: dict, key: str, name: str) -> float | None:
    """The chance level of an accuracy metric: the headline entry's, else its split part's."""
    for e in headline(get(record, "evals", key)):
        if e["name"] == name and number(e.get("chance")) is not None:
            return number(e["chance"])
    part = number((_probe_part(record, key, name) or {}).get("chance"))
    if part is None and name.split("@", 1)[0].endswith("_accuracy"):  # one level per result
        return number((get(record, "evals", key) or {}).get("chance"))  # (benign-finetune)
    return part


def unread_results(records: list[dict]) -> list[str]:
    """`run id: key` of each evaluation result that has no headline metrics (recorded before
    evaluations declared them): tables cannot show it."""
    out = []
    for r in records:
        for key, ev in (r.get("evals") or {}).items():
            if isinstance(ev, dict) and "headline" not in ev and ev.get("applicable") is not False:
                out.append(f"{r.get('run_id')}: {key}")
    return out


def format_value(entry: dict) -> str:
    v = number(entry.get("value"))
    if v is None:
        return f"> {entry['limit']}" if entry.get("limit") is not None else "-"
    return f"{v:,.0f}" if entry.get("unit") == "steps" else f"{v:.3f}"


def summary_text(summary: dict) -> str:
    """A recorded evaluation's headline metrics in one line (the CLI's summary)."""
    if isinstance(summary, dict) and summary.get("applicable") is False:
        return f"not applicable ({summary.get('reason', '')})"
    entries = headline(summary)
    if not entries and not (isinstance(summary, dict) and "headline" in summary):
        return "recorded without headline metrics (attack again with its suite to add them)"
    if summary.get("headline") == []:  # an evaluation that declares none (generations: text)
        return "recorded (no headline numbers; the report shows it)"
    measured = [e for e in entries if number(e.get("value")) is not None or "limit" in e]
    if not measured:
        return "no headline metric measured"
    return ", ".join(f"{e.get('title') or e['name']} {format_value(e)}" for e in measured)


# ---- columns ----


@dataclass(frozen=True)
class Column:
    key: str
    title: str
    arrow: str  # UP, DOWN or ""
    value: Callable[[dict], float | NotReached | None]
    kind: str = "loss"  # loss | acc | int | seconds
    core: bool = False  # always shown; other columns are dropped when blank in every row
    paired: bool = False  # a paired difference against no-filter: marked when it excludes 0
    # an accuracy of a result KEY and metric NAME: chance level and McNemar against no-filter
    probe: tuple[str, str] | None = None
    eval: str | None = None  # the evaluation a result column comes from

    @property
    def header(self) -> str:
        return f"{self.title} {self.arrow}".strip()


def _loss(split: str, pre: bool = False):
    return lambda r: number(
        get(r, "metrics", "pre_finalize", f"{split}_loss")
        if pre
        else get(r, "metrics", f"{split}_loss")
    )


def _delta(split: str):
    return lambda r: number(get(r, "_delta", split))


KINDS = {"nats": "loss", "accuracy": "acc", "steps": "int", "ratio": "ratio"}


def _natural(text: str) -> tuple:
    """Order parts as numbers where they are (budget 10 before 100)."""
    return (
        (0, float(text), "") if text.lstrip("-").replace(".", "", 1).isdigit() else (1, 0.0, text)
    )


def metric_columns(records: list[dict]) -> list[Column]:
    """One column per (result key, headline metric) in any record: result keys by suite, in the
    suite's order within it; metrics in the order their evaluation declared them; parts (e.g.
    budgets) in numeric order."""
    found: dict[str, dict[str, dict]] = defaultdict(dict)  # key -> name -> entry
    order: dict[str, dict[str, int]] = defaultdict(dict)  # key -> metric -> declaration position
    first: dict[str, int] = {}  # key -> first appearance (a suite writes its results in order)
    for r in records:
        for key, ev in (r.get("evals") or {}).items():
            first.setdefault(key, len(first))
            for e in headline(ev):
                if e.get("metric", e["name"]) in refs.COPIED:
                    continue  # another run's number an earlier version copied: computed afresh
                found[key].setdefault(e["name"], e)
                metric = e.get("metric", e["name"])
                order[key].setdefault(metric, len(order[key]))
    cols = []
    for key in sorted(found, key=lambda k: (k.split("/")[0], first[k])):

        def position(e: dict, key=key) -> tuple:
            metric = e.get("metric", e["name"])
            return order[key][metric], _natural(e["name"][len(metric) + 1 :])

        kind_of = next((r["evals"][key].get("eval") for r in records
                        if isinstance((r.get("evals") or {}).get(key), dict)), None)  # fmt: skip
        for e in sorted(found[key].values(), key=position):
            arrow = {"higher": UP, "lower": DOWN}.get(e.get("direction"), "")
            title = f"{key}: {e.get('title') or e['name']}"
            value = lambda r, key=key, name=e["name"]: metric_value(r, key, name)  # noqa: E731
            kind = KINDS.get(e.get("unit"), "loss")
            probe = (key, e["name"]) if kind == "acc" else None
            cols.append(
                Column(f"{key}:{e['name']}", title, arrow, value, kind, probe=probe, eval=kind_of)
            )
        cols += comparison_columns(key, kind_of or key.rsplit("/", 1)[-1])
    return cols


# the table-time comparisons of a result of each evaluation (results/references.py `compare`):
# (name, title, direction, kind, where in compare's output)
COMPARISONS = {
    "relearn": [
        ("steps_to_recover", "steps to recover", UP, "int", "attacks"),
        ("steps_vs_filter", "steps to recover vs perfect filter", UP, "ratio", "attacks"),
        ("steps_to_close_gap", "steps to close 90% of gap", UP, "int", "attacks"),
    ],
    "benign-finetune": [
        ("steps_to_recover", "benign steps to recover", UP, "int", "attacks"),
        ("steps_to_recover_facts", "benign steps to recover facts", UP, "int", "attacks"),
    ],
    "fact-probes": [("facts_score", "facts score", UP, "acc", "facts_score")],
    "hidden-probes": [
        ("forget_over_perfect_filter", "forget probe acc over perfect filter", DOWN, "acc",
         "hidden"),
    ],
}  # fmt: skip


def comparison_columns(key: str, kind: str) -> list[Column]:
    """The comparison columns of result `key` of evaluation `kind`."""
    cols = []
    for name, title, arrow, unit, part in COMPARISONS.get(kind, []):

        def value(r, key=key, name=name, part=part):
            found = (r.get("_compare") or {}).get(part, {}).get(key)
            return found.get(name) if isinstance(found, dict) else found

        cols.append(Column(f"{key}:{name}", f"{key}: {title}", arrow, value, unit, eval=kind))
    return cols


def columns_for(records: list[dict]) -> list[Column]:
    cols = [
        Column("forget", "forget loss", UP, _loss("forget"), core=True),
        Column("adjacent", "adjacent loss", DOWN, _loss("adjacent"), core=True),
        Column("retain", "retain loss", DOWN, _loss("retain"), core=True),
        Column("d_forget", "Δforget", UP, _delta("forget"), core=True, paired=True),
        Column("d_adjacent", "Δadjacent", DOWN, _delta("adjacent"), core=True, paired=True),
        Column("d_retain", "Δretain", DOWN, _delta("retain"), core=True, paired=True),
        Column("score", "score", UP, _delta("score"), core=True),
    ]
    cols += [
        Column(f"{s}_compute_penalty", f"{s} compute penalty", DOWN,
               lambda r, s=s: get(r, "_delta", f"{s}_compute_penalty"), "percent")
        for s in ("retain", "adjacent")
    ]  # fmt: skip
    cols += [
        Column(f"base_d_{s}", f"Δ{s} vs base", arrow, _delta(f"base_{s}"), paired=True)
        for s, arrow in (("forget", UP), ("adjacent", DOWN), ("retain", DOWN))
    ]
    cols += metric_columns(records)
    cols += [
        Column("tokens", "tokens", DOWN, lambda r: number(r.get("tokens_seen")), "int", core=True),
        Column(
            "time", "time (s)", DOWN, lambda r: number(r.get("wall_seconds")), "seconds", core=True
        ),
    ]
    return cols


# ---- settings: what distinguishes runs of one method beyond the seed ----

# where and how a run was executed, not what it computed: never part of a setting's name
_IGNORED_TRAIN = {"device", "bf16", "save_model", "micro_batch_size"}


def _same(a, b) -> bool:
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return list(a) == list(b)
    return a == b


def show_value(v) -> str:
    if isinstance(v, list | tuple):
        return ",".join(str(x) for x in v) or "()"
    if isinstance(v, str) and os.path.isabs(v):
        # a saved model (e.g. a post-hoc `base`): its directory is named by its run id; the rest of
        # the path is where one machine kept it, which published tables must not show
        return os.path.basename(v.rstrip("/"))
    return str(v)


def recall_of(record: dict) -> float | None:
    return number(get(record, "config", "labels", "recall"))


def _non_default(record: dict, peers: list[dict] | None) -> dict:
    """{section: {option: value}} the run set away from its defaults: as its record states
    (`non_default`, written by the runner). A record from before has no such field: its labels and
    training are compared with today's defaults (`config.py`, no method registry), and of its
    method options and training settings those that differ among `peers` of its method are named
    (all of them when it has no peers)."""
    import dataclasses

    from unlearnbench.config import _UNHASHED_TRAIN_FIELDS, LabelConfig, TrainConfig

    stated = record.get("non_default")
    if isinstance(stated, dict):
        return stated
    cfg = record.get("config") or {}
    labels, train = LabelConfig().__dict__, dataclasses.asdict(TrainConfig())
    options = cfg.get("method_options") or {}
    train_values = {
        k: v
        for k, v in (cfg.get("train") or {}).items()
        if k not in _UNHASHED_TRAIN_FIELDS and (k not in train or not _same(v, train[k]))
    }
    same = [p for p in peers or [] if p.get("method") == record.get("method")]
    if len(same) > 1:  # the method's own defaults are unknown here: name what varies among peers

        def varying(section: str, values: dict) -> dict:
            keys = {
                k
                for p in same
                for k, v in ((p.get("config") or {}).get(section) or {}).items()
                if not _same(values.get(k), v)
            }
            return {k: v for k, v in values.items() if k in keys}

        options = varying("method_options", options)
        train_values = varying("train", train_values)
    return {
        "labels": {
            k: v for k, v in (cfg.get("labels") or {}).items() if not _same(v, labels.get(k))
        },
        "method_options": options,
        "train": train_values,
    }


def setting_of(record: dict, with_recall: bool = True, peers: list[dict] | None = None) -> str:
    """Recall (for methods that read labels) plus every non-default label, method and train option
    within the run id (the seed aside); `checkpoint_every`, `snapshot_every`, where it ran and how
    it accumulated are never part of it. A record labelled by `with_settings` keeps its label."""
    if "_setting" in record:
        return record["_setting"] if with_recall else record["_family"]
    nd = _non_default(record, peers)
    parts = []
    recall = get(record, "config", "labels", "recall")
    if with_recall and record.get("method") != "no-filter" and recall is not None:
        parts.append(f"recall={recall}")
    base = get(record, "config", "base")
    if base:  # where the run started, when not its method's default
        parts.append(f"base={show_value(base)}")
    for k, v in (nd.get("labels") or {}).items():
        # no-filter ignores its labels, but runs at other labels are other runs: named, so a row
        # never pools two runs of one seed
        if k != "recall" or (with_recall and record.get("method") == "no-filter"):
            parts.append(f"{k}={show_value(v)}")
    for k, v in sorted((nd.get("method_options") or {}).items()):
        parts.append(f"{k}={show_value(v)}")
    for k, v in sorted((nd.get("train") or {}).items()):
        if k not in _IGNORED_TRAIN:
            parts.append(f"{k}={show_value(v)}")
    for k, v in sorted(_varying_benchmark_options(record, peers).items()):
        parts.append(f"benchmark.{k}={show_value(v)}")  # other data: never pooled in one row
    return ", ".join(parts)


def _varying_benchmark_options(record: dict, peers: list[dict] | None) -> dict:
    """The record's benchmark options that differ among the runs of its benchmark in `peers`
    (records hold every option resolved, so a default is named only where another run moved it)."""
    mine = get(record, "config", "benchmark_options") or {}
    same = [p for p in peers or [] if p.get("benchmark") == record.get("benchmark")]
    keys = {
        k
        for p in same
        for k, v in (get(p, "config", "benchmark_options") or {}).items()
        if not _same(mine.get(k), v)
    }
    return {k: mine.get(k) for k in keys}


def with_settings(records: list[dict]) -> list[dict]:
    """Copies of the records labelled with their setting (with and without the recall), each
    computed once against the whole list (which older records' labels depend on)."""
    return [
        {
            **r,
            "_setting": setting_of(r, True, records),
            "_family": setting_of(r, False, records),
        }
        for r in records
    ]


# ---- comparisons with the references (results/references.py, the one rule) ----


def with_deltas(records: list[dict]) -> list[dict]:
    """Copies of the records with `_delta` (each split's Δ against no-filter, `base_*` against a
    post-hoc run's base, `ceiling` = the perfect filter's Δforget, `score`), `_compare` (every
    comparison of `references.compare`), `_reference` (the no-filter record) and `_role`."""
    joined = refs.join(records)
    out = []
    for r in records:
        j = joined[r["run_id"]]
        cmp = refs.compare(j)
        d = cmp["deltas"]
        delta = {s: d[f"d_{s}"] for s in refs.SPLITS}
        delta |= {f"base_{s}": d.get(f"base_d_{s}") for s in refs.SPLITS}
        delta |= {"ceiling": d["pf_d_forget"], "score": d["score"]}
        delta |= {k: d[k] for k in ("retain_compute_penalty", "adjacent_compute_penalty")}
        out.append(
            {**r, "_delta": delta, "_compare": cmp, "_reference": j.no_filter, "_role": j.role,
             "_other_version": j.other_version}
        )  # fmt: skip
    return out


# ---- one row per run: the frame every cell is computed from ----


def _prepared(records: list[dict], benchmark: str | None) -> tuple[list[dict], list[Column]]:
    recs = with_deltas(with_settings(records))
    recs = [r for r in recs if benchmark in (None, r.get("benchmark"))]
    return recs, columns_for(recs)


def _flat(prefix: str, x, out: dict) -> None:
    """Nested dicts as dotted columns; lists and other values as they are."""
    if isinstance(x, dict):
        for k, v in x.items():
            if k not in ("headline", "outcomes"):  # the metric columns; per-probe bit strings
                _flat(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = x


def _frame(recs: list[dict], cols: list[Column]):
    import pandas as pd

    nan = float("nan")
    rows = []
    for r in recs:
        ref = r.get("_reference")
        row = {
            "run_id": r.get("run_id"),
            "benchmark": r.get("benchmark"),
            "model": r.get("model"),
            "method": r.get("method"),
            "setting": setting_of(r),
            "family": setting_of(r, with_recall=False),
            "seed": r.get("seed"),
            "recall": recall_of(r) if r.get("method") != "no-filter" else None,
            "kind": r.get("kind"),
            "no_filter_run": ref.get("run_id") if ref else None,
            "ceiling": number(get(r, "_delta", "ceiling")),
            "role": r.get("_role"),
            "code_version": refs.code_version(r),
            "other_version_references": ", ".join(r.get("_other_version") or []),
        }
        for c in cols:
            v = c.value(r)
            row[c.key] = float(v) if number(v) is not None else nan
            if isinstance(v, NotReached):
                row[f"{c.key} status"] = "not reached"
                row[f"{c.key} limit"] = v.limit
            elif v is EXCLUDED:
                row[f"{c.key} status"] = EXCLUDED.text
            elif isinstance(v, refs._Status):
                row[f"{c.key} status"] = v.text
            if c.probe is not None:
                key, name = c.probe
                row[f"{c.key} chance"] = chance_of(r, key, name)
                mine = (_probe_part(r, key, name) or {}).get("outcomes")
                theirs = (_probe_part(ref, key, name) or {}).get("outcomes") if ref else None
                itself = ref is not None and ref.get("run_id") == r.get("run_id")
                pair = None if itself else stats.flips(mine, theirs)
                if pair is not None:
                    row[f"{c.key} lost"], row[f"{c.key} gained"] = pair
        _flat("config", r.get("config") or {}, row)
        _flat("evals", r.get("evals") or {}, row)
        rows.append(row)
    frame = pd.DataFrame(rows)
    for c in cols:  # every column, even one no run measured, so cells can always read it
        if c.key not in frame:
            frame[c.key] = nan
    return frame


def runs_frame(records: list[dict], benchmark: str | None = None):
    """One row per run (of `benchmark` when given): its identity (run id, method, setting, seed,
    the no-filter run it is compared with), one column per leaderboard column (NaN where not
    measured; `KEY status` says "not reached" or "excluded", `KEY chance`, `KEY lost` and
    `KEY gained` the probes' chance level and flips against no-filter), its config and its
    evaluation summaries flattened (`config.train.steps`, `evals.SUITE/KEY.budget`). The
    leaderboard's cells are computed from this frame."""
    return _frame(*_prepared(records, benchmark))


# ---- aggregation ----


@dataclass(frozen=True)
class Cell:
    mean: float | None
    std: float | None
    n: int  # seeds with the metric
    note: str = ""  # e.g. "> 200" for steps to recover that never recovered
    low: float | None = None  # the 95% Student-t interval of the mean over seeds
    high: float | None = None
    significant: bool = False  # paired: the interval excludes 0; probes: McNemar p < 0.05
    chance: float | None = None  # probe accuracies: the chance level
    p: float | None = None  # probe accuracies: McNemar p-value against no-filter, seeds pooled
    pairs: int = 0  # probe accuracies: runs paired with their no-filter run
    statuses: tuple = ()  # ((status, seeds), ...): measurements that are not numbers


def mean_std(values: list[float | None]) -> tuple[float | None, float | None, int]:
    iv = stats.t_interval(values)
    return iv.mean, iv.std, iv.n


def _column_values(g, key: str) -> list[float]:
    """One value per seed: several runs of one seed (e.g. no-filter under two label configs,
    which it ignores) are averaged first, so the interval is over seeds."""
    per_seed = g.groupby(g["seed"].astype(str), sort=True)[key].mean()  # NaN skipped
    return [float(v) for v in per_seed if not math.isnan(v)]


def _sum(g, key: str) -> int:
    return int(g[key].fillna(0).sum()) if key in g else 0


STATUSES = refs.STATUSES


def frame_cell(g, col: Column) -> Cell:
    """A column's cell from the frame rows of one leaderboard row: mean and interval over the
    seeds that measured a value; runs whose measurement is a status (not reached, no valid
    attack, reference not measured) are counted in the note, never averaged."""
    iv = stats.t_interval(_column_values(g, col.key))
    status = g[f"{col.key} status"] if f"{col.key} status" in g else None
    counts = {t: int((status == t).sum()) if status is not None else 0 for t in STATUSES}
    total = iv.n + sum(counts.values())
    notes = []
    for text, k in counts.items():
        if not k:
            continue
        if text == "not reached":
            limits = g.loc[status == text, f"{col.key} limit"].dropna()
            # each seed is beyond its own limit: all of them only beyond the smallest
            text = f"> {_limit(limits.min())}" if len(limits) else text
        notes.append(f"{k}/{total} seeds {text}" if total > k else text)
    extra = {}
    if col.probe is not None:
        chance = g[f"{col.key} chance"].dropna() if f"{col.key} chance" in g else []
        extra["chance"] = float(chance.mean()) if len(chance) else None
        if f"{col.key} lost" in g:
            paired = g[g[f"{col.key} lost"].notna()]
            pairs = [(int(a), int(b)) for a, b in
                     zip(paired[f"{col.key} lost"], paired[f"{col.key} gained"], strict=True)]  # fmt: skip
            if pairs:
                extra["p"] = stats.stratified_mcnemar(pairs)  # one stratum per seed
                extra["pairs"] = len(pairs)
                extra["significant"] = extra["p"] < stats.ALPHA
    elif col.paired:
        extra["significant"] = iv.excludes_zero
    extra["statuses"] = tuple((t, k) for t, k in counts.items() if k)
    return Cell(iv.mean, iv.std, iv.n, "; ".join(notes), iv.low, iv.high, **extra)


def _limit(x: float) -> str:
    return f"{x:.0f}" if float(x).is_integer() else f"{x:.2f}"


def leaderboard_rows(
    records: list[dict],
    benchmark: str | None = None,
    retain_tolerance: float = stats.RETAIN_TOLERANCE,
) -> list[dict]:
    """Rows: {benchmark, model, method, setting, role, seeds, cells: {column key: Cell},
    rank_group, rule, separation}, ranked by `RANKING_RULE`; the columns used are in
    `rows_columns(rows)`. A row is one configuration as its run id names it (the seed aside):
    settings outside the run id never split a row. `retain_tolerance` marks (!) rows whose mean
    Δretain is beyond it; it does not cut."""
    recs, cols = _prepared(records, benchmark)
    frame = _frame(recs, cols)
    rows = []
    unread = unread_results(recs)
    if len(frame):
        ids = ["benchmark", "model", "method", "setting"]
        for (bench, model, method, setting), g in frame.groupby(ids, sort=False, dropna=False):
            row = {"benchmark": bench, "model": model, "method": method, "setting": setting}
            row["seeds"] = g["seed"].astype(str).nunique()
            row["recall"] = number(g["recall"].iloc[0]) if method != "no-filter" else None
            row["family"] = g["family"].iloc[0]  # the setting less the recall
            row["role"] = g["role"].iloc[0]
            row["run_ids"] = sorted(str(x) for x in g["run_id"])
            row["code_versions"] = sorted({str(v) for v in g["code_version"] if v})
            row["other_version_references"] = any(g["other_version_references"].astype(bool))
            row["cells"] = {c.key: frame_cell(g, c) for c in cols}
            row["unread"] = unread
            row["_frame"] = g
            rows.append(row)
    shown = [
        c
        for c in cols
        if c.core or any(r["cells"][c.key].n or r["cells"][c.key].note for r in rows)
    ]
    separation = separations(rows, shown)
    for r in rows:
        r["columns"] = shown
        r["separation"] = separation.get((r["benchmark"], r["model"]), {})
        beyond = r["cells"]["d_retain"].mean is not None and not stats.within_tolerance(
            r["cells"]["d_retain"].mean, retain_tolerance
        )
        r["beyond_tolerance"] = beyond
        r["_rank"] = rank_key(r)
        r["rank_group"] = r["_rank"][0]  # 0 ranked by score, 1 no score, 2 reference variant
        r["rule"] = RANKING_RULE
    for r in rows:
        r.pop("_frame")

    def order(r):
        return (str(r["benchmark"]), model_order(r["model"]), r["_rank"], r["method"], r["setting"])

    rows.sort(key=order)
    return rows


def model_order(model) -> tuple:
    """Sort key of a model name, smallest first: the presets by their size (layers x width^2,
    their non-embedding parameters up to a constant), then any other name alphabetically. Rows,
    headlines and claims of two sizes are never pooled; this only orders them."""
    preset = MODEL_PRESETS.get(str(model))
    if preset is None:
        return (1, 0, str(model))
    return (0, preset.num_layers * preset.hidden_size**2, str(model))


def rank_key(row: dict) -> tuple:
    """Sort key of a row by `RANKING_RULE` (lower first)."""
    if row.get("role") == "reference variant":
        return (2, 0.0)
    score = row["cells"]["score"].mean
    return (1, 0.0) if score is None else (0, -score)


def separations(rows: list[dict], cols: list[Column]) -> dict[tuple, dict[str, dict]]:
    """{(benchmark, model): {column key: {"mean", "low", "high", "d", "n", "informative"}}} for
    each forget-side column: the perfect filter's value minus no-filter's, paired by seed (the
    plain references' rows). A metric is informative on a benchmark when that interval excludes 0
    in the direction the column calls better (a never-exposed model must look removed); with
    fewer than two seeds it cannot be told (informative None)."""
    out: dict[tuple, dict[str, dict]] = {}
    # (benchmark, model) -> setting -> role -> frame: the plain references trained alike
    by_bm: dict[tuple, dict[str, dict]] = defaultdict(lambda: defaultdict(dict))
    for r in rows:
        if r["role"] in (refs.NO_FILTER, refs.PERFECT_FILTER):
            by_bm[(r["benchmark"], r["model"])][r["family"]][r["role"]] = r["_frame"]
    for bm, by_family in by_bm.items():
        # the pair with no setting of their own, else a setup's (a paper preset's training)
        pairs = [by_family[f] for f in sorted(by_family, key=lambda f: (len(f), f))]
        pairs = [p for p in pairs if len(p) == 2]
        if not pairs:
            continue
        nf, pf = pairs[0][refs.NO_FILTER], pairs[0][refs.PERFECT_FILTER]
        out[bm] = {}
        for c in cols:
            forget_side = "forget" in c.key or c.key.endswith(("steps_to_recover", "close_gap"))
            relative = c.key.endswith("over_perfect_filter")  # a comparison with the filter itself
            if not forget_side or relative or c.arrow not in (UP, DOWN) or c.paired:
                continue
            a = dict(zip(pf["seed"].astype(str), pf[c.key], strict=True))
            b = dict(zip(nf["seed"].astype(str), nf[c.key], strict=True))
            diffs = [a[k] - b[k] for k in a if k in b and a[k] == a[k] and b[k] == b[k]]
            iv = stats.t_interval(diffs)
            if iv.n == 0:
                continue
            informative = None  # fewer than two seeds: no interval
            if iv.low is not None:  # the never-exposed model must look removed, by the column
                informative = bool(iv.low > 0) if c.arrow == UP else bool(iv.high < 0)
            d = iv.mean / iv.std if iv.std else None
            out[bm][c.key] = {"mean": iv.mean, "low": iv.low, "high": iv.high, "d": d,
                              "n": iv.n, "informative": informative}  # fmt: skip
    return out


def rows_columns(rows: list[dict]) -> list[Column]:
    return rows[0]["columns"] if rows else columns_for([])


# ---- rendering ----


def _number(x: float, col: Column, signed: bool = False) -> str:
    if col.kind == "percent":
        return f"{100 * x:.1f}%"
    if col.kind == "ratio":
        return f"{x:.2f}"
    if col.kind == "int":
        return f"{x:,.0f}"
    if col.kind == "seconds":
        return f"{x:.0f}"
    return f"{x:+.3f}" if signed else f"{x:.3f}"  # losses and accuracies: 3 decimals


def format_cell(cell: Cell, col: Column, seeds: int) -> str:
    """mean ± half-width of the 95% interval (* when significant), n when fewer than the row's
    seeds (always for n=1), chance level and McNemar p of probe accuracies, notes."""
    if cell.mean is None:
        return cell.note
    text = _number(cell.mean, col, signed=col.paired or col.key == "score")
    if cell.high is not None:
        text += f" ± {_number(cell.high - cell.mean, col)}"
    if col.paired and cell.significant:
        text += "*"
    if cell.n == 1 or 0 < cell.n < seeds:
        text += f" (n={cell.n})"
    probe = []
    if cell.chance is not None:
        probe.append(f"chance {cell.chance:.3f}")
    if cell.p is not None:
        probe.append(f"p={cell.p:.2g}" + ("*" if cell.significant else ""))
    if probe:
        text += f" ({'; '.join(probe)})"
    if cell.note:
        text += f"; {cell.note}"
    return text


def _cell_text(row: dict, col: Column) -> str:
    text = format_cell(row["cells"][col.key], col, row["seeds"])
    if col.key == "d_retain" and row.get("beyond_tolerance") and text:
        text += " !"  # beyond the retain tolerance: a marker, not a cut
    return text


def row_label(row: dict) -> str:
    """method (setting; seeds[; mixed code versions])."""
    seeds = f"{row['seeds']} seed{'s' if row['seeds'] != 1 else ''}"
    if len(row.get("code_versions") or []) > 1:
        seeds += f"; {len(row['code_versions'])} code versions"
    inner = f"{row['setting']}; {seeds}" if row["setting"] else seeds
    return f"{method_label(row)} ({inner})"


def method_label(row: dict) -> str:
    """The method as a table names it: references and reference variants say so."""
    role = row.get("role")
    if role in (refs.NO_FILTER, refs.PERFECT_FILTER):
        return f"{row['method']} (reference)"
    if role == "reference variant":
        return f"{row['method']} (reference variant, unranked)"
    return str(row["method"])


_ID_COLS = ["benchmark", "model", "method", "setting", "seeds"]


def _table(rows: list[dict], hide: tuple[str, ...] = ()) -> tuple[list[str], list[list[str]]]:
    cols = rows_columns(rows)
    ids = [c for c in _ID_COLS if c not in hide]
    head = ids + [c.header for c in cols]
    body = []
    for r in rows:
        cells = [method_label(r) if c == "method" else str(r[c]) for c in ids]
        cells += [_cell_text(r, c) for c in cols]
        body.append(cells)
    return head, body


def footer(rows: list[dict] | None = None) -> str:
    rule = rows[0]["rule"] if rows else SORT_RULE
    text = f"{LEGEND} Order: {rule}."
    unread = rows[0].get("unread") if rows else None
    if unread:
        text += (
            f" Not shown: {len(unread)} evaluation results recorded before evaluations stored"
            " their headline metrics (`unlearnbench attack RUN --suite SUITE` adds them, nothing"
            " is rerun)."
        )
    return text


def _markdown_table(head: list[str], body: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for cells in body:
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return lines


def to_markdown(rows: list[dict]) -> str:
    """The full table: every column."""
    head, body = _table(rows)
    return "\n".join([*_markdown_table(head, body), "", footer(rows)]) + "\n"


# ---- the headline table: at most eight columns ----


def attack_result(rows: list[dict]) -> str | None:
    """The relearning attack result (key) of the headline: of the `relearn` results, the one most
    rows measured (ties: the `robust` suite's, then by name). Never another evaluation's curve."""
    counts: dict[str, int] = defaultdict(int)
    for c in rows_columns(rows):
        if c.eval == "relearn" and ":forget_loss@" in c.key:
            result = c.key.split(":", 1)[0]
            counts[result] = max(counts[result], sum(bool(r["cells"][c.key].n or
                                                          r["cells"][c.key].note) for r in rows))  # fmt: skip
    if not counts:
        return None
    return min(counts, key=lambda k: (-counts[k], not k.startswith("robust/"), k))


def budgets_of(rows: list[dict], result: str) -> list[int]:
    keys = [c.key for c in rows_columns(rows) if c.key.startswith(f"{result}:forget_loss@")]
    return sorted(int(k.rsplit("@", 1)[1]) for k in keys if k.rsplit("@", 1)[1].isdigit())


def attack_outcome(row: dict, result: str, budgets: list[int]) -> tuple[str, str]:
    """(worst-case forget loss at the largest budget at which every seed was validly attacked,
    with that budget; seeds validly attacked at the largest budget), as the headline shows them."""
    largest = max(budgets) if budgets else None
    if largest is None:
        return "", ""
    last = row["cells"].get(f"{result}:forget_loss@{largest}")
    if last is None or not (last.n or last.note):
        return "", ""
    valid = f"{last.n}/{last.n + sum(k for _, k in last.statuses)}"
    for b in sorted(budgets, reverse=True):
        cell = row["cells"].get(f"{result}:forget_loss@{b}")
        if cell is not None and cell.n and cell.n == row["seeds"]:
            col = Column("", "", UP, lambda r: None)
            text = f"{format_cell(cell_without_notes(cell), col, row['seeds'])} @{b}"
            if b < largest:  # a shorter attack is not robustness: say where validity ended
                text += f"; not every seed validly attacked @{largest}"
            return text, valid
    if last.n:  # some seeds were validly attacked to the end, not every one at any budget
        col = Column("", "", UP, lambda r: None)
        text = format_cell(cell_without_notes(last), col, last.n)
        return f"{text} @{largest}, {last.n} of {row['seeds']} seeds", valid
    return "no valid attack", valid


def cell_without_notes(cell: Cell) -> Cell:
    return replace(cell, note="")


HEADLINE = ["d_forget", "d_adjacent", "d_retain", "facts", "score", "attack", "recover",
            "vs_filter", "valid"]  # fmt: skip


def headline_columns(rows: list[dict]) -> list[Column]:
    """Δforget, Δadjacent, Δretain, forget-fact accuracy, score, then (in the headline table) the
    relearning outcome at the largest validly attacked budget, steps to recover, the same over
    the perfect filter's, seeds validly attacked: those the rows have."""
    by_key = {c.key: c for c in rows_columns(rows)}
    attack = attack_result(rows)
    keys = ["d_forget", "d_adjacent", "d_retain", _probe_key(rows), "score"]
    if attack:
        keys += [f"{attack}:steps_to_recover", f"{attack}:steps_vs_filter"]
    return [by_key[k] for k in keys if k is not None and k in by_key and
            (by_key[k].core or any(r["cells"][k].n or r["cells"][k].note for r in rows))]  # fmt: skip


def _probe_key(rows: list[dict]) -> str | None:
    """The forget-fact accuracy column most rows measured."""
    cands = [c.key for c in rows_columns(rows) if c.key.endswith(":forget_accuracy") and c.probe]
    return max(cands, key=lambda k: (sum(r["cells"][k].n for r in rows), k), default=None)


def _short_header(col: Column, sep: dict | None = None) -> str:
    """An evaluation column's header without its SUITE/KEY (the headline names it below); †
    when the column does not separate the perfect filter from no-filter here."""
    title = col.title.split(": ", 1)[1] if ": " in col.title else col.title
    mark = " †" if (sep or {}).get(col.key, {}).get("informative") is False else ""
    return f"{title} {col.arrow}".strip() + mark


def headline_sources(rows: list[dict]) -> str:
    """Which result each headline evaluation column comes from."""
    parts = [f"{_short_header(c).rstrip(' ↑↓')}: {c.key.split(':', 1)[0]}"
             for c in headline_columns(rows) if ":" in c.key]  # fmt: skip
    attack = attack_result(rows)
    if attack:
        parts.append(f"relearning outcome: {attack}")
    return ("Headline columns from: " + "; ".join(parts) + ".") if parts else ""


def separation_text(rows: list[dict]) -> str:
    """Which forget-side columns separate the never-exposed perfect filter from no-filter here."""
    sep = rows[0].get("separation") if rows else None
    if not sep:
        return ("Metric validity: not measured (the plain no-filter and perfect filter of this "
                "benchmark and model are not both recorded).")  # fmt: skip
    titles = {c.key: _short_header(c).rstrip(" ↑↓†") for c in rows_columns(rows)}
    bad = [titles.get(k, k) for k, v in sep.items() if v["informative"] is False]
    unknown = [titles.get(k, k) for k, v in sep.items() if v["informative"] is None]
    told = len(sep) - len(unknown)  # with one seed there is no interval: nothing can be told
    text = (f"Metric validity (perfect filter minus no-filter, paired by seed, 95% interval): "
            f"{told - len(bad)} of {told} forget-side columns with two or more seeds separate them")  # fmt: skip
    if bad:
        text += "; † uninformative here: " + ", ".join(bad)
    if unknown:
        text += "; fewer than two seeds, not told: " + ", ".join(unknown)
    return text + "."


def _headline_table(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    cols = headline_columns(rows)
    sep = rows[0].get("separation") if rows else {}
    attack = attack_result(rows)
    budgets = budgets_of(rows, attack) if attack else []
    head = ["method (setting; seeds)"] + [_short_header(c, sep) for c in cols]
    if attack and budgets:
        out_col = f"{attack}:forget_loss@{max(budgets)}"
        mark = " †" if (sep or {}).get(out_col, {}).get("informative") is False else ""
        head += [f"forget after relearning (largest valid budget) {UP}{mark}",
                 f"seeds validly attacked @{max(budgets)}"]  # fmt: skip
    body = []
    for r in rows:
        line = [row_label(r)] + [_cell_text(r, c) for c in cols]
        if attack and budgets:
            line += list(attack_outcome(r, attack, budgets))
        body.append(line)
    return head, body


def _by_benchmark_model(rows: list[dict]) -> list[tuple[str, list[dict]]]:
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        groups[f"{r['benchmark']}, model {r['model']}"].append(r)
    return list(groups.items())


def headline_markdown(rows: list[dict]) -> str:
    """One headline table per benchmark and model, the ranking rule and the legend."""
    lines = []
    for title, rs in _by_benchmark_model(rows):
        lines += [f"### {title}", "", *_markdown_table(*_headline_table(rs)), ""]
        if headline_sources(rs):
            lines += [headline_sources(rs), ""]
        lines += [separation_text(rs), ""]
    lines.append(footer(rows))
    return "\n".join(lines) + "\n"


# ---- the ranking in one line per benchmark and model (the README's results section) ----

RANKING_START = (
    "<!-- ranking: generated from results/ by leaderboard.write_ranking; do not edit -->"
)
RANKING_END = "<!-- ranking: end -->"


def ranking_markdown(rows: list[dict], models=(), top: int = 10) -> str:
    """One table row per benchmark and model: its ranked rows best first, each `method (setting)
    score ± half-width`, the first `top` of them; the models in `models` that have no rows on a
    benchmark read "not measured". Two sizes are never one ranking."""
    ranked: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        if r.get("rank_group") == 0:
            ranked[(str(r["benchmark"]), str(r["model"]))].append(r)
    benches = sorted({str(r["benchmark"]) for r in rows})
    names = sorted({str(r["model"]) for r in rows} | set(models), key=model_order)
    lines = [
        "| benchmark | model | seeds | ranking by score, best first (mean ± 95% half-width, nats) |",
        "|---|---|---|---|",
    ]
    for bench in benches:
        for model in names:
            group = ranked.get((bench, model), [])  # already in rank order (leaderboard_rows)
            if not group:
                lines.append(f"| {bench} | {model} | 0 | not measured |")
                continue
            shown = [f"{i}. {_ranked_label(r)}" for i, r in enumerate(group[:top], 1)]
            more = len(group) - top
            text = "; ".join(shown) + (f"; {more} more in the leaderboard" if more > 0 else "")
            seeds = max(r["seeds"] for r in group)
            lines.append(f"| {bench} | {model} | {seeds} | {text} |")
    return "\n".join(lines) + "\n"


def _ranked_label(row: dict) -> str:
    cell = row["cells"]["score"]
    half = f" ± {cell.high - cell.mean:.2f}" if cell.high is not None else ""
    setting = f" ({row['setting']})" if row["setting"] else ""
    mixed = " ‡" if len(row.get("code_versions") or []) > 1 else ""  # seeds of other code
    return f"{method_label(row)}{setting} {cell.mean:+.2f}{half}{mixed}"


def with_ranking(text: str, ranking: str) -> str:
    """`text` (a README) with the part between RANKING_START and RANKING_END replaced."""
    start, end = text.find(RANKING_START), text.find(RANKING_END)
    if start < 0 or end < start:
        raise ValueError(f"no {RANKING_START!r} ... {RANKING_END!r} section to fill")
    return text[: start + len(RANKING_START)] + "\n" + ranking + text[end:]


def write_ranking(readme: str | os.PathLike, rows: list[dict], models=()) -> None:
    """Fill the README's ranking section from the leaderboard rows (atomically)."""
    from pathlib import Path

    from unlearnbench.results.store import write_text_atomic

    path = Path(readme)
    write_text_atomic(path, with_ranking(path.read_text(), ranking_markdown(rows, models)))


def headline_html(rows: list[dict]) -> str:
    esc = html.escape
    out = []
    for title, rs in _by_benchmark_model(rows):
        head, body = _headline_table(rs)
        out.append(f'<table class="leaderboard headline"><caption>{esc(title)}</caption>')
        out.append("<thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr></thead>")
        out.append("<tbody>")
        for cells in body:
            tds = [f"<td>{esc(cells[0])}</td>"]
            tds += [f'<td class="num">{esc(c)}</td>' for c in cells[1:]]
            out.append("<tr>" + "".join(tds) + "</tr>")
        out.append("</tbody></table>")
        if headline_sources(rs):
            out.append(f'<p class="note">{esc(headline_sources(rs))}</p>')
        out.append(f'<p class="note">{esc(separation_text(rs))}</p>')
    rule = rows[0]["rule"] if rows else SORT_RULE
    out.append(f'<p class="note">Order: {esc(rule)}. The legend is under the full table.</p>')
    return "\n".join(out)


def to_csv(rows: list[dict]) -> str:
    """Machine-readable, every column: mean, std, n and the 95% interval in separate columns
    (blank where missing); `_significant` for paired deltas, `_chance`, `_p`, `_lost`, `_gained`
    for probe accuracies, `_note` for runs not reached or excluded; `rank_group` and the rule's
    order are the row order."""
    cols = rows_columns(rows)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")

    def num(x):
        return "" if x is None else repr(x)

    def text(x) -> str:
        """A record-controlled string a spreadsheet would run as a formula is quoted."""
        x = str(x)
        return "'" + x if x[:1] in ("=", "+", "-", "@", "\t", "\r") else x

    head = list(_ID_COLS)
    for c in cols:
        head += [f"{c.key}_mean", f"{c.key}_std", f"{c.key}_n", f"{c.key}_ci_low"]
        head += [f"{c.key}_ci_high", f"{c.key}_note"]
        if c.paired:
            head.append(f"{c.key}_significant")
        if c.probe:
            head += [f"{c.key}_chance", f"{c.key}_p", f"{c.key}_paired_runs"]
    w.writerow(head + ["rank_group", "role", "run_ids"])
    for r in rows:
        line = [text(r["benchmark"]), text(r["model"]), text(r["method"]), text(r["setting"])]
        line.append(r["seeds"])
        for c in cols:
            cell = r["cells"][c.key]
            line += [num(cell.mean), num(cell.std), cell.n, num(cell.low), num(cell.high)]
            line.append(text(cell.note))
            if c.paired:
                line.append(int(cell.significant) if cell.low is not None else "")
            if c.probe:
                line += [num(cell.chance), num(cell.p), cell.pairs]
        w.writerow(
            line + [r.get("rank_group", ""), r.get("role", ""), text(" ".join(r["run_ids"]))]
        )
    return buf.getvalue()


def to_html(rows: list[dict], caption: str = "", hide: tuple[str, ...] = ()) -> str:
    """An HTML <table> fragment of the full table (the report embeds it; `--format html` writes
    it as a page); `hide`: identifying columns to leave out (e.g. the benchmark on a
    per-benchmark page)."""
    head, body = _table(rows, hide)
    n_ids = len(_ID_COLS) - len(hide)
    esc = html.escape
    out = ['<table class="leaderboard">']
    if caption:
        out.append(f"<caption>{esc(caption)}</caption>")
    out.append("<thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr></thead>")
    out.append("<tbody>")
    for cells in body:
        tds = [f"<td>{esc(c)}</td>" for c in cells[:n_ids]]
        tds += [f'<td class="num">{esc(c)}</td>' for c in cells[n_ids:]]
        out.append("<tr>" + "".join(tds) + "</tr>")
    out.append("</tbody></table>")
    out.append(f'<p class="note">{esc(footer(rows))}</p>')
    return "\n".join(out)


def html_page(rows: list[dict], title: str = "unlearnbench leaderboard") -> str:
    esc = html.escape
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}'
        f"</title><style>{STYLE}</style></head><body><h1>{esc(title)}</h1>\n"
        f"<h2>Headline</h2>\n{headline_html(rows)}\n<h2>Full table</h2>\n"
        f'<div class="scroll">{to_html(rows)}</div>\n</body></html>\n'
    )


def render(rows: list[dict], fmt: str) -> str:
    """The file a format writes: markdown = the headline tables, then the full table; CSV and
    HTML: the full table (HTML with the headline above it)."""
    if fmt == "md":
        return headline_markdown(rows) + "\n## Full table\n\n" + to_markdown(rows)
    if fmt == "csv":
        return to_csv(rows)
    if fmt == "html":
        return html_page(rows)
    raise ValueError(f"unknown format {fmt!r}; choose md, csv or html")
