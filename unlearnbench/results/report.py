"""The HTML report: one self-contained page per benchmark (no network, figures as inline data URIs).

Sections: the leaderboard, the three figures (each method in its colour, the same as in the
figures' files), sample generations (greedy continuations of a fixed forget and a fixed retain
prompt, recorded by the `generations` evaluation when the run was made), the evaluations the
records hold (which suite ran each, with which options), each method's settings, the versions and
hardware the runs used, and the list of runs. A pure function of the run records (no torch, no
method or evaluation registry).
"""

from __future__ import annotations

import base64
import html
import time
from collections import Counter, defaultdict
from pathlib import Path

from unlearnbench.results import stats
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
from unlearnbench.results.style import STYLE  # one stylesheet: the leaderboard page's too


def captions(retain_tolerance: float = stats.RETAIN_TOLERANCE) -> dict[str, str]:
    """What each figure shows, said under it (with the retain tolerance the trade-off marks)."""
    return {
        "tradeoff": "Removal against damage, every Δ paired by seed against the run's plain "
        "no-filter run (results/references.py). Left: the score's own terms, removal credited "
        "(Δforget capped at the perfect filter's) against damage charged (retain rise plus "
        "adjacent rise beyond the perfect filter's), so score = y - x (grey diagonals); the grey "
        "step line is the Pareto frontier of the ranked rows. Middle: Δforget against Δretain, "
        f"the dash-dot line the leaderboard's retain tolerance ({retain_tolerance:g} nats, a "
        "marker). Right (where the benchmark has an adjacent split): Δforget against Δadjacent, "
        "the orange dotted line the perfect filter's Δadjacent. Dotted: the plain perfect filter's Δforget (filter at recall 1, no other "
        "setting), the most removal credited. Points: mean over seeds; bars: 95% Student-t "
        "interval of the mean (n seeds per entry in the legend; n=1: one seed, no interval). "
        "Numbers: each row's rank in the leaderboard; ref. (hollow): a reference variant, never "
        "ranked nor on the frontier. A point beyond the bulk of the others is drawn on the edge "
        "as a triangle pointing out, its values under the panel.",
        "relearn": "Relearning attacks, one column per attack result (SUITE/KEY) and mode. Top: "
        "the worst case at each step, computed as the tables compute it: the lowest forget loss "
        "reached by that step over the attack's learning rates and attack seeds, among the "
        "settings whose retain loss stayed within the attack's retain tolerance; then the mean "
        "over seeds (band: 95% Student-t interval; n seeds per entry). Bottom: the retain loss "
        "of that worst case (its setting and step). A seed whose every setting broke the "
        "tolerance has no valid attack from then on and is never counted as reaching the "
        "budget: hollow points are means of the other seeds, and a line ends in × where no seed "
        "had a valid attack left; entries validly attacked in fewer than all seeds are named "
        "under the column. Thick: the perfect filter, which never saw the forget data (the "
        "never-exposed floor). Dashed: the plain no-filter run's forget loss before the attack, "
        "the target of steps to recover. Runs without the attack result are not measured (not "
        "drawn). Forget losses on a log scale where they span more than 8x.",
        "undiscovered": "Removal and damage against the fraction of forget documents left "
        "unlabeled (1 - recall), for the methods run at more than one recall: Δforget, Δretain "
        "and Δadjacent against the plain no-filter run (any labels), paired by seed. Points: "
        "mean over seeds; bars: 95% Student-t interval (n per entry). Dashed: no-filter; "
        "dotted: the perfect filter.",
    }


CAPTIONS = captions()
# the page's sections, linked at its top (each <h2> below carries the id)
SECTIONS = [("leaderboard", "Leaderboard"), ("full-table", "Full table"), ("figures", "Figures"),
            ("generations", "Sample generations"), ("evaluations", "Evaluations"),
            ("settings", "Method settings"), ("environment", "Versions and hardware"),
            ("runs", "Runs")]  # fmt: skip
