"""Leaderboard on hand-made records: values, mean/std over seeds, deltas, blanks, arrows, order."""

from __future__ import annotations

import csv
import io
import json
import math
from html.parser import HTMLParser

import pytest
from results_fixtures import record, sample_records
from typer.testing import CliRunner

from unlearnbench.cli import app
from unlearnbench.results.leaderboard import (
    format_cell,
    leaderboard_rows,
    rows_columns,
    setting_of,
    to_csv,
    to_html,
    to_markdown,
)


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
    for key in ("relearn@10", "relearn@50", "recover", "probe_forget"):
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
    assert by_header["forget after 10-step attack ↑"] == ""
    assert by_header["forget facts acc ↓"] == ""
    assert "0.000" not in line
    # a metric present for only one of two seeds: averaged over that seed and flagged n=1
    nf = _row(rows, "no-filter", "")
    assert nf["cells"]["relearn@10"].mean == 1.9 and nf["cells"]["relearn@10"].n == 1
    assert (
        format_cell(nf["cells"]["relearn@10"], cols[[c.key for c in cols].index("relearn@10")], 2)
        == "1.900 (n=1)"
    )


def test_columns_only_for_evaluations_some_run_has():
    keys = [c.key for c in rows_columns(leaderboard_rows(sample_records()))]
    assert "calibrated" not in keys  # no record has it: the column is left out, not zero-filled
    assert keys[:3] == ["forget", "adjacent", "retain"]
    assert "relearn@10" in keys and "relearn@50" in keys and "probe_forget" in keys
    plain = [record("no-filter", 0, 2.0, 1.5), record("filter", 0, 3.0, 1.6)]
    keys = [c.key for c in rows_columns(leaderboard_rows(plain))]
    assert "relearn@10" not in keys and "recover" not in keys
    assert "adjacent" in keys  # the core columns stay, blank


def test_steps_to_recover_counts_seeds_that_never_recovered():
    rows = leaderboard_rows(sample_records())
    sg = _row(rows, "sgtm", "recall=0.9")
    cell = sg["cells"]["recover"]
    assert cell.mean == 40 and cell.n == 1
    assert cell.note == "1/2 seeds > 50"


def test_arrows_order_and_rule():
    rows = leaderboard_rows(sample_records())
    headers = {c.key: c.header for c in rows_columns(rows)}
    assert headers["forget"] == "forget loss ↑"
    assert headers["retain"] == "retain loss ↓"
    assert headers["d_forget"].endswith("↑") and headers["d_retain"].endswith("↓")
    forgets = [r["cells"]["forget"].mean for r in rows]
    assert forgets == sorted(forgets, reverse=True)
    assert [r["method"] for r in rows][0] == "filter" and rows[-1]["method"] == "no-filter"
    md = to_markdown(rows)
    assert "highest first" in md.splitlines()[-1]


def test_settings_distinguish_recall_and_non_default_options():
    recs = sample_records()
    settings = {setting_of(r) for r in recs}
    assert "recall=0.9, optimizer=strict" in settings
    assert "recall=0.9" in settings and "recall=0.5" in settings
    assert setting_of(record("no-filter", 0, 2.0, 1.5, recall=0.9)) == ""  # ignores labels
    r = record("filter", 0, 3.0, 1.6)
    r["config"]["train"]["steps"] = 100
    r["config"]["train"]["device"] = "cuda"  # where it ran is not a setting
    assert setting_of(r) == "recall=1.0, steps=100"


def test_no_filter_of_one_seed_counts_once_and_reference_prefers_same_config():
    nf_a = record("no-filter", 0, 2.0, 1.5, recall=1.0)
    nf_b = record("no-filter", 0, 2.4, 1.5, recall=0.9)  # same seed, other labels (ignored)
    nf_short = record("no-filter", 0, 5.0, 5.0)
    nf_short["run_id"] += "-short"
    nf_short["config"]["train"]["steps"] = 10
    f = record("filter", 0, 3.0, 1.6, recall=0.9)
    rows = leaderboard_rows([nf_a, nf_b, nf_short, f])
    nf = _row(rows, "no-filter", "")
    assert nf["seeds"] == 1 and nf["cells"]["forget"].std is None
    assert nf["cells"]["forget"].mean == pytest.approx(2.2)  # the seed's two records averaged
    # the filter's delta is against the no-filter with its own training and label config
    assert _row(rows, "filter", "recall=0.9")["cells"]["d_forget"].mean == pytest.approx(0.6)


def test_csv_and_html_hold_the_same_numbers():
    rows = leaderboard_rows(sample_records())
    table = list(csv.DictReader(io.StringIO(to_csv(rows))))
    assert len(table) == len(rows)
    f = next(t for t in table if t["method"] == "filter")
    assert float(f["forget_mean"]) == pytest.approx(4.5)
    assert float(f["forget_std"]) == pytest.approx(math.sqrt(0.5))
    assert f["relearn@10_mean"] == "" and f["relearn@10_n"] == "0"

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
    filt = next(r for r in p.rows[1:] if r[2] == "filter")
    assert filt[head.index("forget loss ↑")] == "4.500 ± 0.707"


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
        "calibrated-loss": {"calibrated": {"forget_loss": 3.3, "retain_loss": 1.5}},
        "disjoint-facts": {"held_out_gain": 0.125},
        "direction-ablation": {"ablated": {"forget_loss": 2.75}},
        "fact-probes": {"forget": {"accuracy": 0.5, "chance": 0.25, "n": 8}},
    }
    rows = leaderboard_rows([record("filter", 0, 3.0, 1.6, evals=ev)])
    cells = rows[0]["cells"]
    assert cells["calibrated"].mean == 3.3
    assert cells["disjoint"].mean == 0.125
    assert cells["dir_ablation"].mean == 2.75
    assert cells["probe_forget"].mean == 0.5
    assert cells["probe_retain"].mean is None  # not in the summary: blank


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


def test_a_posthoc_run_is_compared_with_its_base_named_by_id_or_by_saved_path():
    from unlearnbench.results.leaderboard import no_filter_reference

    plain = record("no-filter", 0, 2.5, 2.4)
    curriculum = record("no-filter", 0, 2.6, 2.4, options={"forget_after": 0.5})
    run = record("filter", 0, 2.9, 2.5)
    assert no_filter_reference(run, [plain, curriculum]) is plain  # same configs win
    for base in (
        curriculum["run_id"],
        f"/any/store/models/{curriculum['run_id']}",
        f"/any/store/models/{curriculum['run_id']}/",
    ):
        assert no_filter_reference(run | {"base": base}, [plain, curriculum]) is curriculum
    other = "/any/store/models/no-filter__storyworld-topic__tiny__s0__gone"
    assert no_filter_reference(run | {"base": other}, [plain, curriculum]) is plain
