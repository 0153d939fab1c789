"""LoRA adapters through `peft`, for post-hoc methods that train adapters only.

The adapted model is what the training loop sees (its parameter names carry peft's prefixes);
`merge` folds the adapters into the weights and returns the plain causal LM, so the saved model
loads anywhere without peft. Target maps are block-relative names of the model's architecture
(models/arch.py `lora_targets`).
"""

from __future__ import annotations

from torch import nn

from unlearnbench.models import arch


def add_lora(
    model: nn.Module, layers, r: int, alpha: float, dropout: float, targets=None
) -> nn.Module:
    """Wrap `model` with LoRA adapters on the linear maps `targets` (block-relative names; None:
    every linear map of the architecture's blocks) of the blocks in `layers`."""
    from peft import LoraConfig, get_peft_model

    layout = arch.layout(model)
    config = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=list(targets or arch.lora_targets(model, "all")),
        layers_to_transform=sorted(set(layers)),
        layers_pattern=layout.blocks,  # the blocks' list: transformer.h, model.layers, ...
        fan_in_fan_out=layout.conv1d,  # GPT-2's Conv1D stores weights as (in, out)
        bias="none",
    )
    return get_peft_model(model, config)


def lora_parameter_names(model: nn.Module) -> list[str]:
    return [n for n, _ in model.named_parameters() if "lora_" in n]


def merge(model: nn.Module) -> nn.Module:
    """Fold the adapters into the base weights; returns the plain base model."""
    merged = model.merge_and_unload()
    for p in merged.parameters():
        p.requires_grad_(True)  # the loop froze non-adapter weights; the saved model is plain
    return merged
