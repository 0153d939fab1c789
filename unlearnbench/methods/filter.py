"""`filter`: data filtering. Drops documents labeled forget (SGTM's weak filter, ERA's "data
filtering"); `strict` also drops documents the classifier flags as adjacent (SGTM's strict filter).
With recall 1.0 it is the perfect filter: a model never exposed to the forget split."""

from __future__ import annotations

from dataclasses import dataclass

from unlearnbench.methods import RunContext, register_method
from unlearnbench.methods._trainers import SGTM_TRAINER
from unlearnbench.training import Objective


@dataclass(frozen=True)
class FilterOptions:
    # the weak filter (adjacent documents kept) by default: wiki/run.sh:69 "--upsample-adjacent-set
    # 1.0" in the run "wiki_254M_weak_filter"; strict drops them too, :89 "--upsample-adjacent-set 0.0"
    strict: bool = False


# version 2: the SGTM trainer's defaults (no clipping, weight decay on every parameter)
@register_method(
    "filter", kind="training", options=FilterOptions, train_defaults=SGTM_TRAINER, version=2
)
def setup(ctx: RunContext, options: FilterOptions) -> Objective:
    """Data filtering: train only on documents not labeled forget (strict: nor flagged adjacent)."""

    def trains_on(group) -> bool:
        if group.label == "forget":
            return False
        return not (options.strict and group.flagged_adjacent)

    return Objective(model=ctx.model, trains_on=trains_on)
