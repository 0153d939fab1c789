"""Losses of the classic loss-based unlearning baselines (gradient ascent, gradient difference,
NPO), as functions on logits and log-probabilities so tests can check them by hand.

Conventions follow open-unlearning (locuslab/open-unlearning, `src/trainer/unlearn/`):
- gradient ascent: minimize -NLL(forget);
- gradient difference: gamma * (-NLL(forget)) + alpha * NLL(retain), gamma = alpha = 1;
- NPO (Zhang et al. 2024, "Negative Preference Optimization"): per sequence,
  -(2 / beta) * logsigmoid(-beta * (log p_theta(y|x) - log p_ref(y|x))), averaged over sequences,
  with log p the sum of token log-probabilities; plus alpha * NLL(retain) (open-unlearning's NPO,
  "NPO+RT" in the paper).
Here a "sequence" is one packed training block; its counted tokens are the non-separator targets.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from unlearnbench.data.packing import IGNORE


def token_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log p(target) per position (B, T); 0 where the target is not counted (IGNORE)."""
    logp = F.log_softmax(logits.float(), dim=-1)  # (B, T, V)
    safe = targets.clamp(min=0)  # IGNORE -> 0, masked below
    picked = logp.gather(-1, safe.unsqueeze(-1)).squeeze(-1)  # (B, T)
    return picked * (targets != IGNORE)


def sequence_logprob(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log p(y|x) per sequence (B,): the sum of counted token log-probabilities."""
    return token_logprobs(logits, targets).sum(dim=-1)


def nll(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean token negative log-likelihood over counted targets (the training LM loss)."""
    return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=IGNORE)


def npo_loss(logp: torch.Tensor, logp_ref: torch.Tensor, beta: float) -> torch.Tensor:
    """NPO on sequence log-probs (B,) of the model and the frozen reference: scalar mean."""
    return (-(2.0 / beta) * F.logsigmoid(-beta * (logp - logp_ref))).mean()
