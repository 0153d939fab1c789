"""Compute penalty (the SGTM paper's headline cost of removal, Shilov et al. 2025): a run's test loss
on a split, expressed through the `no-filter` run's training curve as the share of that run's
training compute it would have saved to stop where it first reached the same loss.

    fraction = the share of no-filter's steps at which its loss first reached the run's loss
    penalty  = 1 - fraction

A run as good as no-filter's final loss or better has penalty 0; a run whose retain loss equals
no-filter's at half its steps has penalty 0.5. At a fixed batch, training compute is proportional
to steps (the no-filter run's steps all have the same number of blocks). Between two measured
points of the curve the step is interpolated linearly (ours). A loss above every measured point
was reached before the first one: the penalty is only bounded (`at_least`), named, never a
number. Pure: no torch; the curve comes from the no-filter record (`record["training_curve"]`,
rows {step, split, loss}) and its total steps.
"""

from __future__ import annotations

from typing import NamedTuple

MEASURED = "measured"
AS_GOOD = "at least as good as no-filter's final"  # penalty 0
BEFORE_CURVE = "above the measured curve"  # reached before its first point: a bound only


class Penalty(NamedTuple):
    penalty: float | None  # 1 - fraction; None when only bounded
    fraction: float | None  # share of no-filter's steps at which it reached the loss
    status: str  # MEASURED | AS_GOOD | BEFORE_CURVE
    at_least: float | None = None  # BEFORE_CURVE: the penalty is at least this


def split_curve(rows: list[dict], split: str) -> list[tuple[int, float]]:
    """(step, loss) of one split from long-format curve rows, in step order."""
    points = sorted(
        (int(r["step"]), float(r["loss"]))
        for r in rows
        if r.get("split") == split and r.get("loss") is not None
    )
    steps = [s for s, _ in points]
    assert len(set(steps)) == len(steps), f"the {split} curve has a step twice: {steps}"
    return points


def compute_penalty(curve: list[tuple[int, float]], total_steps: int, loss: float) -> Penalty:
    """The penalty of reaching `loss`, against no-filter's (step, loss) `curve` over its
    `total_steps` steps (the curve's last point is its final loss)."""
    assert curve, "an empty no-filter curve"
    assert total_steps > 0 and curve[-1][0] <= total_steps, (
        f"the curve's last step {curve[-1][0]} is past the run's {total_steps} steps"
    )
    if loss <= curve[-1][1]:
        return Penalty(0.0, 1.0, AS_GOOD)
    # the first point at or below the loss: the crossing lies between it and the point before
    first = next(i for i, (_, v) in enumerate(curve) if v <= loss)  # exists: the last point is
    step, value = curve[first]
    if first == 0:  # reached at or before the first measured point
        if value == loss:
            return _penalty(step / total_steps)
        return Penalty(None, None, BEFORE_CURVE, at_least=1.0 - step / total_steps)
    prev_step, prev_value = curve[first - 1]  # prev_value > loss >= value
    reached = prev_step + (prev_value - loss) / (prev_value - value) * (step - prev_step)
    return _penalty(reached / total_steps)


def _penalty(fraction: float) -> Penalty:
    return Penalty(1.0 - fraction, fraction, MEASURED)


def run_penalties(
    curve_rows: list[dict], total_steps: int, losses: dict[str, float | None]
) -> dict[str, Penalty | None]:
    """{split: Penalty} of a run's final `losses` ({split: loss}) against no-filter's curve rows;
    None for a split the run or the curve lacks."""
    out: dict[str, Penalty | None] = {}
    for split, loss in losses.items():
        curve = split_curve(curve_rows, split)
        out[split] = (
            compute_penalty(curve, total_steps, loss) if curve and loss is not None else None
        )
    return out


def record_penalties(no_filter: dict, run: dict) -> dict[str, Penalty | None] | None:
    """{split: Penalty} of `run`'s final test losses against the `no-filter` record's training
    curve (its last point is the end of its training: the total steps); None when that record has
    no curve (recorded before it kept one: the penalty was not measured)."""
    rows = no_filter.get("training_curve") or []
    if not rows:
        return None
    total = max(int(r["step"]) for r in rows)
    metrics = run.get("metrics") or {}
    losses = {s: metrics.get(f"{s}_loss") for s in ("forget", "adjacent", "retain")}
    return run_penalties(rows, total, losses)
