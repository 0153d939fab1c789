"""Run records and what is drawn from them: the store, the leaderboard, its statistics, figures.

`load_records(store)` gives the records of a run store as a pandas DataFrame, one row per run: the
same frame, and so the same numbers, the leaderboard's cells are computed from. For notebooks,
`metrics_long(store)` (one row per run and metric) and `curves_long(store)` (one row per attack
curve point) give the same records in long form, every cell a scalar (results/tidy.py).
"""

from __future__ import annotations

from unlearnbench.results.tidy import curves_long, metrics_long

__all__ = ["curves_long", "load_records", "metrics_long"]


def load_records(store, benchmark: str | None = None):
    """One row per run of the store (a path or a `RunStore`; of `benchmark` when given): its
    identity, every leaderboard column (NaN where not measured), the Δ against its no-filter run,
    its config and its evaluation summaries flattened (`leaderboard.runs_frame`)."""
    from unlearnbench.results.leaderboard import runs_frame
    from unlearnbench.results.store import RunStore

    records = (store if isinstance(store, RunStore) else RunStore(store)).records()
    return runs_frame(records, benchmark)
