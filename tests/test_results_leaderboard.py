"""Leaderboard on hand-made records: values, mean/std over seeds, deltas, blanks, arrows, order."""

from __future__ import annotations

import csv
import io
import json
import math
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from results_fixtures import probes, record, relearn_summary, result, sample_records
from typer.testing import CliRunner

from unlearnbench.cli import app
from unlearnbench.results.leaderboard import (
    RANKING_END,
    RANKING_START,
    format_cell,
    headline_markdown,
    leaderboard_rows,
    ranking_markdown,
    rows_columns,
    setting_of,
    to_csv,
    to_html,
    to_markdown,
    with_ranking,
)

R10, R50 = "robust/relearn:forget_loss@10", "robust/relearn:forget_loss@50"
RECOVER = "robust/relearn:steps_to_recover"
PROBE_FORGET = "robust/fact-probes:forget_accuracy"


def _row(rows, method, setting):
    hits = [r for r in rows if r["method"] == method and r["setting"] == setting]
    assert len(hits) == 1, [(r["method"], r["setting"]) for r in rows]
    return hits[0]


def test_mean_std_over_seeds_and_deltas_per_seed():
    rows = leaderboard_rows(sample_records())
    f = _row(rows, "filter", "recall=1.0")
    assert f["seeds"] == 2
    assert f["cells"]["forget"].mean == pytest.approx(4.5)
    assert f["cells"]["forget"].std == pytest.approx(math.sqrt(0.5))  # sample std of 4, 5
    # deltas pair each seed with no-filter of the same seed: (4-2, 5-2.2)
    assert f["cells"]["d_forget"].mean == pytest.approx((2.0 + 2.8) / 2)
    assert f["cells"]["d_forget"].std == pytest.approx(abs(2.8 - 2.0) / math.sqrt(2))
    assert f["cells"]["d_retain"].mean == pytest.approx((0.05 - 0.05) / 2, abs=1e-12)
    nf = _row(rows, "no-filter", "")
    assert nf["cells"]["d_forget"].mean == 0.0
    # one seed: a mean without a std
    one = _row(rows, "sgtm", "recall=0.5")
    assert one["cells"]["forget"].mean == 2.5 and one["cells"]["forget"].std is None


def test_missing_metrics_are_blank_never_zero():
    rows = leaderboard_rows(sample_records())
    one = _row(rows, "sgtm", "recall=0.5")
    for key in (R10, R50, RECOVER, PROBE_FORGET):
        assert one["cells"][key].mean is None and one["cells"][key].n == 0
    md = to_markdown(rows)
    line = next(x for x in md.splitlines() if "| sgtm | recall=0.5 |" in x)
    cols = rows_columns(rows)
    cells = [c.strip() for c in line.strip("|").split("|")]
    by_header = dict(
        zip(
            ["benchmark", "model", "method", "setting", "seeds"] + [c.header for c in cols],
            cells,
            strict=True,
        )
    )
    assert by_header["robust/relearn: forget after 10-step attack ↑"] == ""
    assert by_header["robust/fact-probes: forget facts acc ↓"] == ""
    assert "0.000" not in line
    # a metric present for only one of two seeds: averaged over that seed and flagged n=1
    nf = _row(rows, "no-filter", "")
    assert nf["cells"][R10].mean == 1.9 and nf["cells"][R10].n == 1
    assert format_cell(nf["cells"][R10], cols[[c.key for c in cols].index(R10)], 2) == "1.900 (n=1)"


def test_columns_only_for_evaluations_some_run_has():
    keys = [c.key for c in rows_columns(leaderboard_rows(sample_records()))]
    assert not [k for k in keys if "calibrated" in k]  # no record has it: left out, not zero-filled
    assert keys[:3] == ["forget", "adjacent", "retain"]
    assert R10 in keys and R50 in keys and PROBE_FORGET in keys
    assert keys.index(R10) < keys.index(R50) < keys.index(RECOVER)  # budgets, then steps
    plain = [record("no-filter", 0, 2.0, 1.5), record("filter", 0, 3.0, 1.6)]
    keys = [c.key for c in rows_columns(leaderboard_rows(plain))]
    assert R10 not in keys and RECOVER not in keys
    assert "adjacent" in keys  # the core columns stay, blank


