"""Plots and the HTML report on hand-made records: data drawn, files written, HTML parsed."""

from __future__ import annotations

import base64
import json
from html.parser import HTMLParser

import pytest
from results_fixtures import record, relearn_rows, sample_records
from typer.testing import CliRunner

from unlearnbench.cli import app
from unlearnbench.results.plots import (
    pareto_front,
    relearn_curve,
    relearn_figure,
    tradeoff_figure,
    undiscovered_figure,
    write_plots,
)
from unlearnbench.results.report import report_html, write_reports

BENCH = "storyworld-topic"


def test_pareto_front_keeps_only_undominated_points():
    pts = [(1.0, 2.0), (1.2, 3.0), (1.1, 1.5), (1.5, 2.5), (2.0, 4.0)]
    assert pareto_front(pts) == [(1.0, 2.0), (1.2, 3.0), (2.0, 4.0)]


def test_relearn_curve_is_the_lowest_over_the_grid_per_step():
    r = sample_records()[0]  # no-filter s0, two learning rates
    curve = relearn_curve(r)
    assert list(curve) == [0, 10, 25, 50]
    # lr 1e-3 relearns 0.1 nats further by the end; retain rows are not forget loss
    assert curve[50] == pytest.approx(1.8 - 0.1)
    assert curve[0] == pytest.approx(2.0)
    assert relearn_curve(record("filter", 0, 3.0, 1.6)) == {}


def test_figures_draw_the_records():
    recs = sample_records()
    fig = tradeoff_figure(recs, BENCH)
    assert len(fig.axes) == 2  # retain and adjacent panels (the benchmark has adjacent losses)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["forget vs retain", "forget vs adjacent"]
    assert "nats" in fig.axes[0].get_xlabel() and "nats" in fig.axes[0].get_ylabel()
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert "filter (recall=1.0)" in labels and "Pareto frontier" in labels
    assert any("perfect filter" in lab for lab in labels)

    fig = undiscovered_figure(recs, BENCH)
    ax = fig.axes[0]
    sgtm = next(c for c in ax.containers if c.get_label() == "sgtm")  # an errorbar container
    sgtm_line = sgtm.lines[0]
    xs = list(sgtm_line.get_xdata())
    assert xs == pytest.approx([0.1, 0.5])  # 1 - recall for recall 0.9 and 0.5
    assert list(sgtm_line.get_ydata()) == pytest.approx([3.2, 2.5])  # means over seeds

    assert relearn_figure([record("filter", 0, 3.0, 1.6, benchmark=BENCH)], BENCH) is None


def test_write_plots_writes_png_and_svg(tmp_path):
    written = write_plots(sample_records(), BENCH, tmp_path)
    assert set(written) == {"tradeoff", "relearn", "undiscovered"}
    for paths in written.values():
        png, svg = paths
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert "<svg" in svg.read_text()[:2000]
    # records without relearning curves: that figure is skipped, not drawn empty
    plain = [record("no-filter", 0, 2.0, 1.5), record("filter", 0, 3.0, 1.6)]
    assert set(write_plots(plain, BENCH, tmp_path / "b")) == {"tradeoff", "undiscovered"}


def test_figures_are_a_pure_function_of_the_records(tmp_path):
    a = write_plots(sample_records(), BENCH, tmp_path / "a")
    b = write_plots(sample_records(), BENCH, tmp_path / "b")
    for kind in a:
        for pa, pb in zip(a[kind], b[kind], strict=True):
            assert pa.read_bytes() == pb.read_bytes(), pa.name  # same records, same bytes
    assert not list(tmp_path.glob("*/.*.tmp"))  # written through temporary files, none left


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tables, self.images, self.links, self.rows_in_first = 0, [], [], 0
        self._table_depth = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self.tables += 1
        if tag == "tr" and self.tables == 1:
            self.rows_in_first += 1
        if tag == "img":
            self.images.append(a)
        for key in ("src", "href"):
            if key in a:
                self.links.append(a[key])


def test_report_is_self_contained_with_tables_and_figures(tmp_path):
    recs = sample_records() + [record("filter", 0, 4.0, 1.5, benchmark="storyworld-lang")]
    page = report_html(recs, BENCH)
    p = _Page()
    p.feed(page)
    assert p.tables >= 4  # leaderboard, settings, environment, runs
    assert p.rows_in_first == 1 + 5  # header + one per method and setting of this benchmark
    assert len(p.images) == 3
    for img in p.images:
        assert img["src"].startswith("data:image/svg+xml;base64,")
        assert b"<svg" in base64.b64decode(img["src"].split(",", 1)[1])[:3000]
        assert img.get("alt")
    assert not [x for x in p.links if not x.startswith("data:")]  # no network
    assert "storyworld-lang" not in page.split("<h2", 1)[1]  # other benchmarks stay out
    assert "abc1234" in page and "cpu (x86_64, 1 threads)" in page  # versions and hardware
    assert "optimizer=strict" in page  # each method's settings

    paths = write_reports(recs, tmp_path)
    assert sorted(x.name for x in paths) == [
        "report-storyworld-lang.html",
        "report-storyworld-topic.html",
    ]
    lang = _Page()
    lang.feed(paths[0].read_text())
    assert len(lang.images) == 2  # no relearning curves: two figures and a note
    assert "relearn: no data" in paths[0].read_text()


def test_cli_plot_and_report(tmp_path):
    (tmp_path / "records").mkdir()
    for r in sample_records():
        (tmp_path / "records" / f"{r['run_id']}.json").write_text(json.dumps(r))
    runner = CliRunner()
    res = runner.invoke(app, ["plot", "tradeoff", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "figures" / f"{BENCH}-tradeoff.svg").is_file()
    assert not (tmp_path / "figures" / f"{BENCH}-relearn.svg").exists()
    res = runner.invoke(app, ["report", "--out", str(tmp_path), "--dest", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "r" / f"report-{BENCH}.html").is_file()
    res = runner.invoke(app, ["plot", "pareto", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "unknown plot" in res.output
    res = runner.invoke(app, ["report", "--out", str(tmp_path / "empty")])
    assert res.exit_code == 1 and "no run records" in res.output


def test_relearn_figure_draws_every_attack_result_under_its_own_key():
    two = {
        "robust/relearn": relearn_rows(3.0, 2.1),
        "robust-lite/relearn-mixed": relearn_rows(3.0, 2.6),
    }
    recs = [record("sgtm", 0, 3.0, 1.6, curves=two), record("filter", 0, 4.0, 1.6, curves=two)]
    fig = relearn_figure(recs, BENCH)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["robust-lite/relearn-mixed (full)", "robust/relearn (full)"]
    assert relearn_curve(recs[0], key="robust-lite/relearn-mixed")[50] == pytest.approx(2.5)


def test_report_says_which_suite_ran_each_result():
    recs = sample_records()
    page = report_html(recs, BENCH)
    evaluations = page.split('id="evaluations"', 1)[1].split("<h2", 1)[0]
    assert "robust/relearn" in evaluations and "robust/fact-probes" in evaluations
    assert "<td>relearn</td><td>robust</td>" in evaluations
    assert "robust/relearn: forget after 10-step attack" in page  # the leaderboard's column
