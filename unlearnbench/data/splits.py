"""Seeded, order-independent randomness keyed by document id.

Train/test membership and training labels are functions of (seed, document id) alone, so every
method, every run and every ordering of the corpus sees the same test documents and the same labels.
"""

from __future__ import annotations

import hashlib

SPLITS = ("forget", "adjacent", "retain")


def stable_uniform(*parts) -> float:
    """A uniform number in [0, 1) determined by `parts` (no process-dependent hashing)."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def is_test(doc_id: str, test_fraction: float, split_seed: int = 0) -> bool:
    return stable_uniform("test-split", split_seed, doc_id) < test_fraction