def _attacked(method, seed, forget, rows, recall=1.0, budget=50):
    """A run whose relearn result is summarized from `rows` as the evaluation writes it."""
    from unlearnbench.evals.relearn import summarize

    summary = summarize(rows, (10, budget), 0.5)
    ev = {"robust/relearn": result("relearn", summary)}
    return record(method, seed, forget, 1.5, recall=recall, evals=ev,
                  curves={"robust/relearn": rows})  # fmt: skip


def test_steps_to_recover_name_seeds_that_never_recovered_and_seeds_with_no_valid_attack():
    from results_fixtures import relearn_rows

    from unlearnbench.results import references

    nf = [_attacked("no-filter", s, 2.0, relearn_rows(2.0, 1.8)) for s in (0, 1, 2)]
    pf = [_attacked("filter", s, 4.0, relearn_rows(4.0, 1.9)) for s in (0, 1, 2)]
    recovers = relearn_rows(3.0, 1.9)  # reaches 2.0 (no-filter's forget) at step 50
    stays = relearn_rows(3.0, 2.6)  # never does, and stays valid
    broken = [r | {"loss": 9.0} if r["split"] == "retain" and r["step"] else r for r in stays]
    runs = [_attacked("sgtm", 0, 3.0, recovers), _attacked("sgtm", 1, 3.0, stays),
            _attacked("sgtm", 2, 3.0, broken)]  # fmt: skip
    joined = references.join(nf + pf + runs)
    got = [references.compare(joined[r["run_id"]])["attacks"]["robust/relearn"] for r in runs]
    assert got[0]["steps_to_recover"] == 50
    assert got[1]["steps_to_recover"] == references.NotReached(50)
    assert got[2]["steps_to_recover"] is references.NO_VALID_ATTACK
    rows = leaderboard_rows(nf + pf + runs)
    cell = _row(rows, "sgtm", "recall=1.0")["cells"][RECOVER]
    assert cell.mean == 50 and cell.n == 1
    assert cell.note == "1/3 seeds > 50; 1/3 seeds no valid attack"  # never "> 50" for seed 2
    md = headline_markdown(rows)
    line = next(x for x in md.splitlines() if x.startswith("| sgtm"))
    assert "no valid attack" in line and "2/3" in line  # seeds validly attacked at 50
    # no budget at which every seed was validly attacked: the outcome says over which seeds
    assert "@50, 2 of 3 seeds" in line
    # relative to the perfect filter's own steps (it recovers at 50 too): 1.0
    assert _row(rows, "sgtm", "recall=1.0")["cells"][f"{RECOVER[:-len('steps_to_recover')]}"
                                                     "steps_vs_filter"].mean == 1.0  # fmt: skip
    # a run whose no-filter has no result of this attack: named, never a number
    alone = leaderboard_rows([nf[0] | {"evals": {}, "curves": {}}, runs[0]])
    assert _row(alone, "sgtm", "recall=1.0")["cells"][RECOVER].note == "reference not measured"


def test_arrows_order_and_rule():
    rows = leaderboard_rows(sample_records())
    headers = {c.key: c.header for c in rows_columns(rows)}
    assert headers["forget"] == "forget loss ↑"
    assert headers["retain"] == "retain loss ↓"
    assert headers["d_forget"].endswith("↑") and headers["d_retain"].endswith("↓")
    assert headers["score"] == "score ↑"
    # ranked by score, not forget loss; the plain no-filter scores 0 by definition
    scores = [r["cells"]["score"].mean for r in rows if r["rank_group"] == 0]
    assert scores == sorted(scores, reverse=True) and len(scores) == len(rows)
    assert _row(rows, "no-filter", "")["cells"]["score"].mean == 0.0
    md = to_markdown(rows)
    assert "ranked by score" in md.splitlines()[-1]


