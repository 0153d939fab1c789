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


def _trained(r: dict, **train) -> dict:
    """`r` trained with `train` set away from its method's defaults, as the runner records it."""
    r["config"]["train"] = r["config"]["train"] | train
    r["non_default"]["train"] = r["non_default"]["train"] | train
    return r


# a paper setup's training (a preset's values every run of the setup shares)
PRESET = {"steps": 500, "batch_size": 64, "lr": 5e-4, "context": 256}


def test_where_a_reference_ran_never_makes_it_a_variant():
    nf = _trained(record("no-filter", 0, 2.0, 1.5), device="cuda")
    pf = _trained(record("filter", 0, 3.0, 1.5), device="cuda")
    assert refs.role_of(nf) == refs.NO_FILTER and refs.role_of(pf) == refs.PERFECT_FILTER
    joined = refs.join([nf, pf])
    assert joined[nf["run_id"]].role == refs.NO_FILTER
    assert joined[pf["run_id"]].role == refs.PERFECT_FILTER


def test_a_setups_references_trained_as_its_methods_are_plain_and_its_methods_use_them():
    nf = _trained(record("no-filter", 0, 2.0, 1.5), **PRESET, device="cuda")
    pf = _trained(record("filter", 0, 3.0, 1.6), **PRESET, device="cuda")
    run = _trained(record("sgtm", 0, 2.8, 1.7), **PRESET, device="cuda")
    # the default-trained references of the same benchmark and model: not the run's
    default_nf = record("no-filter", 0, 9.0, 9.0) | {"run_id": "nf-default"}
    default_pf = record("filter", 0, 9.0, 9.0) | {"run_id": "pf-default"}
    joined = refs.join([nf, pf, run, default_nf, default_pf])
    assert joined[nf["run_id"]].role == refs.NO_FILTER
    assert joined[pf["run_id"]].role == refs.PERFECT_FILTER
    assert joined["nf-default"].role == refs.NO_FILTER  # both setups' references are plain
    j = joined[run["run_id"]]
    assert j.no_filter is nf and j.perfect_filter is pf
    d = refs.deltas(j)
    assert d["d_forget"] == pytest.approx(0.8) and d["d_retain"] == pytest.approx(0.2)
    assert d["pf_d_forget"] == pytest.approx(1.0)
    assert d["score"] == pytest.approx(0.8 - 0.2)
    # a record alone cannot tell that a run is compared with it
    assert refs.role_of(nf) == "reference variant"


def test_a_reference_trained_apart_that_no_setup_run_is_compared_with_is_a_variant():
    nf = _trained(record("no-filter", 0, 2.0, 1.5), **PRESET)
    pf = _trained(record("filter", 0, 3.0, 1.6), **PRESET)
    # the two references compare with each other, and a run trained otherwise compares with none
    other = _trained(record("sgtm", 0, 2.8, 1.7), **PRESET | {"steps": 900})
    joined = refs.join([nf, pf, other])
    assert joined[nf["run_id"]].role == "reference variant"
    assert joined[pf["run_id"]].role == "reference variant"
    assert joined[other["run_id"]].no_filter is None


def test_a_reference_trained_as_one_methods_own_defaults_stays_a_variant():
    """The grid's grad-clip no-filter and filter: trained as residual-routing's defaults train
    (its record sets nothing), compared with that method only."""
    run = record("residual-routing", 0, 2.8, 1.7)
    plain = record("no-filter", 0, 2.0, 1.5)["config"]["train"]
    own = {k: v for k, v in run["config"]["train"].items() if plain[k] != v}
    assert own, "residual-routing trains unlike no-filter by default"
    nf = _trained(record("no-filter", 0, 2.0, 1.5), **own)
    pf = _trained(record("filter", 0, 3.0, 1.6), **own)
    joined = refs.join([nf, pf, run])
    assert joined[run["run_id"]].no_filter is nf and joined[run["run_id"]].perfect_filter is pf
    assert joined[nf["run_id"]].role == joined[pf["run_id"]].role == "reference variant"
    # where the method ran does not make its references the setup's either
    _trained(run, device="cuda")
    assert refs.join([nf, pf, run])[nf["run_id"]].role == "reference variant"


def _role_before_setups(record: dict) -> str:
    """The rule before a setup's references trained apart were plain: any stated training setting
    made a reference a variant."""
    method, cfg = record.get("method"), record.get("config") or {}
    if method not in (refs.NO_FILTER, "filter"):
        return "method"
    stated = record.get("non_default") or {}
    options = refs.non_default_options(method, cfg.get("method_options"))
    if method == "filter":
        if float((cfg.get("labels") or {}).get("recall", 1.0)) != 1.0 or options.get("strict"):
            return "method"
        return "reference variant" if options or stated.get("train") else refs.PERFECT_FILTER
    plain = not (options or stated.get("train") or stated.get("labels"))
    return refs.NO_FILTER if plain else "reference variant"


def test_the_committed_grids_roles_are_those_of_the_rule_before():
    """The committed grid (CPU runs, every method at its own defaults): no role changes."""
    import json
    from pathlib import Path

    paths = sorted((Path(__file__).resolve().parents[1] / "results" / "records").glob("*.json"))
    records = [json.loads(p.read_text()) for p in paths]
    joined = refs.join(records)
    roles = {r["run_id"]: joined[r["run_id"]].role for r in records}
    assert roles == {r["run_id"]: _role_before_setups(r) for r in records}
    assert "reference variant" in roles.values() and refs.NO_FILTER in roles.values()


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
