"""Figures from run records (matplotlib, PNG and SVG): a pure function of the records.

Every figure says what it shows. A point is the mean over seeds (one run per seed); its bar or
band is the 95% Student-t interval of that mean (results/stats.py `t_interval`); each entry's n
in its legend is its number of seeds, and an entry of one seed is its single value (n=1, no
interval). Each method has one colour in every figure and in the report (`method_color`);
legends name methods and settings, never run ids.

What a run is compared with is results/references.py's one rule (`join`): its plain no-filter
run (any labels) and its plain perfect filter, paired by seed; every Δ and score is its
`deltas`. A reference variant (the curriculum no-filter, a grad-clip filter, no-filter at other
labels) is drawn as a reference (hollow, "ref."), never ranked, never on a Pareto front. A
reference line is the plain reference's mean over seeds.

- tradeoff: removal against damage, three panels. (1) the score's own terms: x = damage charged
  (max(0, Δretain) + max(0, Δadjacent - the perfect filter's Δadjacent)), y = removal credited
  (min(Δforget, the perfect filter's Δforget)), so score = y - x (grey diagonals), and the Pareto
  frontier of the ranked rows; (2) Δforget against Δretain, the leaderboard's retain tolerance a
  marker line; (3) Δforget against Δadjacent with the perfect filter's Δadjacent. The dotted
  ceiling in each is the plain perfect filter's Δforget. Each point carries its rank in the
  leaderboard's order.
- relearn: per attack result and mode, the attack's worst case at each step, per run exactly as
  the tables compute it (results/attack.py `worst_case_curve`), then mean and interval over seeds;
  under it the retain loss of that worst case (the setting and step it came from). A seed whose
  every setting broke the retain tolerance has no valid attack from then on: it is counted as
  such at every later step (an attack stopped when it broke has no later rows), never as having
  reached the budget; a line ends in × where no seed had a valid attack left; a point averaged
  over fewer seeds is hollow; entries validly attacked in fewer than all seeds are named under
  the panel with their count.
  The plain perfect filter's own curve is the never-exposed floor (thick); the dashed line is the
  no-filter run's pre-attack forget loss from its own result of the same attack (the target of
  steps to recover).
- undiscovered: Δforget, Δretain and Δadjacent against the undiscovered rate (1 - recall), per
  method measured at more than one recall.

A method that diverges does not squash the others: each axis keeps the bulk of the points (those
within 5 interquartile ranges of the quartiles, and the reference lines); a point beyond it is
drawn on the edge as a triangle pointing out, with its value written beside it.

Each `*_figure` returns a matplotlib Figure, or None when the records hold nothing to draw.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import textwrap
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from unlearnbench.results import references, stats  # noqa: E402
from unlearnbench.results.attack import (  # noqa: E402
    EXCLUDED,
    broke_at,
    record_tolerance,
    settings_curves,
    worst_case_curve,
)
from unlearnbench.results.leaderboard import (  # noqa: E402
    get,
    leaderboard_rows,
    setting_of,
    with_settings,
)
from unlearnbench.results.references import number  # noqa: E402

NATS = "nats/token"
PLOTS = ("tradeoff", "relearn", "undiscovered")
MARKERS = "osD^vP*Xh<>"
OUTLIER_IQR = 5.0  # an axis keeps the points within this many interquartile ranges of quartiles
SCORE_TEXT = (
    "score = min(Δforget, perfect filter's Δforget) - max(0, Δretain) - max(0, Δadjacent - "
    "perfect filter's Δadjacent), per seed (results/references.py)"
)

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


# ---- entries: one method and setting, its runs by seed, joined to their references ----


@dataclass
class Group:
    """One method and setting of a benchmark and model (a leaderboard row): its runs by seed."""

    model: str | None
    method: str
    setting: str  # as the tables name it (with the recall)
    family: str  # the setting less the recall
    role: str  # references.join: "method", "no-filter", "perfect-filter", "reference variant"
    recall: float | None
    runs: dict[str, list[dict]] = field(default_factory=dict)  # seed -> its runs (one, as a rule)

    @property
    def n(self) -> int:
        return len(self.runs)

    @property
    def ranked(self) -> bool:
        return self.role != "reference variant"

    def per_seed(self, value) -> list[float]:
        """One number per seed: `value(run)` (None: the seed is left out); several runs of one
        seed are averaged first, so an interval is over seeds."""
        out = []
        for runs in self.runs.values():
            vals = [v for r in runs if (v := value(r)) is not None and math.isfinite(v)]
            if vals:
                out.append(sum(vals) / len(vals))
        return out

    def interval(self, value) -> stats.Interval:
        return stats.t_interval(self.per_seed(value))


def _variant_labels(record: dict, role: str) -> str:
    """What sets a no-filter reference variant at other labels apart (its setting omits labels)."""
    labels = (record.get("non_default") or {}).get("labels") or {}
    if record.get("method") != "no-filter" or role != "reference variant" or not labels:
        return ""
    return "labels " + ", ".join(f"{k}={v}" for k, v in sorted(labels.items()))


def groups(records: list[dict], benchmark: str) -> tuple[list[Group], dict]:
    """The benchmark's entries (by model, method, setting and role) and {run id: Joined}."""
    recs = with_settings(records)
    joined = references.join(recs)
    found: dict[tuple, Group] = {}
    for r in recs:
        if r.get("benchmark") != benchmark:
            continue
        role = joined[r["run_id"]].role
        setting, extra = setting_of(r), _variant_labels(r, role)
        if extra and extra.split(" ", 1)[1] not in setting:  # labels the setting does not name
            setting = ", ".join(p for p in (setting, extra) if p)
        key = (r.get("model"), r.get("method"), setting, role)
        if key not in found:
            recall = get(r, "config", "labels", "recall")
            found[key] = Group(
                r.get("model"), r.get("method"), setting, setting_of(r, with_recall=False), role,
                float(recall) if r.get("method") != "no-filter" and recall is not None else None,
            )  # fmt: skip
        found[key].runs.setdefault(str(r.get("seed")), []).append(r)
    order = sorted(found.items(), key=lambda kv: tuple(str(k) for k in kv[0]))
    return [g for _, g in order], joined


