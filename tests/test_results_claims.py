"""The papers' claims read off the grid's records (results/claims.py): paired differences over
seeds, verdicts in the claimed direction, censored steps to recover, damage beside removal."""

from __future__ import annotations

from results_fixtures import record, relearn_summary, result

from unlearnbench.results.attack import EXCLUDED
from unlearnbench.results.claims import Comparison, claims, claims_markdown, recover_steps

LANG = "storyworld-lang"


def _row(claim_rows, setting: str, quantity: str, benchmark: str = LANG) -> Comparison:
    (row,) = [
        c
        for c in claim_rows
        if c.setting == setting and c.quantity == quantity and c.benchmark == benchmark
    ]
    return row


def _by_title(records):
    return {c.title: c for c in claims(records, [LANG])}


def test_a_claim_holds_only_when_the_paired_interval_is_on_its_side():
    # sgtm above filter by ~2 nats in every seed at recall 0.9: holds; retain: sgtm worse (damage)
    recs = [
        record("sgtm", s, 5.0 + 0.1 * s, 0.6 + 0.01 * s, recall=0.9, benchmark=LANG)
        for s in range(3)
    ]
    recs += [record("filter", s, 3.0 + 0.12 * s, 0.4, recall=0.9, benchmark=LANG) for s in range(3)]
    # at recall 0.5 the two swap in one seed: within seed noise
    recs += [
        record("sgtm", s, [2.0, 3.0, 2.5][s], 0.5, recall=0.5, benchmark=LANG) for s in range(3)
    ]
    recs += [
        record("filter", s, [2.5, 2.0, 2.4][s], 0.4, recall=0.5, benchmark=LANG) for s in range(3)
    ]
    # at recall 1.0 filter is far above in every seed: an anchor, nothing claimed there
    recs += [record("sgtm", s, 4.0 + 0.1 * s, 0.6, benchmark=LANG) for s in range(3)]
    recs += [record("filter", s, 15.0 - 0.2 * s, 0.3, benchmark=LANG) for s in range(3)]
    rows = _by_title(recs)["SGTM vs data filtering under undiscovered forget data"].rows
    at_09 = _row(rows, "recall 0.9", "forget loss")
    assert at_09.verdict() == "holds"
    assert abs(at_09.difference().mean - (2.0 - 0.02)) < 1e-9 and at_09.difference().n == 3
    assert _row(rows, "recall 0.9", "retain loss (damage)").verdict() == "A higher"
    assert _row(rows, "recall 0.5", "forget loss").verdict() == "within seed noise"
    assert _row(rows, "recall 1.0", "forget loss").verdict() == "A lower"
    # sgtm below filter at a partial recall in every seed: does not hold
    recs = [r for r in recs if r["config"]["labels"]["recall"] != 0.5]
    recs += [record("sgtm", s, 2.0 + 0.1 * s, 0.5, recall=0.5, benchmark=LANG) for s in range(3)]
    recs += [record("filter", s, 3.0, 0.4, recall=0.5, benchmark=LANG) for s in range(3)]
    rows = _by_title(recs)["SGTM vs data filtering under undiscovered forget data"].rows
    assert _row(rows, "recall 0.5", "forget loss").verdict() == "does not hold"
    # a cell with one seed is not a measurement
    assert _row(rows, "recall 0.9", "forget-fact accuracy").verdict() == "not measured (n=0)"


def test_seeds_are_paired_and_runs_with_other_settings_are_not_the_grid():
    recs = [record("era", s, 6.0, 0.5, recall=0.9, benchmark=LANG) for s in (0, 1)]
    recs += [record("filter", s, 3.0 + s, 0.4, recall=0.9, benchmark=LANG) for s in (1, 2)]
    # a non-default variant of filter at the same recall must not stand in for the grid's filter
    recs.append(
        record("filter", 0, 99.0, 0.4, recall=0.9, benchmark=LANG, options={"strict": True})
    )
    row = _row(
        _by_title(recs)["ERA vs data filtering at partial labels"].rows, "recall 0.9", "forget loss"
    )
    assert row.seeds() == [1]  # seed 0 of filter is the strict variant: left out
    assert row.verdict() == "not measured (n=1)"


def _relearn(recover, excluded_at_budget=False) -> dict:
    summary = relearn_summary({10: 1.0, 200: 0.5}, recover)
    if excluded_at_budget:
        summary["worst_case"][-1] = {"budget": 200, "forget_loss": None, "excluded": [{"lr": 1e-3}]}
        summary = result(
            "relearn",
            {k: v for k, v in summary.items() if k not in ("headline", "eval", "suite", "options")},
        )
    return {"robust/relearn": summary}


