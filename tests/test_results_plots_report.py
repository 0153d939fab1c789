"""Plots and the HTML report on hand-made records: data drawn, files written, HTML parsed."""

from __future__ import annotations

import base64
import json
import math
from html.parser import HTMLParser

import matplotlib.pyplot as plt
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


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")  # each test's figures: never kept open across the file


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
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == [
        "score = removal credited - damage charged",
        "Δforget vs Δretain",
        "Δforget vs Δadjacent",
    ]
    assert "nats" in fig.axes[1].get_xlabel() and "nats" in fig.axes[1].get_ylabel()
    labels = _legend_labels(fig)
    assert "1 filter (recall=1.0), n=2" in labels  # rank, method, setting and seeds
    assert any(lab.startswith("perfect filter's Δforget") for lab in labels)
    # runs at recall < 1 are compared with the plain no-filter run (it ignores labels): drawn
    assert any(lab.endswith("sgtm (recall=0.9), n=2") for lab in labels)
    assert "Not drawn" not in _texts(fig)

    fig = undiscovered_figure(recs, BENCH)
    assert [ax.get_title().split(" (")[0] for ax in fig.axes] == ["Δforget", "Δretain", "Δadjacent"]
    forget, retain, _ = fig.axes
    line = next(c for c in forget.containers if c.get_label() == "sgtm, n=1-2").lines[0]
    assert list(line.get_xdata()) == pytest.approx([0.1, 0.5])  # 1 - recall for 0.9 and 0.5
    # Δ paired by seed against the plain no-filter run: (3.0 - 2.0, 3.4 - 2.2) and 2.5 - 2.0
    assert list(line.get_ydata()) == pytest.approx([1.1, 0.5])
    line = next(c for c in retain.containers if c.get_label() == "sgtm, n=1-2").lines[0]
    assert list(line.get_ydata()) == pytest.approx([(0.10 - 0.08) / 2, 0.08])  # damage beside

    assert relearn_figure([record("filter", 0, 3.0, 1.6, benchmark=BENCH)], BENCH) is None


def _legend_labels(fig) -> list[str]:
    return [t.get_text().replace("\n", " ") for leg in fig.legends for t in leg.get_texts()]


def _texts(fig) -> str:
    found = [t.get_text() for t in fig.texts] + [t.get_text() for ax in fig.axes for t in ax.texts]
    found += [ax.get_xlabel() for ax in fig.axes]
    return " ".join(found).replace("\n", " ")


def _damage_records() -> list[dict]:
    """no-filter, the perfect filter and sgtm at recall 1 (so every run has a matching no-filter
    run), and an sgtm setting that got worse everywhere: +0.78 forget, +0.85 retain, +1.1
    adjacent (the perfect filter's own Δadjacent is +0.7)."""
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


def _hlines(ax, label: str) -> list[float]:
    return [ln.get_ydata()[0] for ln in ax.get_lines() if ln.get_label().startswith(label)]


def test_tradeoff_charges_damage_and_ranks_as_the_leaderboard():
    recs = _damage_records()
    fig = tradeoff_figure(recs, BENCH)
    score_ax, retain_ax, adjacent_ax = fig.axes
    rows = [r for r in leaderboard_rows(recs, BENCH) if r.get("role") != "reference variant"]
    worse = next(r for r in rows if "forget_mlp_dim" in r["setting"])
    label = next(lab for lab in _points(retain_ax) if "forget_mlp_dim=8" in lab)
    assert label.startswith(f"{rows.index(worse) + 1} ")  # its rank in the leaderboard
    # the leaderboard's Δ columns, paired by seed
    x, y, _ = _points(retain_ax)[label]
    assert (x, y) == pytest.approx((0.85, 0.78))
    assert (x, y) == pytest.approx(
        (worse["cells"]["d_retain"].mean, worse["cells"]["d_forget"].mean)
    )
    assert _points(adjacent_ax)[label][:2] == pytest.approx((1.1, 0.78))
    # the score's terms: damage 0.85 retain + (1.1 - 0.7) adjacent beyond the filter's; removal
    # credited up to the filter's 2.0; y - x is the leaderboard's score
    x, y, _ = _points(score_ax)[label]
    assert (x, y) == pytest.approx((0.85 + 0.4, 0.78))
    assert y - x == pytest.approx(worse["cells"]["score"].mean)
    # sgtm's adjacent rise (0.4) is below the filter's (0.7): only its retain rise is charged
    x, _, _ = next(v for k, v in _points(score_ax).items() if k.endswith(" sgtm (recall=1.0), n=2"))
    assert x == pytest.approx(0.05)
    frontier = next(ln for ln in score_ax.get_lines() if ln.get_label().startswith("Pareto"))
    assert 1.25 not in list(frontier.get_xdata())  # dominated
    marker = next(ln for ln in retain_ax.get_lines() if "retain tolerance" in ln.get_label())
    assert marker.get_xdata()[0] == pytest.approx(stats.RETAIN_TOLERANCE)
    wide = tradeoff_figure(recs, BENCH, retain_tolerance=1.0)
    marker = next(ln for ln in wide.axes[1].get_lines() if "retain tolerance" in ln.get_label())
    assert marker.get_xdata()[0] == pytest.approx(1.0)
    assert "score = min(Δforget" in _texts(fig)  # the score is defined under the figure