def plain_references(gs: list[Group], role: str) -> list[Group]:
    """The plain no-filter (role "no-filter") or perfect filter entry of each model: of several
    with that role (runs trained with other settings are the references of runs like them), the
    one with no setting of its own."""
    best: dict = {}
    for g in sorted((g for g in gs if g.role == role), key=lambda g: (len(g.family), g.family)):
        best.setdefault(g.model, g)
    return list(best.values())


def _places(records: list[dict], benchmark: str, retain_tolerance: float) -> tuple[dict, str]:
    """{(model, method, setting): rank} in the leaderboard's order (per model; reference variants
    unranked), and the leaderboard's ranking rule."""
    rows = leaderboard_rows(records, benchmark, retain_tolerance)
    places: dict[tuple, int] = {}
    count: dict = defaultdict(int)
    for row in rows:
        if row.get("role") == "reference variant":
            continue
        key = (row["model"], row["method"], row["setting"])
        if key not in places:
            count[row["model"]] += 1
            places[key] = count[row["model"]]
    rule = (rows[0].get("rule") if rows else None) or ""
    return places, rule


# ---- axes that keep the bulk legible ----


def bulk_limits(values, include=(), log: bool = False) -> tuple[float, float]:
    """(low, high) of an axis: the values within OUTLIER_IQR interquartile ranges of their
    quartiles, and every `include` (reference lines), padded; a value beyond is left outside
    (drawn on the edge by `_edge`). Of four values or fewer, all are kept. `log`: in log space."""
    tf = (lambda v: math.log(v)) if log else (lambda v: v)
    back = (lambda v: math.exp(v)) if log else (lambda v: v)
    vals = sorted(
        tf(v) for v in values if v is not None and math.isfinite(v) and (v > 0 or not log)
    )
    keep = list(vals)
    if len(vals) > 4:
        q1, q3 = _quantile(vals, 0.25), _quantile(vals, 0.75)
        span = max(q3 - q1, 0.05 * (vals[-1] - vals[0]))
        keep = [v for v in vals if q1 - OUTLIER_IQR * span <= v <= q3 + OUTLIER_IQR * span]
    keep += [tf(v) for v in include if v is not None and math.isfinite(v) and (v > 0 or not log)]
    if not keep:
        return (0.0, 1.0) if not log else (0.1, 1.0)
    low, high = min(keep), max(keep)
    pad = 0.07 * (high - low) if high > low else 0.5 if not log else 0.2
    return back(low - pad), back(high + pad)


