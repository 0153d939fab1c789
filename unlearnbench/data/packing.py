"""Packing tokenized documents into fixed-length blocks.

Documents are joined with the end-of-text token and cut into blocks of `context + 1` tokens with a
one-token overlap, so every token is a prediction target exactly once. Targets equal to the
separator are not counted (design section 6: separator and padding tokens are excluded), so every
method and every evaluation counts the same tokens.

Blocks never mix groups: a group is one (true split, label) combination, so a method that treats
labels differently sees whole blocks of one label.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

IGNORE = -100


def pack(token_lists: list[list[int]], context: int, eos_id: int) -> torch.Tensor:
    """(N, context + 1) int64 blocks from documents, each followed by `eos_id`. The tail that does
    not fill a block is dropped."""
    flat: list[int] = []
    for ids in token_lists:
        flat.extend(ids)
        flat.append(eos_id)
    stream = torch.tensor(flat, dtype=torch.long)
    n = (len(stream) - 1) // context
    if n <= 0:
        return torch.empty(0, context + 1, dtype=torch.long)
    idx = torch.arange(n)[:, None] * context + torch.arange(context + 1)[None, :]
    return stream[idx]  # (N, T + 1)


def inputs_and_targets(blocks: torch.Tensor, eos_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    inputs = blocks[:, :-1]  # (B, T)
    targets = blocks[:, 1:].clone()  # (B, T)
    targets[targets == eos_id] = IGNORE
    return inputs, targets


@dataclass
class BlockGroup:
    """Training blocks of one (true split, label) group. Methods read `label` and `flagged_adjacent`
    only; `split` is the truth, kept for accounting (tokens seen per split)."""

    split: str
    label: str
    flagged_adjacent: bool
    blocks: torch.Tensor  # (N, T + 1)
