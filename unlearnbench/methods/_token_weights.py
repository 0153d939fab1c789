"""ERA's per-token routing weights (Cloud et al. 2024), shared by `era` and per-token unlearning
(`token_selection`). Not a method: modules starting with "_" are not scanned for registrations.

w_t = 1 - sigmoid((r - 1/r) - shift), r = f_F(t) / f_R(t), from add-k smoothed unigram frequencies
of forget and retain text (kxcloud/gradient-routing, factored_representations/masklib.py,
`get_token_freq_masking_rule` and `get_token_frequencies`).
"""

from __future__ import annotations

import torch


def unigram_counts(blocks: torch.Tensor, vocab_size: int, eos_id: int) -> torch.Tensor:
    """(V,) counts of the target tokens of (N, T + 1) blocks (each token once; separators not)."""
    targets = blocks[:, 1:].flatten()
    targets = targets[targets != eos_id]
    return torch.bincount(targets, minlength=vocab_size).double()


def token_weights(
    forget_counts: torch.Tensor,
    retain_counts: torch.Tensor,
    forget_smoothing: float = 1.0,
    retain_smoothing: float = 20.0,
    shift: float = 4.0,
) -> torch.Tensor:
    """(V,) w_t = 1 - sigmoid((r - 1/r) - shift), r = f_F / f_R of add-k smoothed frequencies.
    w near 0: a forget-specific token, routed fully; w near 1: a common token, hardly routed."""
    f_forget = (forget_counts + forget_smoothing) / (forget_counts + forget_smoothing).sum()
    f_retain = (retain_counts + retain_smoothing) / (retain_counts + retain_smoothing).sum()
    r = f_forget / f_retain
    return (1.0 - torch.sigmoid((r - 1.0 / r) - shift)).float()