def _quantile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolation quantile of sorted values (numpy's default)."""
    pos = q * (len(sorted_values) - 1)
    i = int(math.floor(pos))
    j = min(i + 1, len(sorted_values) - 1)
    return sorted_values[i] + (sorted_values[j] - sorted_values[i]) * (pos - i)


def _edge(x: float, y: float, xlim, ylim) -> tuple[float, float, str | None]:
    """(x, y) kept within the limits, and the marker pointing where the value really is (None
    when inside)."""
    marker = None
    if y > ylim[1]:
        y, marker = ylim[1], "^"
    elif y < ylim[0]:
        y, marker = ylim[0], "v"
    if x > xlim[1]:
        x, marker = xlim[1], ">"
    elif x < xlim[0]:
        x, marker = xlim[0], "<"
    return x, y, marker


EDGE_NOTE = (
    "▲▶ on an edge: beyond the axis (a method far from the others; its value is written out)"
)

# ---- trade-off: removal against damage ----


def _deltas(joined: dict):
    """run -> references.deltas of its join (cached per run id)."""
    cache: dict[str, dict] = {}

    def of(run: dict) -> dict:
        rid = run["run_id"]
        if rid not in cache:
            cache[rid] = references.deltas(joined[rid])
        return cache[rid]

    return of


def credited(d: dict) -> float | None:
    """Removal the score credits: Δforget capped at the perfect filter's (references.score with
    no damage)."""
    return references.score(d.get("d_forget"), 0.0, None, d.get("pf_d_forget"), None)


def damage_charged(d: dict) -> float | None:
    """What the score charges for damage: retain rise plus adjacent rise beyond the perfect
    filter's (the credited removal minus the score)."""
    gain, score = credited(d), d.get("score")
    return gain - score if gain is not None and score is not None else None


# (key, x value, y value, x name, title) of each trade-off panel
TRADEOFF_PANELS = (
    ("score", damage_charged, credited, "damage charged",
     "score = removal credited - damage charged"),
    ("d_retain", lambda d: d.get("d_retain"), lambda d: d.get("d_forget"), "Δretain",
     "Δforget vs Δretain"),
    ("d_adjacent", lambda d: d.get("d_adjacent"), lambda d: d.get("d_forget"), "Δadjacent",
     "Δforget vs Δadjacent"),
)  # fmt: skip


def _reference_level(refs: list[Group], value, many_models: bool) -> list[tuple[float, str]]:
    """(mean over seeds, model tag) of a plain reference's value, one per model."""
    out = []
    for g in refs:
        iv = g.interval(value)
        if iv.mean is not None:
            out.append((iv.mean, f" [{g.model}]" if many_models else ""))
    return out


def tradeoff_figure(
    records: list[dict], benchmark: str, retain_tolerance: float = stats.RETAIN_TOLERANCE
):
    gs, joined = groups(records, benchmark)
    delta = _deltas(joined)

    def value(fn):
        return lambda run: fn(delta(run))

    drawn = [g for g in gs if g.interval(value(TRADEOFF_PANELS[1][2])).n]
    if not drawn:
        return None
    places, rule = _places(records, benchmark, retain_tolerance)
    many_models = len({g.model for g in gs}) > 1
    by_id = {r.get("run_id"): r for r in records}
    markers = setting_markers(records, benchmark)
    perfect = plain_references(gs, references.PERFECT_FILTER)
    ceiling = _reference_level(perfect, lambda r: delta(r).get("d_forget"), many_models)
    pf_adjacent = _reference_level(perfect, lambda r: delta(r).get("d_adjacent"), many_models)
    panels = [p for p in TRADEOFF_PANELS if any(g.interval(value(p[1])).n for g in drawn)]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.6 * len(panels), 5.0), squeeze=False)
    beyond = False
    for ax, (key, xfn, yfn, xname, title) in zip(axes[0], panels, strict=True):
        points = []  # (group, x interval, y interval)
        for g in drawn:
            xi, yi = g.interval(value(xfn)), g.interval(value(yfn))
            if xi.mean is not None and yi.mean is not None:
                points.append((g, xi, yi))
        x_lines = {"d_retain": [retain_tolerance], "d_adjacent": [v for v, _ in pf_adjacent]}
        xlim = bulk_limits([x.mean for _, x, _ in points], [0.0, *x_lines.get(key, [])])
        ylim = bulk_limits([y.mean for _, _, y in points], [0.0, *(v for v, _ in ceiling)])
        tags, outside = [], []
        for g, xi, yi in points:
            place = places.get((g.model, g.method, g.setting)) if g.ranked else None
            tag = str(place) if place else "ref."
            x, y, out = _edge(xi.mean, yi.mean, xlim, ylim)
            color = method_color(g.method)
            label = entry_label(g.method, g.setting, g.n, g.model if many_models else None, by_id)
            label = f"{tag} {label}" + ("" if g.ranked else " (reference variant, not ranked)")
            style = dict(color=color, ms=7, alpha=0.9, zorder=3, label=label)
            if g.ranked:
                style |= dict(mfc=color, mec="black", mew=0.7)
            else:
                style |= dict(mfc="white", mec=color, mew=1.6)
            if out is None:
                ax.errorbar(x, y, xerr=_err(xi), yerr=_err(yi), elinewidth=1, capsize=2.5,
                            fmt=markers.get((g.method, g.setting), "o"), **style)  # fmt: skip
                tags.append((x, y, tag))
            else:  # beyond the bulk: on the edge, pointing out, its value under the panel
                ax.errorbar(x, y, fmt=out, clip_on=False, **style)
                tags.append((x, y, tag))
                outside.append(f"{tag} ({xi.mean:+.1f}, {yi.mean:+.1f})")
        ax.axhline(0, color="0.55", lw=0.8, zorder=1)
        ax.axvline(0, color="0.55", lw=0.8, zorder=1, label="no-filter (Δ = 0)")
        for level, model in ceiling:
            ax.axhline(level, ls=":", color="0.2", lw=1.1, zorder=1,
                       label=f"perfect filter's Δforget{model}: the most removal credited")  # fmt: skip
        if key == "score":
            _iso_scores(ax, xlim, ylim)
            ranked = [(x.mean, y.mean) for g, x, y in points if g.ranked]
            front = pareto_front(ranked)
            if len(front) > 1:
                fx, fy = zip(*front, strict=True)
                ax.step(fx, fy, where="post", color="0.35", lw=1.2, zorder=2,
                        label="Pareto frontier (ranked rows; reference variants left out)")  # fmt: skip
            ax.set_ylabel(f"removal credited ({NATS}; higher = more removed)")
        else:
            ax.set_ylabel(f"Δforget vs no-filter ({NATS}; higher = more removed)")
        if key == "d_retain":
            ax.axvline(retain_tolerance, color="tab:green", lw=1, ls="-.", zorder=1,
                       label=f"Δretain = {retain_tolerance:g} nats (the leaderboard's retain "
                       "tolerance: a marker)")  # fmt: skip
        if key == "d_adjacent":
            for level, model in pf_adjacent:
                ax.axvline(level, ls=":", color="tab:orange", lw=1.1, zorder=1,
                           label=f"perfect filter's Δadjacent{model}: beyond it is charged")  # fmt: skip
        ax.set_xlim(*xlim)
        ax.set_ylim(*ylim)
        _label_points(ax, tags)
        xlabel = f"{xname} vs no-filter ({NATS}; lower = less damage)"
        if outside:  # named under the axis, so a long list never squeezes the panel
            xlabel += "\n" + _wrap("beyond the axes (x, y): " + "; ".join(outside), 70)
            beyond = True
        ax.set_xlabel(xlabel)
        ax.set_title(title)
        ax.grid(alpha=0.25)
    fig.suptitle(
        f"{benchmark}: removal vs damage, Δ paired by seed against the plain no-filter run\n"
        f"{spread_text([g.n for g in drawn])}"
    )
    note = (
        "Numbers: rank in the leaderboard's order; ref.: a reference variant (hollow, not ranked). "
    )
    note += (
        f"Order: {rule}."
        if "score = " in rule
        else f"{SCORE_TEXT}." + (f" Order: {rule}." if rule else "")
    )
    missing = [g for g in gs if g not in drawn]
    if missing:
        names = ", ".join(entry_label(g.method, g.setting, g.n, None, by_id) for g in missing)
        note += f" Not drawn ({references.REFERENCE_NOT_MEASURED}, no Δ): {names}."
    extra = [Line2D([], [], ls="", marker="^", color="0.3", label=EDGE_NOTE)] if beyond else []
    _legend_below(fig, axes[0], note, extra)
    return fig


