"""The papers' claims that the reference grid tests, read off its records.

Each claim is a list of comparisons per benchmark: two quantities over the same seeds (method A
and method B, or one method before and after something), their means, the paired difference A - B
with its 95% Student-t interval, and a verdict on the difference in the direction the claim
predicts:

- `holds`: the interval lies wholly on the claimed side of zero;
- `does not hold`: it lies wholly on the other side;
- `within seed noise`: it contains zero;
- `not measured (n=k)`: fewer than 2 paired seeds;
- `A higher` / `A lower`: a row the claim predicts nothing of (damage, an anchor), where the
  interval excludes zero.

Steps to recover are censored (an attack that never reached the no-filter loss within its budget
reads "> budget"), so they are compared seed by seed, not averaged: the claim holds when A took
more steps than B in every paired seed (at least 2), and does not hold when it took fewer or as
many in every one.

Removal is never read alone: every comparison of forget loss is shown beside the same comparison
of retain loss (the damage), and an attack budget at which every setting broke the retain
tolerance is reported as such (no valid attack: not evidence of robustness). A pure function of the
records, like the leaderboard.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from unlearnbench.results import stats
from unlearnbench.results.attack import EXCLUDED
from unlearnbench.results.leaderboard import NotReached, get, metric_value, recall_of

RECALLS = (1.0, 0.9, 0.5)
BUDGET = 200  # the robust suite's largest attack budget (suites/robust.yaml)
# the SGTM paper's relearning protocol: its key and largest budget (suites/sgtm-paper.yaml)
PAPER_RELEARN, PAPER_BUDGET = "relearn-sgtm-paper", 1000
Reader = Callable[[dict], object]


def loss(split: str) -> Reader:
    return lambda r: get(r, "metrics", f"{split}_loss")


def _results_named(r: dict, name: str):
    """(key, summary) of every recorded result of evaluation entry `name`, whichever suite
    recorded it (`SUITE/name`), the robust suite's first."""
    evals = r.get("evals") or {}
    for key in sorted(evals, key=lambda k: (not k.startswith("robust/"), k)):
        if key.split("/", 1)[-1] == name:
            yield key, evals[key]


def evaluation(name: str, metric: str) -> Reader:
    """Headline `metric` of evaluation `name`: a number, NotReached, EXCLUDED or None."""

    def read(r: dict):
        for key, _ in _results_named(r, name):
            value = metric_value(r, key, metric)
            if value is not None:
                return value
        return None

    return read


def summary_value(name: str, *path: str) -> Reader:
    """A number inside evaluation `name`'s stored summary."""

    def read(r: dict):
        for _, summary in _results_named(r, name):
            value = get(summary, *path)
            if isinstance(value, int | float):
                return float(value)
        return None

    return read


def recover_steps(r: dict, name: str = "relearn", budget: int = BUDGET):
    """Steps to recover of relearning evaluation `name`, or EXCLUDED when it never recovered
    because every attack setting broke the retain tolerance before its largest `budget` (no valid
    attack: not robustness)."""
    steps = evaluation(name, "steps_to_recover")(r)
    if isinstance(steps, NotReached) and evaluation(name, f"forget_loss@{budget}")(r) is EXCLUDED:
        return EXCLUDED
    return steps


def grid_runs(records: list[dict], benchmark: str, method: str, recall: float) -> dict[int, dict]:
    """{seed: record} of `method` at its defaults (recall aside) on `benchmark` at `recall`."""
    out = {}
    for r in records:
        nd = r.get("non_default") or {}
        if (
            r.get("benchmark") == benchmark
            and r.get("method") == method
            and recall_of(r) == recall
            and not nd.get("method_options")
            and not nd.get("train")
            and set(nd.get("labels") or {}) <= {"recall"}
        ):
            out[r["seed"]] = r
    return out