def _variant(r: dict) -> dict:
    """The run trained with gradient clipping: a reference variant when it is a reference."""
    r = json.loads(json.dumps(r))
    r["run_id"] += "-clip"
    r["config"]["train"]["grad_clip"] = 1.0
    r["non_default"]["train"] = {"grad_clip": 1.0}
    return r


def test_the_ceiling_is_the_plain_perfect_filters_and_variants_are_never_ranked():
    recs = _damage_records()
    for r in list(recs):
        if r["method"] in ("no-filter", "filter"):
            v = _variant(r)
            if r["method"] == "filter":  # the clipped filter removes more: +3.0 against its own
                v["metrics"]["forget_loss"] += 1.0
            recs.append(v)
    fig = tradeoff_figure(recs, BENCH)
    for ax in fig.axes:  # the plain perfect filter's Δforget (2.0), never the variant's (3.0)
        assert _hlines(ax, "perfect filter's Δforget") == pytest.approx([2.0])
    points = _points(fig.axes[0])
    clipped = [k for k in points if k.startswith("ref. filter")]
    assert len(clipped) == 1 and "reference variant, not ranked" in clipped[0]
    x, y, face = points[clipped[0]]
    assert face == "white" and y == pytest.approx(3.0)  # drawn, as a reference
    frontier = next(ln for ln in fig.axes[0].get_lines() if ln.get_label().startswith("Pareto"))
    assert (x, y) not in list(zip(frontier.get_xdata(), frontier.get_ydata(), strict=True))
    ranks = [k.split(" ")[0] for k in points if not k.startswith("ref.")]
    assert sorted(ranks, key=int) == [str(i) for i in range(1, len(ranks) + 1)]


def test_a_method_that_diverges_keeps_the_others_legible():
    recs = _damage_records()
    for seed, (nf_f, nf_r) in enumerate([(2.0, 1.5), (2.2, 1.7)]):
        # like circuit-breakers on topic: removal beyond the filter's, +10 nats of adjacent damage
        recs.append(record("sgtm", seed, nf_f + 2.2, nf_r + 0.01, 11.8, options={"layers": [0]}))
    fig = tradeoff_figure(recs, BENCH)
    ax = fig.axes[2]
    low, high = ax.get_xlim()
    assert high < 5  # the bulk (0 to 1.1) is not squashed to make room for +10
    points = _points(ax)
    cb = next(k for k in points if "layers=0" in k)
    line = next(c for c in ax.containers if c.get_label() == cb).lines[0]
    assert line.get_marker() == ">" and points[cb][0] == pytest.approx(high)  # on the edge
    assert "+10.0" in ax.get_xlabel()  # its value, under the panel
    others = [v for k, v in points.items() if k != cb]
    assert all(low <= x <= high for x, _, _ in others)
    assert any("beyond the axis" in lab for lab in _legend_labels(fig))