def _iso_scores(ax, xlim, ylim) -> None:
    """Grey diagonals of equal score (score = y - x), each named at its upper end."""
    low, high = ylim[0] - xlim[1], ylim[1] - xlim[0]
    for s in MaxNLocator(5).tick_values(low, high):
        if not low < s < high:
            continue
        xs = [max(xlim[0], ylim[0] - s), min(xlim[1], ylim[1] - s)]
        ax.plot(xs, [x + s for x in xs], color="0.8", lw=0.8, zorder=0, label="_iso")
        ax.annotate(f"score {s:g}", (xs[1], xs[1] + s), xytext=(-2, -2), ha="right", va="top",
                    textcoords="offset points", fontsize=6.5, color="0.55")  # fmt: skip


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


def worst_case_retain(record: dict, mode: str | None, key: str) -> dict[int, float | object]:
    """{attack step: retain loss of the worst case at that step}: of the setting and step whose
    forget loss is the worst case (`relearn_curve`), its retain loss there; EXCLUDED where every
    setting broke the retain tolerance."""
    rows = _attack_rows(record, key)
    tolerance = record_tolerance(get(record, "evals", key))
    curves = settings_curves(rows, mode)
    broke = {s: broke_at(c, tolerance) for s, c in curves.items()}
    out: dict[int, float | object] = {}
    for step in sorted({s for c in curves.values() for s in (c.get("forget") or {})}):
        best = None  # (forget loss, retain loss)
        for setting, c in curves.items():
            if broke[setting] is not None and broke[setting] <= step:
                continue
            for s, v in (c.get("forget") or {}).items():
                retain = (c.get("retain") or {}).get(s)
                if s <= step and retain is not None and (best is None or v < best[0]):
                    best = (v, retain)
        out[step] = EXCLUDED if best is None else best[1]
    return out


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
    """Per step of the seeds' curves (one per seed): the t-interval over the seeds with a valid
    attack there, and how many had none. A seed whose curve ends in EXCLUDED (an attack stopped
    when every setting broke) has no valid attack at every later step too, never a value."""
    out = {}
    steps = sorted(set().union(*curves))
    for step in steps:
        values, excluded = [], 0
        for c in curves:
            if step in c:
                v = c[step]
            elif c and step > max(c) and c[max(c)] is EXCLUDED:
                v = EXCLUDED
            else:
                continue  # not evaluated there
            if v is EXCLUDED:
                excluded += 1
            else:
                values.append(v)
        out[step] = {"interval": stats.t_interval(values), "excluded": excluded}
    return out