def test_the_score_charges_adjacent_damage_beyond_the_perfect_filters_and_caps_removal():
    """A topic run whose Δadjacent equals its Δforget ranks below the perfect filter, and a run
    that removes more than the never-exposed model gets no credit for the excess."""
    nf = record("no-filter", 0, 2.0, 1.5, 1.8)
    pf = record("filter", 0, 3.0, 1.5, 1.9)  # Δforget 1.0, Δadjacent 0.1
    wrecks = record("sgtm", 0, 4.0, 1.5, 3.8)  # Δforget 2.0, Δadjacent 2.0
    clean = record("era", 0, 2.8, 1.6, 1.8)  # Δforget 0.8, Δretain 0.1, Δadjacent 0
    clean["config"]["train"] = dict(nf["config"]["train"])  # trained as the references were
    rows = leaderboard_rows([nf, pf, wrecks, clean])
    score = {r["method"]: r["cells"]["score"].mean for r in rows}
    assert score["filter"] == pytest.approx(1.0)
    assert score["sgtm"] == pytest.approx(1.0 - (2.0 - 0.1))  # capped at 1.0, minus 1.9
    assert score["era"] == pytest.approx(0.8 - 0.1)
    assert [r["method"] for r in rows] == ["filter", "era", "no-filter", "sgtm"]


def test_the_ceiling_is_the_plain_perfect_filter_and_variants_are_never_ranked():
    nf = record("no-filter", 0, 2.0, 1.5)
    plain = record("filter", 0, 4.0, 1.5)
    clipped = record("filter", 0, 9.0, 1.5)
    clipped["run_id"] += "-clip"
    clipped["non_default"]["train"] = {"grad_clip": 1.0}
    curriculum = record("no-filter", 0, 2.5, 1.5, options={"forget_after": 0.5})
    run = record("rmu", 0, 5.0, 1.5)
    run["kind"] = "posthoc"
    rows = leaderboard_rows([nf, plain, clipped, curriculum, run])
    assert _row(rows, "rmu", "recall=1.0")["cells"]["score"].mean == pytest.approx(2.0)
    groups = {(r["method"], r["setting"]): r["rank_group"] for r in rows}
    assert groups[("filter", "recall=1.0, grad_clip=1.0")] == 2  # a reference variant
    assert groups[("no-filter", "forget_after=0.5")] == 2
    assert rows[-1]["rank_group"] == rows[-2]["rank_group"] == 2  # listed last, unranked
    assert "reference variant, unranked" in to_markdown(rows)


def test_settings_distinguish_recall_and_non_default_options():
    recs = sample_records()
    settings = {setting_of(r) for r in recs}
    assert "recall=0.9, optimizer=strict" in settings
    assert "recall=0.9" in settings and "recall=0.5" in settings
    # no-filter ignores labels, but a run at other labels is another run: its row says so
    assert setting_of(record("no-filter", 0, 2.0, 1.5, recall=0.9)) == "recall=0.9"
    r = record("filter", 0, 3.0, 1.6)
    r["non_default"]["train"] = {"steps": 100, "device": "cuda"}  # where it ran is not a setting
    assert setting_of(r) == "recall=1.0, steps=100"


def test_no_filter_runs_of_one_seed_are_rows_of_their_own_and_the_default_labels_one_is_the_reference():
    nf_a = record("no-filter", 0, 2.0, 1.5, recall=1.0)
    nf_b = record("no-filter", 0, 2.4, 1.5, recall=0.9)  # same seed, other labels
    nf_short = record("no-filter", 0, 5.0, 5.0)
    nf_short["run_id"] += "-short"
    nf_short["config"]["train"]["steps"] = 10
    nf_short["non_default"]["train"] = {"steps": 10}
    f = record("filter", 0, 3.0, 1.6, recall=0.9)
    rows = leaderboard_rows([nf_a, nf_b, nf_short, f])
    nf = _row(rows, "no-filter", "")
    assert nf["seeds"] == 1 and nf["cells"]["forget"].mean == 2.0  # never pooled with nf_b
    assert _row(rows, "no-filter", "recall=0.9")["rank_group"] == 2  # a reference variant
    # the weak filter's Δ is against the plain no-filter (at the default labels: no-filter
    # ignores them) with its own training config
    assert _row(rows, "filter", "recall=0.9")["cells"]["d_forget"].mean == pytest.approx(1.0)