@dataclass(frozen=True)
class Comparison:
    """One row of a claim: A - B per seed, with the direction the claim predicts (+1: A above)."""

    benchmark: str
    setting: str
    quantity: str
    a_name: str
    b_name: str
    a: dict  # {seed: value}
    b: dict
    direction: int  # +1: the claim predicts A > B; -1: A < B; 0: no prediction (damage)
    censored: bool = False  # steps to recover (NotReached values): compared seed by seed

    def seeds(self) -> list:
        return sorted(
            s for s in self.a if s in self.b and _usable(self.a[s]) and _usable(self.b[s])
        )

    def difference(self) -> stats.Interval:
        return stats.t_interval(float(self.a[s]) - float(self.b[s]) for s in self.seeds())

    def verdict(self) -> str:
        if self.censored:
            return _censored_verdict(self)
        excluded = [s for s in self.a if self.a[s] is EXCLUDED or self.b.get(s) is EXCLUDED]
        diff = self.difference()
        if diff.n < 2:
            note = f"; {len(excluded)} seed(s) with no valid attack" if excluded else ""
            return f"not measured (n={diff.n}{note})"
        if not diff.excludes_zero:
            return "within seed noise"
        if self.direction == 0:
            return "A higher" if diff.mean > 0 else "A lower"
        return "holds" if (diff.mean > 0) == (self.direction > 0) else "does not hold"


def _usable(v) -> bool:
    return v is not None and v is not EXCLUDED and not isinstance(v, NotReached)


def _steps(v) -> float | None:
    """Steps to recover as a number for ordering: NotReached ranks above every measured step."""
    if v is EXCLUDED:
        return None
    if isinstance(v, NotReached):
        return float("inf")
    return float(v) if isinstance(v, int | float) else None


def _censored_verdict(c: Comparison) -> str:
    paired = sorted(s for s in c.a if s in c.b)
    invalid = [s for s in paired if EXCLUDED in (c.a[s], c.b[s])]
    seeds = [s for s in paired if s not in invalid and None not in (_steps(c.a[s]), _steps(c.b[s]))]
    if len(seeds) < 2:
        note = f"; {len(invalid)} seed(s) with no valid attack" if invalid else ""
        return f"not measured (n={len(seeds)}{note})"
    later = sum(_steps(c.a[s]) > _steps(c.b[s]) for s in seeds)
    if later == len(seeds):
        return f"holds ({later} of {len(seeds)} seeds)"
    if later == 0:
        return f"does not hold (0 of {len(seeds)} seeds)"
    return f"mixed ({later} of {len(seeds)} seeds)"


def _show(v) -> str:
    if v is None:
        return "-"
    if v is EXCLUDED:
        return "no valid attack"
    if isinstance(v, NotReached):
        return f"> {v.limit}" if v.limit is not None else "not reached"
    if isinstance(v, float) and not v.is_integer():
        return f"{v:.3f}"
    return f"{v:g}" if isinstance(v, float) else str(v)


def _mean_text(values: dict, censored: bool) -> str:
    if censored:
        shown = [f"s{s}: {_show(v)}" for s, v in sorted(values.items()) if v is not None]
        return ", ".join(shown) or "-"
    iv = stats.t_interval(v for v in values.values() if _usable(v))
    text = _interval_text(iv)
    bad = sum(v is EXCLUDED for v in values.values())
    return text + (f"; {bad} seed(s) no valid attack" if bad else "")


def _interval_text(iv: stats.Interval, signed: bool = False) -> str:
    if iv.n == 0:
        return "-"
    mean = f"{iv.mean:+.3f}" if signed else f"{iv.mean:.3f}"
    if iv.n == 1:
        return f"{mean} (n=1)"
    return f"{mean} ± {iv.half_width:.3f} (n={iv.n})"


def _compare(
    records, benchmark, setting, quantity, read, a, b, direction, censored=False, names=None
) -> Comparison:
    """A Comparison of `read` over the seeds of two (method, recall) cells, or of one cell read two
    ways when `read` is a pair of readers (then `names` says which is which)."""
    (ma, ra), (mb, rb) = a, b
    read_a, read_b = read if isinstance(read, tuple) else (read, read)
    runs_a = grid_runs(records, benchmark, ma, ra)
    runs_b = grid_runs(records, benchmark, mb, rb)
    name_a, name_b = names or (f"{ma} @ {ra}", f"{mb} @ {rb}")
    return Comparison(
        benchmark,
        setting,
        quantity,
        name_a,
        name_b,
        {s: read_a(r) for s, r in runs_a.items()},
        {s: read_b(r) for s, r in runs_b.items()},
        direction,
        censored,
    )