def _seed_curves(g: Group, curve) -> list[dict]:
    """One curve per seed of the entry (`curve(run)`; several runs of a seed: the first by id)."""
    out = []
    for runs in g.runs.values():
        found = [c for r in sorted(runs, key=lambda r: str(r.get("run_id"))) if (c := curve(r))]
        if found:
            out.append(found[0])
    return out


def validly_attacked(curves: list[dict]) -> int:
    """Seeds whose attack kept some setting within the retain tolerance to its last step."""
    return sum(1 for c in curves if c and c[max(c)] is not EXCLUDED)


def no_filter_target(gs: list[Group], key: str) -> dict:
    """{model: interval over seeds} of the plain no-filter run's pre-attack forget loss in its own
    result of attack `key` (what steps to recover aim at); its final forget loss where it has no
    such result."""
    out = {}
    for g in plain_references(gs, references.NO_FILTER):

        def before(r):
            mine = references.result(r, key)
            return number(((mine or {}).get("before") or {}).get("forget_loss"))

        iv = g.interval(before)
        out[g.model] = (
            iv if iv.n else g.interval(lambda r: number(get(r, "metrics", "forget_loss")))
        )
    return out


def _draw_spread(ax, steps, spread, style: dict, marker: str, hollow: bool, band: bool):
    """A mean line over seeds (gaps where no seed had a valid attack), hollow markers where some
    seeds had none, the interval band; returns the finite (step, mean) points."""
    ys = [math.nan if s["interval"].mean is None else s["interval"].mean for s in spread.values()]
    ax.plot(steps, ys, marker=marker, **style)
    part = [(s, y) for s, y, v in zip(steps, ys, spread.values(), strict=True)
            if v["excluded"] and not math.isnan(y)]  # fmt: skip
    if part and hollow:
        ax.plot(*zip(*part, strict=True), marker, ms=5.5, mfc="white", mec=style["color"],
                mew=1.2, zorder=4, label="_hollow")  # fmt: skip
    lows = [s["interval"].low for s in spread.values()]
    highs = [s["interval"].high for s in spread.values()]
    if band and any(v is not None for v in lows):
        ax.fill_between(steps, [math.nan if v is None else v for v in lows],
                        [math.nan if v is None else v for v in highs], color=style["color"],
                        alpha=0.12, lw=0, zorder=2)  # fmt: skip
    return [(s, y) for s, y in zip(steps, ys, strict=True) if not math.isnan(y)], bool(part)


