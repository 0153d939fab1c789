"""Statistics in the tables, on hand-made 3-seed records with known spreads: t-intervals, paired
deltas, exact and per-seed McNemar tests, the retain-tolerance marker, attack budgets without a
valid attack, and `load_records` giving the numbers the table shows. Expected values are computed
here by hand."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
from results_fixtures import record, result
from typer.testing import CliRunner

from unlearnbench.cli import app
from unlearnbench.results import load_records, stats
from unlearnbench.results.attack import EXCLUDED, budget_outcome, worst_case_curve
from unlearnbench.results.leaderboard import (
    headline_columns,
    headline_markdown,
    leaderboard_rows,
    to_csv,
    to_markdown,
)

# t(0.975, df=2) in closed form: t = (2p - 1) / sqrt(2 p (1 - p)); df=1: tan(pi (p - 1/2))
P = 0.975
T2 = (2 * P - 1) / math.sqrt(2 * P * (1 - P))
T1 = math.tan(math.pi * (P - 0.5))

NF_FORGET = (2.0, 2.2, 2.4)
FILTER_FORGET = (3.0, 3.6, 3.9)  # paired deltas 1.0, 1.4, 1.5
RETAIN = 1.5


def _half_width(values) -> tuple[float, float]:
    """(mean, half-width of the 95% t-interval) by hand, for n = 3."""
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, T2 * sd / math.sqrt(n)


def _row(rows, method, setting=""):
    (hit,) = [r for r in rows if r["method"] == method and r["setting"] == setting]
    return hit


def three_seeds(**filter_kwargs) -> list[dict]:
    recs = [record("no-filter", s, f, RETAIN, 2.0) for s, f in enumerate(NF_FORGET)]
    recs += [
        record("filter", s, f, RETAIN + d, 2.5, **filter_kwargs)
        for s, (f, d) in enumerate(zip(FILTER_FORGET, (0.01, -0.02, 0.04), strict=True))
    ]
    return recs


def test_t_quantile_matches_closed_forms_and_refuses_bad_input():
    assert stats.t_quantile(P, 1) == pytest.approx(T1, rel=1e-9)
    assert stats.t_quantile(P, 2) == pytest.approx(T2, rel=1e-9)
    assert stats.t_quantile(1 - P, 2) == pytest.approx(-T2, rel=1e-9)
    assert stats.t_quantile(0.5, 7) == pytest.approx(0.0, abs=1e-9)
    # large df approaches the normal quantile 1.95996...
    assert 1.95996 < stats.t_quantile(P, 10_000) < 1.9604
    with pytest.raises(ValueError):
        stats.t_quantile(1.0, 3)


def test_t_interval_and_exact_tests_are_scipys():
    from scipy import stats as sps

    iv = stats.t_interval([1.0, 1.4, 1.5, None])  # a missing seed is skipped
    mean, half = _half_width([1.0, 1.4, 1.5])
    assert (iv.n, iv.mean, iv.half_width) == (3, pytest.approx(mean), pytest.approx(half))
    low, high = sps.t.interval(0.95, 2, loc=mean, scale=sps.sem([1.0, 1.4, 1.5]))
    assert (iv.low, iv.high) == (pytest.approx(low), pytest.approx(high)) and iv.excludes_zero
    assert stats.t_interval([2.0, 2.0]).half_width == 0.0  # no spread: a zero-width interval
    # a sign count is an exact binomial test: 3 of 3 seeds is p = 0.25 two-sided, never < 0.05
    assert stats.sign_test(3, 3) == pytest.approx(0.25) and stats.sign_test(0, 3) == 0.25
    assert stats.sign_test(1, 3) == 1.0 and stats.sign_test(0, 0) == 1.0
    # the exact McNemar test: the binomial tail of the discordant pairs, by hand
    for lost, gained in ((12, 1), (5, 5), (0, 7), (30, 12)):
        n = lost + gained
        hand = min(1.0, 2 * sum(math.comb(n, i) for i in range(min(lost, gained) + 1)) / 2**n)
        assert stats.mcnemar_p(lost, gained) == pytest.approx(hand)


def test_stratified_mcnemar_counts_seeds_not_pooled_probes():
    from scipy import stats as sps

    # gradient routing's retain facts on storyworld-lang (the committed grid): two seeds lose
    # facts, the third gains more than it loses. Pooled over the shared probes: p = 3.5e-05
    routing = [(25, 6), (29, 6), (9, 12)]
    assert stats.mcnemar_p(63, 24) == pytest.approx(3.48e-5, rel=1e-2)
    p = stats.stratified_mcnemar(routing)
    assert p > 0.05  # the seeds disagree: no evidence the method, over seeds, moves retain facts
    # the same counts, every seed moving one way: still significant, with each seed counted once
    consistent = [(25, 6), (29, 6), (24, 7)]
    assert stats.stratified_mcnemar(consistent) < 0.05
    assert stats.stratified_mcnemar(consistent) > stats.mcnemar_p(78, 19)
    # symmetric in direction; one seed is its own exact McNemar test; no flips: p = 1
    assert stats.stratified_mcnemar([(b, a) for a, b in routing]) == pytest.approx(p)
    assert stats.stratified_mcnemar([(25, 6)]) == pytest.approx(stats.mcnemar_p(25, 6))
    assert stats.stratified_mcnemar([(0, 0), (0, 0)]) == 1.0
    # seeds that agree exactly have no spread to test: the per-seed combination alone
    z1 = sps.norm.isf(stats.mcnemar_p(5, 0) / 2)
    expected = 2 * sps.norm.sf(3 * z1 / math.sqrt(3))
    assert stats.stratified_mcnemar([(5, 0)] * 3) == pytest.approx(expected) and expected < 0.01


def test_cells_hold_the_t_interval_over_three_seeds_and_paired_deltas():
    rows = leaderboard_rows(three_seeds())
    f = _row(rows, "filter", "recall=1.0")
    mean, half = _half_width(FILTER_FORGET)
    cell = f["cells"]["forget"]
    assert cell.n == 3 and cell.mean == pytest.approx(mean)
    assert (cell.low, cell.high) == pytest.approx((mean - half, mean + half))
    # deltas paired by seed: run minus the no-filter run of the same seed, then their interval
    deltas = [a - b for a, b in zip(FILTER_FORGET, NF_FORGET, strict=True)]
    mean, half = _half_width(deltas)
    d = f["cells"]["d_forget"]
    assert d.mean == pytest.approx(mean) and d.high - d.mean == pytest.approx(half)
    assert d.significant  # 1.3 ± 0.66 excludes 0
    # the unpaired spread of the forget losses would be wider than the paired one
    assert half < _half_width(FILTER_FORGET)[1]
    r = f["cells"]["d_retain"]
    assert r.low < 0 < r.high and not r.significant  # +0.01, -0.02, +0.04: no change shown
    md = to_markdown(rows)
    line = next(x for x in md.splitlines() if "| filter (reference) |" in x)
    assert f"+{mean:.3f} ± {half:.3f}*" in line
    assert f"+{f['cells']['d_retain'].mean:.3f} ± " in line and "*" not in line.split("|")[11]


def test_one_seed_shows_the_value_and_n1_without_an_interval():
    rows = leaderboard_rows(three_seeds()[:1] + three_seeds()[3:4])
    f = _row(rows, "filter", "recall=1.0")
    assert f["cells"]["d_forget"].low is None and f["cells"]["d_forget"].std is None
    line = next(x for x in to_markdown(rows).splitlines() if "| filter (reference) |" in x)
    assert "+1.000 (n=1)" in line and "±" not in line


def test_the_retain_tolerance_marks_damage_and_never_cuts_the_ranking():
    nf = [record("no-filter", s, 2.0, 1.5) for s in range(3)]
    # a breaker: most forget gain, but retain rises 0.85 nats (beyond the tolerance)
    breaker = [record("sgtm", s, 2.78, 2.35, options={"layers": [9]}) for s in range(3)]
    honest = [record("sgtm", s, 2.5, 1.52) for s in range(3)]
    # perfect filter: forget +1.0; a method past it gets no credit for the excess
    perfect = [record("filter", s, 3.0, 1.5) for s in range(3)]
    beyond = [record("sgtm", s, 3.6, 1.55, options={"layers": [1]}) for s in range(3)]
    rows = leaderboard_rows(nf + breaker + honest + perfect + beyond)
    order = [(r["method"], r["setting"]) for r in rows]
    score = {o: r["cells"]["score"].mean for o, r in zip(order, rows, strict=True)}
    assert score[("sgtm", "recall=1.0, layers=1")] == pytest.approx(1.0 - 0.05)  # capped
    assert score[("sgtm", "recall=1.0, layers=9")] == pytest.approx(0.78 - 0.85)  # damage charged
    # ranked by the score alone: the breaker last, below no-filter (which removes nothing)
    assert order == sorted(order, key=lambda o: -score[o])
    assert order[0] == ("filter", "recall=1.0") and order[-1] == ("sgtm", "recall=1.0, layers=9")
    breaker_row = _row(rows, "sgtm", "recall=1.0, layers=9")
    assert breaker_row["beyond_tolerance"] and breaker_row["rank_group"] == 0  # marked, ranked
    breaker_line = next(x for x in headline_markdown(rows).splitlines() if "layers=9" in x)
    assert "+0.850 ± 0.000* !" in breaker_line  # the damage beside the gain, marked
    # another tolerance moves the marker, never the order
    loose = leaderboard_rows(nf + breaker + honest + perfect + beyond, retain_tolerance=1.0)
    assert [(r["method"], r["setting"]) for r in loose] == order
    assert not _row(loose, "sgtm", "recall=1.0, layers=9")["beyond_tolerance"]


def _probe_summary(correct: str, chance: float = 0.25, ids: str = "") -> dict:
    probe_ids = [f"p{i:02d}{ids}" for i in range(len(correct))]
    outcomes = stats.encode_outcomes(probe_ids, [c == "1" for c in correct])
    forget = {
        "accuracy": correct.count("1") / len(correct),
        "chance": chance,
        "n": len(correct),
        "outcomes": outcomes,
    }
    return result("fact-probes", {"forget": forget})


def test_probe_accuracy_carries_chance_and_a_per_seed_mcnemar_test():
    base = "1111111100"  # no-filter right on 8 of 10
    runs = ["0000011100", "0000111100", "0001111101"]  # per seed: lost 5, 4, 3; gained 0, 0, 1
    recs = []
    for s, correct in enumerate(runs):
        recs.append(record("no-filter", s, 2.0, 1.5, evals={"robust/fp": _probe_summary(base)}))
        recs.append(record("filter", s, 3.0, 1.5, evals={"robust/fp": _probe_summary(correct)}))
    rows = leaderboard_rows(recs)
    cell = _row(rows, "filter", "recall=1.0")["cells"]["robust/fp:forget_accuracy"]
    # one stratum per seed, not the 12 lost / 1 gained pooled over the seeds' shared probes
    expected = stats.stratified_mcnemar([(5, 0), (4, 0), (3, 1)])
    pooled = stats.mcnemar_p(5 + 4 + 3, 1)
    assert pooled < 0.01 < expected
    assert cell.p == pytest.approx(expected) and not cell.significant and cell.pairs == 3
    assert cell.chance == 0.25
    line = next(x for x in to_markdown(rows).splitlines() if "| filter" in x)
    assert f"(chance 0.250; p={expected:.2g})" in line  # no * : not significant
    nf_cell = _row(rows, "no-filter")["cells"]["robust/fp:forget_accuracy"]
    assert nf_cell.p is None and nf_cell.chance == 0.25  # never tested against itself
    # probes scored on other items are never paired
    other = [dict(r) for r in recs]
    for r in other[1::2]:
        r["evals"] = {"robust/fp": _probe_summary(runs[0], ids="x")}
    cell = _row(leaderboard_rows(other), "filter", "recall=1.0")["cells"][
        "robust/fp:forget_accuracy"
    ]
    assert cell.p is None and cell.pairs == 0


def test_outcomes_are_compact_and_decode_by_probe_id():
    ids = ["b/home/en", "a/food/en", "c/colour/en"]
    enc = stats.encode_outcomes(ids, [True, False, True])
    assert enc["correct"] == "011"  # sorted ids: a, b, c
    assert stats.outcomes_by_id(ids, enc) == {
        "a/food/en": False,
        "b/home/en": True,
        "c/colour/en": True,
    }
    with pytest.raises(ValueError):
        stats.outcomes_by_id(["a", "b", "z"], enc)
    assert stats.flips(enc, stats.encode_outcomes(ids, [True, True, False])) == (1, 1)


class _Tok:
    words = ["<eos>", "pip", "lives", "in", "the", "cave", "barn"]

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [self.words.index(w) for w in text.split()]}


def test_the_fact_probe_eval_records_each_probes_outcome():
    import torch

    from unlearnbench.evals.fact_probes import probe_accuracy

    V = len(_Tok.words)
    table = torch.zeros(V, V)
    table[_Tok.words.index("the"), _Tok.words.index("cave")] = 3.0

    class Bigram(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.table = torch.nn.Parameter(table)

        def forward(self, input_ids):
            return SimpleNamespace(logits=self.table[input_ids])

    probes = [
        SimpleNamespace(id="q2", prompt="pip lives in the", options=(" barn", " cave"), answer=1),
        SimpleNamespace(id="q1", prompt="pip lives in the", options=(" cave", " barn"), answer=1),
    ]
    acc = probe_accuracy(Bigram(), _Tok(), probes, outcomes=True)
    assert acc["accuracy"] == 0.5
    assert stats.outcomes_by_id(["q1", "q2"], acc["outcomes"]) == {"q1": False, "q2": True}
    assert "outcomes" not in probe_accuracy(Bigram(), _Tok(), probes)  # only when asked


def _attack_rows(breaks_at: dict[float, int | None]) -> list[dict]:
    """Two settings; forget falls 0.02 nats a step (faster at the larger lr); a setting's retain
    jumps 1 nat at its breaking step."""
    rows = []
    for lr, broke in breaks_at.items():
        for step in (0, 10, 20, 30):
            forget = 3.0 - step * (0.02 if lr < 1e-3 else 0.04)
            retain = 1.5 + (1.0 if broke is not None and step >= broke else 0.0)
            for split, loss in (("forget", forget), ("retain", retain)):
                rows.append(
                    {"step": step, "split": split, "loss": loss, "lr": lr, "attack_seed": 0}
                    | {"mode": "full", "budget": 30}
                )
    return rows


def test_the_figure_curve_and_the_tables_worst_case_are_one_definition():
    from unlearnbench.evals.relearn import summarize

    for breaks in ({1e-4: None, 1e-3: 20}, {1e-4: 10, 1e-3: 20}, {1e-4: None, 1e-3: None}):
        rows = _attack_rows(breaks)
        summary = summarize(rows, (10, 20, 30), 0.5)
        curve = worst_case_curve(rows, 0.5)
        for b in (10, 20, 30):
            stored = budget_outcome(summary, b)
            assert curve[b] == stored, (breaks, b)  # the same number, or both EXCLUDED
    rows = _attack_rows({1e-4: None, 1e-3: 20})
    curve = worst_case_curve(rows, 0.5)
    assert curve[10] == pytest.approx(3.0 - 0.4)  # the large lr, still valid
    assert curve[20] == pytest.approx(3.0 - 0.4)  # large lr excluded from 20 on: small lr's 2.6
    both = worst_case_curve(_attack_rows({1e-4: 10, 1e-3: 20}), 0.5)
    assert both[20] is EXCLUDED and both[0] == pytest.approx(3.0)


def test_an_all_excluded_budget_reads_no_valid_attack_not_blank():
    def relearn(worst: list[dict]) -> dict:
        return {"robust/relearn": result("relearn", {"worst_case": worst, "budget": 50})}

    gone = {"lr": 1e-3, "attack_seed": 0, "retain_broke_at": 5}
    worst = [{"budget": 10, "forget_loss": 2.5, "excluded": []}]
    worst.append({"budget": 50, "forget_loss": None, "excluded": [gone]})
    recs = [
        record("no-filter", 0, 2.0, 1.5),
        record("filter", 0, 3.0, 1.5, evals=relearn(worst)),
        record("filter", 1, 3.1, 1.5, evals=relearn(worst[:1])),  # budget 50 not run: blank
    ]
    rows = leaderboard_rows(recs)
    cell = _row(rows, "filter", "recall=1.0")["cells"]["robust/relearn:forget_loss@50"]
    assert cell.mean is None and cell.note == "no valid attack"
    md = to_markdown(rows)
    assert "no valid attack = measured, but every attack setting broke" in md
    assert "blank = not measured" in md
    three = recs + [
        record("filter", 2, 3.1, 1.5, evals=relearn([worst[0], worst[0] | {"budget": 50}]))
    ]
    cell = _row(leaderboard_rows(three), "filter", "recall=1.0")["cells"][
        "robust/relearn:forget_loss@50"
    ]
    assert cell.mean == 2.5 and cell.note == "1/2 seeds no valid attack"


def test_load_records_is_the_frame_the_leaderboard_is_computed_from(tmp_path):
    (tmp_path / "records").mkdir()
    recs = three_seeds()
    for r in recs:
        (tmp_path / "records" / f"{r['run_id']}.json").write_text(json.dumps(r))
    frame = load_records(tmp_path)
    assert len(frame) == len(recs) and set(frame["run_id"]) == {r["run_id"] for r in recs}
    assert {"seed", "setting", "no_filter_run", "forget", "d_forget", "config.train.steps"} <= set(
        frame.columns
    )
    rows = leaderboard_rows(recs)
    f = _row(rows, "filter", "recall=1.0")
    mine = frame[frame["method"] == "filter"]
    assert mine["d_forget"].mean() == pytest.approx(f["cells"]["d_forget"].mean)
    assert mine["d_forget"].std() == pytest.approx(f["cells"]["d_forget"].std)
    assert list(mine.sort_values("seed")["d_forget"]) == pytest.approx(
        [a - b for a, b in zip(FILTER_FORGET, NF_FORGET, strict=True)]
    )
    nf_ids = set(frame.loc[frame["method"] == "no-filter", "run_id"])
    assert set(mine["no_filter_run"]) == nf_ids


def test_headline_table_is_short_and_the_cli_prints_it_with_the_rule(tmp_path):
    ev = {
        "robust/relearn": result(
            "relearn",
            {
                "worst_case": [
                    {"budget": 10, "forget_loss": 2.5},
                    {"budget": 200, "forget_loss": 2.1},
                ]
            }
            | {"budget": 200, "steps_to_recover": None},
        ),
        "robust/fp": _probe_summary("1100"),
    }
    recs = [record("no-filter", s, 2.0 + 0.1 * s, 1.5, evals=ev) for s in range(3)]
    recs += [record("filter", s, 3.0 + 0.2 * s, 1.5, evals=ev) for s in range(3)]
    rows = leaderboard_rows(recs)
    keys = [c.key for c in headline_columns(rows)]
    # damage beside removal, the probe accuracy and the score that charges the damage
    assert keys[:5] == ["d_forget", "d_adjacent", "d_retain", "robust/fp:forget_accuracy", "score"]
    head = headline_markdown(rows).splitlines()[2]
    assert head.count("|") - 1 <= 10  # at most ten columns, the run's name included
    full = to_csv(rows).splitlines()[0].split(",")
    assert "d_forget_ci_low" in full and "robust/fp:forget_accuracy_p" in full
    assert "robust/relearn:forget_loss@10_mean" in full  # the full table keeps every budget
    (tmp_path / "records").mkdir()
    for r in recs:
        (tmp_path / "records" / f"{r['run_id']}.json").write_text(json.dumps(r))
    runner = CliRunner()
    res = runner.invoke(app, ["leaderboard", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "filter (reference)" in res.output  # the headline, as a terminal table
    full_table = (tmp_path / "leaderboard.md").read_text()
    assert "| filter (reference) (recall=1.0; 3 seeds) |" in full_table
    assert "Order: rows ranked" in res.output
    column = "robust/relearn: forget after 10-step attack"
    assert column not in res.output  # the full table is in the file
    assert column in (tmp_path / "leaderboard.md").read_text()
    res = runner.invoke(app, ["leaderboard", "--out", str(tmp_path), "--retain-tolerance", "-1"])
    assert res.exit_code == 2 and "--retain-tolerance" in res.output
    assert "Traceback" not in res.output


def test_cli_default_tolerance_is_the_rules():
    import inspect

    from unlearnbench.cli import leaderboard

    default = inspect.signature(leaderboard).parameters["retain_tolerance"].default.default
    assert default == stats.RETAIN_TOLERANCE