@dataclass(frozen=True)
class Claim:
    title: str
    source: str
    statement: str
    rows: list[Comparison]


def _versus_filter(records, benchmarks, method: str, facts: Reader | None = None) -> list:
    """`method` against the filter at every recall of the grid: forget loss (claimed higher below
    recall 1.0), its damage, forget-fact accuracy (claimed lower; with `facts`), and at the recalls
    the robust suite attacks, the forget loss after the largest relearning budget (claimed higher).
    At recall 1.0 nothing is claimed (the filter then removes every forget document): the row is
    the anchor the partial-label rows are read against."""
    forget, retain = loss("forget"), loss("retain")
    after = evaluation("relearn", f"forget_loss@{BUDGET}")
    rows = []
    for b in benchmarks:
        for r in RECALLS:
            cells = ((method, r), ("filter", r))
            claimed = 0 if r == 1.0 else 1  # the claim is about partial labels: 1.0 is the anchor
            rows += [
                _compare(records, b, f"recall {r}", "forget loss", forget, *cells, claimed),
                _compare(records, b, f"recall {r}", "retain loss (damage)", retain, *cells, 0),
            ]
            if facts is not None:
                rows.append(
                    _compare(
                        records, b, f"recall {r}", "forget-fact accuracy", facts, *cells, -claimed
                    )
                )
        for r in (1.0, 0.9):  # recall 0.5 runs the probes suite only
            cells = ((method, r), ("filter", r))
            quantity = f"forget loss after {BUDGET}-step relearn"
            claimed = 0 if r == 1.0 else 1
            rows.append(_compare(records, b, f"recall {r}", quantity, after, *cells, claimed))
    return rows


