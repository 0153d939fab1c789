"""LoRA adapters on GPT-Neo through `peft`, for post-hoc methods that train adapters only.

The adapted model is what the training loop sees (its parameter names carry peft's prefixes);
`merge` folds the adapters into the weights and returns a plain GPTNeoForCausalLM, so the saved
model loads anywhere without peft.
"""

from __future__ import annotations

from torch import nn

# every linear map of a GPT-Neo block: attention q/k/v/out and the MLP in/out projections
GPT_NEO_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj", "c_fc", "c_proj")


def add_lora(
    model: nn.Module, layers, r: int, alpha: float, dropout: float, targets=GPT_NEO_LORA_TARGETS
) -> nn.Module:
    """Wrap `model` with LoRA adapters on the linear maps `targets` (default: every linear map) of
    the blocks in `layers`."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=list(targets),
        layers_to_transform=sorted(set(layers)),
        layers_pattern="h",  # GPT-Neo blocks live in transformer.h
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
