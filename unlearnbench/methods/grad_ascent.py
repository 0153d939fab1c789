"""`grad-ascent`: gradient ascent on forget-labeled data (the simplest unlearning baseline; as in
open-unlearning's GradAscent). Unbounded: the step budget is its only brake."""

from __future__ import annotations

from dataclasses import dataclass

from unlearnbench.methods import RunContext, register_method
from unlearnbench.methods._loss_based import LOSS_BASED_TRAIN_DEFAULTS, nll
from unlearnbench.methods._posthoc import all_parameter_names
from unlearnbench.methods.token_selection import apply_token_selection
from unlearnbench.training import Objective


@dataclass(frozen=True)
class GradAscentOptions:
    forget_tokens: str = "all"  # per-token unlearning: "all" | "ratio" | "list" (ours)
    forget_token_list: tuple[str, ...] = ()  # "list": vocabulary entries or one-token texts (ours)
    forget_token_threshold: float = 0.5  # "ratio": ERA weight below this (ours: w = 1/2)
    # which positions (ours): "target" (those predicting a selected token, as ERA routes) | "input"
    forget_token_position: str = "target"


# version 2: its default base, the no-filter run, now trains as the SGTM reference does
@register_method(
    "grad-ascent",
    kind="posthoc",
    options=GradAscentOptions,
    train_defaults=LOSS_BASED_TRAIN_DEFAULTS,
    version=2,
)
def setup(ctx: RunContext, options: GradAscentOptions) -> Objective:
    """Gradient ascent: minimize -NLL on forget-labeled blocks; every parameter trains."""

    def loss(model, inputs, targets, label):
        assert label == "forget", label
        return -nll(model(input_ids=inputs).logits, targets)  # logits (B, T, V)

    obj = Objective(
        model=ctx.model,
        batch_plan={"forget": 1.0},  # open-unlearning GradAscent: forget data only
        loss=loss,
        trainable=all_parameter_names(ctx.model),
        reduction="labels",
    )
    return apply_token_selection(ctx, obj, options)