def test_csv_and_html_hold_the_same_numbers():
    rows = leaderboard_rows(sample_records())
    table = list(csv.DictReader(io.StringIO(to_csv(rows))))
    assert len(table) == len(rows)
    f = next(t for t in table if t["method"] == "filter")
    assert float(f["forget_mean"]) == pytest.approx(4.5)
    assert float(f["forget_std"]) == pytest.approx(math.sqrt(0.5))
    assert f[f"{R10}_mean"] == "" and f[f"{R10}_n"] == "0"

    class Cells(HTMLParser):
        def __init__(self):
            super().__init__()
            self.rows, self.cur, self.inside = [], None, False

        def handle_starttag(self, tag, attrs):
            if tag == "tr":
                self.cur = []
            elif tag in ("td", "th"):
                self.inside = True
                self.cur.append("")

        def handle_endtag(self, tag):
            if tag == "tr":
                self.rows.append(self.cur)
            elif tag in ("td", "th"):
                self.inside = False

        def handle_data(self, data):
            if self.inside:
                self.cur[-1] += data

    p = Cells()
    p.feed(to_html(rows))
    assert len(p.rows) == len(rows) + 1  # header + one per row
    head = p.rows[0]
    filt = next(r for r in p.rows[1:] if r[2] == "filter (reference)")
    t1 = math.tan(math.pi * 0.475)  # t(0.975, df=1): two seeds
    half = t1 * math.sqrt(0.5) / math.sqrt(2)
    assert filt[head.index("forget loss ↑")] == f"4.500 ± {half:.3f}"


def test_cli_leaderboard_formats_and_errors(tmp_path):
    (tmp_path / "records").mkdir()
    for r in sample_records():
        (tmp_path / "records" / f"{r['run_id']}.json").write_text(json.dumps(r))
    runner = CliRunner()
    res = runner.invoke(
        app,
        ["leaderboard", "--out", str(tmp_path), "--format", "csv", "--dest", str(tmp_path / "o")],
    )
    assert res.exit_code == 0, res.output
    assert (tmp_path / "o" / "leaderboard.csv").read_text().startswith("benchmark,model,method")
    res = runner.invoke(
        app, ["leaderboard", "--out", str(tmp_path), "-b", "storyworld-topic", "--format", "html"]
    )
    assert res.exit_code == 0
    assert (
        (tmp_path / "leaderboard-storyworld-topic.html").read_text().startswith("<!DOCTYPE html>")
    )
    res = runner.invoke(app, ["leaderboard", "--out", str(tmp_path), "--format", "xlsx"])
    assert res.exit_code == 2 and "unknown format" in res.output
    res = runner.invoke(app, ["leaderboard", "--out", str(tmp_path), "-b", "nope"])
    assert res.exit_code == 2 and "storyworld-topic" in res.output


def test_reads_the_summaries_the_evaluations_write():
    ev = {
        "robust/calibrated-loss": result(
            "calibrated-loss", {"calibrated": {"forget_loss": 3.3, "retain_loss": 1.5}}
        ),
        "robust/disjoint-facts": result("disjoint-facts", {"held_out_gain": 0.125}),
        "robust/direction-ablation": result(
            "direction-ablation", {"ablated": {"forget_loss": 2.75}}
        ),
        "robust/fact-probes": result(
            "fact-probes",
            {
                "forget": {"accuracy": 0.5, "chance": 0.25, "n": 8},
                "retain": {"accuracy": 0.75, "chance": 0.25, "n": 8},
            },
        ),
    }
    rows = leaderboard_rows([record("filter", 0, 3.0, 1.6, evals=ev)])
    cells = rows[0]["cells"]
    assert cells["robust/calibrated-loss:forget_loss"].mean == 3.3
    assert cells["robust/disjoint-facts:held_out_gain"].mean == 0.125
    assert cells["robust/direction-ablation:forget_loss"].mean == 2.75
    assert cells[PROBE_FORGET].mean == 0.5
    assert cells["robust/fact-probes:adjacent_accuracy"].mean is None  # not in the summary: blank
    headers = {c.key: c.header for c in rows_columns(rows)}
    assert headers["robust/disjoint-facts:held_out_gain"].endswith("↓")  # as it declared
    assert headers["robust/fact-probes:forget_accuracy"].endswith("↓")
    assert headers["robust/fact-probes:retain_accuracy"].endswith("↑")