def test_a_point_under_another_is_still_named():
    recs = _damage_records()
    twin = [dict(r, run_id=r["run_id"] + "-twin", non_default={**r["non_default"],
            "method_options": {"forget_heads": 1}}) for r in recs if r["method"] == "sgtm"
            and "forget_mlp_dim" not in r["run_id"]]  # fmt: skip
    fig = tradeoff_figure(recs + twin, BENCH)
    rows = [r for r in leaderboard_rows(recs + twin, BENCH) if r.get("role") != "reference variant"]
    ranks = sorted(str(i + 1) for i, r in enumerate(rows) if r["method"] == "sgtm"
                   and "forget_mlp_dim" not in r["setting"])  # fmt: skip
    assert len(ranks) == 2  # two rows at the same point
    tags = [t.get_text() for t in fig.axes[1].texts]
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
        label = line.get_label().removeprefix("never-exposed floor: ")
        if ", n=" in label and not label.startswith("no-filter forget"):
            note(label.split(" ")[0].rstrip(","), line.get_color())
    for c in undiscovered.containers:
        note(c.get_label().split(" ")[0].rstrip(","), c.lines[0].get_color())
    assert {"filter", "sgtm", "no-filter"} <= set(seen) and tradeoff
    assert all(len(colors) == 1 for colors in seen.values()), seen
    assert len({next(iter(c)) for c in seen.values()}) == len(seen)  # and distinct
    # fixed per method, whatever else is drawn: not a palette indexed by the methods present
    only_sgtm = [r for r in recs if r["method"] in ("sgtm", "no-filter")]  # and its Δ's reference
    line = next(c for c in undiscovered_figure(only_sgtm, BENCH).axes[0].containers)
    assert to_hex(line.lines[0].get_color()) == method_color("sgtm") == next(iter(seen["sgtm"]))
    # a method the palette does not know gets its colour from its name: the same in another
    # process (not from the order methods were first seen, nor Python's salted str hash)
    import subprocess
    import sys

    code = (
        "from unlearnbench.results.plots import method_color; print(method_color('my-new-method'))"
    )
    env = {**__import__("os").environ, "PYTHONHASHSEED": "123"}
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert other.stdout.strip() == method_color("my-new-method")
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

    return result("relearn", summarize(rows, (10, 25, 50), 0.5))


def _broken(rows: list[dict], lr: float | None, from_step: int, stop: bool = False) -> list[dict]:
    """The rows with the retain loss of setting `lr` (every setting: None) wrecked from a step;
    `stop`: the attack stopped there (no later rows, as `stop_broken` leaves them)."""
    out = []
    for r in rows:
        r = dict(r)
        if lr in (None, r["lr"]) and r["step"] >= from_step:
            if stop and r["step"] > from_step:
                continue
            if r["split"] == "retain":
                r["loss"] = 3.0  # 1 nat above its step-0 value: beyond the 0.5 tolerance
        out.append(r)
    return out


def _attacked(method, seed, forget, rows, key="robust/relearn", **kw) -> dict:
    return record(method, seed, forget, 1.6, evals={key: _attack(rows)}, curves={key: rows}, **kw)


def test_relearn_figure_plots_the_tables_worst_case_with_excluded_settings():
    # lr 1e-3 relearns further but wrecks retain loss from step 25: the table leaves it out there
    rows = _broken(relearn_rows(3.0, 2.0), 1e-3, 25)
    summary = _attack(rows)
    recs = [_attacked("sgtm", 0, 3.0, rows)]
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


