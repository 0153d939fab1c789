"""Shared pieces of the post-hoc methods (not a method: modules starting with "_" are not scanned)."""

from __future__ import annotations

from unlearnbench.data.packing import BlockGroup
from unlearnbench.data.pipeline import training_groups
from unlearnbench.models.presets import MODEL_PRESETS


def run_groups(ctx) -> list[BlockGroup]:
    """The run's labeled training blocks, packed exactly as the runner packs them for the loop
    (same labels, seed and context), for methods that need data before training (norms, lenses)."""
    cfg = ctx.config
    context = cfg.train.context or MODEL_PRESETS[cfg.model].context
    groups, _ = training_groups(ctx.benchmark, cfg.labels, cfg.seed, context)
    return groups


def all_parameter_names(model) -> list[str]:
    """Every parameter (full fine-tuning). Explicit, because an earlier phase of a method may have
    frozen some and the loop only changes requires_grad for names it is given."""
    return [n for n, _ in model.named_parameters()]
