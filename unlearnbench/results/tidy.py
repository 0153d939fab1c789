"""Run records in long ("tidy") form for notebooks: one row per run and metric, one row per attack
curve point. Every cell is a scalar, so the frames go straight into `groupby`, `pivot_table`,
seaborn or a CSV (`load_records` is one wide row per run, with lists and dicts in some columns).

    from unlearnbench.results import metrics_long, curves_long
    m = metrics_long("results")                 # the committed grid, or your run store
    m.query("metric == 'forget_loss' and source == 'run'").groupby("method").value.mean()
    c = curves_long("results")                  # relearning and other attack curves
    c.query("split == 'forget'").groupby(["method", "step"]).loss.min()
"""

from __future__ import annotations

import json
import math

# what names a run in every row: its identity and its settings that differ from the defaults
RUN_COLUMNS = ("run_id", "method", "benchmark", "model", "seed", "setting")


def _records(store, benchmark: str | None) -> list[dict]:
    from unlearnbench.results.store import RunStore

    records = (store if isinstance(store, RunStore) else RunStore(store)).records()
    return [r for r in records if benchmark is None or r.get("benchmark") == benchmark]


def _setting(record: dict) -> str:
    """The run's non-default settings as one sorted `key=value` string ("" at the defaults)."""
    flat = {}
    for section in (record.get("non_default") or {}).values():
        if isinstance(section, dict):
            flat.update(section)
    return ", ".join(f"{k}={json.dumps(v)}" for k, v in sorted(flat.items()))


def _identity(record: dict) -> dict:
    ident = {k: record.get(k) for k in RUN_COLUMNS[:-1]}
    ident["setting"] = _setting(record)
    return ident


def _number(value) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    return float(value) if ok and math.isfinite(value) else math.nan


def metric_rows(record: dict) -> list[dict]:
    """The run's own losses (source "run"; "run/pre_finalize" before ablation or merging) and
    every evaluation's declared headline metrics (source: the evaluation's SUITE/KEY). `value` is
    NaN where nothing was measured; `limit` holds N where an attack did not recover within N."""
    ident = _identity(record)
    rows = []
    metrics = record.get("metrics") or {}
    for source, values in (("run", metrics), ("run/pre_finalize", metrics.get("pre_finalize"))):
        for name, value in (values or {}).items():
            if isinstance(value, dict | list):
                continue
            loss = name.endswith("_loss")  # removal raises the forget loss; damage the others
            better = ("higher" if name.startswith("forget") else "lower") if loss else ""
            rows.append({**ident, "source": source, "metric": name, "value": _number(value),
                         "direction": better, "unit": "nats" if loss else "", "limit": None})  # fmt: skip
    for key, summary in (record.get("evals") or {}).items():
        for e in (summary or {}).get("headline") or []:
            rows.append({**ident, "source": key, "metric": e.get("name"),
                         "value": _number(e.get("value")), "direction": e.get("direction", ""),
                         "unit": e.get("unit", ""), "limit": e.get("limit")})  # fmt: skip
    return rows


def curve_rows(record: dict) -> list[dict]:
    """One row per recorded curve point (attacks, the training curve): the run's identity, the
    curve's source (SUITE/KEY) and the point's own scalar fields (step, split, loss, lr, ...)."""
    ident = _identity(record)
    rows = []
    for source, points in (record.get("curves") or {}).items():
        for point in points or []:
            scalars = {k: v for k, v in point.items() if not isinstance(v, dict | list)}
            rows.append({**ident, "source": source, **scalars})
    return rows


def metrics_long(store, benchmark: str | None = None):
    """One row per run and metric of a store (a path or a `RunStore`), as a pandas DataFrame:
    RUN_COLUMNS, source, metric, value, direction, unit, limit."""
    import pandas as pd

    rows = [row for r in _records(store, benchmark) for row in metric_rows(r)]
    columns = [*RUN_COLUMNS, "source", "metric", "value", "direction", "unit", "limit"]
    return pd.DataFrame(rows, columns=columns)


def curves_long(store, benchmark: str | None = None):
    """One row per attack (or training) curve point of a store, as a pandas DataFrame:
    RUN_COLUMNS, source, then the points' fields (step, split, loss, lr, attack_seed, ...)."""
    import pandas as pd

    rows = [row for r in _records(store, benchmark) for row in curve_rows(r)]
    frame = pd.DataFrame(rows)
    return frame if rows else pd.DataFrame(columns=[*RUN_COLUMNS, "source"])