def test_every_suites_results_appear_under_their_own_keys():
    """The paper suites store their attack under their own key; robust-lite adds a mixed attack;
    quick and robust run relearn with different options: every one is a column of its own."""
    ev = {
        "quick/relearn": relearn_summary({10: 2.1}, 5) | {"suite": "quick"},
        "robust/relearn": relearn_summary({10: 2.5, 50: 2.2}, 30),
        "robust-lite/relearn-mixed": relearn_summary({10: 2.8}, None) | {"suite": "robust-lite"},
        "sgtm-paper/relearn-sgtm-paper": relearn_summary({25: 2.9}, 25) | {"suite": "sgtm-paper"},
        "gradient-routing-paper/relearn-gradient-routing-paper": relearn_summary({40: 3.1}, None),
    }
    rows = leaderboard_rows([record("sgtm", 0, 3.0, 1.6, evals=ev)])
    cells, headers = rows[0]["cells"], {c.key: c.header for c in rows_columns(rows)}
    assert cells["quick/relearn:forget_loss@10"].mean == 2.1
    assert cells["robust/relearn:forget_loss@10"].mean == 2.5  # both kept, neither overwritten
    assert cells["robust-lite/relearn-mixed:forget_loss@10"].mean == 2.8
    # no no-filter run here: steps to recover are a comparison, so none is made
    assert cells["robust-lite/relearn-mixed:steps_to_recover"].mean is None
    assert cells["sgtm-paper/relearn-sgtm-paper:forget_loss@25"].mean == 2.9
    key = "gradient-routing-paper/relearn-gradient-routing-paper:forget_loss@40"
    assert cells[key].mean == 3.1
    assert headers["quick/relearn:forget_loss@10"] == "quick/relearn: forget after 10-step attack ↑"
    md = to_markdown(rows)
    assert "robust-lite/relearn-mixed: forget after 10-step attack ↑" in md
    assert "SUITE/KEY" in md.splitlines()[-1]  # the legend says what the names mean


def test_rows_group_by_the_run_id_not_by_settings_outside_it():
    """checkpoint_every, snapshot_every and the device do not change a run's results (they are
    outside its id): seeds run with them are one row, with the right mean and seed count."""
    plain = record("sgtm", 0, 3.0, 1.6, recall=0.9)
    other = record("sgtm", 1, 3.4, 1.6, recall=0.9)
    other["config"]["train"] |= {"checkpoint_every": 10, "snapshot_every": 5, "device": "cuda"}
    old = record("sgtm", 2, 3.2, 1.6, recall=0.9)  # recorded before records stated their setting
    del old["non_default"]
    old["config"]["train"] |= {"checkpoint_every": 7, "snapshot_every": 3}
    rows = leaderboard_rows([plain, other, old])
    assert len(rows) == 1, [r["setting"] for r in rows]
    assert rows[0]["setting"] == "recall=0.9" and rows[0]["seeds"] == 3
    assert rows[0]["cells"]["forget"].mean == pytest.approx(3.2)
    # what the run id does cover still splits rows
    longer = record("sgtm", 0, 3.9, 1.6, recall=0.9)
    longer["non_default"]["train"] = {"steps": 400}
    rows = leaderboard_rows([plain, other, longer])
    assert sorted(r["setting"] for r in rows) == ["recall=0.9", "recall=0.9, steps=400"]


def test_the_setting_is_what_the_record_states_not_todays_defaults():
    r = record("sgtm", 0, 3.0, 1.6, options={"optimizer": "strict"})
    assert setting_of(r) == "recall=1.0, optimizer=strict"
    r["config"]["method_options"]["forget_mlp_dim"] = 32  # a default changed later: same label
    assert setting_of(r) == "recall=1.0, optimizer=strict"
    # a record from before: the method options that differ among its method's records are named
    a, b = record("sgtm", 0, 3.0, 1.6), record("sgtm", 0, 3.1, 1.6, options={"layers": [1]})
    for x in (a, b):
        del x["non_default"]
    assert [setting_of(x, peers=[a, b]) for x in (a, b)] == [
        "recall=1.0, layers=()",
        "recall=1.0, layers=1",
    ]


def test_results_without_headline_metrics_are_named_not_dropped_silently():
    old = record("filter", 0, 3.0, 1.6, evals={"relearn": {"worst_case": [], "budget": 10}})
    md = to_markdown(leaderboard_rows([old]))
    assert "Not shown: 1 evaluation results" in md and "unlearnbench attack" in md


