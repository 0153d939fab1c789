"""Statistics of every comparison the tables show: intervals over seeds and paired tests.

Every distribution comes from scipy.stats; the tables stay a pure function of the run records.

- `t_interval`: the mean over seeds and its 95% Student-t interval, mean ± t(0.975, n-1) * s/sqrt(n)
  with s the sample std; one seed gives the value and no interval.
- Paired deltas: per seed, the run minus its reference run of the same seed
  (results/references.py), then the t-interval of those differences; a delta is marked when its
  interval excludes zero.
- `sign_test`: the exact two-sided binomial test of "A above B in k of n seeds" (a sign count,
  e.g. of censored steps to recover); with 3 seeds its smallest p is 0.25, never below 0.05.
- `mcnemar_p`: the exact McNemar test of one run's paired right/wrong outcomes against its
  reference's on the same probes (one seed).
- `stratified_mcnemar`: the same question over seeds without pooling them. The probes are the
  same items in every seed, so pooling their flips over seeds counts each probe several times
  (pseudo-replication: two seeds that move one way outvote a third that moves the other with a
  tiny p). Instead each seed is one stratum: its exact McNemar p, signed by its direction, becomes
  a z-score; the seeds' z-scores must show a change when combined with equal weight (Stouffer)
  and one that is consistent over seeds (a t-test of the z-scores, the seed as the unit). (A
  Cochran-Mantel-Haenszel test of the per-seed discordant pairs reduces to the pooled McNemar
  statistic, so it would not help here.)
- `RETAIN_TOLERANCE`: the retain rise the tables mark (a marker, not a cut; the ranking's score is
  results/references.py's).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass

from scipy import stats as sps

LEVEL = 0.95  # every interval the tables show
ALPHA = 1 - LEVEL  # a paired test is marked significant below this p-value


# ---- Student-t interval of a mean ----


def t_quantile(p: float, df: float) -> float:
    """The p-quantile of Student's t (p in (0, 1), df > 0)."""
    if not 0.0 < p < 1.0 or df <= 0:
        raise ValueError(f"t_quantile needs 0 < p < 1 and df > 0, got p={p}, df={df}")
    return float(sps.t.ppf(p, df))


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
    half = t_quantile(1 - (1 - level) / 2, n - 1) * std / math.sqrt(n)  # scipy's t quantile
    return Interval(mean, std, n, mean - half, mean + half)


def paired_differences(run: dict, reference: dict) -> list[float]:
    """run[seed] - reference[seed] for every seed both hold a value for, in seed order."""
    seeds = sorted((s for s in run if s in reference), key=str)
    return [run[s] - reference[s] for s in seeds if run[s] is not None and reference[s] is not None]


# ---- paired test of right/wrong outcomes (fact probes) ----


def sign_test(above: int, n: int) -> float:
    """Exact two-sided binomial p of `above` of `n` paired seeds going one way, under "either way
    is as likely" (ties left out of n by the caller)."""
    assert 0 <= above <= n, f"{above} of {n} seeds"
    return 1.0 if n == 0 else float(sps.binomtest(above, n, 0.5).pvalue)


def mcnemar_p(lost: int, gained: int) -> float:
    """Exact two-sided McNemar p-value for paired right/wrong outcomes: under "no change", the
    items that flipped (`lost` right -> wrong, `gained` wrong -> right) split 50/50."""
    return sign_test(min(lost, gained), lost + gained)


def stratified_mcnemar(pairs: list[tuple[int, int]]) -> float:
    """Two-sided p of paired right/wrong outcomes over seeds, each seed one stratum (module
    docstring). Per seed (lost, gained), its exact McNemar p_k signed by its direction gives
    z_k = sign(lost - gained) * Phi^-1(1 - p_k / 2). The p is the larger of
    - Stouffer's equal-weight combination, Z = sum z_k / sqrt(K), p = 2 (1 - Phi(|Z|)): is there a
      change in these seeds (each seed counted once, however many probes flipped in it);
    - the one-sample t-test of the z_k over seeds (df K - 1): is the change the same across
      seeds, the seed being the unit a method is replicated over (needs 2+ seeds that differ).
    The larger of two valid p-values is valid (conservative). A seed that moves the other way
    lowers Z and widens the spread of the z_k; one seed alone is its own McNemar p."""
    assert pairs, "stratified_mcnemar needs at least one seed's (lost, gained)"
    z = []
    for lost, gained in pairs:
        assert lost >= 0 and gained >= 0, f"flip counts are counts, got ({lost}, {gained})"
        side = (lost > gained) - (lost < gained)  # 0 when they balance: p_k = 1, z_k = 0
        p = max(mcnemar_p(lost, gained), 1e-300)  # an underflowed 0 would make z infinite
        z.append(side * float(sps.norm.isf(p / 2)))
    k = len(z)
    p_fixed = float(2 * sps.norm.sf(abs(sum(z)) / math.sqrt(k)))
    if k < 2 or max(z) == min(z):  # no spread over seeds to test against
        return min(1.0, p_fixed)
    p_seeds = float(sps.ttest_1samp(z, 0.0).pvalue)
    return min(1.0, max(p_fixed, p_seeds))


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


# ---- the retain tolerance: a marker beside the score ----

# ours: a retain rise of 0.1 nats is a 10.5% rise in retain perplexity (e^0.1); beyond it a row is
# marked as damaging the retain capability (a stated choice; `--retain-tolerance` changes it).
RETAIN_TOLERANCE = 0.1


def within_tolerance(d_retain: float | None, tolerance: float = RETAIN_TOLERANCE) -> bool:
    return d_retain is not None and d_retain <= tolerance
