"""`no-filter`: train on everything; labels are ignored. The reference every method is compared to."""

from __future__ import annotations

from dataclasses import dataclass

from unlearnbench.methods import RunContext, register_method
from unlearnbench.training import Objective


@dataclass(frozen=True)
class NoFilterOptions:
    pass


@register_method("no-filter", kind="training", options=NoFilterOptions)
def setup(ctx: RunContext, options: NoFilterOptions) -> Objective:
    """Baseline: plain language modelling on all training documents, labels ignored."""
    return Objective(model=ctx.model)