def test_steps_to_recover_are_compared_seed_by_seed_and_no_valid_attack_is_not_robustness():
    rmu = [record("rmu", s, 1.5, 0.4, benchmark=LANG, evals=_relearn(20 + 5 * s)) for s in range(3)]
    # sgtm: never recovered within the budget (valid attacks) in every seed
    sgtm = [record("sgtm", s, 6.0, 0.5, benchmark=LANG, evals=_relearn(None)) for s in range(3)]
    row = _row(
        _by_title(sgtm + rmu)["SGTM vs RMU: steps to recover"].rows,
        "recall 1.0",
        "relearn steps to recover",
    )
    assert row.censored and row.verdict() == "holds (3 of 3 seeds)"
    assert "s0: > 200" in claims_markdown(sgtm + rmu)
    # sgtm recovers sooner than rmu in one seed: mixed
    mixed = [record("sgtm", 0, 6.0, 0.5, benchmark=LANG, evals=_relearn(10))] + sgtm[1:]
    row = _row(
        _by_title(mixed + rmu)["SGTM vs RMU: steps to recover"].rows,
        "recall 1.0",
        "relearn steps to recover",
    )
    assert row.verdict() == "mixed (2 of 3 seeds)"
    # every attack setting broke the retain tolerance: not recovered, but no valid attack either
    broken = [
        record("sgtm", s, 6.0, 0.5, benchmark=LANG, evals=_relearn(None, True)) for s in range(3)
    ]
    assert recover_steps(broken[0]) is EXCLUDED
    row = _row(
        _by_title(broken + rmu)["SGTM vs RMU: steps to recover"].rows,
        "recall 1.0",
        "relearn steps to recover",
    )
    assert row.verdict() == "not measured (n=0; 3 seed(s) with no valid attack)"
    after = _row(
        _by_title(broken + rmu)["SGTM vs RMU: steps to recover"].rows,
        "recall 1.0",
        "forget loss after 200-step relearn",
    )
    assert after.a[0] is EXCLUDED and after.verdict().startswith("not measured")


def test_direction_ablation_compares_one_run_before_and_after():
    def ablation(before, ablated):
        return {
            "robust/direction-ablation": result(
                "direction-ablation",
                {
                    "before": {"forget_loss": before, "retain_loss": 0.4},
                    "ablated": {"forget_loss": ablated, "retain_loss": 0.41},
                },
            )
        }

    recs = [
        record("rmu", s, 1.5, 0.4, benchmark=LANG, evals=ablation(1.5 + 0.1 * s, 0.7 + 0.05 * s))
        for s in range(3)
    ]
    rows = _by_title(recs)["RMU under direction ablation"].rows
    forget = _row(rows, "recall 1.0", "forget loss")
    assert forget.a_name == "rmu, direction ablated" and forget.verdict() == "holds"
    assert abs(forget.difference().mean - (-0.85)) < 1e-9


def test_markdown_names_every_claim_and_shows_damage_rows():
    text = claims_markdown([record("no-filter", 0, 0.5, 0.4, benchmark=LANG)])
    for title in (
        "SGTM vs data filtering under undiscovered forget data",
        "SGTM vs RMU: steps to recover",
        "ERA vs data filtering at partial labels",
        "DEMix below 100% labels",
        "RMU under direction ablation",
    ):
        assert f"## {title}" in text
    assert text.count("retain loss (damage)") >= 5
    assert "not measured (n=0)" in text


def test_demix_rows_carry_the_claim_and_eras_rows_are_a_contrast_without_a_verdict():
    recs = [record("demix", s, 7.0 + 0.1 * s, 0.5, benchmark=LANG) for s in range(3)]
    recs += [record("demix", s, 1.0 + 0.1 * s, 0.5, recall=0.9, benchmark=LANG) for s in range(3)]
    recs += [record("era", s, 5.0 + 0.1 * s, 0.8, benchmark=LANG) for s in range(3)]
    recs += [record("era", s, 4.0 + 0.2 * s, 0.8, recall=0.9, benchmark=LANG) for s in range(3)]
    rows = _by_title(recs)["DEMix below 100% labels"].rows
    assert _row(rows, "demix: recall 0.9 vs 1.0", "forget loss").verdict() == "holds"
    # ERA's forget loss also falls here, but the claim predicts nothing for ERA
    assert _row(rows, "era: recall 0.9 vs 1.0", "forget loss").verdict() == "A lower"


def test_the_sgtm_paper_protocol_rows_read_its_own_relearning_result():
    def paper(recover):
        summary = relearn_summary({25: 2.0, 1000: 0.6}, recover)
        return {"sgtm-paper/relearn-sgtm-paper": {**summary, "suite": "sgtm-paper"}}

    recs = [
        record("sgtm", s, 6.0, 0.5, benchmark=LANG, evals=paper(300 + 25 * s)) for s in range(3)
    ]
    recs += [record("rmu", s, 1.5, 0.4, benchmark=LANG, evals=paper(50)) for s in range(3)]
    rows = _by_title(recs)["SGTM vs RMU: steps to recover"].rows
    setting = "recall 1.0, SGTM paper's relearning"
    assert _row(rows, setting, "relearn steps to recover").verdict() == "holds (3 of 3 seeds)"
    assert (
        _row(rows, setting, "forget loss after 1000-step relearn").verdict() == "within seed noise"
    )
    # the robust suite's rows are not fed by the paper's result
    assert _row(rows, "recall 1.0", "relearn steps to recover").verdict() == "not measured (n=0)"
