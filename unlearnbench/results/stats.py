"""Statistics of every comparison the tables show: intervals over seeds, paired tests, the ranking.

Pure Python (no torch, no scipy), so the tables stay a pure function of the run records.

- `t_interval`: the mean over seeds and its 95% Student-t interval, mean ± t(0.975, n-1) * s/sqrt(n)
  with s the sample std; one seed gives the value and no interval.
- Paired deltas: per seed, the run minus its matching `no-filter` run of the same seed
  (results/matching.py), then the t-interval of those differences; a delta is marked when its
  interval excludes zero.
- `mcnemar_p`: the exact McNemar test of paired right/wrong outcomes (fact probes scored on the same
  probes by a run and its matching no-filter run); pairs of several seeds are pooled.
- `selectivity` and `RANKING_RULE`: how rows are ranked; a run that damages retain is never ranked
  above one that removes as much without the damage.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass

LEVEL = 0.95  # every interval the tables show
ALPHA = 1 - LEVEL  # a paired test is marked significant below this p-value


# ---- Student-t interval of a mean ----


def _betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b) by its continued fraction (modified Lentz)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    if x > (a + 1) / (a + b + 2):  # the fraction converges fast only below this point
        return 1.0 - _betainc(b, a, 1.0 - x)
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
    front = math.exp(log_front + a * math.log(x) + b * math.log1p(-x)) / a
    tiny = 1e-300
    f, c, d = 1.0, 1.0, 0.0
    for i in range(1000):
        m = i // 2
        if i == 0:
            num = 1.0
        elif i % 2 == 0:
            num = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
        else:
            num = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
        d = 1.0 + num * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + num / c
        c = c if abs(c) > tiny else tiny
        f *= c * d
        if abs(1.0 - c * d) < 1e-15:
            break
    return front * (f - 1.0)


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with `df` degrees of freedom."""
    tail = 0.5 * _betainc(df / 2, 0.5, df / (df + t * t))  # P(T > |t|)
    return 1.0 - tail if t >= 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The p-quantile of Student's t (p in (0, 1)), by bisection on the CDF."""
    if not 0.0 < p < 1.0 or df <= 0:
        raise ValueError(f"t_quantile needs 0 < p < 1 and df > 0, got p={p}, df={df}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:  # df = 1 at 0.975 is 12.7; tiny df needs a wide bracket
        hi *= 2.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return (lo + hi) / 2


@dataclass(frozen=True)
class Interval:
    """Mean over n values, their sample std and the 95% t-interval; one value: no std, no interval."""

    mean: float | None
    std: float | None
    n: int
    low: float | None = None
    high: float | None = None

    @property
    def half_width(self) -> float | None:
        return None if self.high is None else self.high - self.mean

    @property
    def excludes_zero(self) -> bool:
        """The interval lies wholly above or below zero (a delta distinguishable from none)."""
        return self.low is not None and (self.low > 0 or self.high < 0)


def t_interval(values: Iterable[float | None], level: float = LEVEL) -> Interval:
    """Mean and Student-t interval of the values that are not None (missing seeds are skipped)."""
    vals = [float(v) for v in values if v is not None and math.isfinite(v)]
    n = len(vals)
    if n == 0:
        return Interval(None, None, 0)
    mean = sum(vals) / n
    if n == 1:
        return Interval(mean, None, 1)
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1))  # sample std over seeds
    half = t_quantile(1 - (1 - level) / 2, n - 1) * std / math.sqrt(n)
    return Interval(mean, std, n, mean - half, mean + half)


def paired_differences(run: dict, reference: dict) -> list[float]:
    """run[seed] - reference[seed] for every seed both hold a value for, in seed order."""
    seeds = sorted((s for s in run if s in reference), key=str)
    return [run[s] - reference[s] for s in seeds if run[s] is not None and reference[s] is not None]


# ---- paired test of right/wrong outcomes (fact probes) ----


