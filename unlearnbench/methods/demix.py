"""`demix`: the DEMix baseline of Cloud et al. 2024 (after Gururangan et al. 2021).

Every block's MLP becomes two experts of the MLP's size, `retain` and `forget`. Hard routing by
document label, one expert per forward pass: forget-labeled documents use only the forget expert,
all other documents (retain, unlabeled) only the retain expert, so forget data never updates the
retain expert and the reverse. With `route_tokens`, the choice is per position instead: positions
whose target is routed use the forget expert, all others the retain expert.
Outside training the forget expert is active; `pre_finalize` measures forget loss with the forget
expert and the other splits with the retain expert, as the reference evaluates (kxcloud/
gradient-routing, projects/tinystories/tinystories_era.py lines 38-62: `eval_on_validation` sets
the forget expert for the forget stories and the retain expert for the retain stories, called
with DEMix's expert switch at lines 639-645). Finalize keeps the retain expert (`ablate`, measured
as `post_ablation`): a plain GPT-Neo of the original shape; then the same coherence phase as ERA's
(reference: lines 656-763 run it for DEMix too, 41 steps as for ERA, bulk_runs_for_paper.py
line 61; see `_coherence.py`).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn
from transformers.models.gpt_neo.modeling_gpt_neo import GPTNeoMLP

from unlearnbench.losses import lm_loss
from unlearnbench.methods import Phase, Plan, RunContext, Stage, register_method
from unlearnbench.methods._coherence import CoherenceOptions, coherence_phase
from unlearnbench.methods._trainers import ERA_TRAINER
from unlearnbench.methods.routing import resolve_route_tokens, routed_positions
from unlearnbench.training import Objective


@dataclass(frozen=True)
class DEMixOptions(CoherenceOptions):  # the coherence phase's options first
    route_tokens: tuple[
        str, ...
    ] = ()  # Cloud et al. virology: route by target token; empty = labels
    route_tokens_file: str = ""  # ours: the same, one token per line


class TwoExperts(nn.Module):
    """A retain and a forget MLP expert; `route` picks one ("retain" | "forget") or, as a (B, T)
    bool tensor, the forget expert at True positions and the retain expert elsewhere."""

    def __init__(self, retain: nn.Module, forget: nn.Module):
        super().__init__()
        self.retain, self.forget = retain, forget
        self.route: str | torch.Tensor = "forget"

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, d)
        if isinstance(self.route, torch.Tensor):
            sel = self.route[..., None]  # (B, T, 1)
            return torch.where(sel, self.forget(x), self.retain(x))  # (B, T, d)
        return self.forget(x) if self.route == "forget" else self.retain(x)


@torch.no_grad()
def add_forget_experts(model, seed: int):
    """Wrap every block's MLP (kept as the retain expert) with a fresh forget expert of the same
    size, initialized like the model (N(0, initializer_range), zero bias)."""
    cfg = model.config
    gen = torch.Generator().manual_seed(seed)
    for block in model.transformer.h:
        retain = block.mlp
        forget = GPTNeoMLP(retain.c_fc.out_features, cfg).to(retain.c_fc.weight.device)
        for lin in (forget.c_fc, forget.c_proj):
            w = torch.randn(lin.weight.shape, generator=gen) * cfg.initializer_range
            lin.weight.copy_(w.to(lin.weight))
            lin.bias.zero_()
        block.mlp = TwoExperts(retain, forget)
    return model


def keep_retain_experts(model):
    """Replace every TwoExperts by its retain expert: a plain GPT-Neo again."""
    for block in model.transformer.h:
        if isinstance(block.mlp, TwoExperts):
            block.mlp = block.mlp.retain
    return model


@contextlib.contextmanager
def routed(model, route):
    experts = [b.mlp for b in model.transformer.h]
    for e in experts:
        e.route = route
    try:
        yield model
    finally:
        for e in experts:
            e.route = "forget"  # outside training: the forget expert is active (pre-ablation)


def expert_for_split(model):
    """The evaluation mode of the expanded model: the forget expert on forget test blocks, the
    retain expert on every other split (as the reference evaluates)."""

    def mode(split: str):
        return routed(model, "forget" if split == "forget" else "retain")

    return mode


# version 2: the reference trainer's defaults (no clipping, weight decay on every parameter),
# a coherence phase, pre-finalize retain loss with the retain expert. Version 3: the reference's
# schedule (warmup from 0, cosine to lr/10) and its 41 coherence steps
@register_method(
    "demix", kind="training", options=DEMixOptions, train_defaults=ERA_TRAINER, version=3
)
def setup(ctx: RunContext, options: DEMixOptions) -> Plan:
    """DEMix: one MLP expert per label, hard routing by document label; keep the retain expert."""
    model = add_forget_experts(ctx.model, ctx.config.seed)
    token_ids = resolve_route_tokens(
        ctx.benchmark.tokenizer, options.route_tokens, options.route_tokens_file
    )

    def loss(m, inputs, targets, label):
        if token_ids is not None:
            route = routed_positions(targets, token_ids)  # (B, T)
        else:
            route = "forget" if label == "forget" else "retain"
        with routed(m, route):
            return lm_loss(m, inputs, targets)

    coherence = coherence_phase(ctx, options)  # checked before any training
    # finalize always drops the forget expert: the record's model must be a plain GPT-Neo
    objective = Objective(model=model, loss=loss, finalize=keep_retain_experts)
    return Plan(
        phases=[Phase("demix", objective)],
        finalize=[Stage("ablate", keep_retain_experts, evaluate="post_ablation")]
        + ([coherence] if coherence else []),
        metrics={} if coherence else {"coherence": {"best_step": 0}},
        pre_finalize_mode=expert_for_split(model),
    )
