"""results/references.py: which runs a run is compared with, and the numbers that compare them."""

from __future__ import annotations

import pytest
from results_fixtures import record

from unlearnbench.results import references as refs


def _version(r: dict, v: str) -> dict:
    return r | {"versions": {"git": v}}


def test_the_plain_no_filter_wins_over_one_at_other_labels_even_of_the_runs_own_version():
    run = _version(record("sgtm", 1, 3.0, 1.6, recall=0.9), "new")
    plain = _version(record("no-filter", 1, 2.0, 1.5), "old")
    at_09 = _version(record("no-filter", 1, 2.1, 1.5, recall=0.9), "new")
    j = refs.join([run, plain, at_09])[run["run_id"]]
    assert j.no_filter is plain and j.other_version == ["no-filter"]
    assert refs.role_of(at_09) == "reference variant" and refs.role_of(plain) == refs.NO_FILTER
    # of two plain ones, the run's own version wins
    plain_new = _version(record("no-filter", 1, 2.2, 1.5), "new") | {"run_id": "nf-new"}
    j = refs.join([run, plain, at_09, plain_new])[run["run_id"]]
    assert j.no_filter is plain_new and j.other_version == []


def test_roles_weak_and_strict_filters_are_methods_variants_are_not_ranked():
    assert refs.role_of(record("filter", 0, 3.0, 1.5)) == refs.PERFECT_FILTER
    assert refs.role_of(record("filter", 0, 3.0, 1.5, recall=0.9)) == "method"
    assert refs.role_of(record("filter", 0, 3.0, 1.5, options={"strict": True})) == "method"
    clipped = record("filter", 0, 3.0, 1.5)
    clipped["non_default"]["train"] = {"grad_clip": 1.0}
    assert refs.role_of(clipped) == "reference variant"
    curriculum = record("no-filter", 0, 3.0, 1.5, options={"forget_after": 0.5})
    assert refs.role_of(curriculum) == "reference variant"


@pytest.mark.parametrize(
    "d_forget, d_retain, d_adjacent, pf_forget, pf_adjacent, expected",
    [
        (1.0, 0.0, None, 2.0, None, 1.0),  # removal, no damage
        (3.0, 0.0, None, 2.0, None, 2.0),  # capped at the never-exposed model's removal
        (1.0, 0.3, None, 2.0, None, 0.7),  # retain damage nat for nat
        (1.0, -0.3, None, 2.0, None, 1.0),  # a retain gain is not credited
        (2.0, 0.0, 2.0, 2.0, 0.5, 0.5),  # adjacent damage beyond the filter's own
        (2.0, 0.0, 0.2, 2.0, 0.5, 2.0),  # less adjacent damage than the filter: no credit
        (1.0, 0.0, None, None, None, None),  # no perfect filter: not a number
    ],
)
def test_score(d_forget, d_retain, d_adjacent, pf_forget, pf_adjacent, expected):
    got = refs.score(d_forget, d_retain, d_adjacent, pf_forget, pf_adjacent)
    assert got == (pytest.approx(expected) if expected is not None else None)


def test_steps_relative_to_the_perfect_filter():
    assert refs.relative_steps(50, 100) == 0.5
    assert refs.relative_steps(refs.NotReached(200), 100) == refs.NotReached(2.0)
    assert refs.relative_steps(50, refs.NotReached(200)) is refs.FILTER_NOT_RECOVERED
    assert refs.relative_steps(50, refs.NO_VALID_ATTACK) is refs.FILTER_NOT_ATTACKED
    assert refs.relative_steps(50, None) is refs.REFERENCE_NOT_MEASURED
    assert refs.relative_steps(refs.NO_VALID_ATTACK, 100) is refs.NO_VALID_ATTACK


def test_compute_penalty_from_the_no_filter_runs_own_training_curve():
    from unlearnbench.results.leaderboard import leaderboard_rows

    nf = record("no-filter", 0, 2.0, 1.0)
    nf["config"]["train"]["steps"] = 100
    nf["training_curve"] = [
        {"step": s, "split": "retain", "loss": v} for s, v in ((25, 3.0), (50, 2.0), (100, 1.0))
    ]
    run = record("sgtm", 0, 3.0, 2.0)  # no-filter's retain loss at half its steps
    same = record("filter", 0, 3.0, 1.0)  # as good as no-filter's final
    for r in (run, same):
        r["config"]["train"] = dict(nf["config"]["train"])  # trained as no-filter was
    joined = refs.join([nf, run, same])
    assert refs.compute_penalties(joined[run["run_id"]])["retain_compute_penalty"] == 0.5
    assert refs.compute_penalties(joined[same["run_id"]])["retain_compute_penalty"] == 0.0
    assert refs.compute_penalties(joined[nf["run_id"]])["retain_compute_penalty"] == 0.0
    worse = record("era", 0, 3.0, 5.0)  # above the curve's first point: named, no number
    worse["config"]["train"] = dict(nf["config"]["train"])
    assert (
        refs.compute_penalties(refs.join([nf, worse])[worse["run_id"]])["retain_compute_penalty"]
        is refs.BEYOND_CURVE
    )
    # a no-filter run without a curve: the comparison is named
    bare = record("no-filter", 0, 2.0, 1.0)
    bare["config"]["train"] = dict(nf["config"]["train"])
    assert (
        refs.compute_penalties(refs.join([bare, run])[run["run_id"]])["retain_compute_penalty"]
        is refs.REFERENCE_NOT_MEASURED
    )
    rows = leaderboard_rows([nf, run, same])
    cell = next(r for r in rows if r["method"] == "sgtm")["cells"]["retain_compute_penalty"]
    assert cell.mean == 0.5
