"""The leaderboard: one row per (benchmark, model, method, setting), mean and std over seeds.

A pure function of the run records. Loss deltas are against the `no-filter` run of the same
benchmark, model and seed. Missing metrics are blank, never zero.
"""

from __future__ import annotations

import math
from collections import defaultdict

# (column title, record path, direction) ; direction: +1 higher is better, -1 lower is better
COLUMNS = [
    ("forget loss ↑", ("metrics", "forget_loss"), +1),
    ("adjacent loss", ("metrics", "adjacent_loss"), 0),
    ("retain loss ↓", ("metrics", "retain_loss"), -1),
    ("Δforget vs no-filter ↑", ("delta", "forget_loss"), +1),
    ("Δretain vs no-filter ↓", ("delta", "retain_loss"), -1),
    ("forget pre-finalize", ("metrics", "pre_finalize", "forget_loss"), 0),
    ("tokens", ("tokens_seen",), 0),
    ("time (s)", ("wall_seconds",), 0),
]

SORT_RULE = "sorted by benchmark, then mean forget loss (higher first)"


def _get(record: dict, path: tuple):
    x = record
    for k in path:
        if not isinstance(x, dict) or k not in x:
            return None
        x = x[k]
    return x


def setting_of(record: dict) -> str:
    """What distinguishes runs of one method beyond the seed, in a few words (e.g. recall)."""
    cfg = record.get("config", {})
    parts = []
    if record.get("method") != "no-filter":
        parts.append(f"recall={cfg.get('labels', {}).get('recall')}")
    for k, v in sorted(cfg.get("method_options", {}).items()):
        if k in ("strict", "optimizer") and v not in (False, "shared"):
            parts.append(f"{k}={v}")
    return ", ".join(parts)


def with_deltas(records: list[dict]) -> list[dict]:
    reference = {
        (r["benchmark"], r["model"], r["seed"]): r for r in records if r["method"] == "no-filter"
    }
    out = []
    for r in records:
        ref = reference.get((r["benchmark"], r["model"], r["seed"]))
        delta = {}
        for k in ("forget_loss", "adjacent_loss", "retain_loss"):
            a, b = _get(r, ("metrics", k)), _get(ref, ("metrics", k)) if ref else None
            delta[k] = a - b if a is not None and b is not None else None
        out.append({**r, "delta": delta})
    return out


def mean_std(values: list[float]) -> tuple[float | None, float | None, int]:
    vals = [v for v in values if v is not None]
    if not vals:
        return None, None, 0
    m = sum(vals) / len(vals)
    if len(vals) < 2:
        return m, None, 1
    var = sum((v - m) ** 2 for v in vals) / (len(vals) - 1)
    return m, math.sqrt(var), len(vals)


def leaderboard_rows(records: list[dict], benchmark: str | None = None) -> list[dict]:
    recs = [r for r in with_deltas(records) if benchmark in (None, r["benchmark"])]
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in recs:
        groups[(r["benchmark"], r["model"], r["method"], setting_of(r))].append(r)
    rows = []
    for (bench, model, method, setting), rs in groups.items():
        row = {"benchmark": bench, "model": model, "method": method, "setting": setting}
        row["seeds"] = len({r["seed"] for r in rs})
        for title, path, _ in COLUMNS:
            row[title] = mean_std([_get(r, path) for r in rs])
        rows.append(row)
    rows.sort(key=lambda r: (r["benchmark"], -(r[COLUMNS[0][0]][0] or -math.inf)))
    return rows


def _fmt(cell, title: str) -> str:
    m, s, n = cell
    if m is None:
        return ""
    if title in ("tokens",):
        return f"{m:,.0f}"
    if title.startswith("time"):
        return f"{m:.0f}"
    return f"{m:.3f}" if s is None else f"{m:.3f} ± {s:.3f}"


def to_markdown(rows: list[dict]) -> str:
    head = ["benchmark", "model", "method", "setting", "seeds"] + [c[0] for c in COLUMNS]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in rows:
        cells = [r["benchmark"], r["model"], r["method"], r["setting"], str(r["seeds"])]
        cells += [_fmt(r[c[0]], c[0]) for c in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"Losses are mean token cross-entropy in nats on test documents; mean ± std over seeds; {SORT_RULE}.")
    return "\n".join(lines) + "\n"
