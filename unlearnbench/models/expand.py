"""Expanding and contracting GPT-Neo MLPs (ERA's Expand and Ablate, Cloud et al. 2024).

`expand_mlp` appends `n` hidden units to the MLP of each given block: `n` rows of `c_fc` (weight and
bias) and `n` columns of `c_proj`. The original units keep their values; the new ones are
initialized like the model (HF GPT-Neo init: N(0, initializer_range) weights, zero bias). An expanded
model has blocks of different widths, so it is not a plain GPT-Neo until `contract_mlp` deletes the
added units again and returns the model in its original shape (`config.intermediate_size` wide).
"""

from __future__ import annotations

import torch
from torch import nn

from unlearnbench.models.arch import require_gpt_neo


def _mlp_dim(model) -> int:
    cfg = model.config
    return cfg.intermediate_size or 4 * cfg.hidden_size


@torch.no_grad()
def expand_mlp(model, layers: tuple[int, ...], n: int, generator: torch.Generator | None = None):
    """Append `n` units to the MLPs of `layers` in place; returns the model."""
    assert n > 0, "expand by at least one unit"
    require_gpt_neo(model, "expanding the MLP")
    d_mlp, std = _mlp_dim(model), model.config.initializer_range
    for i in layers:
        mlp = model.transformer.h[i].mlp
        fc, proj = mlp.c_fc, mlp.c_proj
        assert fc.out_features == d_mlp, f"block {i} is already expanded"
        d, dev, dtype = fc.in_features, fc.weight.device, fc.weight.dtype
        new_fc = nn.Linear(d, d_mlp + n, device=dev, dtype=dtype)
        new_proj = nn.Linear(d_mlp + n, d, device=dev, dtype=dtype)
        added_in = torch.randn(n, d, generator=generator) * std  # (n, d)
        added_out = torch.randn(d, n, generator=generator) * std  # (d, n)
        new_fc.weight.copy_(torch.cat([fc.weight, added_in.to(dev, dtype)]))  # (d_mlp + n, d)
        new_fc.bias.copy_(torch.cat([fc.bias, torch.zeros(n, device=dev, dtype=dtype)]))
        new_proj.weight.copy_(torch.cat([proj.weight, added_out.to(dev, dtype)], dim=1))
        new_proj.bias.copy_(proj.bias)
        mlp.c_fc, mlp.c_proj = new_fc, new_proj
    return model


@torch.no_grad()
def contract_mlp(model):
    """Delete every unit beyond `config.intermediate_size` in place: the model is a plain GPT-Neo of
    its original shape again (loadable with `GPTNeoForCausalLM.from_pretrained`). Returns it."""
    d_mlp = _mlp_dim(model)
    for block in model.transformer.h:
        mlp = block.mlp
        fc, proj = mlp.c_fc, mlp.c_proj
        if fc.out_features == d_mlp:
            continue
        d, dev, dtype = fc.in_features, fc.weight.device, fc.weight.dtype
        new_fc = nn.Linear(d, d_mlp, device=dev, dtype=dtype)
        new_proj = nn.Linear(d_mlp, d, device=dev, dtype=dtype)
        new_fc.weight.copy_(fc.weight[:d_mlp])  # (d_mlp, d)
        new_fc.bias.copy_(fc.bias[:d_mlp])
        new_proj.weight.copy_(proj.weight[:, :d_mlp])  # (d, d_mlp)
        new_proj.bias.copy_(proj.bias)
        mlp.c_fc, mlp.c_proj = new_fc, new_proj
    return model


def added_units(model) -> dict[int, slice]:
    """Block index -> slice of its added MLP units (empty for blocks of the original width)."""
    d_mlp = _mlp_dim(model)
    return {
        i: slice(d_mlp, block.mlp.c_fc.out_features)
        for i, block in enumerate(model.transformer.h)
        if block.mlp.c_fc.out_features > d_mlp
    }
