"""Representation losses shared by the rerouting methods (circuit breakers, sequential unlearning):
stacks of HF hidden states and the per-position L2 retain distance between two such stacks."""

from __future__ import annotations

import torch

from unlearnbench.models import arch


def hidden_stack(model, inputs: torch.Tensor) -> torch.Tensor:
    """HF hidden states (L + 1, B, T, d): embeddings, then each block (the last after the final
    norm). Only the body runs: the states are those of the full model, without the unembedding."""
    out = arch.body(model)(input_ids=inputs, output_hidden_states=True, use_cache=False)
    return torch.stack(out.hidden_states)


def retain_l2_loss(h_lora: torch.Tensor, h_orig: torch.Tensor) -> torch.Tensor:
    """L2 distance per position of (K, B, T, d) stacks of layers, mean over layers and positions."""
    return (h_lora.float() - h_orig.float()).norm(dim=-1).mean()  # mean of (K, B, T)