def test_relearn_figure_marks_no_valid_attack_apart_from_not_measured():
    every = _broken(relearn_rows(3.0, 2.0), None, 25)  # every setting wrecked from step 25
    half = _broken(relearn_rows(3.2, 2.2), None, 50)  # the second seed's only from step 50
    recs = [
        _attacked("sgtm", 0, 3.0, every),
        _attacked("sgtm", 1, 3.2, half),
        record("filter", 0, 4.0, 1.6),  # no attack result: not measured
    ]
    assert budget_outcome(recs[0]["evals"]["robust/relearn"], 25) is EXCLUDED
    fig = relearn_figure(recs, BENCH)
    ax = fig.axes[0]
    line = next(ln for ln in ax.get_lines() if ln.get_label() == "sgtm (recall=1.0), n=2")
    ys = list(line.get_ydata())
    steps = list(line.get_xdata())
    # 25: seed 1 alone (seed 0 has no valid attack), hollow; 50: neither: the line ends in ×
    assert ys[steps.index(25)] == pytest.approx(worst_case_curve(half)[25])
    assert math.isnan(ys[steps.index(50)])
    crosses = [ln for ln in ax.get_lines() if ln.get_marker() == "x"]
    assert [list(c.get_xdata()) for c in crosses] == [[50]]
    assert crosses[0].get_ydata()[0] == pytest.approx(ys[steps.index(25)])  # where it ended
    hollow = [ln for ln in ax.get_lines() if ln.get_markerfacecolor() == "white"]
    assert [list(h.get_xdata()) for h in hollow] == [[25]]
    labels = _legend_labels(fig)
    assert any(lab.startswith("× where a line ends") for lab in labels)
    assert "sgtm (recall=1.0) 0/2" in _texts(fig)  # validly attacked to 50 in 0 of 2 seeds
    assert "not measured (no robust/relearn result): filter (recall=1.0)" in _texts(fig)
    assert not any(lab.startswith(("filter", "never-exposed")) for lab in labels)  # not drawn


def test_a_seed_with_no_valid_attack_is_never_drawn_as_reaching_the_budget():
    # seed 0's attack stopped when every setting broke (step 25: no rows after it); seed 1 valid
    stopped = _broken(relearn_rows(3.0, 2.0), None, 25, stop=True)
    valid = relearn_rows(3.2, 2.2)
    recs = [_attacked("sgtm", 0, 3.0, stopped), _attacked("sgtm", 1, 3.2, valid)]
    assert max(r["step"] for r in stopped) == 25
    fig = relearn_figure(recs, BENCH)
    ax = fig.axes[0]
    line = next(ln for ln in ax.get_lines() if ln.get_label() == "sgtm (recall=1.0), n=2")
    steps, ys = list(line.get_xdata()), list(line.get_ydata())
    assert ys[steps.index(50)] == pytest.approx(worst_case_curve(valid)[50])  # seed 1's alone
    hollow = [ln for ln in ax.get_lines() if ln.get_markerfacecolor() == "white"]
    assert [list(h.get_xdata()) for h in hollow] == [[25, 50]]  # said so, at the budget too
    assert "sgtm (recall=1.0) 1/2" in _texts(fig)


def test_the_never_exposed_floor_is_the_perfect_filters_own_attack_curve():
    filter_rows = relearn_rows(4.0, 2.6)
    recs = [
        _attacked("no-filter", 0, 2.0, relearn_rows(2.0, 1.8)),
        _attacked("filter", 0, 4.0, filter_rows),
        _attacked("sgtm", 0, 3.0, relearn_rows(3.0, 1.9)),
        _attacked("filter", 0, 3.0, relearn_rows(3.0, 2.0), recall=0.9),  # a weak filter
    ]
    ax = relearn_figure(recs, BENCH).axes[0]
    floor = [ln for ln in ax.get_lines() if ln.get_label().startswith("never-exposed floor")]
    assert [ln.get_label() for ln in floor] == ["never-exposed floor: filter (recall=1.0), n=1"]
    assert list(floor[0].get_ydata()) == pytest.approx(list(worst_case_curve(filter_rows).values()))
    others = [ln for ln in ax.get_lines() if ", n=" in ln.get_label() and ln not in floor]
    assert all(floor[0].get_linewidth() > ln.get_linewidth() for ln in others)
    # the target: the no-filter run's pre-attack forget loss in its own result of the attack
    assert _hlines(ax, "no-filter forget loss") == pytest.approx([2.0])


def test_n_counts_seeds_and_no_filter_at_other_labels_is_a_reference_variant():
    recs = []
    for seed in (0, 1):
        for recall in (1.0, 0.9):  # no-filter ignores labels: two runs per seed
            recs.append(_attacked("no-filter", seed, 2.0 + seed, relearn_rows(2.0 + seed, 1.8),
                                  recall=recall))  # fmt: skip
        recs.append(_attacked("sgtm", seed, 3.0, relearn_rows(3.0, 2.0)))
    fig = relearn_figure(recs, BENCH)
    labels = _legend_labels(fig)
    assert "no-filter, n=2" in labels  # the plain runs, one per seed
    variant = [lab for lab in labels if lab.startswith("no-filter (") and "recall=0.9" in lab]
    assert len(variant) == 1 and variant[0].endswith("n=2 (reference variant)")
    assert not any("n=4" in lab for lab in labels)
    target = next(lab for lab in labels if lab.startswith("no-filter forget loss"))
    assert target.endswith("n=2")
    assert _hlines(fig.axes[0], "no-filter forget loss") == pytest.approx([2.5])


