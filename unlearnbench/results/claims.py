"""The papers' claims that the reference grid tests, read off its records.

Every number comes from results/references.py: each run is joined to its own references there
(its no-filter and perfect filter of the same seed) and its Δs and steps to recover are computed
there; nothing another run copied into a record is read.

Each claim is a list of comparisons per benchmark and model size: one quantity of two cells over
the seeds both hold (method A and method B, or one cell read two ways), paired by seed. A cell is
one size's runs (the seeds of two sizes are different runs, never pooled). Each row has a role:

- `claim`: the row the claim is judged on. A removal claim is judged net of damage: per seed,
  the removal Δforget - Δretain (- Δadjacent where the benchmark has an adjacent split), Δs
  against the no-filter run of the seed, then A - B paired by seed. A method that raises every
  loss by the same amount removes nothing specific, however high its forget loss;
- `raw`: the same comparison on forget loss alone (damage not charged), beside it;
- `damage`, `context`: read beside (retain and adjacent loss, the perfect filter beside a
  robustness claim); `anchor`: recall 1.0, where the filter removes every forget document and
  nothing is claimed.

Two kinds of verdict, never printed with the same words:

- interval verdicts, on the paired difference's 95% Student-t interval (results/stats.py):
  `holds` (wholly on the claimed side of zero), `does not hold` (wholly on the other),
  `within seed noise` (contains zero), `A higher` / `A lower` for a row the claim predicts
  nothing of; `not measured (n=k)` below 2 paired seeds;
- sign-test verdicts, for steps to recover (censored: a valid attack that did not recover within
  its budget is "> budget", which has no mean): `sign test, A more steps in k of n seeds, p = P
  two-sided` (exact binomial; ties and seeds where neither recovered left out). With 3 seeds the
  smallest such p is 0.25.

A seed whose attack had no valid setting at the budget (every setting broke the retain
tolerance) reads "no valid attack" and is left out of the test, never read as a bound. A
fraction of a removal undone (direction ablation) is computed per seed and its interval over
seeds judged. A cell whose seeds were made by different code versions, or whose references were,
is flagged in the row's notes. A pure function of the records, like the leaderboard.

Size trends (`size_trends`): whether a difference changes from one model size to the next (tiny
to small): SGTM's retain (and adjacent) damage, its removal at recall 0.9 against the filter's
net of damage, its margin over RMU after relearning. Per size, each seed's value of the
comparison (A - B paired by seed within the size); the change is the larger size's mean minus
the smaller's with Welch's 95% interval, unpaired (seed 0 at one size is not a pair of seed 0 at
the other). Verdicts: `higher at SIZE` / `lower at SIZE`, `within seed noise`, and `not measured
(size S: n=k)` below 2 seeds at a size, never a number.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from unlearnbench.results import references as refs
from unlearnbench.results import stats
from unlearnbench.results.attack import EXCLUDED, budget_outcome
from unlearnbench.results.leaderboard import model_order
from unlearnbench.results.matching import trained_apart
from unlearnbench.results.references import (
    NO_VALID_ATTACK,
    REFERENCE_NOT_MEASURED,
    Joined,
    NotReached,
)

RECALLS = (1.0, 0.9, 0.5)
BUDGET = 200  # the robust suite's largest attack budget (suites/robust.yaml)
# the SGTM paper's relearning protocol: its key and largest budget (suites/sgtm-paper.yaml)
PAPER_RELEARN, PAPER_BUDGET = "relearn-sgtm-paper", 1000
Reader = Callable[[Joined], object]


# ---- cells of the grid ----


def recall_of(record: dict) -> float:
    return float(((record.get("config") or {}).get("labels") or {}).get("recall", 1.0))


def grid_runs(
    records: list[dict], benchmark: str, model: str, method: str, recall: float
) -> dict[int, dict]:
    """{seed: record} of `method` at its defaults (recall aside; where it ran too) on `benchmark`
    and `model` at `recall` (the seeds of two model sizes are different runs: never one cell)."""
    out = {}
    for r in records:
        nd = r.get("non_default") or {}
        if (
            r.get("benchmark") == benchmark
            and r.get("model") == model
            and r.get("method") == method
            and recall_of(r) == recall
            and not nd.get("method_options")
            and not trained_apart(r)  # where it ran (a GPU) is not a setting of its own
            and set(nd.get("labels") or {}) <= {"recall"}
        ):
            out[r["seed"]] = r
    return out


def has_adjacent(records: list[dict], benchmark: str) -> bool:
    """Whether the benchmark has an adjacent split (its runs measure an adjacent loss)."""
    return any(
        refs.final_loss(r, "adjacent") is not None
        for r in records
        if r.get("benchmark") == benchmark
    )


# ---- readers: one number (or a named status) of a joined run ----


def _results_named(record: dict, name: str):
    """(key, summary) of every recorded result of evaluation entry `name`, whichever suite
    recorded it (`SUITE/name`), the robust suite's first."""
    evals = record.get("evals") or {}
    for key in sorted(evals, key=lambda k: (not k.startswith("robust/"), k)):
        if key.split("/", 1)[-1] == name and isinstance(evals[key], dict):
            yield key, evals[key]


def _first(record: dict, name: str) -> tuple[str | None, dict | None]:
    return next(_results_named(record, name), (None, None))


def loss(split: str) -> Reader:
    return lambda j: refs.final_loss(j.run, split)


