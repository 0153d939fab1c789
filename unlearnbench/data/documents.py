"""The unit of data: a document with text and metadata."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Document:
    """One training or test document.

    `id` is stable across runs (the train/test split hashes it), `meta` holds at least what the
    benchmark's split rule reads (e.g. `language`, `topic`).
    """

    id: str
    text: str
    meta: dict = field(default_factory=dict, hash=False, compare=False)
