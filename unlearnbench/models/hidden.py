"""Hidden states of the blocks of a causal LM, and a frozen copy of a model.

`h_l` everywhere in unlearnbench is the output of block `l` (the residual stream after it), indexed
from 0. We capture it with forward hooks on the blocks (models/arch.py locates them in GPT-Neo,
GPT-NeoX, GPT-2 and Llama-family models) rather than reading HF's `output_hidden_states`: there
`hidden_states[i + 1]` is block l's output except for the last block, whose entry has the final
norm already applied.

The helpers see through wrappers (a peft `PeftModel` around the causal LM), so the same function
serves plain and LoRA-adapted models.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from unlearnbench.models import arch


def block_outputs(model: nn.Module, inputs: torch.Tensor, layers) -> dict[int, torch.Tensor]:
    """Run the body on `inputs` (B, T) and return {l: output of block l (B, T, d)} for `layers`.

    Only the body runs (no unembedding). Gradients flow as usual; wrap in no_grad where not needed.
    """
    stack = arch.blocks(model)
    n = len(stack)
    layers = sorted(set(layers))
    assert all(0 <= i < n for i in layers), f"layers {layers} outside 0..{n - 1}"
    out: dict[int, torch.Tensor] = {}

    def hook(index):
        def fn(module, args, output):
            out[index] = output[0] if isinstance(output, tuple) else output  # (B, T, d)

        return fn

    handles = [stack[i].register_forward_hook(hook(i)) for i in layers]
    try:
        arch.body(model)(input_ids=inputs, use_cache=False)
    finally:
        for h in handles:
            h.remove()
    return out


def frozen_copy(model: nn.Module) -> nn.Module:
    """A deep copy in eval mode with no parameter requiring grad: the fixed reference of a
    post-hoc method (RMU's retain target, NPO's reference policy)."""
    ref = copy.deepcopy(model)
    ref.eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref


def mean_hidden_norm(model: nn.Module, blocks: torch.Tensor, layer: int) -> float:
    """Mean L2 norm of h_layer over the positions of `blocks` (N, T + 1), in eval mode."""
    was = model.training
    model.eval()
    with torch.no_grad():
        h = block_outputs(model, blocks[:, :-1].to(next(model.parameters()).device), [layer])[layer]
    model.train(was)
    return float(h.float().norm(dim=-1).mean())  # mean over (B, T)
