"""`npo`: Negative Preference Optimization (Zhang et al. 2024) against the frozen base, with a retain
NLL term as in open-unlearning's NPO (the paper's NPO+RT; `alpha=0` gives plain NPO).

Per forget block y: -(2 / beta) * logsigmoid(-beta * (log p_theta(y) - log p_base(y))), with log p
the sum of its counted token log-probabilities; averaged over blocks. As beta -> 0 this tends to
gradient ascent on log p_theta; for finite beta the weight of each block's gradient decays as
p_theta(y) falls below p_base(y), which is what keeps NPO from collapsing as fast.
With per-token selection (`forget_tokens`, token_selection.py), log p of a block sums only its
selected tokens, for the model and the base alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from unlearnbench.methods import RunContext, register_method
from unlearnbench.methods._loss_based import (
    LOSS_BASED_TRAIN_DEFAULTS,
    nll,
    npo_loss,
    sequence_logprob,
)
from unlearnbench.methods._posthoc import all_parameter_names
from unlearnbench.methods.token_selection import apply_token_selection
from unlearnbench.models.hidden import frozen_copy
from unlearnbench.training import Objective


@dataclass(frozen=True)
class NPOOptions:
    beta: float = 0.1  # Zhang et al. 2024; open-unlearning trainer/NPO.yaml:6 "beta: 0.1"
    # retain NLL weight (0 = plain NPO, no retain data): NPO.yaml:7 "alpha: 1.0"
    alpha: float = 1.0
    gamma: float = 1.0  # forget-term weight: NPO.yaml:8 "gamma: 1.0"
    forget_tokens: str = "all"  # per-token unlearning: "all" | "ratio" | "list" (ours)
    forget_token_list: tuple[str, ...] = ()  # "list": vocabulary entries or one-token texts (ours)
    forget_token_threshold: float = 0.5  # "ratio": ERA weight below this (ours: w = 1/2)
    # which positions (ours): "target" (those predicting a selected token, as ERA routes) | "input"
    forget_token_position: str = "target"


# version 2: its default base, the no-filter run, now trains as the SGTM reference does
@register_method(
    "npo", kind="posthoc", options=NPOOptions, train_defaults=LOSS_BASED_TRAIN_DEFAULTS, version=2
)
def setup(ctx: RunContext, options: NPOOptions) -> Objective:
    """NPO: push forget blocks' likelihood below the frozen base's, bounded by a log-sigmoid."""
    if options.beta <= 0:
        raise ValueError(f"npo beta must be > 0, got {options.beta}")
    model = ctx.model
    reference = frozen_copy(model)

    def loss(m, inputs, targets, label):
        logits = m(input_ids=inputs).logits  # (B, T, V)
        if label == "retain":
            return options.alpha * nll(logits, targets)
        with torch.no_grad():
            ref_logits = reference(input_ids=inputs).logits  # (B, T, V)
        logp = sequence_logprob(logits, targets)  # (B,)
        logp_ref = sequence_logprob(ref_logits, targets)  # (B,)
        return options.gamma * npo_loss(logp, logp_ref, options.beta)

    plan = {"forget": 0.5, "retain": 0.5} if options.alpha > 0 else {"forget": 1.0}
    obj = Objective(
        model=model,
        batch_plan=plan,
        loss=loss,
        trainable=all_parameter_names(model),
        reduction="labels",
    )
    return apply_token_selection(ctx, obj, options)