def test_results_modules_import_neither_torch_nor_the_method_registry(tmp_path):
    """leaderboard, plots and report are pure functions of the records: rendering a store's
    records imports no torch and no method (nor evaluation) registry."""
    (tmp_path / "records.json").write_text(json.dumps(sample_records()))
    code = f"""
import json, sys
from unlearnbench.results.leaderboard import leaderboard_rows, to_markdown, to_csv, summary_text
from unlearnbench.results.plots import write_plots
from unlearnbench.results.report import report_html
from unlearnbench.results.leaderboard import runs_frame, headline_markdown
from unlearnbench.results.attack import worst_case_curve
recs = json.load(open({str(tmp_path / "records.json")!r}))
assert "robust/relearn: forget after 10-step attack" in to_markdown(leaderboard_rows(recs))
to_csv(leaderboard_rows(recs))
summary_text(recs[0]["evals"]["robust/relearn"])
write_plots(recs, "storyworld-topic", {str(tmp_path / "figs")!r})
report_html(recs, "storyworld-topic")
assert len(runs_frame(recs)) == len(recs) and "Order:" in headline_markdown(leaderboard_rows(recs))
worst_case_curve(recs[0]["curves"]["robust/relearn"])
bad = [m for m in ("torch", "unlearnbench.methods", "unlearnbench.evals") if m in sys.modules]
assert not bad, bad
print("pure")
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert out.returncode == 0 and "pure" in out.stdout, out.stderr[-2000:]


def test_settings_name_a_saved_base_by_its_run_not_by_a_machine_path():
    from unlearnbench.results.leaderboard import setting_of
    from unlearnbench.results.report import _kv

    base = "/some/store/models/no-filter__storyworld-lang__tiny__s0__abc123/"
    rec = {
        "method": "checkpoint-transfer",
        "config": {"labels": {"recall": 1.0}, "method_options": {"base": base}, "train": {}},
    }
    assert "base=no-filter__storyworld-lang__tiny__s0__abc123" in setting_of(rec)
    assert "/some" not in setting_of(rec)
    assert (
        _kv({"base": base, "steps": 5})
        == "base=no-filter__storyworld-lang__tiny__s0__abc123, steps=5"
    )


def test_a_posthoc_run_is_compared_with_plain_no_filter_and_beside_it_with_its_base():
    from unlearnbench.results import references

    plain = record("no-filter", 0, 2.5, 2.4)
    curriculum = record("no-filter", 0, 2.6, 2.4, options={"forget_after": 0.5})
    run = record("filter", 0, 2.9, 2.5)
    run["kind"] = "posthoc"
    for base in (
        curriculum["run_id"],
        f"/any/store/models/{curriculum['run_id']}",
        f"/any/store/models/{curriculum['run_id']}/",
    ):
        j = references.join([plain, curriculum, run | {"base": base}])[run["run_id"]]
        assert j.no_filter is plain and j.base is curriculum
        d = references.deltas(j)
        assert d["d_forget"] == pytest.approx(0.4) and d["base_d_forget"] == pytest.approx(0.3)
    other = "/any/store/models/no-filter__storyworld-topic__tiny__s0__gone"
    j = references.join([plain, curriculum, run | {"base": other}])[run["run_id"]]
    assert j.no_filter is plain and j.base is None


def test_an_earlier_versions_copies_of_other_runs_numbers_are_never_read():
    """A record written before evaluations measured their own run only holds its references'
    numbers and the steps computed from them: the tables compute afresh from the runs' own."""
    nf = record("no-filter", 0, 2.0, 1.5)
    old = record("sgtm", 0, 3.0, 1.6, recall=0.9)
    copied = relearn_summary({10: 2.5}, 7)  # steps_to_recover 7, as an old version wrote it
    copied["references"] = {"no-filter": {"run_id": nf["run_id"], "before": {"forget_loss": 9}}}
    old["evals"] = {"robust/relearn": copied}
    rows = leaderboard_rows([nf, old])
    cells = _row(rows, "sgtm", "recall=0.9")["cells"]
    # no-filter recorded no attack: the comparison is named, the old copy (7) never shown
    assert cells[RECOVER].mean is None and cells[RECOVER].note == "reference not measured"
    assert cells["d_forget"].mean == pytest.approx(1.0)  # the recall-0.9 run has its Δs