def net_removal(j: Joined):
    """Δforget - Δretain (- Δadjacent where the run measured an adjacent loss), against the
    run's no-filter of the same seed (references.deltas)."""
    d = refs.deltas(j)
    splits = ["forget", "retain"] + (["adjacent"] if loss("adjacent")(j) is not None else [])
    if any(refs.final_loss(j.run, s) is None for s in splits):
        return None
    if any(d[f"d_{s}"] is None for s in splits):
        return REFERENCE_NOT_MEASURED
    adjacent = d["d_adjacent"] if "adjacent" in splits else 0.0
    return d["d_forget"] - d["d_retain"] - adjacent


def _fact_accuracy(record: dict | None, split: str) -> float | None:
    _, summary = _first(record or {}, "fact-probes")
    part = (summary or {}).get(split)
    return refs.number(part.get("accuracy")) if isinstance(part, dict) else None


def fact_accuracy(split: str) -> Reader:
    return lambda j: _fact_accuracy(j.run, split)


def facts_net(j: Joined):
    """The forget facts' accuracy drop minus the retain facts' (minus the adjacent facts' where
    measured), drops against the no-filter run of the seed: removal of facts net of damage."""
    splits = ["forget", "retain"]
    splits += ["adjacent"] if _fact_accuracy(j.run, "adjacent") is not None else []
    mine = {s: _fact_accuracy(j.run, s) for s in splits}
    if any(v is None for v in mine.values()):
        return None
    theirs = {s: _fact_accuracy(j.no_filter, s) for s in splits}
    if any(v is None for v in theirs.values()):
        return REFERENCE_NOT_MEASURED
    drop = {s: theirs[s] - mine[s] for s in splits}
    return drop["forget"] - sum(drop[s] for s in splits if s != "forget")


def after_attack(name: str, budget: int, split: str = "forget") -> Reader:
    """The attack's worst case at `budget`: its forget loss, or (split="retain") the retain loss
    of the setting that reached it; EXCLUDED when no setting was valid there."""

    def read(j: Joined):
        _, summary = _first(j.run, name)
        outcome = budget_outcome(summary, budget)
        if split == "forget" or outcome is EXCLUDED or outcome is None:
            return outcome
        for e in summary.get("worst_case") or []:
            if isinstance(e, dict) and str(e.get("budget")) == str(budget):
                return refs.number(e.get("retain_loss"))
        return None

    return read


def after_attack_net(name: str, budget: int) -> Reader:
    """Forget minus retain loss of the attack's worst case at `budget`: how far the attacked model
    still is from knowing the forget split as well as the rest (its own damage charged)."""

    def read(j: Joined):
        forget = after_attack(name, budget)(j)
        retain = after_attack(name, budget, "retain")(j)
        if forget is EXCLUDED:
            return EXCLUDED
        return forget - retain if _usable(forget) and _usable(retain) else None

    return read


def steps_to_recover(name: str) -> Reader:
    """references.attack_comparison's steps to recover for the run's result of `name`."""

    def read(j: Joined):
        key, _ = _first(j.run, name)
        return refs.attack_comparison(j, key).get("steps_to_recover") if key else None

    return read


def ablation(stage: str, split: str = "forget") -> Reader:
    """A direction-ablation result's loss at `stage` ("before" | "ablated" | "base")."""

    def read(j: Joined):
        _, summary = _first(j.run, "direction-ablation")
        return refs.number(((summary or {}).get(stage) or {}).get(f"{split}_loss"))

    return read


def fraction_undone(j: Joined):
    """(forget before - forget after ablating the direction) / (forget before - the base's forget):
    the fraction of the run's removal that projecting out one direction undoes, all three on the
    evaluation's own test blocks (the base, the model RMU started from, is the seed's no-filter).
    None when the run removed nothing to undo."""
    before, ablated, base = (ablation(s)(j) for s in ("before", "ablated", "base"))
    if before is None or ablated is None:
        return None
    if base is None:
        return REFERENCE_NOT_MEASURED
    removed = before - base
    return (before - ablated) / removed if removed > 0 else None


# ---- one comparison ----


