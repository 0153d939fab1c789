"""`grad-ascent`: gradient ascent on forget-labeled data (the simplest unlearning baseline; as in
open-unlearning's GradAscent). Unbounded: the step budget is its only brake."""

from __future__ import annotations

from dataclasses import dataclass

from unlearnbench.methods import RunContext, register_method
from unlearnbench.methods._loss_based import nll
from unlearnbench.methods._posthoc import all_parameter_names
from unlearnbench.methods.token_selection import apply_token_selection
from unlearnbench.training import Objective

# Shared by the three loss-based baselines. open-unlearning (TOFU): lr 1e-5, AdamW wd 0.01,
# 10 epochs of batch 8 with one warmup epoch, for 1B-8B models. Ours: at our 4-layer scale lr 1e-5
# barely moves the model in a CPU budget; 1e-4 for 100 steps moves the forget loss clearly
# (see the README's table).
LOSS_BASED_TRAIN_DEFAULTS = {
    "steps": 100,
    "lr": 1e-4,
    "batch_size": 8,
    "warmup_steps": 10,  # ours: 10% of the steps (open-unlearning: one of ten epochs)
    "weight_decay": 0.01,  # open-unlearning
    "beta2": 0.999,  # HF Trainer AdamW default
    "min_lr_ratio": 1.0,  # ours: constant after warmup
}


@dataclass(frozen=True)
class GradAscentOptions:
    forget_tokens: str = "all"  # per-token unlearning: "all" | "ratio" | "list" (ours)
    forget_token_list: tuple[str, ...] = ()  # "list": vocabulary entries or one-token texts
    forget_token_threshold: float = 0.5  # "ratio": ERA weight below this (ours: w = 1/2)
    # which positions: "target" (those predicting a selected token, as ERA routes) | "input"
    forget_token_position: str = "target"


@register_method(
    "grad-ascent",
    kind="posthoc",
    options=GradAscentOptions,
    train_defaults=LOSS_BASED_TRAIN_DEFAULTS,
)
def setup(ctx: RunContext, options: GradAscentOptions) -> Objective:
    """Gradient ascent: minimize -NLL on forget-labeled blocks; every parameter trains."""

    def loss(model, inputs, targets, label):
        assert label == "forget", label
        return -nll(model(input_ids=inputs).logits, targets)  # logits (B, T, V)

    obj = Objective(
        model=ctx.model,
        batch_plan={"forget": 8},  # open-unlearning: effective batch 8
        loss=loss,
        trainable=all_parameter_names(ctx.model),
        reduction="labels",
    )
    return apply_token_selection(ctx, obj, options)
