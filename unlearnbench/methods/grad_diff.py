"""`grad-diff`: gradient difference, ascent on forget-labeled data and descent on retain-labeled
data (open-unlearning's GradDiff: gamma * (-NLL_forget) + alpha * NLL_retain, gamma = alpha = 1)."""

from __future__ import annotations

from dataclasses import dataclass

from unlearnbench.methods import RunContext, register_method
from unlearnbench.methods._loss_based import LOSS_BASED_TRAIN_DEFAULTS, nll
from unlearnbench.methods._posthoc import all_parameter_names
from unlearnbench.methods.token_selection import apply_token_selection
from unlearnbench.training import Objective


@dataclass(frozen=True)
class GradDiffOptions:
    gamma: float = 1.0  # weight of the forget (ascent) term: GradDiff.yaml:6 "gamma: 1.0"
    alpha: float = 1.0  # weight of the retain NLL term: GradDiff.yaml:7 "alpha: 1.0"
    forget_tokens: str = "all"  # per-token unlearning: "all" | "ratio" | "list" (ours)
    forget_token_list: tuple[str, ...] = ()  # "list": vocabulary entries or one-token texts (ours)
    forget_token_threshold: float = 0.5  # "ratio": ERA weight below this (ours: w = 1/2)
    # which positions (ours): "target" (those predicting a selected token, as ERA routes) | "input"
    forget_token_position: str = "target"


def grad_diff_loss(logits, targets, label: str, gamma: float, alpha: float):
    """The label's term: -gamma * NLL on forget blocks, alpha * NLL on retain blocks."""
    return -gamma * nll(logits, targets) if label == "forget" else alpha * nll(logits, targets)


# version 2: its default base, the no-filter run, now trains as the SGTM reference does
@register_method(
    "grad-diff",
    kind="posthoc",
    options=GradDiffOptions,
    train_defaults=LOSS_BASED_TRAIN_DEFAULTS,
    version=2,
)
def setup(ctx: RunContext, options: GradDiffOptions) -> Objective:
    """Gradient difference: ascend on forget-labeled blocks, descend on retain-labeled blocks."""

    def loss(model, inputs, targets, label):
        logits = model(input_ids=inputs).logits  # (B, T, V)
        return grad_diff_loss(logits, targets, label, options.gamma, options.alpha)

    obj = Objective(
        model=ctx.model,
        batch_plan={"forget": 0.5, "retain": 0.5},  # ours: half of the batch each
        loss=loss,
        trainable=all_parameter_names(ctx.model),
        reduction="labels",
    )
    return apply_token_selection(ctx, obj, options)
