"""Plots and the HTML report on hand-made records: data drawn, files written, HTML parsed."""

from __future__ import annotations

import base64
import json
import math
from html.parser import HTMLParser

import pytest
from matplotlib.colors import to_hex
from results_fixtures import record, relearn_rows, result, sample_records
from typer.testing import CliRunner

from unlearnbench.cli import app
from unlearnbench.results import stats
from unlearnbench.results.attack import EXCLUDED, budget_outcome, worst_case_curve
from unlearnbench.results.leaderboard import leaderboard_rows
from unlearnbench.results.plots import (
    method_color,
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
    assert titles == ["Δforget vs Δretain", "Δforget vs Δadjacent (not used by the ranking)"]
    assert "nats" in fig.axes[0].get_xlabel() and "nats" in fig.axes[0].get_ylabel()
    labels = _legend_labels(fig)
    assert "1 filter (recall=1.0), n=2" in labels  # rank, method, setting and seeds
    assert any("perfect filter" in lab for lab in labels)
    # runs without a matching no-filter run (sgtm at recall < 1 here) have no Δ: said, not drawn
    assert "Not drawn" in _texts(fig) and "sgtm (recall=0.9), n=2" in _texts(fig)

    fig = undiscovered_figure(recs, BENCH)
    ax = fig.axes[0]
    sgtm = next(c for c in ax.containers if c.get_label() == "sgtm, n=1-2")  # errorbar container
    sgtm_line = sgtm.lines[0]
    xs = list(sgtm_line.get_xdata())
    assert xs == pytest.approx([0.1, 0.5])  # 1 - recall for recall 0.9 and 0.5
    assert list(sgtm_line.get_ydata()) == pytest.approx([3.2, 2.5])  # means over seeds

    assert relearn_figure([record("filter", 0, 3.0, 1.6, benchmark=BENCH)], BENCH) is None


def _legend_labels(fig) -> list[str]:
    return [t.get_text().replace("\n", " ") for leg in fig.legends for t in leg.get_texts()]


def _texts(fig) -> str:
    found = [t.get_text() for t in fig.texts] + [t.get_text() for ax in fig.axes for t in ax.texts]
    return " ".join(found).replace("\n", " ")


def _damage_records() -> list[dict]:
    """no-filter, the perfect filter and sgtm at recall 1 (so every run has a matching no-filter
    run), and an sgtm setting that got worse everywhere: +0.78 forget, +0.85 retain."""
    recs = []
    for seed, (nf_f, nf_r) in enumerate([(2.0, 1.5), (2.2, 1.7)]):
        recs += [
            record("no-filter", seed, nf_f, nf_r, 1.8),
            record("filter", seed, nf_f + 2.0, nf_r + 0.02, 2.5),
            record("sgtm", seed, nf_f + 1.0, nf_r + 0.05, 2.2),
            record("sgtm", seed, nf_f + 0.78, nf_r + 0.85, 2.9, options={"forget_mlp_dim": 8}),
        ]
    return recs


def _points(ax) -> dict[str, tuple[float, float, str]]:
    """{legend label: (x, y, face colour)} of the trade-off's errorbar points."""
    out = {}
    for c in ax.containers:
        line = c.lines[0]
        out[c.get_label()] = (line.get_xdata()[0], line.get_ydata()[0], line.get_markerfacecolor())
    return out


def test_tradeoff_shows_damage_and_keeps_a_model_worse_everywhere_off_the_frontier():
    recs = _damage_records()
    fig = tradeoff_figure(recs, BENCH)
    ax = fig.axes[0]
    points = _points(ax)
    rows = leaderboard_rows(recs, BENCH)
    worse = next(r for r in rows if "forget_mlp_dim" in r["setting"])
    label = next(lab for lab in points if "forget_mlp_dim=8" in lab)
    x, y, face = points[label]
    assert (x, y) == pytest.approx((0.85, 0.78))  # damage on x, removal on y, paired by seed
    assert (x, y) == pytest.approx(
        (worse["cells"]["d_retain"].mean, worse["cells"]["d_forget"].mean)
    )
    assert face == "white"  # hollow: beyond the retain tolerance
    assert label.startswith(f"{rows.index(worse) + 1} ")  # its rank in the table: last
    # the frontier joins only points within the tolerance
    frontier = next(line for line in ax.get_lines() if line.get_label().startswith("Pareto"))
    assert 0.85 not in list(frontier.get_xdata())
    assert max(frontier.get_xdata()) <= stats.RETAIN_TOLERANCE
    # the tolerance band is drawn where the ranking puts it, and the rule is printed
    band = next(p for p in ax.patches if "ranked first" in p.get_label())
    assert band.get_x() + band.get_width() == pytest.approx(stats.RETAIN_TOLERANCE)
    assert stats.ranking_rule() in _texts(fig)
    # a wider tolerance takes the same row into the band and onto the frontier
    wide = tradeoff_figure(recs, BENCH, retain_tolerance=1.0)
    points = _points(wide.axes[0])
    assert next(v for k, v in points.items() if "forget_mlp_dim=8" in k)[2] != "white"
    assert stats.ranking_rule(1.0) in _texts(wide)


def test_a_point_under_another_is_still_named():
    recs = _damage_records()
    twin = [dict(r, run_id=r["run_id"] + "-twin", non_default={**r["non_default"],
            "method_options": {"forget_heads": 1}}) for r in recs if r["method"] == "sgtm"
            and "forget_mlp_dim" not in r["run_id"]]  # fmt: skip
    fig = tradeoff_figure(recs + twin, BENCH)
    rows = leaderboard_rows(recs + twin, BENCH)
    ranks = sorted(str(i + 1) for i, r in enumerate(rows) if r["method"] == "sgtm"
                   and "forget_mlp_dim" not in r["setting"])  # fmt: skip
    assert len(ranks) == 2  # two rows at the same point
    tags = [t.get_text() for t in fig.axes[0].texts]
    assert ",".join(ranks) in tags  # one label naming both


def test_legends_name_methods_never_run_ids():
    recs = _damage_records()
    base = recs[0]["run_id"]  # a post-hoc run's recorded base shows as a run id in its setting
    recs.append(
        record("sgtm", 0, 2.9, 1.55, 2.2, options={"layers": [1]})
        | {"non_default": {"method_options": {"layers": [1]}, "labels": {}, "train": {}}}
    )
    recs[-1]["config"]["base"] = f"/somewhere/models/{base}"
    recs[-1]["curves"] = {"robust/relearn": relearn_rows(2.9, 2.0)}
    for r in recs[:2]:
        r["curves"] = {"robust/relearn": relearn_rows(2.0, 1.8)}
    ids = [r["run_id"] for r in recs]
    for fig in (tradeoff_figure(recs, BENCH), relearn_figure(recs, BENCH)):
        text = " ".join(_legend_labels(fig)) + _texts(fig)
        assert "base=no-filter" in text
        assert not [i for i in ids if i in text] and "__" not in text


def test_each_method_has_one_colour_in_every_figure_and_the_report():
    recs = sample_records()
    tradeoff = _points(tradeoff_figure(_damage_records(), BENCH).axes[0])
    relearn = relearn_figure(recs, BENCH).axes[0]
    undiscovered = undiscovered_figure(recs, BENCH).axes[0]
    seen: dict[str, set] = {}

    def note(method, color):
        seen.setdefault(method, set()).add(to_hex(color))

    for c in tradeoff_figure(_damage_records(), BENCH).axes[0].containers:
        note(c.get_label().split(" ")[1].rstrip(","), c.lines[0].get_color())
    for line in relearn.get_lines():
        if ", n=" in line.get_label() and not line.get_label().startswith("no-filter forget"):
            note(line.get_label().split(" ")[0].rstrip(","), line.get_color())
    for c in undiscovered.containers:
        note(c.get_label().split(" ")[0].rstrip(","), c.lines[0].get_color())
    assert {"filter", "sgtm", "no-filter"} <= set(seen) and tradeoff
    assert all(len(colors) == 1 for colors in seen.values()), seen
    assert len({next(iter(c)) for c in seen.values()}) == len(seen)  # and distinct
    # fixed per method, whatever else is drawn: not a palette indexed by the methods present
    only_sgtm = [r for r in recs if r["method"] == "sgtm"]
    line = next(c for c in undiscovered_figure(only_sgtm, BENCH).axes[0].containers)
    assert to_hex(line.lines[0].get_color()) == method_color("sgtm") == next(iter(seen["sgtm"]))
    assert method_color("my-new-method") == method_color("my-new-method")  # by name, stable
    page = report_html(recs, BENCH)
    assert f"background:{method_color('sgtm')}" in page  # the report's colour key


def test_titles_say_n_and_never_claim_a_spread_of_one_seed():
    one_seed = [r for r in _damage_records() if r["seed"] == 0]
    fig = tradeoff_figure(one_seed, BENCH)
    assert "n=1" in fig._suptitle.get_text() and "±" not in fig._suptitle.get_text()
    assert all(c.lines[0].get_xdata() is not None for c in fig.axes[0].containers)
    assert not any(c.has_xerr and c[2] for c in fig.axes[0].containers)  # no bars of one seed
    both = tradeoff_figure(_damage_records(), BENCH)
    assert "95% t-interval" in both._suptitle.get_text()
    assert all(lab.endswith("n=2") for lab in _points(both.axes[0]))


def _attack(rows: list[dict]) -> dict:
    """A stored relearn result summarized from `rows` by the evaluation's own rule."""
    from unlearnbench.evals.relearn import summarize

    return result("relearn", summarize(rows, (10, 25, 50), None, 0.5, 0.9))


def _broken(rows: list[dict], lr: float | None, from_step: int) -> list[dict]:
    """The rows with the retain loss of setting `lr` (every setting: None) wrecked from a step."""
    out = []
    for r in rows:
        r = dict(r)
        if r["split"] == "retain" and r["step"] >= from_step and lr in (None, r["lr"]):
            r["loss"] = 3.0  # 1 nat above its step-0 value: beyond the 0.5 tolerance
        out.append(r)
    return out


def test_relearn_figure_plots_the_tables_worst_case_with_excluded_settings():
    # lr 1e-3 relearns further but wrecks retain loss from step 25: the table leaves it out there
    rows = _broken(relearn_rows(3.0, 2.0), 1e-3, 25)
    summary = _attack(rows)
    recs = [
        record("sgtm", 0, 3.0, 1.6, evals={"robust/relearn": summary},
               curves={"robust/relearn": rows}),
    ]  # fmt: skip
    curve = worst_case_curve(rows, 0.5, "full")
    naive = {}  # the lowest over every setting, excluded ones included: what the table refuses
    for r in rows:
        if r["split"] == "forget":
            naive[r["step"]] = min(r["loss"], naive.get(r["step"], 99.0))
    assert curve[50] > naive[50]
    fig = relearn_figure(recs, BENCH)
    line = next(ln for ln in fig.axes[0].get_lines() if ln.get_label() == "sgtm (recall=1.0), n=1")
    assert list(line.get_xdata()) == list(curve)
    assert list(line.get_ydata()) == pytest.approx(list(curve.values()))
    for budget in (10, 25, 50):  # the figure's value at each budget is the table's
        assert curve[budget] == pytest.approx(budget_outcome(summary, budget))
    assert relearn_curve(recs[0], "full") == curve


def test_relearn_figure_marks_excluded_apart_from_not_measured():
    every = _broken(relearn_rows(3.0, 2.0), None, 25)  # every setting wrecked from step 25
    half = _broken(relearn_rows(3.2, 2.2), None, 50)  # the second seed's only from step 50
    recs = [
        record("sgtm", 0, 3.0, 1.6, evals={"robust/relearn": _attack(every)},
               curves={"robust/relearn": every}),
        record("sgtm", 1, 3.2, 1.6, evals={"robust/relearn": _attack(half)},
               curves={"robust/relearn": half}),
        record("filter", 0, 4.0, 1.6),  # no attack result: not measured
    ]  # fmt: skip
    assert budget_outcome(recs[0]["evals"]["robust/relearn"], 25) is EXCLUDED
    fig = relearn_figure(recs, BENCH)
    ax = fig.axes[0]
    line = next(ln for ln in ax.get_lines() if ln.get_label() == "sgtm (recall=1.0), n=2")
    ys = list(line.get_ydata())
    steps = list(line.get_xdata())
    # 25: seed 1 alone (seed 0 excluded), hollow; 50: both excluded: no value, an ×
    assert ys[steps.index(25)] == pytest.approx(worst_case_curve(half)[25])
    assert math.isnan(ys[steps.index(50)])
    crosses = [ln for ln in ax.get_lines() if ln.get_marker() == "x"]
    assert [list(c.get_xdata()) for c in crosses] == [[50]]
    hollow = [ln for ln in ax.get_lines() if ln.get_markerfacecolor() == "white"]
    assert [list(h.get_xdata()) for h in hollow] == [[25]]
    labels = _legend_labels(fig)
    assert any(lab.startswith("× on the top edge: excluded") for lab in labels)
    assert "not measured (no robust/relearn result): filter (recall=1.0)" in _texts(fig)
    assert not any(lab.startswith("filter") for lab in labels)  # not drawn


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
    # no relearning curves and no no-filter run to take Δ against: one figure and two notes
    assert len(lang.images) == 1
    assert "relearn: no data" in paths[0].read_text()
    assert "no run here has one" in paths[0].read_text()


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


def _generations(continuations: dict[str, str]) -> dict:
    """A stored generations result: one sample per split, the same fixed documents for all."""
    samples = [
        {
            "split": split,
            "document_id": f"t-{split}",
            "prompt": f"Once upon a time ({split})",
            "continuation": text,
            "document_continuation": f"what the {split} story says",
        }
        for split, text in continuations.items()
    ]
    return result("generations", {"decoding": "greedy", "samples": samples})


def test_report_shows_each_methods_generations_from_the_records():
    recs = _damage_records()
    for r in recs:
        text = {"forget": f"{r['method']} s{r['seed']} forget <b>", "retain": "fluent retain"}
        r["evals"] = {"quick/generations": _generations(text)}
    page = report_html(recs, BENCH)
    section = page.split('id="generations"', 1)[1].split("<h2", 1)[0]
    forget, retain = section.split("<h3>")[1:]
    assert forget.startswith("forget prompt") and retain.startswith("retain prompt")
    assert "Once upon a time (forget)" in forget and "what the forget story says" in forget
    assert "sgtm s0 forget &lt;b&gt;" in forget  # escaped, and the lowest seed's run
    assert "sgtm s1 forget" not in forget
    # one row per method and setting, in the leaderboard's order, each in its method's colour
    rows = leaderboard_rows(recs, BENCH)
    order = [forget.index(f"{r['method']} s0 forget") for r in rows if r["method"] != "sgtm"]
    assert order == sorted(order)
    assert forget.count("<tr>") == 3 + len(rows)  # head, prompt, the document, one per row
    assert f"background:{method_color('filter')}" in forget
    # without the evaluation: a note saying how to add it
    plain = report_html(_damage_records(), BENCH)
    assert "No generations in these records" in plain


def test_benign_fine_tune_accuracy_shows_its_chance_level():
    summary = result(
        "benign-finetune",
        {"worst_case": [{"budget": 10, "forget_loss": 2.0, "forget_accuracy": 0.4}],
         "budget": 10, "chance": 0.25},
    )  # fmt: skip
    recs = [record("sgtm", 0, 3.0, 1.6, evals={"robust/benign-finetune": summary})]
    rows = leaderboard_rows(recs, BENCH)
    cell = rows[0]["cells"]["robust/benign-finetune:forget_accuracy@10"]
    assert cell.mean == pytest.approx(0.4) and cell.chance == pytest.approx(0.25)
    assert "chance 0.250" in report_html(recs, BENCH)


def test_cli_tolerance_defaults_are_the_rules():
    import inspect

    from unlearnbench.cli import plot, report

    for command in (plot, report):
        default = inspect.signature(command).parameters["retain_tolerance"].default.default
        assert default == stats.RETAIN_TOLERANCE
