"""Figures from run records (matplotlib, PNG and SVG): a pure function of the records.

Every figure says what it shows. A point is the mean over seeds; its bar or band is the 95%
Student-t interval of that mean (results/stats.py `t_interval`); each entry's n is in its legend,
and an entry of one seed is its single value (n=1, no interval). Each method has one colour in
every figure and in the report (`method_color`); legends name methods and settings, never run ids.

- tradeoff: removal against damage, paired by seed against the matching no-filter run (the
  leaderboard's Δ): x = Δretain, y = Δforget, and a second panel with Δadjacent. The ranking's
  retain tolerance is a shaded band; the Pareto frontier is computed only among the rows within
  it; each point carries its rank in the leaderboard's order (`stats.ranking_rule`, printed under
  the figure), filled within the tolerance and hollow beyond it. A model that got worse
  everywhere sits outside the band, off the frontier, ranked after every row within it.
- relearn: the attack's worst case at each step, per run exactly as the tables compute it
  (results/attack.py `worst_case_curve`: a setting that broke the retain tolerance is left out
  from the step it broke), then mean and interval over seeds. A step at which every seed's every
  setting was excluded is an × on the panel's top edge (measured, no valid attack); a point
  averaged over fewer seeds because the others were excluded is hollow; a run of the benchmark
  without this attack result (not measured) is not drawn and is named under the panel. The
  dashed line is the no-filter forget loss the steps to recover aim at. One panel per attack
  result (`record["curves"][KEY]`, whatever key its suite gave) and mode.
- undiscovered: forget loss against the undiscovered rate (1 - recall), per method.

A reference line is the mean over seeds of the matching runs (results/matching.py) of the runs
drawn: the plain no-filter run, never its curriculum variant; one line per distinct setting.

Each `*_figure` returns a matplotlib Figure, or None when the records hold nothing to draw.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import textwrap
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from unlearnbench.results import stats  # noqa: E402
from unlearnbench.results.attack import (  # noqa: E402
    EXCLUDED,
    record_tolerance,
    worst_case_curve,
)
from unlearnbench.results.leaderboard import (  # noqa: E402
    get,
    leaderboard_rows,
    setting_of,
    with_settings,
)
from unlearnbench.results.matching import matching_reference  # noqa: E402

NATS = "nats/token"
PLOTS = ("tradeoff", "relearn", "undiscovered")
MARKERS = "osD^vP*Xh<>"

# ---- one colour per method, in every figure and in the report ----

# related methods get neighbouring hues (masking variants blues, representation methods purples,
# loss-based reds); the references are orange (filter) and grey (no-filter)
METHOD_COLORS = {
    "no-filter": "#7f7f7f",
    "filter": "#ff7f0e",
    "sgtm": "#1f77b4",
    "gradient-routing": "#17becf",
    "activation-masking": "#393b79",
    "residual-routing": "#6b6ecf",
    "era": "#2ca02c",
    "demix": "#637939",
    "rmu": "#d62728",
    "circuit-breakers": "#9467bd",
    "orthogonal-circuit-breakers": "#e377c2",
    "tuned-lens": "#8c564b",
    "sequential-unlearn": "#bd9e39",
    "grad-ascent": "#843c39",
    "grad-diff": "#d6616b",
    "npo": "#7b4173",
    "checkpoint-transfer": "#bcbd22",
    "rewritten-transfer": "#0f766e",
}
# a method not listed (e.g. one a user added) gets one of these by a hash of its name: the same
# colour in every figure, whatever other methods are drawn beside it
EXTRA_COLORS = ("#e7ba52", "#5254a3", "#8ca252", "#ce6dbd", "#3182bd", "#e6550d", "#31a354")


def method_color(method: str) -> str:
    """The method's colour (hex), the same in every figure and in the report."""
    if method in METHOD_COLORS:
        return METHOD_COLORS[method]
    digest = hashlib.sha256(method.encode()).digest()
    return EXTRA_COLORS[digest[0] % len(EXTRA_COLORS)]