def test_the_headline_attack_is_relearning_never_the_benign_fine_tune():
    """The benign fine-tune sorts before relearn by name and has as many rows: the headline (and
    so the report's) still reads the relearning attack."""
    from unlearnbench.results.leaderboard import attack_result

    benign = result("benign-finetune", {"worst_case": [{"budget": 200, "forget_loss": 2.0}],
                                        "budget": 200})  # fmt: skip
    relearn = relearn_summary({200: 1.0}, None)
    ev = {"a/benign-finetune": benign, "z/relearn": relearn}
    rows = leaderboard_rows([record("sgtm", 0, 3.0, 1.6, evals=ev)])
    assert attack_result(rows) == "z/relearn"
    assert "relearning outcome: z/relearn" in headline_markdown(rows)


def test_runs_on_other_data_are_other_rows_and_csv_cells_never_run_as_formulas():
    a = record("sgtm", 0, 3.0, 1.6)
    b = record("sgtm", 1, 5.0, 1.6)
    b["config"]["benchmark_options"] = {"n_stories": 999}  # other data, same method and labels
    rows = leaderboard_rows([a, b])
    assert sorted(r["setting"] for r in rows) == [
        "recall=1.0, benchmark.n_stories=100",
        "recall=1.0, benchmark.n_stories=999",
    ]
    evil = record("sgtm", 0, 3.0, 1.6)
    evil["method"] = "=HYPERLINK(1)"
    table = list(csv.DictReader(io.StringIO(to_csv(leaderboard_rows([evil])))))
    assert table[0]["method"] == "'=HYPERLINK(1)"


def test_hidden_probe_accuracies_show_their_own_chance():
    hp = result("hidden-probes", {"forget": {"best_accuracy": 0.3, "chance": 0.139},
                                  "retain": {"best_accuracy": 0.9, "chance": 0.2}})  # fmt: skip
    rows = leaderboard_rows([record("sgtm", 0, 3.0, 1.6, evals={"robust/hidden-probes": hp})])
    assert rows[0]["cells"]["robust/hidden-probes:forget_probe_accuracy"].chance == 0.139


def test_a_column_that_does_not_separate_the_perfect_filter_from_no_filter_is_marked():
    """Forget loss separates the never-exposed model from no-filter over seeds; a fact-probe
    accuracy that is the same for both does not, and the headline marks it uninformative."""
    recs = []
    for seed, jitter in enumerate((0.0, 0.01, -0.01)):
        recs.append(record("no-filter", seed, 2.0 + jitter, 1.5,
                           evals={"robust/fact-probes": probes(0.5 + jitter, 0.9)}))  # fmt: skip
        recs.append(record("filter", seed, 4.0 + jitter, 1.5,
                           evals={"robust/fact-probes": probes(0.5 - jitter, 0.9)}))  # fmt: skip
    rows = leaderboard_rows(recs)
    sep = rows[0]["separation"]
    assert sep["forget"]["informative"] is True
    assert sep[PROBE_FORGET]["informative"] is False
    md = headline_markdown(rows)
    assert "forget facts acc ↓ †" in md and "uninformative here: forget facts acc" in md


def test_a_paper_setups_references_are_labelled_references_and_separate_its_columns():
    """A setup trained every run with a preset's training (and on a GPU): its no-filter and
    perfect filter are the plain references, named so, and the separation is theirs."""
    preset = {"steps": 500, "batch_size": 64, "lr": 5e-4, "device": "cuda"}
    recs = []
    for seed, jitter in enumerate((0.0, 0.01, -0.01)):
        for r in (record("no-filter", seed, 2.0 + jitter, 1.5),
                  record("filter", seed, 4.0 + jitter, 1.5),
                  record("sgtm", seed, 3.0, 1.6)):  # fmt: skip
            r["config"]["train"] |= preset
            r["non_default"]["train"] |= preset
            recs.append(r)
    rows = leaderboard_rows(recs)
    assert {r["method"]: r["role"] for r in rows} == {
        "no-filter": "no-filter", "filter": "perfect-filter", "sgtm": "method"}  # fmt: skip
    assert rows[0]["separation"]["forget"]["informative"] is True
    md = to_markdown(rows)
    assert "no-filter (reference)" in md and "reference variant, unranked" not in md


