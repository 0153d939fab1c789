"""The relearning attack's worst case, one definition for the tables and the relearn figure.

A stored attack is long-format curve rows (`step, split, loss, lr, attack_seed, mode`): one curve
per setting (learning rate, attack seed). A setting is excluded from step s on when its retain
loss rose more than `retain_tolerance` nats above its step-0 value at some evaluated step <= s (an
attack that wrecks the model is not a successful attack). The worst case at step s is the lowest
forget loss reached at any step <= s by a setting not excluded at s. When every setting is
excluded, the worst case is `EXCLUDED`: measured, and no valid attack remained, which a table
shows as "no valid attack", never as blank (not measured) nor as a bound.

This is the rule the `relearn` evaluation applies to each budget when it writes its summary
(`worst_case`); the tables read that summary and the figure reads the curves through
`worst_case_curve`, so both show the same numbers.
"""

from __future__ import annotations

import math
from collections import defaultdict


class _Excluded:
    """Every attack setting broke the retain tolerance: measured, but no valid attack."""

    _instance = None
    text = "no valid attack"

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return self.text

    __str__ = __repr__


EXCLUDED = _Excluded()
RETAIN_TOLERANCE = 0.5  # relearn's default `retain_tolerance` (evals/relearn.py RelearnOptions)


def settings_curves(
    rows: list[dict], mode: str | None = None, column: str = "loss"
) -> dict[tuple, dict]:
    """{(lr, attack seed[, mode]): {split: {step: value of `column`}}} of the rows (of one `mode`
    when given; a result that ran several modes keeps each mode's settings apart)."""
    out: dict[tuple, dict] = defaultdict(lambda: defaultdict(dict))
    for row in rows:
        if not isinstance(row, dict) or (mode is not None and row.get("mode") != mode):
            continue
        step, loss = row.get("step"), row.get(column)
        if not isinstance(step, int | float) or not isinstance(loss, int | float):
            continue
        if math.isfinite(loss):
            setting = (row.get("lr"), row.get("attack_seed"), row.get("mode"))
            out[setting][row.get("split")][int(step)] = loss
    return out


def broke_at(curve: dict, retain_tolerance: float) -> int | None:
    """First evaluated step at which the setting's retain loss exceeded its step-0 value by more
    than the tolerance; None when it never did (or has no retain curve)."""
    retain = curve.get("retain") or {}
    base = retain.get(0)
    if base is None:
        return None
    bad = [step for step, v in retain.items() if v > base + retain_tolerance]
    return min(bad) if bad else None


def worst_case_at(curves: dict[tuple, dict], step: int, retain_tolerance: float):
    """Lowest forget loss within `step` over the settings still valid at `step`; EXCLUDED when
    none is; None when no setting has a forget curve."""
    if not any(c.get("forget") for c in curves.values()):
        return None
    best = None
    for curve in curves.values():
        broke = broke_at(curve, retain_tolerance)
        if broke is not None and broke <= step:
            continue
        for s, v in (curve.get("forget") or {}).items():
            if s <= step and (best is None or v < best):
                best = v
    return EXCLUDED if best is None else best


def worst_case_curve(
    rows: list[dict], retain_tolerance: float = RETAIN_TOLERANCE, mode: str | None = None
) -> dict[int, float | _Excluded]:
    """{step: worst case at that step} at every evaluated step (module docstring)."""
    curves = settings_curves(rows, mode)
    steps = sorted({s for c in curves.values() for s in (c.get("forget") or {})})
    return {s: worst_case_at(curves, s, retain_tolerance) for s in steps}


def record_tolerance(summary: dict | None) -> float:
    """The retain tolerance a stored attack result was summarized with (its default before)."""
    value = summary.get("retain_tolerance") if isinstance(summary, dict) else None
    return float(value) if isinstance(value, int | float) else RETAIN_TOLERANCE


def budget_outcome(summary: dict | None, budget) -> float | _Excluded | None:
    """The stored worst case of an attack result at `budget`: its forget loss, EXCLUDED when every
    setting broke the retain tolerance within the budget, None when that budget was not run."""
    entries = summary.get("worst_case") if isinstance(summary, dict) else None
    for e in entries or []:
        if isinstance(e, dict) and str(e.get("budget")) == str(budget):
            value = e.get("forget_loss")
            if isinstance(value, int | float) and not isinstance(value, bool):
                return float(value)
            return EXCLUDED if e.get("excluded") else None
    return None
