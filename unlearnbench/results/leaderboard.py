"""The leaderboard: one row per (benchmark, model, method, setting), mean and std over seeds.

A pure function of the run records. Loss deltas are against the `no-filter` run of the same
benchmark, model and seed. Missing metrics are blank, never zero: a cell averages only the seeds
that have the metric and says how many when that is fewer than the row's seeds.

Evaluation summaries are read from `record["evals"][name]` defensively (a record without an
evaluation, or an evaluation without a field, gives a blank cell).
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


def first_number(record: dict, *paths: tuple) -> float | None:
    for p in paths:
        v = _num(get(record, *p))
        if v is not None:
            return v
    return None


# ---- evaluation summaries (written by unlearnbench/evals), read defensively ----


def relearn_by_budget(record: dict) -> dict[int, float]:
    """Worst-case (lowest) forget loss reached within each attack budget, {budget steps: nats}."""
    ev = get(record, "evals", "relearn")
    if not isinstance(ev, dict):
        return {}
    if isinstance(ev.get("worst_case"), list):  # evals/relearn.py: [{"budget", "forget_loss", ...}]
        out = {}
        for e in ev["worst_case"]:
            b, v = get(e, "budget"), _num(get(e, "forget_loss"))
            if isinstance(b, int) and v is not None:
                out[b] = v
        return dict(sorted(out.items()))
    for key in ("worst_forget_loss", "forget_loss_by_budget", "budgets", "by_budget"):
        table = ev.get(key)
        if isinstance(table, dict):
            out = {}
            for b, v in table.items():
                if isinstance(v, dict):  # {budget: {"forget_loss": x, ...}}
                    v = v.get("worst_forget_loss", v.get("forget_loss"))
                v = _num(v)
                if v is not None and str(b).lstrip("-").isdigit():
                    out[int(b)] = v
            if out:
                return dict(sorted(out.items()))
    return {}


def steps_to_recover(record: dict, key: str = "steps_to_recover") -> tuple[float | None, bool]:
    """(steps, measured): steps None with measured True means it never recovered in the budget.
    `key`: "steps_to_recover" (to the no-filter forget loss) or "steps_to_close_gap" (a fraction
    of the gap)."""
    ev = get(record, "evals", "relearn")
    if not isinstance(ev, dict) or key not in ev:
        return None, False
    v = ev[key]
    if isinstance(v, dict):  # {"steps": n} or per-criterion
        v = v.get("steps", v.get("no_filter"))
    return _num(v), True


def max_budget(record: dict) -> int | None:
    b = relearn_by_budget(record)
    ev = get(record, "evals", "relearn") or {}
    allb = list(b) + ([int(ev["budget"])] if _num(ev.get("budget")) else [])
    return max(allb) if allb else None


def calibrated_forget(record: dict) -> float | None:
    return first_number(
        record,
        ("evals", "calibrated-loss", "calibrated", "forget_loss"),  # evals/calibrated_loss.py
        ("evals", "calibrated", "forget_loss"),
        ("evals", "calibrated", "losses", "forget"),
        ("evals", "calibrated", "losses", "forget_loss"),
        ("evals", "calibrated", "forget"),
    )


def probe_accuracy(record: dict, split: str) -> float | None:
    paths = []
    for key in ("fact-probes", "fact_probes"):  # evals/fact_probes.py: {split: {"accuracy", ...}}
        paths += [
            ("evals", key, split, "accuracy"),
            ("evals", key, "accuracy", split),
            ("evals", key, f"{split}_accuracy"),
        ]
    return first_number(record, *paths)


# ---- columns ----


@dataclass(frozen=True)
class Column:
    key: str
    title: str
    arrow: str  # UP, DOWN or ""
    value: Callable[[dict], float | None]
    kind: str = "loss"  # loss | acc | int | seconds
    core: bool = False  # always shown; other columns are dropped when blank in every row

    @property
    def header(self) -> str:
        return f"{self.title} {self.arrow}".strip()


def _loss(split: str, pre: bool = False):
    return lambda r: first_number(
        r, ("metrics", "pre_finalize", f"{split}_loss") if pre else ("metrics", f"{split}_loss")
    )


def _delta(split: str):
    return lambda r: _num(get(r, "_delta", split))


def _budget(b: int):
    return lambda r: relearn_by_budget(r).get(b)


def columns_for(records: list[dict]) -> list[Column]:
    cols = [
        Column("forget", "forget loss", UP, _loss("forget"), core=True),
        Column("adjacent", "adjacent loss", DOWN, _loss("adjacent"), core=True),
        Column("retain", "retain loss", DOWN, _loss("retain"), core=True),
        Column("d_forget", "Δforget", UP, _delta("forget"), core=True),
        Column("d_adjacent", "Δadjacent", DOWN, _delta("adjacent"), core=True),
        Column("d_retain", "Δretain", DOWN, _delta("retain"), core=True),
        Column("calibrated", "calibrated forget", UP, calibrated_forget),
    ]
    budgets = sorted({b for r in records for b in relearn_by_budget(r)})
    for b in budgets:
        cols.append(Column(f"relearn@{b}", f"forget after {b}-step attack", UP, _budget(b)))
    cols += [
        Column("recover", "steps to recover", UP, lambda r: steps_to_recover(r)[0], "int"),
        Column(
            "close_gap",
            "steps to close gap",
            UP,
            lambda r: steps_to_recover(r, "steps_to_close_gap")[0],
            "int",
        ),
        Column(
            "probe_forget", "forget facts acc", DOWN, lambda r: probe_accuracy(r, "forget"), "acc"
        ),
        Column(
            "probe_adjacent",
            "adjacent facts acc",
            UP,
            lambda r: probe_accuracy(r, "adjacent"),
            "acc",
        ),
        Column(
            "probe_retain", "retain facts acc", UP, lambda r: probe_accuracy(r, "retain"), "acc"
        ),
        Column(
            "disjoint",
            "held-out facts gain",
            DOWN,
            lambda r: first_number(r, ("evals", "disjoint-facts", "held_out_gain")),
            "acc",
        ),
        Column(
            "dir_ablation",
            "forget after direction ablation",
            UP,
            lambda r: first_number(r, ("evals", "direction-ablation", "ablated", "forget_loss")),
        ),
        Column("tokens", "tokens", DOWN, lambda r: _num(r.get("tokens_seen")), "int", core=True),
        Column(
            "time", "time (s)", DOWN, lambda r: _num(r.get("wall_seconds")), "seconds", core=True
        ),
    ]
    return cols


# ---- settings: what distinguishes runs of one method beyond the seed ----

_IGNORED_TRAIN = {"device", "bf16", "save_model", "micro_batch_size"}  # do not change the result


def _defaults(method: str) -> tuple[dict, dict]:
    """(method option defaults, train defaults) from the registry; empty when unknown."""
    import dataclasses

    from unlearnbench.config import TrainConfig
    from unlearnbench.registry import methods

    try:
        spec = methods.get(method)
    except KeyError:
        return {}, {}
    opts = {f.name: f.default for f in dataclasses.fields(spec.options)}
    train = {f.name: f.default for f in dataclasses.fields(TrainConfig)} | spec.train_defaults
    return opts, train


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


def setting_of(record: dict, with_recall: bool = True) -> str:
    """Recall (for methods that read labels) plus every non-default label, method and train option."""
    from unlearnbench.config import LabelConfig

    cfg = record.get("config") or {}
    labels = cfg.get("labels") or {}
    parts = []
    if with_recall and record.get("method") != "no-filter" and "recall" in labels:
        parts.append(f"recall={labels['recall']}")
    for k, default in LabelConfig().__dict__.items():
        if k != "recall" and k in labels and not _same(labels[k], default):
            parts.append(f"{k}={show_value(labels[k])}")
    if cfg.get("base"):  # where the run started, when not its method's default
        parts.append(f"base={show_value(cfg['base'])}")
    opt_defaults, train_defaults = _defaults(record.get("method", ""))
    for k, v in sorted((cfg.get("method_options") or {}).items()):
        if k not in opt_defaults or not _same(v, opt_defaults[k]):
            parts.append(f"{k}={show_value(v)}")
    for k, v in sorted((cfg.get("train") or {}).items()):
        if k in _IGNORED_TRAIN or k not in train_defaults:
            continue
        if not _same(v, train_defaults[k]):
            parts.append(f"{k}={show_value(v)}")
    return ", ".join(parts)


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


def _recover_cell(rs: list[dict], key: str) -> Cell:
    measured = [steps_to_recover(r, key) for r in rs]
    if not any(m for _, m in measured):
        return Cell(None, None, 0)
    m, s, n = mean_std(_per_seed(rs, lambda r: steps_to_recover(r, key)[0]))
    never = sum(1 for v, ok in measured if ok and v is None)
    if never:
        budget = max((max_budget(r) or 0 for r in rs), default=0)
        note = f"> {budget}" if budget else "not recovered"
        if n:  # some seeds recovered: the mean is over those, the note counts the others
            note = f"{never}/{never + n} seeds {note}"
        return Cell(m, s, n, note)
    return Cell(m, s, n)


def leaderboard_rows(records: list[dict], benchmark: str | None = None) -> list[dict]:
    """Rows: {benchmark, model, method, setting, seeds, cells: {column key: Cell}}; the columns
    used are in `rows_columns(rows)`."""
    recs = [r for r in with_deltas(records) if benchmark in (None, r.get("benchmark"))]
    cols = columns_for(recs)
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in recs:
        groups[(r.get("benchmark"), r.get("model"), r.get("method"), setting_of(r))].append(r)
    rows = []
    for (bench, model, method, setting), rs in groups.items():
        row = {"benchmark": bench, "model": model, "method": method, "setting": setting}
        row["seeds"] = len({r.get("seed") for r in rs})
        row["recall"] = recall_of(rs[0]) if method != "no-filter" else None
        row["family"] = setting_of(rs[0], with_recall=False)  # the setting less the recall
        row["run_ids"] = sorted(r.get("run_id", "") for r in rs)
        cells = {}
        for c in cols:
            if c.key in ("recover", "close_gap"):
                key = "steps_to_recover" if c.key == "recover" else "steps_to_close_gap"
                cells[c.key] = _recover_cell(rs, key)
            else:
                cells[c.key] = Cell(*mean_std(_per_seed(rs, c.value)))
        row["cells"] = cells
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


def footer() -> str:
    return f"{LEGEND} Order: {SORT_RULE}."


def to_markdown(rows: list[dict]) -> str:
    head, body = _table(rows)
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for cells in body:
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    lines += ["", footer()]
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
    out.append(f'<p class="note">{esc(footer())}</p>')
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