def relearn_figure(records: list[dict], benchmark: str):
    gs, joined = groups(records, benchmark)
    panels = _panels([r for g in gs for runs in g.runs.values() for r in runs])
    if not panels:
        return None
    many_models = len({g.model for g in gs}) > 1
    by_id = {r.get("run_id"): r for r in records}
    markers = setting_markers(records, benchmark)
    width = max(7.5, 5.8 * len(panels))
    fig, axes = plt.subplots(2, len(panels), figsize=(width, 8.4), squeeze=False, sharex="col",
                             gridspec_kw={"height_ratios": [3, 2]})  # fmt: skip
    marks: set[str] = set()
    ns: list[int] = []
    for col, (key, mode) in enumerate(panels):
        ax, axr = axes[0][col], axes[1][col]
        drawn, unmeasured = [], []  # (entry, its seeds' forget curves, their retain curves)
        for g in gs:
            curves = _seed_curves(g, lambda r, k=key, m=mode: relearn_curve(r, m, k))
            if not curves:
                unmeasured.append(g)
                continue
            retains = _seed_curves(g, lambda r, k=key, m=mode: worst_case_retain(r, m, k))
            drawn.append((g, curves, retains))
        if not drawn:  # a mode whose rows hold no forget curve of any run
            ax.set_visible(False)
            axr.set_visible(False)
            continue
        budget = max(max(c) for _, curves, _ in drawn for c in curves)
        starts, forget_means, retain_means, ends, invalid, peaks = [], [], [], [], [], []
        for g, curves, retains in drawn:
            spread, rspread = seed_spread(curves), seed_spread(retains)
            steps = list(spread)
            color, marker = method_color(g.method), markers.get((g.method, g.setting), "o")
            floor = g.role == references.PERFECT_FILTER
            label = entry_label(g.method, g.setting, len(curves),
                                g.model if many_models else None, by_id)  # fmt: skip
            if floor:
                label = "never-exposed floor: " + label
            elif not g.ranked:
                label += " (reference variant)"
            valid = validly_attacked(curves)
            if valid < len(curves):  # named under the panel: seeds with no valid attack
                invalid.append(f"{label.split(', n=')[0].split(': ')[-1]} {valid}/{len(curves)}")
            ns.append(len(curves))
            style = dict(color=color, alpha=0.95 if floor else 0.85, label=label,
                         lw=3.0 if floor else 1.0 if not g.ranked else 1.4,
                         ls=":" if not g.ranked else "-", ms=4, zorder=5 if floor else 3)  # fmt: skip
            points, partly = _draw_spread(ax, steps, spread, style, marker, True, True)
            rpoints, _ = _draw_spread(axr, list(rspread), rspread, style | {"label": "_r"},
                                      marker, False, False)  # fmt: skip
            starts += [points[0][1]] if points else []
            forget_means += [y for _, y in points]
            retain_means += [y for _, y in rpoints]
            peaks += [max(y for _, y in rpoints)] if rpoints else []
            marks |= {"partly"} if partly else set()
            gone = [s for s in steps if spread[s]["interval"].mean is None]
            if gone and points:  # the line ends: from here no seed had a valid attack
                ends.append((ax, min(gone), points[-1][1], color))
                ends.append((axr, min(gone), rpoints[-1][1] if rpoints else None, color))
        levels = no_filter_target(gs, key)
        for model, iv in levels.items():
            if iv.mean is not None:
                text = "no-filter forget loss (before the attack: the steps-to-recover target)"
                text += f" [{model}]" if many_models else ""
                ax.axhline(iv.mean, ls="--", color="0.15", lw=1.1, zorder=4,
                           label=f"{text}, n={iv.n}")  # fmt: skip
        # the bulk of the starting losses sets the top (a method far above is marked on it)
        include = [iv.mean for iv in levels.values()] + [min(forget_means, default=None)]
        _relearn_axis(ax, starts, forget_means, include, marks)
        _relearn_axis(axr, peaks, retain_means, [min(retain_means, default=None)], marks)
        for a, step, y, color in ends:
            if y is not None:
                y = min(max(y, a.get_ylim()[0]), a.get_ylim()[1])
                a.plot([step], [y], "x", ms=7, mew=2, color=color, zorder=6, label="_end")
                marks.add("ended")
        notes = []
        if invalid:
            notes.append(f"validly attacked to {budget} steps in fewer than all seeds (seeds "
                         f"with a valid attack / seeds): {'; '.join(invalid)}")  # fmt: skip
        names = [g for g in unmeasured if g.ranked]
        if names:
            text = ", ".join(entry_label(g.method, g.setting, g.n, None, by_id).rsplit(",", 1)[0]
                             for g in names)  # fmt: skip
            if len(names) > 8:
                text = f"{len(names)} method settings (the report's runs table lists them)"
            notes.append(f"not measured (no {key} result): {text}")
        if notes:
            axr.text(0.0, -0.2, "\n".join(_wrap(n, 95) for n in notes), transform=axr.transAxes,
                     va="top", fontsize=7, color="0.3")  # fmt: skip
        ax.set_ylabel(f"worst-case forget loss ({NATS})")
        axr.set_ylabel(f"retain loss of the worst case ({NATS})")
        axr.set_xlabel("attack fine-tuning steps")
        ax.set_title(f"{key}{f' ({mode})' if mode else ''}")
        axr.set_title("retain loss along the attack (the worst case's setting and step)",
                      fontsize=9)  # fmt: skip
        for a in (ax, axr):
            a.grid(alpha=0.25, which="both")
    extra = []
    if "partly" in marks:
        extra.append(Line2D([], [], ls="", marker="o", mfc="white", mec="0.3", mew=1.2,
                            label="hollow: some seeds had no valid attack left, mean of the "
                            "others"))  # fmt: skip
    if "ended" in marks:
        extra.append(Line2D([], [], ls="", marker="x", color="0.3", mew=2,
                            label="× where a line ends: no seed had a valid attack left (every "
                            "setting broke the retain tolerance; measured, not a bound)"))  # fmt: skip
    if "beyond" in marks:
        extra.append(Line2D([], [], ls="", marker="^", color="0.3",
                            label="▲ on the top edge: a mean above the axis (a method far above "
                            "the others' starting losses)"))  # fmt: skip
    fig.suptitle(
        f"{benchmark}: relearning, worst case over the attack grid (as the tables)\n"
        f"{spread_text(ns)}"
    )
    _legend_below(
        fig,
        axes[0],
        "Worst case at step s: the lowest forget loss reached by step s over the attack's "
        "learning rates and attack seeds, among the settings whose retain loss stayed within the "
        "attack's retain tolerance up to s; a seed with no such setting left has no valid attack "
        "from then on (never counted as reaching the budget). Thick: the perfect filter, which "
        "never saw the forget data (a method relearning faster than it kept what it was to "
        "remove). A run without the attack result is not measured (not drawn).",
        extra,
    )
    return fig


