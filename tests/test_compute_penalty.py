"""Compute penalty: a run's loss as the share of the no-filter run's training it would have saved."""

from __future__ import annotations

import pytest

from unlearnbench.results.compute_penalty import (
    AS_GOOD,
    BEFORE_CURVE,
    MEASURED,
    compute_penalty,
    record_penalties,
    run_penalties,
    split_curve,
)

# a no-filter run of 1000 steps, measured every 100 (its final loss at step 1000)
ROWS = [
    {"step": s, "split": split, "loss": base + 2.0 / (s / 100)}
    for s in range(100, 1001, 100)
    for split, base in (("retain", 1.0), ("forget", 1.5))
]


def test_the_no_filter_run_against_itself_has_no_penalty():
    curve = split_curve(ROWS, "retain")
    final = curve[-1][1]
    p = compute_penalty(curve, 1000, final)
    assert (p.penalty, p.fraction, p.status) == (0.0, 1.0, AS_GOOD)
    both = run_penalties(
        ROWS, 1000, {"retain": final, "forget": split_curve(ROWS, "forget")[-1][1]}
    )
    assert [q.penalty for q in both.values()] == [0.0, 0.0]


def test_a_run_that_matches_no_filter_at_half_its_steps_pays_half():
    curve = split_curve(ROWS, "retain")
    at_500 = dict(curve)[500]
    p = compute_penalty(curve, 1000, at_500)
    assert p.status == MEASURED and p.penalty == pytest.approx(0.5)


def test_between_points_the_step_is_interpolated_and_better_runs_pay_nothing():
    curve = [(100, 3.0), (200, 2.0), (400, 1.0)]
    assert compute_penalty(curve, 400, 2.5).fraction == pytest.approx(150 / 400)
    assert compute_penalty(curve, 400, 1.5).fraction == pytest.approx(300 / 400)
    assert compute_penalty(curve, 400, 0.7).penalty == 0.0  # better than no-filter's final
    # the first time it was reached counts (a later bump above the loss does not)
    bumpy = [(100, 3.0), (200, 1.8), (300, 2.2), (400, 1.0)]
    assert compute_penalty(bumpy, 400, 2.0).fraction == pytest.approx((100 + 100 / 1.2) / 400)


def test_a_loss_above_the_measured_curve_is_only_bounded_and_named():
    p = compute_penalty([(100, 3.0), (200, 2.0)], 200, 5.0)
    assert p.penalty is None and p.status == BEFORE_CURVE and p.at_least == pytest.approx(0.5)
    # a split the curve or the run lacks: nothing
    assert run_penalties(ROWS, 1000, {"adjacent": 1.0, "retain": None}) == {
        "adjacent": None,
        "retain": None,
    }


def test_records_a_run_against_the_no_filter_record():
    no_filter = {"training_curve": ROWS, "metrics": {"retain_loss": 1.2, "forget_loss": 1.7}}
    run = {"metrics": {"retain_loss": dict(split_curve(ROWS, "retain"))[500], "forget_loss": 9.0}}
    p = record_penalties(no_filter, run)
    assert p["retain"].penalty == pytest.approx(0.5)
    assert p["forget"].status == BEFORE_CURVE and p["adjacent"] is None
    # a no-filter record from before the curve was kept: not measured, never a number
    assert record_penalties({"metrics": {}}, run) is None


def test_the_module_is_pure():
    import subprocess
    import sys

    code = "import sys, unlearnbench.results.compute_penalty; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