def test_the_relearning_outcome_names_the_budget_and_where_validity_ended():
    from unlearnbench.results.leaderboard import Cell, attack_outcome

    key = "robust/relearn:forget_loss@"
    row = {"seeds": 3, "cells": {
        f"{key}10": Cell(2.0, 0.1, 3, low=1.9, high=2.1),
        f"{key}50": Cell(1.5, 0.1, 2, low=1.4, high=1.6, statuses=(("no valid attack", 1),)),
    }}  # fmt: skip
    text, valid = attack_outcome(row, "robust/relearn", [10, 50])
    assert text.startswith("2.000 ± 0.100 @10") and "not every seed validly attacked @50" in text
    assert valid == "2/3"


# ---- model sizes: never pooled ----


def _two_sizes() -> list[dict]:
    """no-filter, the perfect filter and sgtm at tiny and small, two seeds; small's losses differ
    (no-filter's forget loss 1.0 lower, sgtm's 2.0 higher) so a pooled row would show."""
    tiny = [record(m, s, f + 0.1 * s, 1.5) for s in (0, 1)
            for m, f in (("no-filter", 2.0), ("filter", 4.0), ("sgtm", 3.0))]  # fmt: skip
    small = [record(m, s, f + 0.1 * s, 1.2, model="small") for s in (0, 1)
             for m, f in (("no-filter", 1.0), ("filter", 3.5), ("sgtm", 5.0))]  # fmt: skip
    return tiny + small


def test_runs_of_two_model_sizes_are_rows_of_their_own_each_against_its_own_no_filter():
    rows = leaderboard_rows(_two_sizes())
    assert [(r["model"], r["method"]) for r in rows if r["role"] == "method"] == [
        ("tiny", "sgtm"),
        ("small", "sgtm"),
    ]  # the smaller size first, whatever the names' alphabetical order
    sgtm = {r["model"]: r for r in rows if r["method"] == "sgtm"}
    assert all(r["seeds"] == 2 and len(r["run_ids"]) == 2 for r in sgtm.values())
    # Δforget against the no-filter run of the same size and seed: 3 - 2 at tiny, 5 - 1 at small
    assert sgtm["tiny"]["cells"]["d_forget"].mean == pytest.approx(1.0)
    assert sgtm["small"]["cells"]["d_forget"].mean == pytest.approx(4.0)
    assert sgtm["small"]["cells"]["d_retain"].mean == pytest.approx(0.0)
    # one headline table per benchmark and size, the smaller first
    text = headline_markdown(rows)
    tiny_at, small_at = (text.index(f"### storyworld-topic, model {m}") for m in ("tiny", "small"))
    assert tiny_at < small_at and text.count("### storyworld-topic") == 2
    assert "+4.000" in text[small_at:] and "+4.000" not in text[tiny_at:small_at]


def test_the_readme_ranking_is_one_line_per_benchmark_and_size_filled_between_its_markers():
    rows = leaderboard_rows(_two_sizes())
    table = ranking_markdown(rows, models=("tiny", "small", "wiki-254M"))
    lines = table.splitlines()
    # each size's own scores: sgtm +1.00 at tiny; at small its +4 nats of removal are capped at
    # the perfect filter's +2.50
    assert lines[2].startswith("| storyworld-topic | tiny | 2 | 1. filter (reference) (recall=1.0)")
    assert "2. sgtm (recall=1.0) +1.00 ± 0.00" in lines[2]
    assert lines[3].startswith("| storyworld-topic | small | 2 | 1. filter (reference)")
    assert "2. sgtm (recall=1.0) +2.50 ± 0.00" in lines[3]
    assert lines[4] == "| storyworld-topic | wiki-254M | 0 | not measured |"  # no runs of it
    readme = f"intro\n{RANKING_START}\nold ranking\n{RANKING_END}\nrest\n"
    filled = with_ranking(readme, table)
    assert filled == f"intro\n{RANKING_START}\n{table}{RANKING_END}\nrest\n"
    assert with_ranking(filled, table) == filled  # filling again changes nothing
    with pytest.raises(ValueError, match="section to fill"):
        with_ranking("no markers here", table)
    # the project's README has the section, filled from a leaderboard ranking
    ours = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = ours.split(RANKING_START)[1].split(RANKING_END)[0]
    assert section.startswith("\n| benchmark | model | seeds | ranking by score")