def _relearn_axis(ax, bulk: list[float], means: list[float], include: list, marks: set):
    """Log scale when the losses span more than 8x; limits that keep the bulk of `bulk` (and
    `include`); a mean above them marked on the top edge."""
    include = [v for v in include if v is not None]
    vals = [v for v in means + include if v > 0]
    log = bool(vals) and max(vals) / min(vals) > 8
    if log:
        ax.set_yscale("log")
    low, high = bulk_limits(bulk, include, log=log)
    ax.set_ylim(low, high)
    for line in list(ax.get_lines()):
        if line.get_label().startswith("_") and line.get_label() != "_r":
            continue  # hollow marks, ends: drawn on their line's points
        over = [x for x, y in zip(line.get_xdata(), line.get_ydata(), strict=True)
                if isinstance(y, float) and not math.isnan(y) and y > high]  # fmt: skip
        if over:
            ax.plot(over, [high] * len(over), "^", ms=6, color=line.get_color(), clip_on=False,
                    zorder=6, label="_beyond")  # fmt: skip
            marks.add("beyond")


# ---- removal and damage against the undiscovered rate ----

UNDISCOVERED_PANELS = (
    ("d_forget", "Δforget (higher = more removed)"),
    ("d_retain", "Δretain (lower = less damage)"),
    ("d_adjacent", "Δadjacent (lower = less damage)"),
)


