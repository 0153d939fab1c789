"""The labeling model: what a method is told about each training document, as opposed to the truth.

Labels are `forget`, `retain` or `unlabeled`. Each draw is a function of (seed, document id), so every
method in a comparison sees the same labels, and the labeled sets are nested in the rates (the
documents labeled forget at recall 0.5 are a subset of those at recall 0.9).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from unlearnbench.config import LabelConfig
from unlearnbench.data.splits import stable_uniform

LABELS = ("forget", "retain", "unlabeled")


@dataclass(frozen=True)
class Labeled:
    label: str  # forget | retain | unlabeled: what methods may read
    flagged_adjacent: bool  # a strict classifier's flag (used only by the strict filter)


def label_document(doc_id: str, split: str, cfg: LabelConfig, seed: int) -> Labeled:
    u = stable_uniform("label", seed, doc_id)
    if split == "forget":
        label = "forget" if u < cfg.recall else "unlabeled"
        # a strict classifier flags at least what the weak one does
        return Labeled(label, flagged_adjacent=False)
    if split == "retain":
        return Labeled("retain" if u < cfg.retain_label_rate else "unlabeled", False)
    if split == "adjacent":
        if u < cfg.false_positive_rate:
            label = "forget"
        elif u < cfg.false_positive_rate + cfg.adjacent_label_rate:
            label = "retain"
        else:
            label = "unlabeled"
        # the strict filter's classifier catches adjacent documents with the same recall
        flagged = stable_uniform("strict", seed, doc_id) < cfg.recall
        return Labeled(label, flagged)
    raise ValueError(f"unknown split {split!r}")


def label_counts(labeled: list[tuple[str, Labeled]]) -> dict[str, int]:
    """Counts of (true split, label) pairs, for the run record."""
    c = Counter(f"{split}/{lab.label}" for split, lab in labeled)
    return dict(sorted(c.items()))
