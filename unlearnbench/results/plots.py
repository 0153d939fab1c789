"""Figures from run records (matplotlib, PNG and SVG): a pure function of the records.

- trade-off: retain (and adjacent) loss on x, forget loss on y, one marker per method and setting
  (error bars: std over seeds), the Pareto frontier, and `no-filter` and the perfect filter
  (`filter` at recall 1) as reference lines;
- relearn: forget loss against attack step per method (lowest over the attack grid per seed,
  mean over seeds, band = range over seeds), with the `no-filter` level marked; one panel per
  attack result (`record["curves"][KEY]`, whatever key its suite gave) and mode;
- undiscovered: forget loss against the undiscovered rate (1 - recall), per method.

A reference line is the mean over seeds of the matching runs (results/matching.py) of the runs
drawn: the plain no-filter run, never its curriculum variant; one line per distinct setting.

Each `*_figure` returns a matplotlib Figure, or None when the records hold nothing to draw.
"""

from __future__ import annotations

import io
import math
import os
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt  # noqa: E402

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


def _colors(methods: list[str]) -> dict[str, tuple]:
    """One colour per method, stable across figures (sorted names into tab10/tab20)."""
    names = sorted(set(methods))
    cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    return {m: cmap(i % cmap.N) for i, m in enumerate(names)}


def _label(row: dict, many_models: bool) -> str:
    text = row["method"] + (f" ({row['setting']})" if row["setting"] else "")
    return f"{text} [{row['model']}]" if many_models else text


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