def _usable(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _steps(v) -> float | None:
    """Steps to recover as a number for ordering: NotReached ranks above every step measured."""
    if isinstance(v, NotReached):
        return float("inf")
    return float(v) if _usable(v) else None


@dataclass(frozen=True)
class Comparison:
    """One row of a claim: A - B per seed (b None: A against zero) on one benchmark and model
    size, with the direction the claim predicts (+1: A above; -1: A below; 0: nothing
    predicted)."""

    benchmark: str
    model: str
    setting: str
    quantity: str
    a_name: str
    b_name: str
    a: dict  # {seed: value}: a number, NotReached, NO_VALID_ATTACK, REFERENCE_NOT_MEASURED, None
    b: dict | None
    direction: int
    test: str = "interval"  # "interval" (paired t) | "sign" (censored steps: sign test)
    role: str = "claim"  # "claim" | "raw" | "damage" | "context" | "anchor"
    unit: str = "nats"  # "nats" | "accuracy" | "steps" | "fraction"
    notes: tuple[str, ...] = field(default_factory=tuple)  # code versions, references

    @property
    def censored(self) -> bool:
        return self.test == "sign"

    def seeds(self) -> list:
        b = self.b if self.b is not None else {s: 0.0 for s in self.a}
        return sorted(s for s in self.a if s in b and _usable(self.a[s]) and _usable(b[s]))

    def paired(self) -> dict:
        """{seed: A - B} over the seeds both hold a number for."""
        b = self.b if self.b is not None else {s: 0.0 for s in self.a}
        return {s: float(self.a[s]) - float(b[s]) for s in self.seeds()}

    def difference(self) -> stats.Interval:
        return stats.t_interval(self.paired().values())

    def missing(self) -> str:
        """ "; k seed(s) with no valid attack; ..." for the seeds left out, by why."""
        out = ""
        for status in (NO_VALID_ATTACK, REFERENCE_NOT_MEASURED):
            seeds = {s for side in (self.a, self.b or {}) for s, v in side.items() if v is status}
            out += f"; {len(seeds)} seed(s) with {status}" if seeds else ""
        return out

    def verdict(self) -> str:
        """The verdict, with the seeds left out named after it ("; 1 seed(s) with no valid
        attack")."""
        if self.censored:
            return self._sign_verdict()
        diff = self.difference()
        if diff.n < 2:
            return f"not measured (n={diff.n}{self.missing()})"
        return self._interval_verdict(diff) + self.missing()

    def _interval_verdict(self, diff: stats.Interval) -> str:
        if not diff.excludes_zero:
            return "within seed noise"
        if self.direction == 0:
            above = "A higher" if self.b is not None else "above 0"
            below = "A lower" if self.b is not None else "below 0"
            return above if diff.mean > 0 else below
        return "holds" if (diff.mean > 0) == (self.direction > 0) else "does not hold"

    def sign_counts(self) -> tuple[int, int, int]:
        """(seeds where A took more steps, seeds ordered, seeds where neither recovered)."""
        assert self.b is not None, "a sign test compares two cells"
        paired = [s for s in sorted(self.a) if s in self.b]
        pairs = [(_steps(self.a[s]), _steps(self.b[s])) for s in paired]
        pairs = [(x, y) for x, y in pairs if x is not None and y is not None]
        ordered = [(x, y) for x, y in pairs if x != y]  # ties (both not reached) say nothing
        return sum(x > y for x, y in ordered), len(ordered), len(pairs) - len(ordered)

    def _sign_verdict(self) -> str:
        more, n, ties = self.sign_counts()
        tied = f"; {ties} seed(s) tied or neither recovered" if ties else ""
        if n < 2:
            return f"not measured (n={n}{self.missing()}{tied})"
        p = stats.sign_test(more, n)
        text = f"sign test, A more steps in {more} of {n} seeds, p = {p:.2g} two-sided"
        return text + self.missing() + tied


def _versions_note(cells: dict[str, list[Joined]]) -> tuple[str, ...]:
    """Notes for cells whose seeds were made by different code versions ("code versions: A 3"),
    and for seeds whose references were made by another version than the run ("references of
    another code version: A s1")."""
    mixed, other = [], []
    for label, joined in cells.items():
        versions = {refs.code_version(j.run) for j in joined}
        if len(versions) > 1:
            mixed.append(f"{label} {len(versions)}")
        seeds = sorted(j.run.get("seed") for j in joined if j.other_version)
        if seeds:
            other.append(f"{label} " + ",".join(f"s{s}" for s in seeds))
    notes = [f"code versions: {', '.join(mixed)}"] if mixed else []
    notes += [f"references of another code version: {'; '.join(other)}"] if other else []
    return tuple(notes)


@dataclass
class Grid:
    """One model size's records joined to their references once (references.join matches a run
    only with references of its own model), and how cells are compared over them."""

    records: list[dict]
    model: str
    joined: dict[str, Joined] = field(init=False)

    def __post_init__(self):
        self.records = [r for r in self.records if r.get("model") == self.model]
        self.joined = refs.join(self.records)

    def measured(self, benchmark: str) -> bool:
        """Whether this size has any run on `benchmark`."""
        return any(r.get("benchmark") == benchmark for r in self.records)

    def cell(self, benchmark: str, method: str, recall: float) -> dict[int, Joined]:
        runs = grid_runs(self.records, benchmark, self.model, method, recall)
        return {s: self.joined[r["run_id"]] for s, r in runs.items()}

    def compare(
        self,
        benchmark: str,
        setting: str,
        quantity: str,
        read: Reader | tuple[Reader, Reader],
        a: tuple[str, float],
        b: tuple[str, float] | None,
        direction: int,
        role: str = "claim",
        test: str = "interval",
        unit: str = "nats",
        names: tuple[str, str] | None = None,
    ) -> Comparison:
        """A Comparison of `read` over the seeds of cells `a` and `b` (method, recall); of one cell
        read two ways when `read` is a pair (`names` says which is which); of `a` alone against
        zero when `b` is None."""
        read_a, read_b = read if isinstance(read, tuple) else (read, read)
        cell_a = self.cell(benchmark, *a)
        cell_b = self.cell(benchmark, *b) if b is not None else None
        name_a = f"{a[0]} @ {a[1]}"
        name_b = f"{b[0]} @ {b[1]}" if b is not None else "-"
        name_a, name_b = names or (name_a, name_b)
        cells = {"A": list(cell_a.values())}
        if cell_b is not None and b != a:
            cells["B"] = list(cell_b.values())
        return Comparison(
            benchmark,
            self.model,
            setting,
            quantity,
            name_a,
            name_b,
            {s: read_a(j) for s, j in cell_a.items()},
            {s: read_b(j) for s, j in cell_b.items()} if cell_b is not None else None,
            direction,
            test,
            role,
            unit,
            _versions_note(cells),
        )

    def removal_rows(self, benchmark: str, setting: str, a, b, direction: int) -> list:
        """The net-of-damage row the claim is judged on, the raw forget row beside it, and the
        damage rows (direction 0 at an anchor: nothing claimed)."""
        adjacent = has_adjacent(self.records, benchmark)
        net = "Δforget - Δretain" + (" - Δadjacent" if adjacent else "") + " (net of damage)"
        role = "claim" if direction else "anchor"
        rows = [
            self.compare(benchmark, setting, net, net_removal, a, b, direction, role),
            self.compare(benchmark, setting, "forget loss (raw)", loss("forget"), a, b,
                         direction, "raw"),
            self.compare(benchmark, setting, "retain loss (damage)", loss("retain"), a, b, 0,
                         "damage"),
        ]  # fmt: skip
        if adjacent:
            rows.append(
                self.compare(benchmark, setting, "adjacent loss (damage)", loss("adjacent"), a, b,
                             0, "damage")
            )  # fmt: skip
        return rows


@dataclass(frozen=True)
class Claim:
    title: str
    source: str
    statement: str
    rows: list[Comparison]


# ---- the claims ----


def _versus_filter(grid: Grid, benchmarks, method: str, facts: bool) -> list:
    """`method` against the filter at every recall of the grid: removal net of damage (claimed
    higher below recall 1.0) with the raw forget loss and the damage beside it, the same in fact
    accuracy (with `facts`), and at the recalls the robust suite attacks, the forget loss after
    the largest relearning budget net of the attacked model's retain loss. At recall 1.0 nothing
    is claimed (the filter then removes every forget document): the row is the anchor the
    partial-label rows are read against."""
    rows = []
    for bench in benchmarks:
        for r in RECALLS:
            cells = ((method, r), ("filter", r))
            claimed = 0 if r == 1.0 else 1
            role = "claim" if claimed else "anchor"
            rows += grid.removal_rows(bench, f"recall {r}", *cells, claimed)
            if facts:
                rows += [
                    grid.compare(bench, f"recall {r}", "forget-fact drop - retain-fact drop "
                                 "(net of damage)", facts_net, *cells, claimed, role,
                                 unit="accuracy"),
                    grid.compare(bench, f"recall {r}", "forget-fact accuracy (raw)",
                                 fact_accuracy("forget"), *cells, -claimed, "raw",
                                 unit="accuracy"),
                ]  # fmt: skip
        for r in (1.0, 0.9):  # recall 0.5 runs the probes suite only
            cells = ((method, r), ("filter", r))
            claimed = 0 if r == 1.0 else 1
            rows += [
                grid.compare(bench, f"recall {r}", f"forget - retain loss after {BUDGET}-step "
                             "relearn (net of damage)", after_attack_net("relearn", BUDGET),
                             *cells, claimed, "claim" if claimed else "anchor"),
                grid.compare(bench, f"recall {r}", f"forget loss after {BUDGET}-step relearn "
                             "(raw)", after_attack("relearn", BUDGET), *cells, claimed, "raw"),
            ]  # fmt: skip
    return rows


def _robustness(grid: Grid, benchmarks) -> list:
    """SGTM vs RMU under two relearning attacks: steps to recover (sign test), the perfect filter
    beside both, the forget loss after the attack net of the attacked model's retain loss, and
    SGTM's own forget loss after the attack against its own retain loss there."""
    sgtm, rmu, pf = ("sgtm", 1.0), ("rmu", 1.0), ("filter", 1.0)
    attacks = (
        ("recall 1.0", "relearn", BUDGET),
        ("recall 1.0, SGTM paper's relearning", PAPER_RELEARN, PAPER_BUDGET),
    )
    rows = []
    for bench in benchmarks:
        for setting, name, budget in attacks:
            steps = steps_to_recover(name)
            rows += [
                # raw: a model whose retain ability the removal damaged may never reach
                # no-filter's forget loss on anything; the judged row is the net one below
                grid.compare(bench, setting, "relearn steps to recover (raw)", steps, sgtm, rmu,
                             +1, "raw", test="sign", unit="steps"),
                grid.compare(bench, setting, "relearn steps to recover", steps, sgtm, pf, 0,
                             "context", test="sign", unit="steps"),
                grid.compare(bench, setting, "relearn steps to recover", steps, rmu, pf, 0,
                             "context", test="sign", unit="steps"),
                grid.compare(bench, setting, f"forget - retain loss after {budget}-step relearn "
                             "(net of damage)", after_attack_net(name, budget), sgtm, rmu, +1),
                grid.compare(bench, setting, f"forget loss after {budget}-step relearn (raw)",
                             after_attack(name, budget), sgtm, rmu, +1, "raw"),
                grid.compare(bench, setting, f"forget vs own retain loss after {budget}-step "
                             "relearn", (after_attack(name, budget),
                                         after_attack(name, budget, "retain")), sgtm, sgtm, 0,
                             "context", names=("sgtm: forget", "sgtm: retain")),
            ]  # fmt: skip
        splits = ("retain", "adjacent") if has_adjacent(grid.records, bench) else ("retain",)
        rows += [
            grid.compare(bench, "recall 1.0", f"{split} loss (damage)", loss(split), sgtm, rmu, 0,
                         "damage")
            for split in splits
        ]  # fmt: skip
    return rows


def _labels_dependence(grid: Grid, benchmarks) -> list:
    rows = []
    for bench in benchmarks:
        for r in (0.9, 0.5):
            # the claim predicts DEMix's fall only; ERA's rows are a contrast, read without a
            # predicted direction (A higher / A lower / within seed noise)
            for m, claimed in (("demix", -1), ("era", 0)):
                part = grid.removal_rows(bench, f"{m}: recall {r} vs 1.0", (m, r), (m, 1.0),
                                         claimed)  # fmt: skip
                if not claimed:  # ERA's rows are read beside DEMix's, not judged
                    part = [_with_role(c, "context") for c in part]
                rows += part
    return rows


def _with_role(c: Comparison, role: str) -> Comparison:
    return dataclasses.replace(c, role=role)


def _direction_ablation(grid: Grid, benchmarks) -> list:
    rmu = ("rmu", 1.0)
    names = ("rmu, direction ablated", "rmu")
    rows = []
    for bench in benchmarks:
        rows += [
            grid.compare(bench, "recall 1.0", "fraction of the removal undone", fraction_undone,
                         rmu, None, +1, unit="fraction", names=("rmu", "-")),
            grid.compare(bench, "recall 1.0", "forget loss (raw)",
                         (ablation("ablated"), ablation("before")), rmu, rmu, -1, "raw",
                         names=names),
            grid.compare(bench, "recall 1.0", "retain loss (damage)",
                         (ablation("ablated", "retain"), ablation("before", "retain")), rmu, rmu,
                         0, "damage", names=names),
        ]  # fmt: skip
    return rows


def models_of(records: list[dict]) -> list[str]:
    """The model sizes the records hold, smallest first."""
    return sorted({r["model"] for r in records if r.get("model")}, key=model_order)


def claims(records: list[dict], benchmarks: list[str]) -> list[Claim]:
    """The five claims the grid tests, each with its comparisons on every benchmark at every model
    size that has runs on it (benchmark by benchmark, the smaller size first): a cell is one
    size's seeds, never two sizes pooled."""
    grids = [Grid(records, m) for m in models_of(records)]

    def per_size(build: Callable[[Grid, list[str]], list]) -> list[Comparison]:
        return [c for b in benchmarks for g in grids if g.measured(b) for c in build(g, [b])]

    return [
        Claim(
            "SGTM vs data filtering under undiscovered forget data",
            "Shilov et al. 2025 (Beyond Data Filtering), label-noise experiments",
            "With part of the forget data unlabeled (recall < 1), SGTM keeps more of its removal "
            "than filtering, which trains on every forget document it misses.",
            per_size(lambda g, b: _versus_filter(g, b, "sgtm", facts=True)),
        ),
        Claim(
            "SGTM vs RMU: steps to recover",
            "Shilov et al. 2025, relearning on Wikipedia 254M (RMU 50 steps, SGTM 350)",
            "Fine-tuning on forget data takes more steps to bring SGTM's model back to the "
            "no-filter forget loss than RMU's. Two attacks: the robust suite's (forget documents "
            "only, 3 lrs x 2 seeds, up to 200 steps) and the paper's (forget data mixed ~50/50 "
            "with the rest, lr 2e-4, 200 warmup steps, up to 1000 steps: `sgtm-paper`). The "
            "perfect filter (never saw the forget split) is shown beside both: the steps data it "
            "never saw takes.",
            per_size(_robustness),
        ),
        Claim(
            "ERA vs data filtering at partial labels",
            "Cloud et al. 2024 (gradient routing), TinyStories ERA at partial labeling",
            "With partial labels, Expand-Route-Ablate keeps a higher forget loss than filtering "
            "(routing localizes what the labeled forget data teaches, so unlabeled forget data "
            "that is like it is also absorbed by the ablated units).",
            per_size(lambda g, b: _versus_filter(g, b, "era", facts=False)),
        ),
        Claim(
            "DEMix below 100% labels",
            "Cloud et al. 2024, DEMix baseline (hard routing of each document by its label)",
            "DEMix's removal depends on every forget document being labeled: below recall 1.0 its "
            "forget loss falls (the retain expert learns the unlabeled forget data); ERA is shown "
            "beside it.",
            per_size(_labels_dependence),
        ),
        Claim(
            "RMU under direction ablation",
            "Arditi 2024 ('mostly shallow'), on RMU (Li et al. 2024)",
            "Projecting out the direction RMU adds at its layer restores much of the forget "
            "knowledge: a large fraction of the removal (RMU's forget loss above its base's) is "
            "undone, seed by seed.",
            per_size(_direction_ablation),
        ),
    ]


# ---- size trends: one difference at two model sizes ----

SIZES = ("tiny", "small")  # the two sizes the grid measures, smaller first


def welch_interval(
    x: Iterable[float | None], y: Iterable[float | None], level: float = stats.LEVEL
) -> stats.Interval:
    """mean(x) - mean(y) of two unpaired samples and its Welch 95% interval: half-width
    t(0.975, df) * sqrt(s_x^2/n_x + s_y^2/n_y), df by Welch-Satterthwaite. `n` is n_x + n_y and
    `std` the standard error; fewer than two values on a side gives no interval. (Here, not in
    results/stats.py, because only the tables use it: stats.py is also run-time code, whose
    every edit changes the source digest records carry.)"""
    xs = [float(v) for v in x if v is not None and math.isfinite(v)]
    ys = [float(v) for v in y if v is not None and math.isfinite(v)]
    ix, iy = stats.t_interval(xs, level), stats.t_interval(ys, level)
    if ix.n == 0 or iy.n == 0:
        return stats.Interval(None, None, ix.n + iy.n)
    mean = ix.mean - iy.mean
    if ix.n < 2 or iy.n < 2:
        return stats.Interval(mean, None, ix.n + iy.n)
    vx, vy = ix.std**2 / ix.n, iy.std**2 / iy.n  # squared standard errors of the two means
    se = math.sqrt(vx + vy)
    if se == 0:  # both samples constant: the difference is exact
        return stats.Interval(mean, 0.0, ix.n + iy.n, mean, mean)
    df = (vx + vy) ** 2 / (vx**2 / (ix.n - 1) + vy**2 / (iy.n - 1))  # Welch-Satterthwaite
    half = stats.t_quantile(1 - (1 - level) / 2, df) * se
    return stats.Interval(mean, se, ix.n + iy.n, mean - half, mean + half)


@dataclass(frozen=True)
class Trend:
    """One row of the size trends: the same Comparison at each size (its per-seed values, A - B
    paired by seed within the size, or A against zero), and the change from the smaller size to
    the larger: the larger's mean minus the smaller's, with Welch's 95% interval. Unpaired: seed
    0 at one size is a different run from seed 0 at the other, so nothing pairs them."""

    benchmark: str
    setting: str
    quantity: str
    per_size: dict[str, Comparison]  # {size: its comparison}, smaller size first
    role: str = "claim"  # "claim" | "raw" | "damage", as in a Comparison

    def difference(self) -> stats.Interval:
        smaller, larger = (list(c.paired().values()) for c in self.per_size.values())
        return welch_interval(larger, smaller)

    def missing(self) -> str:
        """ "; size small: 1 seed(s) with no valid attack" for each size's seeds left out."""
        return "".join(f"; size {m}: {c.missing()[2:]}" for m, c in self.per_size.items()
                       if c.missing())  # fmt: skip

    def verdict(self) -> str:
        """`higher at LARGER` / `lower at LARGER` when Welch's interval excludes zero, `within
        seed noise` when it contains it, `not measured (size S: n=k)` below 2 seeds at a size."""
        short = [f"size {m}: n={len(c.seeds())}" for m, c in self.per_size.items()
                 if len(c.seeds()) < 2]  # fmt: skip
        if short:
            return f"not measured ({', '.join(short)}{self.missing()})"
        diff = self.difference()
        larger = list(self.per_size)[-1]
        if not diff.excludes_zero:
            return "within seed noise" + self.missing()
        return (f"higher at {larger}" if diff.mean > 0 else f"lower at {larger}") + self.missing()

    @property
    def notes(self) -> tuple[str, ...]:
        return tuple(f"{m}: {n}" for m, c in self.per_size.items() for n in c.notes)


def delta(split: str) -> Reader:
    """The run's Δ`split` against its no-filter run of the same seed (references.deltas)."""

    def read(j: Joined):
        if refs.final_loss(j.run, split) is None:
            return None
        d = refs.deltas(j)[f"d_{split}"]
        return REFERENCE_NOT_MEASURED if d is None else d

    return read


def largest_valid_budget(cells: list[dict[int, Joined]], name: str) -> int | None:
    """The largest budget of attack `name` at which every run of the cells that holds its result
    was validly attacked (some setting kept retain within the tolerance): one budget for every
    seed and size, so no row mixes budgets. A run with no valid budget at all is left out (it
    reads "no valid attack" at any budget). None when no budget was valid for all the others."""
    common = None
    for cell in cells:
        for j in cell.values():
            _, summary = _first(j.run, name)
            budgets = {e.get("budget") for e in (summary or {}).get("worst_case") or []
                       if isinstance(e, dict)}  # fmt: skip
            valid = {int(b) for b in budgets if _usable(budget_outcome(summary, b))}
            if valid:
                common = valid if common is None else common & valid
    return max(common) if common else None


def _trend(grids: dict[str, Grid], bench: str, setting: str, quantity: str, read: Reader, a, b,
           role: str = "claim") -> Trend:  # fmt: skip
    """The Trend of one Comparison (nothing predicted at a size: direction 0) over the sizes."""
    per = {m: g.compare(bench, setting, quantity, read, a, b, 0, role) for m, g in grids.items()}
    return Trend(bench, setting, quantity, per, role)


def size_trends(records: list[dict], benchmarks: list[str], sizes=SIZES) -> list[Trend]:
    """Per benchmark, from the smaller size to the larger: SGTM's retain (and adjacent) damage
    at recall 1.0 (its Δ against its no-filter); its removal at recall 0.9 against the filter's,
    net of damage, with the raw forget loss and the damage beside; and its margin over RMU after
    the robust suite's relearning attack (forget - retain loss of the attacked model, net of its
    damage; raw forget loss beside) at the largest budget validly attacked in every run."""
    grids = {m: Grid(records, m) for m in sizes}
    sgtm, rmu = ("sgtm", 1.0), ("rmu", 1.0)
    sgtm9, filter9 = ("sgtm", 0.9), ("filter", 0.9)
    rows = []
    for bench in benchmarks:
        trend = functools.partial(_trend, grids, bench)
        adjacent = any(has_adjacent(g.records, bench) for g in grids.values())
        splits = ("retain", "adjacent") if adjacent else ("retain",)
        net = "Δforget - Δretain" + (" - Δadjacent" if adjacent else "") + " (net of damage)"
        cells = [g.cell(bench, *c) for g in grids.values() for c in (sgtm, rmu)]
        budget = largest_valid_budget(cells, "relearn") or BUDGET
        rows += [trend("recall 1.0", f"sgtm Δ{s} against its no-filter (damage)", delta(s), sgtm,
                       None) for s in splits]  # fmt: skip
        rows += [
            trend("recall 0.9", f"sgtm - filter: {net}", net_removal, sgtm9, filter9),
            trend("recall 0.9", "sgtm - filter: forget loss (raw)", loss("forget"), sgtm9,
                  filter9, "raw"),
            *(trend("recall 0.9", f"sgtm - filter: {s} loss (damage)", loss(s), sgtm9, filter9,
                    "damage") for s in splits),
            trend(f"recall 1.0, relearn at {budget} steps", "sgtm - rmu: forget - retain loss "
                  "after the attack (net of damage)", after_attack_net("relearn", budget), sgtm,
                  rmu),
            trend(f"recall 1.0, relearn at {budget} steps", "sgtm - rmu: forget loss after the "
                  "attack (raw)", after_attack("relearn", budget), sgtm, rmu, "raw"),
        ]  # fmt: skip
    return rows


# ---- markdown ----


def _show(v, unit: str = "nats") -> str:
    if v is None:
        return "-"
    if isinstance(v, NotReached):
        return f"> {v.limit}" if v.limit is not None else "not reached"
    if not _usable(v):
        return str(v)  # a named status: "no valid attack", "reference not measured"
    if unit == "fraction":
        return f"{100 * v:.0f}%"
    if isinstance(v, float) and not v.is_integer():
        return f"{v:.3f}"
    return f"{v:g}" if isinstance(v, float) else str(v)


def _per_seed(values: dict, unit: str) -> str:
    shown = [f"s{s}: {_show(v, unit)}" for s, v in sorted(values.items()) if v is not None]
    return ", ".join(shown) or "-"


def _interval_text(iv: stats.Interval, signed: bool = False, unit: str = "nats") -> str:
    """ "mean ± half-width (n=k)"; a fraction in percent."""
    if iv.n == 0:
        return "-"
    if unit == "fraction":
        mean = f"{100 * iv.mean:.0f}%"
        half = f"{100 * iv.half_width:.0f}%" if iv.n > 1 else None
    else:
        mean = f"{iv.mean:+.3f}" if signed else f"{iv.mean:.3f}"
        half = f"{iv.half_width:.3f}" if iv.n > 1 else None
    return f"{mean} (n=1)" if half is None else f"{mean} ± {half} (n={iv.n})"


def _cell_text(c: Comparison, values: dict | None) -> str:
    """Per seed for steps and fractions (censored, or read seed by seed), else mean ± half-width
    with the seeds left out named."""
    if values is None:
        return "-"
    if c.censored or c.unit == "fraction":
        return _per_seed(values, c.unit)
    text = _interval_text(stats.t_interval(v for v in values.values() if _usable(v)))
    for status in (NO_VALID_ATTACK, REFERENCE_NOT_MEASURED):
        k = sum(v is status for v in values.values())
        text += f"; {k} seed(s) {status}" if k else ""
    return text


def _summary(claim: Claim) -> list[str]:
    """One line per judged row: its verdict, and beside it the raw row that follows it (the same
    comparison with damage not charged)."""
    lines = []
    for i, c in enumerate(claim.rows):
        if c.role != "claim":
            continue
        text = f"- {c.benchmark}, {c.model}, {c.setting}: {c.quantity}: **{c.verdict()}**"
        if not c.censored:
            diff = _interval_text(c.difference(), signed=c.b is not None, unit=c.unit)
            text += f" ({'A - B ' if c.b is not None else ''}{diff})"
        beside = claim.rows[i + 1] if i + 1 < len(claim.rows) else None
        if beside is not None and beside.role == "raw" and not c.censored:
            diff = _interval_text(beside.difference(), signed=True, unit=beside.unit)
            text += f"; raw {beside.quantity.replace(' (raw)', '')}: {beside.verdict()} ({diff})"
        if c.notes:
            text += f"; {'; '.join(c.notes)}"
        lines.append(text)
    for c in claim.rows:  # sign tests on steps: damage not charged, said so, never judged
        if c.role == "raw" and c.censored:
            lines.append(f"- {c.benchmark}, {c.model}, {c.setting}: {c.quantity}, damage not "
                         f"charged: {c.verdict()}")  # fmt: skip
    return lines


def claims_markdown(records: list[dict]) -> str:
    """The claims as markdown: per claim its source, statement, its verdicts and a table of
    comparisons."""
    benchmarks = sorted({r["benchmark"] for r in records if r.get("benchmark")})
    lines = [
        "# The papers' claims on the reference grid",
        "",
        "Each row compares two cells of the grid over the seeds both hold, paired by seed (Δs "
        "against each seed's own no-filter run, results/references.py): their means with 95% "
        "Student-t half-widths and n, and the paired difference A - B. A removal claim is "
        "judged net of damage (role `claim`): on Δforget - Δretain (- Δadjacent where the "
        "benchmark has an adjacent split), with the raw forget loss beside it (role `raw`). "
        "Interval verdicts: `holds` when the difference's 95% interval lies wholly on the side "
        "the claim predicts, `does not hold` when on the other, `within seed noise` when it "
        "contains zero, `A higher` / `A lower` where nothing is predicted, `not measured` below "
        '2 paired seeds. Steps to recover are censored ("> 200": a valid attack did not '
        "recover within its budget), so they are compared seed by seed by an exact sign test, "
        "printed as `sign test, ... p = P two-sided` (with 3 seeds its smallest p is 0.25). "
        "`no valid attack`: every attack setting broke the retain tolerance by that budget; such "
        "a seed is left out, never read as a bound. Notes flag cells whose seeds, or their "
        "references, were made by different code versions. Every claim is read at each model "
        "size that has runs (a cell is one size's seeds, never two sizes pooled); the last "
        "section asks how the differences change from one size to the next.",
        "",
    ]
    for claim in claims(records, benchmarks):
        lines += [
            f"## {claim.title}",
            "",
            f"Source: {claim.source}. Claim: {claim.statement}",
            "",
            "Verdicts (net of damage; raw sign tests on steps listed after, not judged):",
            "",
            *(_summary(claim) or ["- none measured"]),
            "",
            "| benchmark | model | setting | quantity | role | A | B | A | B | A - B | verdict | "
            "notes |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for c in claim.rows:
            diff = "" if c.censored else _interval_text(c.difference(), signed=True, unit=c.unit)
            lines.append(
                f"| {c.benchmark} | {c.model} | {c.setting} | {c.quantity} | {c.role} | {c.a_name} | "
                f"{c.b_name} | {_cell_text(c, c.a)} | {_cell_text(c, c.b)} | {diff} | "
                f"{c.verdict()} | {'; '.join(c.notes)} |"
            )
        lines.append("")
    lines += trends_markdown(size_trends(records, benchmarks))
    return "\n".join(lines)


def _trend_text(t: Trend) -> str:
    """ "LARGER - SMALLER: mean ± half-width (Welch, n = k + k)"."""
    iv = t.difference()
    smaller, larger = t.per_size
    n = " + ".join(str(len(c.seeds())) for c in t.per_size.values())
    if iv.mean is None:
        return f"{larger} - {smaller}: - (n = {n})"
    half = f" ± {iv.half_width:.3f}" if iv.half_width is not None else ""
    return f"{larger} - {smaller}: {iv.mean:+.3f}{half} (Welch, n = {n})"


def _size_text(c: Comparison) -> str:
    """One size's per-seed values (A - B paired by seed): mean ± half-width, seeds left out."""
    text = _interval_text(stats.t_interval(c.paired().values()), signed=True)
    return text + c.missing()


def trends_markdown(trends: list[Trend]) -> list[str]:
    """The size-trends section: its question, the judged rows' verdicts, and a table."""
    sizes = list(trends[0].per_size) if trends else list(SIZES)
    smaller, larger = sizes
    lines = [
        f"## Size trends: {smaller} to {larger}",
        "",
        "Questions of scale (the SGTM paper's claims are trends with model size; ours are measured "
        f"at two sizes): does SGTM's retain (and adjacent) damage shrink from {smaller} to "
        f"{larger}? Does its removal at recall 0.9 against the filter's, net of damage, grow or "
        "shrink? Does its margin over RMU after relearning change? Per size, each seed's value "
        "(A - B paired by seed within the size, or SGTM's Δ against its no-filter); the change "
        f"is the {larger} mean minus the {smaller} mean with Welch's 95% interval: the two sizes' "
        "seeds are different runs, so they are not paired. Verdicts: `higher at` / `lower at` "
        f"{larger} when the interval excludes zero, `within seed noise` when it contains it, "
        "`not measured (size S: n=k)` below 2 seeds at a size. Relearning is compared on forget "
        "minus retain loss after the attack at the largest budget every run was validly "
        "attacked at (steps to recover are censored and have no mean; their sign tests are "
        "in the SGTM vs RMU claim at each size).",
        "",
        "Verdicts (net of damage; the raw forget difference beside):",
        "",
    ]
    judged = []
    for i, t in enumerate(trends):
        if t.role != "claim":
            continue
        text = f"- {t.benchmark}, {t.setting}: {t.quantity}: **{t.verdict()}** ({_trend_text(t)})"
        beside = trends[i + 1] if i + 1 < len(trends) else None
        if beside is not None and beside.role == "raw":
            text += f"; raw: {beside.verdict()} ({_trend_text(beside)})"
        judged.append(text + (f"; {'; '.join(t.notes)}" if t.notes else ""))
    lines += judged or ["- none measured"]
    lines += [
        "",
        f"| benchmark | setting | quantity | role | {smaller} | {larger} | change | verdict | "
        "notes |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for t in trends:
        per = " | ".join(_size_text(c) for c in t.per_size.values())
        lines.append(f"| {t.benchmark} | {t.setting} | {t.quantity} | {t.role} | {per} | "
                     f"{_trend_text(t)} | {t.verdict()} | {'; '.join(t.notes)} |")  # fmt: skip
    lines.append("")
    return lines