def claims(records: list[dict], benchmarks: list[str]) -> list[Claim]:
    """The five claims the grid tests, each with its comparisons on every benchmark."""
    forget, retain = loss("forget"), loss("retain")
    facts = evaluation("fact-probes", "forget_accuracy")
    after = evaluation("relearn", f"forget_loss@{BUDGET}")
    out = []

    rows = _versus_filter(records, benchmarks, "sgtm", facts)
    out.append(
        Claim(
            "SGTM vs data filtering under undiscovered forget data",
            "Shilov et al. 2025 (Beyond Data Filtering), label-noise experiments",
            "With part of the forget data unlabeled (recall < 1), SGTM keeps more of its removal "
            "than filtering, which trains on every forget document it misses.",
            rows,
        )
    )

    rows = []
    for b in benchmarks:
        cells = (("sgtm", 1.0), ("rmu", 1.0))
        rows += [
            _compare(records, b, "recall 1.0", "relearn steps to recover", recover_steps, *cells, +1,
                     True),
            _compare(records, b, "recall 1.0", f"forget loss after {BUDGET}-step relearn",
                     after, *cells, +1),
            _compare(records, b, "recall 1.0", "retain loss (damage)", retain, *cells, 0),
            _compare(records, b, "recall 1.0, SGTM paper's relearning", "relearn steps to recover",
                     lambda r: recover_steps(r, PAPER_RELEARN, PAPER_BUDGET), *cells, +1, True),
            _compare(records, b, "recall 1.0, SGTM paper's relearning",
                     f"forget loss after {PAPER_BUDGET}-step relearn",
                     evaluation(PAPER_RELEARN, f"forget_loss@{PAPER_BUDGET}"), *cells, +1),
        ]  # fmt: skip
    out.append(
        Claim(
            "SGTM vs RMU: steps to recover",
            "Shilov et al. 2025, relearning on Wikipedia 254M (RMU 50 steps, SGTM 350)",
            "Fine-tuning on forget data takes more steps to bring SGTM's model back to the "
            "no-filter forget loss than RMU's. Two attacks: the robust suite's (forget documents "
            "only, 3 lrs x 2 seeds, up to 200 steps) and the paper's (forget data mixed ~50/50 "
            "with the rest, lr 2e-4, 200 warmup steps, up to 1000 steps: `sgtm-paper`).",
            rows,
        )
    )

    rows = _versus_filter(records, benchmarks, "era")
    out.append(
        Claim(
            "ERA vs data filtering at partial labels",
            "Cloud et al. 2024 (gradient routing), TinyStories ERA at partial labeling",
            "With partial labels, Expand-Route-Ablate keeps a higher forget loss than filtering "
            "(routing localizes what the labeled forget data teaches, so unlabeled forget data "
            "that is like it is also absorbed by the ablated units).",
            rows,
        )
    )

    rows = []
    for b in benchmarks:
        for r in (0.9, 0.5):
            # the claim predicts DEMix's fall only; ERA's rows are a contrast, read without a
            # predicted direction (A higher / A lower / within seed noise)
            for m, claimed in (("demix", -1), ("era", 0)):
                cells = ((m, r), (m, 1.0))
                rows += [
                    _compare(records, b, f"{m}: recall {r} vs 1.0", "forget loss", forget,
                             *cells, claimed),
                    _compare(records, b, f"{m}: recall {r} vs 1.0", "retain loss (damage)",
                             retain, *cells, 0),
                ]  # fmt: skip
    out.append(
        Claim(
            "DEMix below 100% labels",
            "Cloud et al. 2024, DEMix baseline (hard routing of each document by its label)",
            "DEMix's removal depends on every forget document being labeled: below recall 1.0 its "
            "forget loss falls (the retain expert learns the unlabeled forget data); ERA is shown "
            "beside it.",
            rows,
        )
    )

    rows = []
    before = summary_value("direction-ablation", "before", "forget_loss")
    ablated = summary_value("direction-ablation", "ablated", "forget_loss")
    retain_before = summary_value("direction-ablation", "before", "retain_loss")
    retain_ablated = summary_value("direction-ablation", "ablated", "retain_loss")
    for b in benchmarks:
        cells = (("rmu", 1.0), ("rmu", 1.0))
        rows += [
            _compare(records, b, "recall 1.0", "forget loss", (ablated, before), *cells, -1,
                     names=("rmu, direction ablated", "rmu")),
            _compare(records, b, "recall 1.0", "retain loss (damage)",
                     (retain_ablated, retain_before), *cells, 0,
                     names=("rmu, direction ablated", "rmu")),
        ]  # fmt: skip
    out.append(
        Claim(
            "RMU under direction ablation",
            "Arditi 2024 ('mostly shallow'), on RMU (Li et al. 2024)",
            "Projecting out the direction RMU adds at its layer restores much of the forget "
            "knowledge: the forget loss falls back toward the no-filter model's.",
            rows,
        )
    )
    return out


def claims_markdown(records: list[dict]) -> str:
    """The claims as markdown: per claim its source, statement and a table of comparisons."""
    benchmarks = sorted({r["benchmark"] for r in records if r.get("benchmark")})
    lines = [
        "# The papers' claims on the reference grid",
        "",
        "Each row compares two cells of the grid over the seeds both hold: their means with 95% "
        "Student-t half-widths and n, and the paired difference A - B. Verdict: `holds` when the "
        "difference's interval lies wholly on the side the claim predicts, `does not hold` when "
        "on the other, `within seed noise` when it contains zero, `not measured` below 2 paired "
        'seeds. Steps to recover are compared seed by seed ("> 200": not recovered within the '
        "budget). `no valid attack`: every attack setting broke the retain tolerance by that "
        "budget. Read every removal row with its damage row.",
        "",
    ]
    for claim in claims(records, benchmarks):
        lines += [
            f"## {claim.title}",
            "",
            f"Source: {claim.source}. Claim: {claim.statement}",
            "",
            "| benchmark | setting | quantity | A | B | mean A | mean B | A - B | verdict |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for c in claim.rows:
            diff = "" if c.censored else _interval_text(c.difference(), signed=True)
            lines.append(
                f"| {c.benchmark} | {c.setting} | {c.quantity} | {c.a_name} | {c.b_name} | "
                f"{_mean_text(c.a, c.censored)} | {_mean_text(c.b, c.censored)} | {diff} | "
                f"{c.verdict()} |"
            )
        lines.append("")
    return "\n".join(lines)
