"""The HTML report: one self-contained page per benchmark (no network, figures as inline data URIs).

Sections: the leaderboard, the three figures, the evaluations the records hold (which suite ran
each, with which options), each method's settings, the versions and hardware the runs used, and the
list of runs. A pure function of the run records (no torch, no method or evaluation registry).
"""

from __future__ import annotations

import base64
import html
import time
from collections import Counter, defaultdict
from pathlib import Path

from unlearnbench.results.leaderboard import (
    get,
    headline,
    headline_html,
    leaderboard_rows,
    setting_of,
    show_value,
    to_html,
    with_settings,
)

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
       margin: 2em auto; max-width: 1400px; padding: 0 1em; color: #222; line-height: 1.4; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; font-size: .85em; margin: .5em 0; }
th, td { border: 1px solid #ccc; padding: .25em .5em; vertical-align: top; }
th { background: #f3f3f3; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.note, .muted { color: #555; font-size: .85em; max-width: 70em; }
.scroll { overflow-x: auto; }
figure { margin: 1em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: .85em; }
code { font-size: .9em; }
"""

CAPTIONS = {
    "tradeoff": "Forget loss (higher = more removed) against retain and adjacent loss (lower = less "
    "damage). Error bars: std over seeds. Grey step line: Pareto frontier. Dashed: no-filter; "
    "dotted: the perfect filter (filter at recall 1).",
    "relearn": "Relearning attacks, one panel per attack result (SUITE/KEY) and mode: forget loss "
    "during fine-tuning on held-out forget documents, the lowest over the attack's learning-rate "
    "grid at each step, mean over seeds (band: range).",
    "undiscovered": "Forget loss against the fraction of forget documents left unlabeled "
    "(1 - recall). Dashed: no-filter.",
}


def _svg_data_uri(svg: str) -> str:
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()


def _kv(d: dict) -> str:
    return ", ".join(f"{k}={show_value(v)}" for k, v in d.items()) or "(defaults)"


def _settings_table(records: list[dict]) -> str:
    """One row per method and setting: every option the runs used, so a reader can check them."""
    esc = html.escape
    seen: dict[tuple, dict] = {}
    for r in sorted(records, key=lambda r: (r.get("method", ""), setting_of(r), r.get("seed", 0))):
        key = (r.get("method"), setting_of(r))
        seen.setdefault(key, r)
    out = [
        "<table><thead><tr><th>method</th><th>setting</th><th>kind</th><th>method options</th>"
        "<th>labels</th><th>training</th><th>benchmark options</th></tr></thead><tbody>"
    ]
    for (method, setting), r in seen.items():
        cfg = r.get("config") or {}
        cells = [
            method,
            setting,
            r.get("kind", ""),
            _kv(cfg.get("method_options") or {}),
            _kv(cfg.get("labels") or {}),
            _kv(cfg.get("train") or {}),
            _kv(cfg.get("benchmark_options") or {}),
        ]
        out.append("<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in cells) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def _evaluations_table(records: list[dict]) -> str:
    """One row per evaluation result key: the evaluation, the suite that ran it, its options and
    headline metrics, and how many runs hold it, so a reader knows what each column measured."""
    esc = html.escape
    seen: dict[str, dict] = {}
    runs: Counter = Counter()
    for r in records:
        for key, ev in sorted((r.get("evals") or {}).items()):
            if isinstance(ev, dict):
                seen.setdefault(key, ev)
                runs[key] += 1
    if not seen:
        return '<p class="muted">No evaluation suite was run on these runs.</p>'
    out = [
        "<table><thead><tr><th>result</th><th>evaluation</th><th>suite</th><th>runs</th>"
        "<th>headline metrics</th><th>options</th></tr></thead><tbody>"
    ]
    for key, ev in seen.items():
        names = sorted({e.get("metric", e["name"]) for e in headline(ev)})
        cells = [key, ev.get("eval", ""), ev.get("suite", "")]
        out.append(
            "<tr>"
            + "".join(f"<td>{esc(str(c))}</td>" for c in cells)
            + f'<td class="num">{runs[key]}</td>'
            + f"<td>{esc(', '.join(names))}</td>"
            + f"<td>{esc(_kv(ev.get('options') or {}))}</td></tr>"
        )
    out.append("</tbody></table>")
    return "\n".join(out)


def _environment_table(records: list[dict]) -> str:
    esc = html.escape
    envs: Counter = Counter()
    for r in records:
        v = r.get("versions") or {}
        envs[(r.get("device") or "", tuple(sorted((k, str(x)) for k, x in v.items())))] += 1
    out = ["<table><thead><tr><th>runs</th><th>device</th><th>versions</th></tr></thead><tbody>"]
    for (device, versions), n in envs.most_common():
        out.append(
            f'<tr><td class="num">{n}</td><td>{esc(device)}</td>'
            f"<td>{esc(', '.join(f'{k} {v}' for k, v in versions))}</td></tr>"
        )
    out.append("</tbody></table>")
    total = sum(x for r in records if isinstance(x := r.get("wall_seconds"), int | float))
    out.append(f'<p class="muted">Total wall time of these runs: {total / 60:.1f} min.</p>')
    return "\n".join(out)


def _runs_table(records: list[dict]) -> str:
    esc = html.escape
    out = [
        "<table><thead><tr><th>run id</th><th>method</th><th>setting</th><th>seed</th>"
        "<th>forget</th><th>adjacent</th><th>retain</th><th>evaluations</th><th>wall (s)</th></tr></thead><tbody>"
    ]
    for r in sorted(records, key=lambda r: (r.get("method", ""), setting_of(r), r.get("seed", 0))):
        nums = []
        for s in ("forget", "adjacent", "retain"):
            v = get(r, "metrics", f"{s}_loss")
            nums.append(f"{v:.3f}" if isinstance(v, int | float) else "")
        wall = r.get("wall_seconds")
        evals = ", ".join(sorted((r.get("evals") or {}).keys()))
        cells = [r.get("run_id", ""), r.get("method", ""), setting_of(r), str(r.get("seed", ""))]
        wall_cell = f"{wall:.0f}" if isinstance(wall, int | float) else ""
        out.append(
            "<tr>"
            + "".join(f"<td>{esc(str(c))}</td>" for c in cells)
            + "".join(f'<td class="num">{c}</td>' for c in nums)
            + f"<td>{esc(evals)}</td>"
            + f'<td class="num">{wall_cell}</td></tr>'
        )
    out.append("</tbody></table>")
    return "\n".join(out)


def report_html(records: list[dict], benchmark: str, title: str | None = None) -> str:
    """The whole page for one benchmark as a string."""
    from unlearnbench.results.plots import PLOTS, figure, svg_text

    esc = html.escape
    recs = [r for r in with_settings(records) if r.get("benchmark") == benchmark]
    title = title or f"unlearnbench report: {benchmark}"
    rows = leaderboard_rows(recs, benchmark)
    models = sorted({str(r.get("model")) for r in recs})
    seeds = sorted({r.get("seed") for r in recs}, key=str)
    hidden = ("benchmark", "model") if len(models) == 1 else ("benchmark",)  # said in the header
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        f'<p class="muted">{len(recs)} runs; model {esc(", ".join(models))}; seeds '
        f"{esc(', '.join(map(str, seeds)))}; generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
        " from the run records (nothing was retrained to draw this page).</p>",
        '<h2 id="leaderboard">Leaderboard</h2>',
        f'<div class="scroll">{headline_html(rows)}</div>',
        '<h3 id="full-table">Full table</h3>',
        f'<div class="scroll">{to_html(rows, hide=hidden)}</div>',
        '<h2 id="figures">Figures</h2>',
    ]
    for kind in PLOTS:
        fig = figure(kind, recs, benchmark)
        if fig is None:
            parts.append(f'<p class="muted">{esc(kind)}: no data in these records.</p>')
            continue
        uri = _svg_data_uri(svg_text(fig))
        parts.append(
            f'<figure id="fig-{kind}"><img src="{uri}" alt="{esc(benchmark)} {kind} plot">'
            f"<figcaption>{esc(CAPTIONS[kind])}</figcaption></figure>"
        )
    parts += [
        '<h2 id="evaluations">Evaluations</h2>',
        '<p class="muted">The leaderboard names each evaluation\'s columns by its result key here '
        "(SUITE/KEY).</p>",
        f'<div class="scroll">{_evaluations_table(recs)}</div>',
        '<h2 id="settings">Method settings</h2>',
        '<p class="muted">The full resolved configuration of the first run of each method and '
        "setting (seeds differ only in the seed).</p>",
        f'<div class="scroll">{_settings_table(recs)}</div>',
        '<h2 id="environment">Versions and hardware</h2>',
        _environment_table(recs),
        '<h2 id="runs">Runs</h2>',
        f'<div class="scroll">{_runs_table(recs)}</div>',
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def write_reports(
    records: list[dict], out_dir: str | Path, benchmark: str | None = None
) -> list[Path]:
    """`report-<benchmark>.html` for the given benchmark, or for every benchmark in the records."""
    from unlearnbench.results.store import write_text_atomic

    by_bench: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        by_bench[r.get("benchmark")].append(r)
    names = [benchmark] if benchmark else sorted(by_bench)
    paths = []
    for name in names:
        if not by_bench.get(name):
            raise FileNotFoundError(f"no run records for benchmark {name!r}")
        p = Path(out_dir) / f"report-{name}.html"
        write_text_atomic(p, report_html(records, name))
        paths.append(p)
    return paths