def undiscovered_figure(records: list[dict], benchmark: str):
    gs, joined = groups(records, benchmark)
    delta = _deltas(joined)
    lines: dict[tuple, list[Group]] = defaultdict(list)
    for g in gs:
        if g.ranked and g.method != "no-filter" and g.recall is not None:
            lines[(g.method, g.family, g.model)].append(g)
    single = {k: v for k, v in lines.items() if len({g.recall for g in v}) < 2}
    lines = {k: v for k, v in lines.items() if k not in single}
    if not lines:
        return None
    many_models = len({m for _, _, m in lines}) > 1
    by_id = {r.get("run_id"): r for r in records}
    panels = [(k, name) for k, name in UNDISCOVERED_PANELS
              if any(g.interval(lambda r, k=k: delta(r).get(k)).n for v in lines.values()
                     for g in v)]  # fmt: skip
    if not panels:
        return None
    perfect = plain_references(gs, references.PERFECT_FILTER)
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.6), squeeze=False)
    xs_all, ns_all, beyond = [], [], False
    for ax, (key, name) in zip(axes[0], panels, strict=True):

        def value(r, k=key):
            return delta(r).get(k)

        levels = _reference_level(perfect, value, many_models)
        drawn = []  # (line key, xs, intervals)
        for i, ((method, family, model), gl) in enumerate(sorted(lines.items())):
            gl = sorted(gl, key=lambda g: 1 - g.recall)
            cells = [(1 - g.recall, g.interval(value)) for g in gl]
            cells = [(x, iv) for x, iv in cells if iv.mean is not None]
            if cells:
                drawn.append(((method, family, model), i, cells))
        ylim = bulk_limits([iv.mean for *_, cells in drawn for _, iv in cells],
                           [0.0, *(v for v, _ in levels)])  # fmt: skip
        for (method, family, model), i, cells in drawn:
            ns = sorted({iv.n for _, iv in cells})
            n = str(ns[0]) if len(ns) == 1 else f"{ns[0]}-{ns[-1]}"
            ns_all += ns
            xs = [x for x, _ in cells]
            xs_all += xs
            ys = [min(max(iv.mean, ylim[0]), ylim[1]) for _, iv in cells]
            ax.errorbar(
                xs, ys,
                yerr=[[0.0 if iv.low is None or iv.mean > ylim[1] else iv.mean - iv.low
                       for _, iv in cells],
                      [0.0 if iv.high is None or iv.mean > ylim[1] else iv.high - iv.mean
                       for _, iv in cells]],
                fmt="-" + MARKERS[i % len(MARKERS)], color=method_color(method), mec="black",
                mew=0.6, alpha=0.9, capsize=3,
                label=entry_label(method, family, n, model if many_models else None, by_id),
            )  # fmt: skip
            for x, (_, iv) in zip(xs, cells, strict=True):
                if not ylim[0] <= iv.mean <= ylim[1]:
                    _, y, out = _edge(x, iv.mean, (-math.inf, math.inf), ylim)
                    ax.plot([x], [y], out, ms=8, color=method_color(method), clip_on=False)
                    ax.annotate(f"{iv.mean:+.1f}", (x, y), xytext=(5, -8), fontsize=7,
                                textcoords="offset points")  # fmt: skip
                    beyond = True
        ax.axhline(0, color="0.35", lw=0.9, ls="--", label="no-filter (Δ = 0)")
        for level, model_tag in levels:
            ax.axhline(level, ls=":", color="0.2", lw=1.1,
                       label=f"perfect filter (recall 1){model_tag}")  # fmt: skip
        ax.set_ylim(*ylim)
        ax.set_ylabel(f"{name.split(' (')[0]} vs no-filter ({NATS})")
        ax.set_title(name)
        ax.grid(alpha=0.25)
    positive = sorted(x for x in xs_all if x > 0)
    for ax in axes[0]:
        if positive and max(positive) / positive[0] >= 10:  # spans a decade: both visible
            ax.set_xscale("symlog", linthresh=positive[0])
        ax.set_xlabel("undiscovered rate = 1 - recall")
    fig.suptitle(f"{benchmark}: removal and damage vs undiscovered forget data (1 - recall), "
                 f"Δ paired by seed against no-filter\n{spread_text(ns_all)}")  # fmt: skip
    note = (
        "Undiscovered rate: the fraction of forget documents left unlabeled. Removal (Δforget) "
        "beside the damage it costs (Δretain, Δadjacent); dotted: the perfect filter, which "
        "never saw the forget data."
    )
    if single:
        names = ", ".join(sorted({m for m, _, _ in single}))
        note += f" Measured at one recall only (in the trade-off figure): {names}."
    extra = [Line2D([], [], ls="", marker="^", color="0.3", label=EDGE_NOTE)] if beyond else []
    _legend_below(fig, axes[0], note, extra)
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
    from unlearnbench.results.store import safe_component

    written = {}
    for kind in kinds:
        fig = figure(kind, records, benchmark, retain_tolerance)
        if fig is not None:
            stem = f"{safe_component(benchmark, 'benchmark')}-{kind}"  # never outside out_dir
            written[kind] = save_figure(fig, out_dir, stem)
    return written