TABLE_OF_CONTENTS = (
    '<nav class="toc"><strong>Contents</strong><ol>'
    + "".join(f'<li><a href="#{i}">{t}</a></li>' for i, t in SECTIONS)
    + "</ol></nav>"
)
# why a figure can be empty when the records hold runs
EMPTY = {
    "tradeoff": " (it draws Δ against the matching no-filter run; no run here has one)",
    "undiscovered": " (no method was run at more than one recall)",
    "relearn": " (no attack curves)",
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


def _swatch(method: str) -> str:
    from unlearnbench.results.plots import method_color

    return f'<span class="swatch" style="background:{method_color(method)}"></span>'


def _colour_key(records: list[dict]) -> str:
    """Each method of the page in the colour every figure gives it."""
    methods = sorted({str(r.get("method")) for r in records})
    items = [f"{_swatch(m)}{html.escape(m)}" for m in methods]
    return '<p class="muted">Colours (the same in every figure): ' + " &nbsp; ".join(items) + "</p>"


def generation_samples(records: list[dict]) -> list[dict]:
    """One entry per recorded generations result: the run's method, setting, seed and model and
    its samples ({"split", "document_id", "prompt", "continuation", ...})."""
    out = []
    for r in records:
        for key, ev in sorted((r.get("evals") or {}).items()):
            if isinstance(ev, dict) and ev.get("eval") == "generations" and ev.get("samples"):
                samples = [s for s in ev["samples"] if isinstance(s, dict)]
                out.append({"record": r, "key": key, "samples": samples})
    return out


def _generations_section(records: list[dict], rows: list[dict]) -> str:
    """Per prompt: the prompt, what the test document really says next, and each method's
    greedy continuation (the first seed of each method and setting, in the leaderboard's order)."""
    esc = html.escape
    found = generation_samples(records)
    if not found:
        return (
            '<p class="muted">No generations in these records (the <code>generations</code> '
            "evaluation of the quick and robust suites records them; "
            "<code>unlearnbench attack RUN --suite quick</code> adds them to a saved run).</p>"
        )
    order = {(r["model"], r["method"], r["setting"]): i for i, r in enumerate(rows)}
    first: dict[tuple, dict] = {}  # (model, method, setting) -> the lowest seed's result
    for f in sorted(found, key=lambda f: (str(f["record"].get("seed")), f["key"])):
        r = f["record"]
        first.setdefault((r.get("model"), r.get("method"), setting_of(r)), f)
    entries = sorted(first.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0]))
    prompts: dict[tuple, list] = defaultdict(list)  # (split, document, prompt) -> entries
    for ident, f in entries:
        for sample in f["samples"]:
            doc = (sample.get("split"), sample.get("document_id"), sample.get("prompt"))
            prompts[doc].append((ident, f, sample))
    many_models = len({ident[0] for ident, _ in entries}) > 1
    out = [
        '<p class="muted">Greedy continuations (no sampling) of the opening of one fixed test '
        "document per split, the same document for every run; one run per method and setting "
        "(its lowest seed), in the leaderboard's order. A method that removed the forget "
        "capability should lose the forget document's thread and keep the retain one's.</p>"
    ]
    for (split, doc_id, prompt), items in sorted(
        prompts.items(), key=lambda kv: _split_order(kv[0])
    ):
        truth = items[0][2].get("document_continuation", "")
        out.append(
            f"<h3>{esc(str(split))} prompt <small>(test document {esc(str(doc_id))})</small></h3>"
        )
        out.append("<table><thead><tr><th>run</th><th>continuation</th></tr></thead><tbody>")
        out.append(f'<tr><td>prompt</td><td class="text"><b>{esc(str(prompt))}</b></td></tr>')
        if truth:
            out.append(
                f'<tr><td>the document itself</td><td class="text">{esc(str(truth))}</td></tr>'
            )
        for (model, method, setting), f, sample in items:
            seed = f["record"].get("seed")
            name = method + (f" ({setting})" if setting else "")
            name += f" [{model}]" if many_models else ""
            out.append(
                f"<tr><td>{_swatch(str(method))}{esc(name)} <small>seed {esc(str(seed))}; "
                f"{esc(f['key'])}</small></td>"
                f'<td class="text">{esc(str(sample.get("continuation", "")))}</td></tr>'
            )
        out.append("</tbody></table>")
    return "\n".join(out)


def _split_order(doc: tuple) -> tuple:
    split = doc[0]
    rank = {"forget": 0, "adjacent": 1, "retain": 2}.get(split, 3)
    return rank, str(split), str(doc[1]), str(doc[2])


def report_html(
    records: list[dict],
    benchmark: str,
    title: str | None = None,
    retain_tolerance: float = stats.RETAIN_TOLERANCE,
) -> str:
    """The whole page for one benchmark as a string (ranked, and its trade-off figure drawn, by
    `stats.ranking_rule(retain_tolerance)`)."""
    from unlearnbench.results.plots import PLOTS, figure, svg_text

    esc = html.escape
    recs = [r for r in with_settings(records) if r.get("benchmark") == benchmark]
    title = title or f"unlearnbench report: {benchmark}"
    rows = leaderboard_rows(recs, benchmark, retain_tolerance)
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
        TABLE_OF_CONTENTS,
        '<h2 id="leaderboard">Leaderboard</h2>',
        f'<div class="scroll">{headline_html(rows)}</div>',
        '<h3 id="full-table">Full table</h3>',
        f'<div class="scroll">{to_html(rows, hide=hidden)}</div>',
        '<h2 id="figures">Figures</h2>',
        _colour_key(recs),
    ]
    texts = captions(retain_tolerance)
    for kind in PLOTS:
        fig = figure(kind, recs, benchmark, retain_tolerance)
        if fig is None:
            why = EMPTY.get(kind, "")
            parts.append(f'<p class="muted">{esc(kind)}: no data in these records{why}.</p>')
            continue
        uri = _svg_data_uri(svg_text(fig))
        parts.append(
            f'<figure id="fig-{kind}"><img src="{uri}" alt="{esc(benchmark)} {kind} plot">'
            f"<figcaption>{esc(texts[kind])}</figcaption></figure>"
        )
    parts += [
        '<h2 id="generations">Sample generations</h2>',
        _generations_section(recs, rows),
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
    records: list[dict],
    out_dir: str | Path,
    benchmark: str | None = None,
    retain_tolerance: float = stats.RETAIN_TOLERANCE,
) -> list[Path]:
    """`report-<benchmark>.html` for the given benchmark, or for every benchmark in the records."""
    from unlearnbench.results.store import safe_component, write_text_atomic

    by_bench: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        by_bench[r.get("benchmark")].append(r)
    names = [benchmark] if benchmark else sorted(by_bench)
    paths = []
    for name in names:
        if not by_bench.get(name):
            raise FileNotFoundError(f"no run records for benchmark {name!r}")
        p = Path(out_dir) / f"report-{safe_component(name, 'benchmark')}.html"
        write_text_atomic(p, report_html(records, name, retain_tolerance=retain_tolerance))
        paths.append(p)
    return paths