def _legend_outside(fig, ax) -> None:
    handles, labels = ax.get_legend_handles_labels()
    seen: dict[str, object] = {}
    for h, lab in zip(handles, labels, strict=True):
        seen.setdefault(lab, h)
    fig.legend(
        list(seen.values()),
        list(seen),
        loc="center left",
        bbox_to_anchor=(1.0, 0.5),
        fontsize=8,
        frameon=False,
    )


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points not dominated when lower x and higher y are better, ordered by x."""
    front: list[tuple[float, float]] = []
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or y > front[-1][1]:
            front.append((x, y))
    return front


def tradeoff_figure(records: list[dict], benchmark: str):
    rows = [
        r for r in leaderboard_rows(records, benchmark) if r["cells"]["forget"].mean is not None
    ]
    if not rows:
        return None
    axes_x = [("retain", "retain loss")]
    if any(r["cells"]["adjacent"].mean is not None for r in rows):
        axes_x.append(("adjacent", "adjacent loss"))
    many_models = len({r["model"] for r in rows}) > 1
    colors = _colors([r["method"] for r in rows])
    runs = [r for r in records if r.get("benchmark") == benchmark]
    no_filter = reference_rows(records, benchmark, "no-filter", runs)
    perfect = reference_rows(records, benchmark, "perfect-filter", runs)
    fig, axes = plt.subplots(1, len(axes_x), figsize=(5.2 * len(axes_x) + 2.6, 4.4), squeeze=False)
    for ax, (key, name) in zip(axes[0], axes_x, strict=True):
        pts = []
        settings_seen: dict[str, list[str]] = defaultdict(list)
        for r in rows:
            x, y = r["cells"][key], r["cells"]["forget"]
            if x.mean is None:
                continue
            sl = settings_seen[r["method"]]
            sl.append(r["setting"])
            ax.errorbar(
                x.mean,
                y.mean,
                xerr=x.std or 0.0,
                yerr=y.std or 0.0,
                fmt=MARKERS[(len(sl) - 1) % len(MARKERS)],
                color=colors[r["method"]],
                ms=7,
                capsize=3,
                label=_label(r, many_models),
                zorder=3,
            )
            pts.append((x.mean, y.mean))
        front = pareto_front(pts)
        if len(front) > 1:
            fx, fy = zip(*front, strict=True)
            ax.step(fx, fy, where="post", color="0.45", lw=1.2, zorder=2, label="Pareto frontier")
        for ref, style, text in (
            (no_filter, "--", "no-filter level (reference)"),
            (perfect, ":", "perfect filter level (filter, recall 1)"),
        ):
            for r in ref:
                label = _reference_label(text, r, ref)
                ax.axhline(
                    r["cells"]["forget"].mean, ls=style, color="0.2", lw=1, label=label, zorder=1
                )
                if r["cells"][key].mean is not None:
                    ax.axvline(r["cells"][key].mean, ls=style, color="0.2", lw=1, zorder=1)
        ax.set_xlabel(f"{name} ({NATS}, lower is better)")
        ax.set_ylabel(f"forget loss ({NATS}, higher is better)")
        ax.set_title(f"forget vs {key}")
        ax.grid(alpha=0.25)
    fig.suptitle(f"{benchmark}: removal vs damage (mean ± std over seeds)")
    _legend_outside(fig, axes[0][0])
    fig.tight_layout()
    return fig


def relearn_curve(
    record: dict, mode: str | None = None, key: str | None = None
) -> dict[int, float]:
    """{attack step: lowest forget loss over the attack grid at that step} for one run, from the
    curves of result `key` (default: the run's only attack result, or none when it has several)."""
    if key is None:
        keys = curve_keys([record])
        key = keys[0] if len(keys) == 1 else None
    rows = get(record, "curves", key) if key is not None else None
    if not isinstance(rows, list):
        return {}
    out: dict[int, float] = {}
    for row in rows:
        if not isinstance(row, dict) or row.get("split") != "forget":
            continue
        if mode is not None and row.get("mode") != mode:
            continue
        step, loss = row.get("step"), row.get("loss")
        if not isinstance(step, int | float) or not isinstance(loss, int | float):
            continue
        if not math.isfinite(loss):
            continue
        out[int(step)] = min(loss, out.get(int(step), math.inf))
    return dict(sorted(out.items()))


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


def relearn_figure(records: list[dict], benchmark: str):
    recs = [r for r in with_settings(records) if r.get("benchmark") == benchmark]
    panels = _panels(recs)
    if not panels:
        return None
    colors = _colors([r["method"] for r in recs])
    many_models = len({r.get("model") for r in recs}) > 1
    fig, axes = plt.subplots(1, len(panels), figsize=(5.6 * len(panels) + 2.6, 4.4), squeeze=False)
    nf = reference_rows(records, benchmark, "no-filter", recs)
    for ax, (key, mode) in zip(axes[0], panels, strict=True):
        groups: dict[tuple, list[dict[int, float]]] = defaultdict(list)
        for r in recs:
            c = relearn_curve(r, mode, key)
            if c:
                groups[(r["method"], setting_of(r), r.get("model"))].append(c)
        for (method, setting, model), curves in sorted(groups.items()):
            steps = sorted(set().union(*curves))
            per_step = [[c[s] for c in curves if s in c] for s in steps]
            mean = [sum(v) / len(v) for v in per_step]
            label = method + (f" ({setting})" if setting else "")
            if many_models:
                label += f" [{model}]"
            ax.plot(steps, mean, "-o", ms=3, color=colors[method], label=label)
            if len(curves) > 1:
                ax.fill_between(
                    steps,
                    [min(v) for v in per_step],
                    [max(v) for v in per_step],
                    color=colors[method],
                    alpha=0.15,
                )
        for r in nf:
            label = _reference_label("no-filter (before attack)", r, nf)
            ax.axhline(r["cells"]["forget"].mean, ls="--", color="0.2", lw=1, label=label)
        ax.set_xlabel("attack fine-tuning steps")
        ax.set_ylabel(f"forget loss ({NATS})")
        ax.set_title(f"{key}{f' ({mode})' if mode else ''}")
        ax.grid(alpha=0.25)
    fig.suptitle(f"{benchmark}: relearning (lowest over LR grid; mean over seeds, band = range)")
    _legend_outside(fig, axes[0][0])
    fig.tight_layout()
    return fig


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
    colors = _colors([r["method"] for r in rows])
    many_models = len({r["model"] for r in rows}) > 1
    fig, ax = plt.subplots(figsize=(7.8, 4.4))
    lines: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        lines[(r["method"], r["family"], r["model"])].append(r)
    xs_all = []
    for i, ((method, family, model), rs) in enumerate(sorted(lines.items())):
        rs = sorted(rs, key=lambda r: 1 - r["recall"])
        xs = [1 - r["recall"] for r in rs]
        xs_all += xs
        label = method + (f" ({family})" if family else "") + (f" [{model}]" if many_models else "")
        ax.errorbar(
            xs,
            [r["cells"]["forget"].mean for r in rs],
            yerr=[r["cells"]["forget"].std or 0.0 for r in rs],
            fmt="-" + MARKERS[i % len(MARKERS)],
            color=colors[method],
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
    ax.set_title(f"{benchmark}: forget loss vs undiscovered forget data (mean ± std over seeds)")
    ax.grid(alpha=0.25)
    _legend_outside(fig, ax)
    fig.tight_layout()
    return fig


FIGURES = {
    "tradeoff": tradeoff_figure,
    "relearn": relearn_figure,
    "undiscovered": undiscovered_figure,
}


def figure(kind: str, records: list[dict], benchmark: str):
    if kind not in FIGURES:
        raise ValueError(f"unknown plot {kind!r}; choose {', '.join(PLOTS)}")
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
    records: list[dict], benchmark: str, out_dir: str | Path, kinds=PLOTS
) -> dict[str, list[Path]]:
    """Draw each requested figure that has data; {kind: [png, svg]} (kinds without data absent)."""
    written = {}
    for kind in kinds:
        fig = figure(kind, records, benchmark)
        if fig is not None:
            written[kind] = save_figure(fig, out_dir, f"{benchmark}-{kind}")
    return written