# ---- what each entry is called, and what its spread is ----


def _run_id_parts(text: str) -> list[str] | None:
    """METHOD, BENCHMARK, MODEL, sSEED, HASH of a run id, or None for other text."""
    parts = text.split("__")
    ok = len(parts) == 5 and parts[3][:1] == "s" and parts[3][1:].isdigit()
    return parts if ok else None


def short_setting(setting: str, by_id: dict[str, dict] | None = None) -> str:
    """The setting as a legend shows it: a `base=RUN_ID` (a post-hoc run's recorded start) names
    that run's method and setting instead of its id, which the report's runs table lists."""
    out = []
    for part in [p for p in setting.split(", ") if p]:
        key, _, value = part.partition("=")
        ids = _run_id_parts(value)
        if key == "base" and ids is not None:
            base = (by_id or {}).get(value)
            inner = setting_of(base, with_recall=False) if base else ""
            part = f"base={ids[0]}" + (f" [{inner}]" if inner else "")
        out.append(part)
    return ", ".join(out)


def entry_label(method: str, setting: str, n: int | str, model=None, by_id=None) -> str:
    text = method + (f" ({short_setting(setting, by_id)})" if setting else "")
    text += f" [{model}]" if model else ""
    return f"{text}, n={n}"


def spread_text(ns: list[int]) -> str:
    """What the bars of entries with `ns` seeds are, said plainly."""
    if ns and max(ns) <= 1:
        return "one seed per entry (n=1): single values, no interval"
    return "mean over seeds ± 95% t-interval (n per entry; n=1: single value, no interval)"


def setting_markers(records: list[dict], benchmark: str) -> dict[tuple[str, str], str]:
    """{(method, setting): marker}: a method's settings in name order, so a setting has the same
    marker in every figure of the benchmark (the colour is the method's)."""
    settings: dict[str, set] = defaultdict(set)
    for r in with_settings(records):
        if r.get("benchmark") == benchmark:
            settings[r.get("method")].add(setting_of(r))
    return {
        (method, s): MARKERS[i % len(MARKERS)]
        for method, ss in settings.items()
        for i, s in enumerate(sorted(ss))
    }


def _wrap(text: str, width: int) -> str:
    return "\n".join(textwrap.wrap(text, width)) if text else ""