def mcnemar_p(lost: int, gained: int) -> float:
    """Exact two-sided McNemar p-value for paired right/wrong outcomes: under "no change", the
    items that flipped (`lost` right -> wrong, `gained` wrong -> right) split 50/50."""
    n, k = lost + gained, min(lost, gained)
    if n == 0:
        return 1.0
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n)


def ids_digest(ids: Iterable[str]) -> str:
    """A short digest of a list of item ids: two records pair item by item only when it agrees."""
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]


def encode_outcomes(ids: list[str], correct: list[bool]) -> dict:
    """Per-item outcomes as a record stores them, compactly: `correct` holds one '1' (right) or
    '0' (wrong) per item, in the order of the sorted item ids, and `ids` the digest of that order
    (so 3,000 probes cost 3 kB, not a 75 kB id -> outcome map)."""
    assert len(ids) == len(correct) == len(set(ids)), "one outcome per distinct item id"
    pairs = sorted(zip(ids, correct, strict=True))
    return {
        "ids": ids_digest(i for i, _ in pairs),
        "correct": "".join("1" if c else "0" for _, c in pairs),
    }


def outcomes_by_id(ids: list[str], outcomes: dict) -> dict[str, bool]:
    """{item id: right} of stored outcomes, given the items' ids (e.g. the benchmark's probes)."""
    ordered = sorted(ids)
    if ids_digest(ordered) != outcomes.get("ids") or len(ordered) != len(outcomes["correct"]):
        raise ValueError("the outcomes were recorded on other items than these ids")
    return {i: c == "1" for i, c in zip(ordered, outcomes["correct"], strict=True)}


def flips(run: dict | None, reference: dict | None) -> tuple[int, int] | None:
    """(lost, gained): items the reference got right and the run wrong, and the reverse; None when
    either lacks outcomes or they were scored on different items."""
    if not isinstance(run, dict) or not isinstance(reference, dict):
        return None
    a, b = run.get("correct"), reference.get("correct")
    if not isinstance(a, str) or not isinstance(b, str) or len(a) != len(b):
        return None
    if run.get("ids") != reference.get("ids"):
        return None
    lost = sum(x == "0" and y == "1" for x, y in zip(a, b, strict=True))
    gained = sum(x == "1" and y == "0" for x, y in zip(a, b, strict=True))
    return lost, gained


# ---- the ranking: removal that counts damage ----

# ours: a retain rise of 0.1 nats is a 10.5% rise in retain perplexity (e^0.1); below it a run
# counts as keeping the retain capability (a stated choice; `--retain-tolerance` changes it).
RETAIN_TOLERANCE = 0.1


def selectivity(d_forget: float, d_retain: float, ceiling: float | None = None) -> float:
    """Forget gain, capped at the perfect filter's gain (`ceiling`, when known), minus retain
    damage: min(Δforget, ceiling) - max(0, Δretain), in nats. A forget loss beyond the perfect
    filter's is not more removal (a model that never saw the forget data is the target), and a
    retain rise is subtracted nat for nat."""
    gain = d_forget if ceiling is None else min(d_forget, ceiling)
    return gain - max(0.0, d_retain)


def within_tolerance(d_retain: float | None, tolerance: float = RETAIN_TOLERANCE) -> bool:
    return d_retain is not None and d_retain <= tolerance


def ranking_rule(tolerance: float = RETAIN_TOLERANCE) -> str:
    return (
        f"rows ranked by selectivity within each benchmark and model: first the rows whose mean "
        f"Δretain is at most {tolerance:g} nats, then those beyond it (marked !), then those "
        "without a matching no-filter run; within each group by mean selectivity = min(Δforget, "
        "the perfect filter's Δforget of the same seed) - max(0, Δretain), per seed, highest first"
    )


def rank_key(d_forget, d_retain, score, tolerance: float = RETAIN_TOLERANCE) -> tuple:
    """Sort key of a row (lower first) by `ranking_rule`, from its mean Δforget, Δretain and
    selectivity; the trade-off figure and the tables call this one function."""
    if d_forget is None or d_retain is None or score is None:
        return (2, 0.0)
    return (0 if within_tolerance(d_retain, tolerance) else 1, -score)
