"""The leaderboard: one row per (benchmark, model, method, setting), mean and std over seeds.

A pure function of the run records (no torch, no method or evaluation registry). Loss deltas are
against the `no-filter` run of the same benchmark, model and seed. Missing metrics are blank, never
zero: a cell averages only the seeds that have the metric and says how many when that is fewer than
the row's seeds.

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
from dataclasses import dataclass

from unlearnbench.results.matching import matching_no_filter, recorded_base

UP, DOWN = "↑", "↓"  # higher is better, lower is better
SORT_RULE = (
    "rows sorted by benchmark and model, then by mean forget loss after finalize, "
    "highest first (ties: lower retain loss first)"
)
LEGEND = (
    "Losses are mean token cross-entropy in nats on held-out test documents; "
    "mean ± std over seeds (n = seeds with the metric, shown when fewer than the row's seeds); "
    "Δ = change against `no-filter` of the same benchmark, model and seed; "
    "an evaluation's columns are named SUITE/KEY: metric, the suite that ran it and its key there; "
    f"{UP} higher is better, {DOWN} lower is better; blank = not measured."
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


def _num(x) -> float | None:
    if isinstance(x, bool) or not isinstance(x, int | float):
        return None
    return float(x) if math.isfinite(x) else None


# ---- evaluation results: the headline metrics each evaluation declared, stored with its summary ----


@dataclass(frozen=True)
class NotReached:
    """Measured, but not within `limit` (steps to recover that never recovered in the budget)."""

    limit: int | None


def headline(summary) -> list[dict]:
    """The headline metrics a stored evaluation result carries (empty for a result recorded before
    evaluations declared them, or one that is not a summary)."""
    entries = summary.get("headline") if isinstance(summary, dict) else None
    return [e for e in entries if isinstance(e, dict) and "name" in e] if entries else []


def metric_value(record: dict, key: str, name: str) -> float | NotReached | None:
    """The value of metric `name` of the result `record["evals"][key]`; None when not measured."""
    for e in headline(get(record, "evals", key)):
        if e["name"] == name:
            if "limit" in e and _num(e.get("value")) is None:
                return NotReached(e["limit"])
            return _num(e.get("value"))
    return None


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
    v = _num(entry.get("value"))
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
    measured = [e for e in entries if _num(e.get("value")) is not None or "limit" in e]
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

    @property
    def header(self) -> str:
        return f"{self.title} {self.arrow}".strip()


def _loss(split: str, pre: bool = False):
    return lambda r: _num(
        get(r, "metrics", "pre_finalize", f"{split}_loss")
        if pre
        else get(r, "metrics", f"{split}_loss")
    )


def _delta(split: str):
    return lambda r: _num(get(r, "_delta", split))


KINDS = {"nats": "loss", "accuracy": "acc", "steps": "int"}


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
                found[key].setdefault(e["name"], e)
                metric = e.get("metric", e["name"])
                order[key].setdefault(metric, len(order[key]))
    cols = []
    for key in sorted(found, key=lambda k: (k.split("/")[0], first[k])):

        def position(e: dict, key=key) -> tuple:
            metric = e.get("metric", e["name"])
            return order[key][metric], _natural(e["name"][len(metric) + 1 :])

        for e in sorted(found[key].values(), key=position):
            arrow = {"higher": UP, "lower": DOWN}.get(e.get("direction"), "")
            title = f"{key}: {e.get('title') or e['name']}"
            value = lambda r, key=key, name=e["name"]: metric_value(r, key, name)  # noqa: E731
            cols.append(
                Column(f"{key}:{e['name']}", title, arrow, value, KINDS.get(e.get("unit"), "loss"))
            )
    return cols


def columns_for(records: list[dict]) -> list[Column]:
    cols = [
        Column("forget", "forget loss", UP, _loss("forget"), core=True),
        Column("adjacent", "adjacent loss", DOWN, _loss("adjacent"), core=True),
        Column("retain", "retain loss", DOWN, _loss("retain"), core=True),
        Column("d_forget", "Δforget", UP, _delta("forget"), core=True),
        Column("d_adjacent", "Δadjacent", DOWN, _delta("adjacent"), core=True),
        Column("d_retain", "Δretain", DOWN, _delta("retain"), core=True),
    ]
    cols += metric_columns(records)
    cols += [
        Column("tokens", "tokens", DOWN, lambda r: _num(r.get("tokens_seen")), "int", core=True),
        Column(
            "time", "time (s)", DOWN, lambda r: _num(r.get("wall_seconds")), "seconds", core=True
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
    return _num(get(record, "config", "labels", "recall"))


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
        if k != "recall":
            parts.append(f"{k}={show_value(v)}")
    for k, v in sorted((nd.get("method_options") or {}).items()):
        parts.append(f"{k}={show_value(v)}")
    for k, v in sorted((nd.get("train") or {}).items()):
        if k not in _IGNORED_TRAIN:
            parts.append(f"{k}={show_value(v)}")
    return ", ".join(parts)


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


# ---- deltas against no-filter ----


def no_filter_reference(record: dict, candidates: list[dict]) -> dict | None:
    """The `no-filter` record to compare with: a post-hoc run's base when it is a recorded
    no-filter run (whatever its options: what the unlearning changed), else the matching plain
    no-filter run (results/matching.py)."""
    base = recorded_base(record, candidates)
    if base is not None and base.get("method") == "no-filter":
        return base
    return matching_no_filter(record, candidates)


def with_deltas(records: list[dict]) -> list[dict]:
    refs = [r for r in records if r.get("method") == "no-filter"]
    out = []
    for r in records:
        ref = no_filter_reference(r, refs)
        delta = {}
        for s in ("forget", "adjacent", "retain"):
            a, b = _loss(s)(r), _loss(s)(ref) if ref else None
            delta[s] = a - b if a is not None and b is not None else None
        out.append({**r, "_delta": delta})
    return out


# ---- aggregation ----


@dataclass(frozen=True)
class Cell:
    mean: float | None
    std: float | None
    n: int  # seeds with the metric
    note: str = ""  # e.g. "> 200" for steps to recover that never recovered


def mean_std(values: list[float | None]) -> tuple[float | None, float | None, int]:
    vals = [v for v in values if v is not None]
    if not vals:
        return None, None, 0
    m = sum(vals) / len(vals)
    if len(vals) < 2:
        return m, None, 1
    var = sum((v - m) ** 2 for v in vals) / (len(vals) - 1)  # sample std over seeds
    return m, math.sqrt(var), len(vals)


def _per_seed(rs: list[dict], fn: Callable[[dict], float | None]) -> list[float | None]:
    """One value per seed: several records of one seed (e.g. no-filter under two label configs,
    which it ignores) are averaged first, so the std is over seeds."""
    by_seed: dict = defaultdict(list)
    for r in rs:
        by_seed[r.get("seed")].append(fn(r))
    return [mean_std(v)[0] for _, v in sorted(by_seed.items(), key=lambda kv: str(kv[0]))]


def column_cell(rs: list[dict], col: Column) -> Cell:
    """Mean and std over seeds of the records that measured a value; seeds that measured it as not
    reached (steps to recover beyond the budget) are counted in the note, never averaged."""
    values = [col.value(r) for r in rs]
    m, s, n = mean_std(_per_seed(rs, lambda r: _num(col.value(r))))
    beyond = [v for v in values if isinstance(v, NotReached)]
    if not beyond:
        return Cell(m, s, n)
    limit = max((v.limit or 0 for v in beyond), default=0)
    note = f"> {limit}" if limit else "not reached"
    if n:  # some seeds reached it: the mean is over those, the note counts the others
        note = f"{len(beyond)}/{len(beyond) + n} seeds {note}"
    return Cell(m, s, n, note)


def leaderboard_rows(records: list[dict], benchmark: str | None = None) -> list[dict]:
    """Rows: {benchmark, model, method, setting, seeds, cells: {column key: Cell}}; the columns
    used are in `rows_columns(rows)`. A row is one configuration as its run id names it (the seed
    aside): settings outside the run id never split a row."""
    recs = with_deltas(with_settings(records))
    recs = [r for r in recs if benchmark in (None, r.get("benchmark"))]
    cols = columns_for(recs)
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in recs:
        groups[(r.get("benchmark"), r.get("model"), r.get("method"), setting_of(r))].append(r)
    rows = []
    unread = unread_results(recs)
    for (bench, model, method, setting), rs in groups.items():
        row = {"benchmark": bench, "model": model, "method": method, "setting": setting}
        row["seeds"] = len({r.get("seed") for r in rs})
        row["recall"] = recall_of(rs[0]) if method != "no-filter" else None
        row["family"] = setting_of(rs[0], with_recall=False)  # the setting less the recall
        row["run_ids"] = sorted(r.get("run_id", "") for r in rs)
        row["cells"] = {c.key: column_cell(rs, c) for c in cols}
        row["unread"] = unread
        rows.append(row)
    shown = [
        c
        for c in cols
        if c.core or any(r["cells"][c.key].n or r["cells"][c.key].note for r in rows)
    ]
    for r in rows:
        r["columns"] = shown

    def order(r):
        f, ret = r["cells"]["forget"].mean, r["cells"]["retain"].mean
        return (
            str(r["benchmark"]),
            str(r["model"]),
            -(f if f is not None else -math.inf),
            ret if ret is not None else math.inf,
            r["method"],
            r["setting"],
        )

    rows.sort(key=order)
    return rows


def rows_columns(rows: list[dict]) -> list[Column]:
    return rows[0]["columns"] if rows else columns_for([])


# ---- rendering ----


def format_cell(cell: Cell, col: Column, seeds: int) -> str:
    if cell.mean is None:
        return cell.note
    if col.kind == "int":
        text = f"{cell.mean:,.0f}" + (f" ± {cell.std:,.0f}" if cell.std is not None else "")
    elif col.kind == "seconds":
        text = f"{cell.mean:.0f}" + (f" ± {cell.std:.0f}" if cell.std is not None else "")
    else:  # losses and accuracies: 3 decimals
        text = f"{cell.mean:.3f}" + (f" ± {cell.std:.3f}" if cell.std is not None else "")
    if 0 < cell.n < seeds:
        text += f" (n={cell.n})"
    if cell.note:
        text += f"; {cell.note}"
    return text


_ID_COLS = ["benchmark", "model", "method", "setting", "seeds"]


def _table(rows: list[dict], hide: tuple[str, ...] = ()) -> tuple[list[str], list[list[str]]]:
    cols = rows_columns(rows)
    ids = [c for c in _ID_COLS if c not in hide]
    head = ids + [c.header for c in cols]
    body = []
    for r in rows:
        cells = [str(r[c]) for c in ids]
        cells += [format_cell(r["cells"][c.key], c, r["seeds"]) for c in cols]
        body.append(cells)
    return head, body


def footer(rows: list[dict] | None = None) -> str:
    text = f"{LEGEND} Order: {SORT_RULE}."
    unread = rows[0].get("unread") if rows else None
    if unread:
        text += (
            f" Not shown: {len(unread)} evaluation results recorded before evaluations stored"
            " their headline metrics (`unlearnbench attack RUN --suite SUITE` adds them, nothing"
            " is rerun)."
        )
    return text


def to_markdown(rows: list[dict]) -> str:
    head, body = _table(rows)
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for cells in body:
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    lines += ["", footer(rows)]
    return "\n".join(lines) + "\n"


def to_csv(rows: list[dict]) -> str:
    """Machine-readable: mean, std and n in separate columns; blank where missing."""
    cols = rows_columns(rows)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    head = list(_ID_COLS)
    for c in cols:
        head += [f"{c.key}_mean", f"{c.key}_std", f"{c.key}_n"]
    w.writerow(head + ["run_ids"])
    for r in rows:
        line = [r["benchmark"], r["model"], r["method"], r["setting"], r["seeds"]]
        for c in cols:
            cell = r["cells"][c.key]
            line += [
                "" if cell.mean is None else repr(cell.mean),
                "" if cell.std is None else repr(cell.std),
                cell.n,
            ]
        w.writerow(line + [" ".join(r["run_ids"])])
    return buf.getvalue()


def to_html(rows: list[dict], caption: str = "", hide: tuple[str, ...] = ()) -> str:
    """An HTML <table> fragment (the report embeds it; `--format html` writes it as a page);
    `hide`: identifying columns to leave out (e.g. the benchmark on a per-benchmark page)."""
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
    from unlearnbench.results.report import STYLE

    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}'
        f"</title><style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>\n"
        f"{to_html(rows)}\n</body></html>\n"
    )


def render(rows: list[dict], fmt: str) -> str:
    if fmt == "md":
        return to_markdown(rows)
    if fmt == "csv":
        return to_csv(rows)
    if fmt == "html":
        return html_page(rows)
    raise ValueError(f"unknown format {fmt!r}; choose md, csv or html")