def _legend_below(fig, axes, note: str = "", extra: list | None = None) -> None:
    """One legend under all panels (labels deduplicated, wrapped), then `note` under it."""
    handles, labels = [], []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in labels and not lab.startswith("_"):
                handles.append(h)
                labels.append(lab)
    for h in extra or []:
        handles.append(h)
        labels.append(h.get_label())
    fig.tight_layout()
    width = fig.get_figwidth()
    ncol = max(1, min(len(labels), int(width // 3.4)))
    legend = fig.legend(
        handles,
        [_wrap(lab, 48) for lab in labels],
        loc="upper center",
        bbox_to_anchor=(0.5, 0.0),
        ncol=ncol,
        fontsize=7.5,
        frameon=False,
    )
    if note:
        fig.canvas.draw()  # the legend's extent is known only once drawn
        box = legend.get_window_extent().transformed(fig.transFigure.inverted())
        fig.text(0.5, box.y0 - 0.01, _wrap(note, int(width * 17)), ha="center", va="top",
                 fontsize=7, color="0.3")  # fmt: skip


def reference_rows(records: list[dict], benchmark: str, name: str, runs: list[dict]) -> list:
    """Leaderboard rows of the matching `name` runs ("no-filter" | "perfect-filter") of `runs`
    (each distinct reference run once)."""
    refs: dict[str, dict] = {}
    for r in runs:
        ref = matching_reference(r, records, name)
        if ref is not None:
            refs.setdefault(ref["run_id"], ref)
    return [
        row
        for row in leaderboard_rows(list(refs.values()), benchmark)
        if row["cells"]["forget"].mean is not None
    ]


def _reference_label(text: str, row: dict, rows: list[dict]) -> str:
    return text + (f" [{row['model']}, {row['setting']}]" if len(rows) > 1 else "")


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points not dominated when lower x and higher y are better, ordered by x."""
    front: list[tuple[float, float]] = []
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or y > front[-1][1]:
            front.append((x, y))
    return front


def _err(cell) -> list[list[float]] | None:
    """Asymmetric error bar of a cell's 95% interval, None without one (n=1)."""
    if cell.low is None or cell.high is None:
        return None
    return [[cell.mean - cell.low], [cell.high - cell.mean]]


def _label_points(ax, points: list[tuple[float, float, str]]) -> None:
    """Write each point's tag beside it; points closer than 2.5% of the axes in both directions
    share one label ("2,5"), so a point drawn under another is still named."""
    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    sx, sy = (x1 - x0) or 1.0, (y1 - y0) or 1.0
    clusters: list[list[tuple[float, float, str]]] = []
    for p in points:
        for c in clusters:
            if abs(c[0][0] - p[0]) / sx < 0.025 and abs(c[0][1] - p[1]) / sy < 0.025:
                c.append(p)
                break
        else:
            clusters.append([p])
    for c in clusters:
        ax.annotate(",".join(t for _, _, t in c), (c[0][0], c[0][1]), xytext=(5, 4),
                    textcoords="offset points", fontsize=7.5, zorder=5)  # fmt: skip


# ---- trade-off: removal against damage ----


def tradeoff_figure(
    records: list[dict], benchmark: str, retain_tolerance: float = stats.RETAIN_TOLERANCE
):
    rows = leaderboard_rows(records, benchmark, retain_tolerance)
    by_model: dict = defaultdict(int)
    for r in rows:  # the rank each row has in the leaderboard's order (per benchmark and model)
        by_model[r["model"]] += 1
        r["_place"] = by_model[r["model"]]
    drawn = [
        r
        for r in rows
        if r["cells"]["d_forget"].mean is not None and r["cells"]["d_retain"].mean is not None
    ]
    if not drawn:
        return None
    many_models = len({r["model"] for r in rows}) > 1
    by_id = {r.get("run_id"): r for r in records}
    runs = [r for r in records if r.get("benchmark") == benchmark]
    perfect_ids = {
        ref["run_id"]
        for r in runs
        if (ref := matching_reference(r, records, "perfect-filter")) is not None
    }
    perfect = [r for r in drawn if perfect_ids & set(r["run_ids"])]
    panels = [("d_retain", "Δretain")]
    if any(r["cells"]["d_adjacent"].mean is not None for r in drawn):
        panels.append(("d_adjacent", "Δadjacent"))
    markers = setting_markers(records, benchmark)
    fig, axes = plt.subplots(1, len(panels), figsize=(5.6 * len(panels), 4.6), squeeze=False)
    for ax, (key, name) in zip(axes[0], panels, strict=True):
        tags = []
        for r in drawn:
            x, y = r["cells"][key], r["cells"]["d_forget"]
            if x.mean is None:
                continue
            ranked_first = r["rank_group"] == 0
            color = method_color(r["method"])
            ax.errorbar(
                x.mean,
                y.mean,
                xerr=_err(x),
                yerr=_err(y),
                fmt=markers.get((r["method"], r["setting"]), "o"),
                color=color,
                mfc=color if ranked_first else "white",
                mec="black" if ranked_first else color,
                mew=0.7 if ranked_first else 1.6,
                ms=7,
                alpha=0.9,
                elinewidth=1,
                capsize=2.5,
                label=f"{r['_place']} " + entry_label(
                    r["method"], r["setting"], r["seeds"], r["model"] if many_models else None,
                    by_id,
                ),
                zorder=3,
            )  # fmt: skip
            tags.append((x.mean, y.mean, str(r["_place"])))
        ax.axhline(0, color="0.55", lw=0.8, zorder=1)
        ax.axvline(0, color="0.55", lw=0.8, zorder=1, label="no-filter (Δ = 0)")
        for r in perfect:
            ax.axhline(
                r["cells"]["d_forget"].mean, ls=":", color="0.2", lw=1, zorder=1,
                label="perfect filter's Δforget (filter, recall 1): selectivity's ceiling",
            )  # fmt: skip
        ax.autoscale_view()
        if key == "d_retain":
            # the tolerance band: rows whose mean Δretain is within it rank first
            x0, x1 = ax.get_xlim()
            pad = 0.05 * (max(x1, retain_tolerance) - min(x0, 0.0))
            x0, x1 = min(x0, -pad), max(x1, retain_tolerance + pad)
            ax.axvspan(x0, retain_tolerance, color="tab:green", alpha=0.08, lw=0, zorder=0,
                       label=f"Δretain ≤ {retain_tolerance:g} nats: ranked first")  # fmt: skip
            ax.axvline(retain_tolerance, color="tab:green", lw=1, ls="-.", zorder=1)
            ax.set_xlim(x0, x1)
            within = [
                (r["cells"][key].mean, r["cells"]["d_forget"].mean)
                for r in drawn
                if r["rank_group"] == 0
            ]
            front = pareto_front(within)
            if len(front) > 1:
                fx, fy = zip(*front, strict=True)
                ax.step(fx, fy, where="post", color="0.35", lw=1.2, zorder=2,
                        label="Pareto frontier of the rows within the tolerance")  # fmt: skip
            ax.set_title(f"Δforget vs {name}")
        else:
            ax.set_title(f"Δforget vs {name} (not used by the ranking)")
        _label_points(ax, tags)
        ax.set_xlabel(f"{name} vs no-filter ({NATS}; lower = less damage)")
        ax.set_ylabel(f"Δforget vs no-filter ({NATS}; higher = more removed)")
        ax.grid(alpha=0.25)
    fig.suptitle(
        f"{benchmark}: removal vs damage, Δ paired by seed against no-filter\n"
        f"{spread_text([r['seeds'] for r in drawn])}"
    )
    missing = [r for r in rows if r not in drawn]
    note = (
        "Numbers: rank in the leaderboard's order; filled: within the retain tolerance, hollow: "
        "beyond it. Order: " + rows[0]["rule"] + "."
    )
    if missing:
        names = ", ".join(entry_label(r["method"], r["setting"], r["seeds"], None, by_id)
                          for r in missing)  # fmt: skip
        note += f" Not drawn (no matching no-filter run, no Δ): {names}."
    _legend_below(fig, axes[0], note)
    return fig


# ---- relearning: the tables' worst case, step by step ----


def relearn_curve(
    record: dict, mode: str | None = None, key: str | None = None
) -> dict[int, float | object]:
    """{attack step: worst case at that step} for one run: `worst_case_curve` of the curves of
    result `key` (default: the run's only attack result, or none when it has several) at the
    retain tolerance its summary was computed with: the lowest forget loss reached so far by a
    setting not excluded, or EXCLUDED when every setting broke the tolerance."""
    if key is None:
        keys = curve_keys([record])
        key = keys[0] if len(keys) == 1 else None
    rows = _attack_rows(record, key) if key is not None else []
    if not any(row.get("split") == "forget" for row in rows):
        return {}
    return worst_case_curve(rows, record_tolerance(get(record, "evals", key)), mode)


def _attack_rows(record: dict, key: str) -> list[dict]:
    rows = get(record, "curves", key)
    return [row for row in rows if isinstance(row, dict)] if isinstance(rows, list) else []


def curve_keys(records: list[dict]) -> list[str]:
    """Result keys whose curves are attack curves (forget loss by step), in name order."""
    return sorted(
        {
            key
            for r in records
            for key in (r.get("curves") or {})
            if any(row.get("split") == "forget" and "step" in row for row in _attack_rows(r, key))
        }
    )


def _panels(records: list[dict]) -> list[tuple[str, str | None]]:
    """(result key, mode) per panel: each attack result, split by its modes (full, lora)."""
    out = []
    for key in curve_keys(records):
        modes = {row.get("mode") for r in records for row in _attack_rows(r, key)}
        out += [(key, m) for m in sorted(m for m in modes if m) or [None]]
    return out


def seed_spread(curves: list[dict]) -> dict[int, dict]:
    """Per step of the runs' worst-case curves (one per seed): the t-interval over the seeds
    with a valid attack there, and how many seeds were excluded."""
    out = {}
    for step in sorted(set().union(*curves)):
        at = [c[step] for c in curves if step in c]
        values = [v for v in at if v is not EXCLUDED]
        out[step] = {"interval": stats.t_interval(values), "excluded": len(at) - len(values)}
    return out


def _no_filter_target(recs: list[dict], key: str, model) -> list[float]:
    """The no-filter forget loss each seed's steps to recover aim at (the attack summary's
    `reference_forget_loss`), one per seed."""
    per_seed = {}
    for r in recs:
        value = get(r, "evals", key, "reference_forget_loss")
        if r.get("model") == model and isinstance(value, int | float):
            per_seed.setdefault(str(r.get("seed")), float(value))
    return list(per_seed.values())


def relearn_figure(records: list[dict], benchmark: str):
    recs = [r for r in with_settings(records) if r.get("benchmark") == benchmark]
    panels = _panels(recs)
    if not panels:
        return None
    many_models = len({r.get("model") for r in recs}) > 1
    by_id = {r.get("run_id"): r for r in records}
    markers = setting_markers(records, benchmark)
    width = max(7.5, 5.8 * len(panels))
    fig, axes = plt.subplots(1, len(panels), figsize=(width, 4.4), squeeze=False)
    nf = reference_rows(records, benchmark, "no-filter", recs)
    marks: set[str] = set()
    ns: list[int] = []
    for ax, (key, mode) in zip(axes[0], panels, strict=True):
        groups: dict[tuple, list[dict]] = defaultdict(list)
        unmeasured: dict[tuple, None] = {}
        for r in recs:
            ident = (r["method"], setting_of(r), r.get("model"))
            c = relearn_curve(r, mode, key)
            if c:
                groups[ident].append(c)
            else:
                unmeasured[ident] = None
        for (method, setting, model), curves in sorted(groups.items()):
            color, marker = method_color(method), markers.get((method, setting), "o")
            spread = seed_spread(curves)
            steps = list(spread)
            mean = [s["interval"].mean for s in spread.values()]
            ys = [math.nan if m is None else m for m in mean]  # a gap where all were excluded
            label = entry_label(method, setting, len(curves), model if many_models else None,
                                by_id)  # fmt: skip
            ns.append(len(curves))
            ax.plot(steps, ys, "-", marker=marker, ms=4, lw=1.4, color=color, alpha=0.9,
                    label=label, zorder=3)  # fmt: skip
            part = [(s, y) for s, y, v in zip(steps, ys, spread.values(), strict=True)
                    if v["excluded"] and not math.isnan(y)]  # fmt: skip
            gone = [s for s, y in zip(steps, ys, strict=True) if math.isnan(y)]
            if part:  # averaged over the seeds not excluded: hollow over the line's marker
                ax.plot(*zip(*part, strict=True), marker, ms=5.5, mfc="white", mec=color,
                        mew=1.2, zorder=4)  # fmt: skip
                marks.add("partly")
            if gone:  # measured, and no valid attack remained
                ax.plot(gone, [0.98] * len(gone), "x", ms=6, mew=1.6, color=color,
                        transform=ax.get_xaxis_transform(), clip_on=False, zorder=4)  # fmt: skip
                marks.add("excluded")
            lows = [s["interval"].low for s in spread.values()]
            highs = [s["interval"].high for s in spread.values()]
            if any(v is not None for v in lows):
                ax.fill_between(
                    steps,
                    [math.nan if v is None else v for v in lows],
                    [math.nan if v is None else v for v in highs],
                    color=color, alpha=0.15, lw=0, zorder=2,
                )  # fmt: skip
        models = sorted({m for _, _, m in groups}, key=str)
        drew_target = False
        for model in models:
            target = stats.t_interval(_no_filter_target(recs, key, model))
            if target.mean is not None:
                text = "no-filter forget loss (the steps-to-recover target)"
                text += f" [{model}]" if many_models else ""
                ax.axhline(target.mean, ls="--", color="0.2", lw=1, zorder=1,
                           label=f"{text}, n={target.n}")  # fmt: skip
                drew_target = True
        if not drew_target:
            for r in nf:
                label = _reference_label("no-filter forget loss (before any attack)", r, nf)
                ax.axhline(r["cells"]["forget"].mean, ls="--", color="0.2", lw=1, label=label)
        not_measured = [i for i in unmeasured if i not in groups]
        if not_measured:
            names = ", ".join(method + (f" ({short_setting(s, by_id)})" if s else "")
                              for method, s, _ in not_measured)  # fmt: skip
            ax.text(0.0, -0.2, _wrap(f"not measured (no {key} result): {names}", 90),
                    transform=ax.transAxes, va="top", fontsize=7, color="0.3")  # fmt: skip
        ax.set_xlabel("attack fine-tuning steps")
        ax.set_ylabel(f"worst-case forget loss ({NATS})")
        ax.set_title(f"{key}{f' ({mode})' if mode else ''}")
        ax.grid(alpha=0.25)
    extra = []
    if "partly" in marks:
        extra.append(Line2D([], [], ls="", marker="o", mfc="white", mec="0.3", mew=1.2,
                            label="hollow: some seeds excluded, mean of the others"))  # fmt: skip
    if "excluded" in marks:
        extra.append(Line2D([], [], ls="", marker="x", color="0.3", mew=1.6,
                            label="× on the top edge: excluded (every setting broke the retain "
                            "tolerance; measured, no valid attack)"))  # fmt: skip
    fig.suptitle(
        f"{benchmark}: relearning, worst case over the attack grid (as the tables)\n"
        f"{spread_text(ns)}"
    )
    _legend_below(
        fig,
        axes[0],
        "Worst case at step s: the lowest forget loss reached by step s over the attack's "
        "learning rates and attack seeds, among the settings whose retain loss stayed within the "
        "attack's retain tolerance up to s; a run without the attack result is not measured "
        "(not drawn).",
        extra,
    )
    return fig


# ---- forget loss against the undiscovered rate ----


def undiscovered_figure(records: list[dict], benchmark: str):
    rows = [
        r
        for r in leaderboard_rows(records, benchmark)
        if r["method"] != "no-filter"
        and r["recall"] is not None
        and r["cells"]["forget"].mean is not None
    ]
    if not rows:
        return None
    many_models = len({r["model"] for r in rows}) > 1
    by_id = {r.get("run_id"): r for r in records}
    fig, ax = plt.subplots(figsize=(7.4, 4.4))
    lines: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        lines[(r["method"], r["family"], r["model"])].append(r)
    xs_all = []
    for i, ((method, family, model), rs) in enumerate(sorted(lines.items())):
        rs = sorted(rs, key=lambda r: 1 - r["recall"])
        xs = [1 - r["recall"] for r in rs]
        xs_all += xs
        cells = [r["cells"]["forget"] for r in rs]
        ns = sorted({c.n for c in cells})
        n = str(ns[0]) if len(ns) == 1 else f"{ns[0]}-{ns[-1]}"
        label = entry_label(method, family, n, model if many_models else None, by_id)
        lo = [0.0 if c.low is None else c.mean - c.low for c in cells]
        hi = [0.0 if c.high is None else c.high - c.mean for c in cells]
        ax.errorbar(
            xs,
            [c.mean for c in cells],
            yerr=[lo, hi],
            fmt="-" + MARKERS[i % len(MARKERS)],
            color=method_color(method),
            mec="black",
            mew=0.6,
            alpha=0.9,
            capsize=3,
            label=label,
        )
    runs = [
        r for r in records if r.get("benchmark") == benchmark and r.get("method") != "no-filter"
    ]
    nf = reference_rows(records, benchmark, "no-filter", runs)
    for r in nf:
        label = _reference_label("no-filter level (reference)", r, nf)
        ax.axhline(r["cells"]["forget"].mean, ls="--", color="0.2", lw=1, label=label)
    positive = sorted(x for x in xs_all if x > 0)
    if positive and max(positive) / positive[0] >= 10:  # spans a decade: 0.01 and 0.5 both visible
        ax.set_xscale("symlog", linthresh=positive[0])
    ax.set_xlabel("undiscovered rate = 1 - recall (fraction of forget documents left unlabeled)")
    ax.set_ylabel(f"forget loss ({NATS}, higher is better)")
    ns_all = [r["cells"]["forget"].n for r in rows]
    ax.set_title(f"{benchmark}: forget loss vs undiscovered forget data\n{spread_text(ns_all)}")
    ax.grid(alpha=0.25)
    _legend_below(fig, [ax])
    return fig


FIGURES = {
    "tradeoff": tradeoff_figure,
    "relearn": relearn_figure,
    "undiscovered": undiscovered_figure,
}


def figure(
    kind: str,
    records: list[dict],
    benchmark: str,
    retain_tolerance: float = stats.RETAIN_TOLERANCE,
):
    """Figure `kind` of the benchmark's records; `retain_tolerance`: the ranking's (trade-off)."""
    if kind not in FIGURES:
        raise ValueError(f"unknown plot {kind!r}; choose {', '.join(PLOTS)}")
    if kind == "tradeoff":
        return tradeoff_figure(records, benchmark, retain_tolerance)
    return FIGURES[kind](records, benchmark)


# the same records give the same bytes: fixed SVG element ids, no creation date in the files
REPRODUCIBLE = {"svg.hashsalt": "unlearnbench"}
NO_DATE = {"svg": {"Date": None}, "png": {}}


def save_figure(fig, out_dir: str | Path, stem: str) -> list[Path]:
    """Write `stem`.png and `stem`.svg; close the figure."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in ("png", "svg"):
        p = out_dir / f"{stem}.{ext}"
        tmp = p.with_name(f".{p.name}.tmp")
        with plt.rc_context(REPRODUCIBLE):
            fig.savefig(
                tmp,
                format=ext,
                dpi=150 if ext == "png" else None,
                bbox_inches="tight",
                metadata=NO_DATE[ext],
            )
        os.replace(tmp, p)  # never a half-written figure
        paths.append(p)
    plt.close(fig)
    return paths


def svg_text(fig) -> str:
    """The figure as SVG markup (for embedding in a page); closes the figure."""
    buf = io.StringIO()
    with plt.rc_context(REPRODUCIBLE):
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata=NO_DATE["svg"])
    plt.close(fig)
    return buf.getvalue()


def write_plots(
    records: list[dict],
    benchmark: str,
    out_dir: str | Path,
    kinds=PLOTS,
    retain_tolerance: float = stats.RETAIN_TOLERANCE,
) -> dict[str, list[Path]]:
    """Draw each requested figure that has data; {kind: [png, svg]} (kinds without data absent)."""
    written = {}
    for kind in kinds:
        fig = figure(kind, records, benchmark, retain_tolerance)
        if fig is not None:
            written[kind] = save_figure(fig, out_dir, f"{benchmark}-{kind}")
    return written