def test_the_retain_row_is_the_retain_loss_of_the_tables_worst_case():
    from unlearnbench.results.plots import worst_case_retain

    key = "sgtm-paper/relearn-sgtm-paper"
    rows = relearn_rows(3.0, 1.0)
    for r in rows:  # the attack costs retain loss as it goes, the larger lr more
        if r["split"] == "retain":
            r["loss"] = 2.0 + r["step"] / 200 * (1 + (r["lr"] == 1e-3))
    rec = _attacked("sgtm", 0, 3.0, rows, key=key)
    retain = worst_case_retain(rec, "full", key)
    for entry in rec["evals"][key]["worst_case"]:  # the table's worst case, and its retain loss
        assert retain[entry["budget"]] == pytest.approx(entry["retain_loss"])
    fig = relearn_figure([rec], BENCH)
    top, bottom = fig.axes
    assert "retain loss" in bottom.get_title() and bottom.get_ylabel().startswith("retain loss")
    line = next(ln for ln in bottom.get_lines() if ln.get_label() == "_r")
    assert list(line.get_ydata()) == pytest.approx(list(retain.values()))
    assert max(line.get_ydata()) > 2.0  # what the attack cost is visible beside the forget loss


def test_write_plots_writes_png_and_svg(tmp_path):
    written = write_plots(sample_records(), BENCH, tmp_path)
    assert set(written) == {"tradeoff", "relearn", "undiscovered"}
    for paths in written.values():
        png, svg = paths
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert "<svg" in svg.read_text()[:2000]
    # records without relearning curves: that figure is skipped, not drawn empty
    plain = [record("no-filter", 0, 2.0, 1.5), record("filter", 0, 3.0, 1.6)]
    assert set(write_plots(plain, BENCH, tmp_path / "b")) == {"tradeoff"}  # and one recall


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
    # no network: embedded data and the table of contents' links within the page only
    assert not [x for x in p.links if not x.startswith(("data:", "#"))]
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
    # no relearning curves, no no-filter run to take Δ against, one recall: three notes
    assert len(lang.images) == 0
    assert "relearn: no data" in paths[0].read_text()
    assert "no run here has one" in paths[0].read_text()
    assert "more than one recall" in paths[0].read_text()


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
    titles = [ax.get_title() for ax in fig.axes[:2]]  # the top row; the retain row under it
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


def test_a_benchmark_name_that_is_not_a_file_name_never_writes_outside_dest(tmp_path):
    from unlearnbench.config import ConfigError
    from unlearnbench.results.plots import write_plots
    from unlearnbench.results.report import write_reports

    recs = [r | {"benchmark": "../escape"} for r in sample_records()]
    with pytest.raises(ConfigError, match="not a safe file name"):
        write_reports(recs, tmp_path / "out")
    with pytest.raises(ConfigError, match="not a safe file name"):
        write_plots(recs, "../escape", tmp_path / "out")
    assert not (tmp_path / "escape-tradeoff.png").exists()
    assert not any(tmp_path.glob("*.html"))


def test_the_report_opens_with_a_table_of_contents_linking_every_section():
    import re

    from unlearnbench.results.report import report_html

    page = report_html(sample_records(), "storyworld-topic")
    toc = page.split('<nav class="toc">', 1)[1].split("</nav>", 1)[0]
    links = re.findall(r'href="#([\w-]+)"', toc)
    sections = re.findall(r'<h[23] id="([\w-]+)"', page)
    assert (
        links and set(links) <= set(sections) and set(links) >= {"leaderboard", "figures", "runs"}
    )
    assert page.index('<nav class="toc">') < page.index('id="leaderboard"')
