"""`era`: Expand, Route, Ablate (Cloud et al. 2024, "Gradient Routing", TinyStories setting).

- Expand: append `expand_mlp_dim` units to the MLPs of the target layers (paper: 64 units in the
  first 5 of 8 layers). The original units keep their initialization; the added ones are
  initialized like the model (N(0, 0.02), zero bias).
- Route: on the post-activation MLP units of the target layers, per position, by the token being
  predicted (the target). Inside forget-labeled documents, target token t has weight
  w_t = 1 - sigmoid((r - 1/r) - 4), r = f_F(t) / f_R(t) from add-k smoothed unigram frequencies of
  the labeled-forget and labeled-retain training blocks (k = 1 forget, 20 retain), and the mask is
  (1 - w_t) * m_target + w_t with m_target = 1 on the added units and -0.75 on the original ones
  (gradient ascent through them). Retain and unlabeled documents: all ones. The mask enters as the
  detach identity m * a + (1 - m) * a.detach(): the forward value is unchanged.
  With `route_tokens`, routed positions (target in the set) get w = 0, all others w = 1, whatever the
  document label (the virology experiment).
- L1 penalty on the target layers' activations (paper: 1e-4).
- Ablate: delete the added units; the model is a plain GPT-Neo of the original shape again.
- Coherence (`_coherence.py`): a training phase after contraction, on one fixed batch of
  labeled-retain training blocks, keeping the step with the lowest loss on other labeled-retain
  blocks, the un-fine-tuned model (step 0) included.
Phases: `era` (expand and route), then the finalize stages `contract` (measured: `post_ablation`)
and the `coherence` phase. Metrics: `pre_finalize` (expanded model), `post_ablation`, the final
losses (after coherence), and `coherence` (best step and its selection loss).

Token counts: the reference counts the unigrams of up to 25,000 true forget and 25,000 true retain
training stories (projects/tinystories/tinystories_era.py lines 318-323, the stories of
`split_and_label_stories_by_concept`, line 253, labeled or not). A method here never reads the
truth, so ours counts the labeled-forget and labeled-retain blocks (all of them by default: with
`retain_label_rate` 0.25, a quarter of the retain documents); `token_weight_blocks` = N counts N
of each instead (a seeded sample), the reference's equal amounts of forget and retain text.

Paper vs reference code: the paper expands only the target layers, the code every layer (only the
target layers routed); we follow the paper and offer the code's choice as `expand_all_layers` (the
added units of every layer are deleted at ablation, so the shape is the original). Optimizer and
schedule: the reference's (_trainers.py ERA_TRAINER: AdamW betas (0.9, 0.95), weight decay 0.1 on
every parameter, warmup from 0 over 100 steps, cosine to lr/10).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from unlearnbench.data.packing import IGNORE
from unlearnbench.losses import lm_loss
from unlearnbench.methods import Phase, Plan, RunContext, Stage, register_method
from unlearnbench.methods._coherence import CoherenceOptions, coherence_phase
from unlearnbench.methods._token_weights import token_weights, unigram_counts
from unlearnbench.methods._trainers import ERA_TRAINER
from unlearnbench.methods.routing import labeled_blocks, resolve_route_tokens, routed_positions
from unlearnbench.models.expand import contract_mlp, expand_mlp
from unlearnbench.training import Objective


@dataclass(frozen=True)
class ERAOptions(CoherenceOptions):  # the coherence phase's options first
    expand_mlp_dim: int = 64  # Cloud et al.: +64 MLP units per target layer
    # target layers; empty = the first ceil(5/8 of them): bulk_runs_for_paper.py:18 "layers_to_mask=[0,
    # 1, 2, 3, 4]," of 8 (Cloud et al. 2024, TinyStories section)
    layers: tuple[int, ...] = ()
    # Cloud et al. 2024 (TinyStories section): the target layers only; reference code: every layer
    expand_all_layers: bool = False
    original_scale: float = -0.75  # Cloud et al.: m_target on the original units (negative: ascent)
    forget_smoothing: float = 1.0  # Cloud et al.: add-k on forget unigram counts
    retain_smoothing: float = 20.0  # Cloud et al.: add-k on retain unigram counts
    weight_shift: float = 4.0  # Cloud et al.: w = 1 - sigmoid((r - 1/r) - 4)
    l1_coef: float = 1e-4  # Cloud et al.: L1 on the target layers' activations
    # reference (kxcloud/gradient-routing, tinystories_era.py, 0 = every labeled block, ours):
    # lines 318-323 count 25,000 forget and 25,000 retain stories; N: N labeled blocks of each
    token_weight_blocks: int = 0
    route_tokens: tuple[
        str, ...
    ] = ()  # Cloud et al. virology: route by target token; empty = labels
    route_tokens_file: str = ""  # ours: the same, one token per line


# --- routing weights and masks -------------------------------------------------------------------


def era_mask(w: torch.Tensor, m_target: torch.Tensor) -> torch.Tensor:
    """(B, T, n) = (1 - w) * m_target + w, for w (B, T) and m_target (n,)."""
    return (1.0 - w)[..., None] * m_target + w[..., None]


def target_layers(model, options: ERAOptions) -> tuple[int, ...]:
    n = model.config.num_layers
    layers = options.layers or tuple(range(math.ceil(5 * n / 8)))
    bad = [i for i in layers if not 0 <= i < n]
    if bad:
        raise ValueError(f"layers {bad} outside [0, {n})")
    return tuple(layers)


# --- the method ----------------------------------------------------------------------------------


def era_objective(model, options, weights, token_ids, seed) -> Objective:
    """ERA on `model` (expanded here), with per-token weights (V,) (or routed `token_ids`); its
    `finalize` contracts the model to its original shape."""
    layers = target_layers(model, options)
    d_mlp = model.config.intermediate_size or 4 * model.config.hidden_size
    expanded = tuple(range(model.config.num_layers)) if options.expand_all_layers else layers
    gen = torch.Generator().manual_seed(seed)
    expand_mlp(model, expanded, options.expand_mlp_dim, gen)
    device = next(model.parameters()).device
    m_target = torch.ones(d_mlp + options.expand_mlp_dim, device=device)  # (n,)
    m_target[:d_mlp] = options.original_scale
    weights = weights.to(device) if weights is not None else None
    objective = Objective(model=model)

    def loss(m, inputs, targets, label):
        counted = targets != IGNORE  # (B, T)
        if token_ids is not None:
            w = torch.where(routed_positions(targets, token_ids), 0.0, 1.0)  # (B, T)
        elif label == "forget":
            w = torch.where(counted, weights[targets.clamp(min=0)], 1.0)  # (B, T)
        else:
            w = None  # all-ones mask: nothing to edit
        mask = era_mask(w, m_target) if w is not None else None  # (B, T, n)
        acts = []

        def route(module, args):
            a = args[0]  # (B, T, n) post-activation MLP units
            acts.append(a)
            if mask is None:
                return None
            return (mask * a + (1.0 - mask) * a.detach(),) + tuple(args[1:])

        handles = [m.transformer.h[i].mlp.c_proj.register_forward_pre_hook(route) for i in layers]
        try:
            ce = lm_loss(m, inputs, targets)
        finally:
            for h in handles:
                h.remove()
        # L1 of each position's activation vector, averaged over counted positions, summed over
        # target layers; taken on the unmasked activations, so the penalty itself is not routed
        n = counted.sum().clamp(min=1)
        l1 = sum((a.float().abs().sum(-1) * counted).sum() / n for a in acts)
        return ce + options.l1_coef * l1

    objective.loss = loss
    objective.finalize = contract_mlp
    return objective


def sample_rows(blocks: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """`n` of the rows of `blocks` (all when n <= 0 or fewer exist), in a seeded order."""
    if n <= 0 or n >= len(blocks):
        return blocks
    order = torch.randperm(len(blocks), generator=torch.Generator().manual_seed(seed))
    return blocks[order[:n]]


# version 2: the reference trainer's defaults (no clipping, weight decay on every parameter),
# the reference's coherence optimizer. Version 3: the reference's schedule (warmup from 0, cosine
# to lr/10) and its 41 coherence steps
@register_method("era", kind="training", options=ERAOptions, train_defaults=ERA_TRAINER, version=3)
def setup(ctx: RunContext, options: ERAOptions) -> Plan:
    """Expand-Route-Ablate: route forget tokens into added MLP units, delete them, fine-tune."""
    if options.expand_mlp_dim < 1:
        raise ValueError(f"expand_mlp_dim must be >= 1, got {options.expand_mlp_dim}")
    cfg, bench, model = ctx.config, ctx.benchmark, ctx.model
    vocab, eos = model.config.vocab_size, bench.eos_id
    token_ids = resolve_route_tokens(
        bench.tokenizer, options.route_tokens, options.route_tokens_file
    )
    weights = None
    if token_ids is None:
        forget, retain = labeled_blocks(ctx, "forget"), labeled_blocks(ctx, "retain")
        if not len(forget) or not len(retain):
            raise ValueError("era needs labeled forget and labeled retain training documents")
        n = options.token_weight_blocks
        weights = token_weights(
            unigram_counts(sample_rows(forget, n, cfg.seed), vocab, eos),
            unigram_counts(sample_rows(retain, n, cfg.seed), vocab, eos),
            options.forget_smoothing,
            options.retain_smoothing,
            options.weight_shift,
        )
    coherence = coherence_phase(ctx, options)  # checked before any training
    objective = era_objective(model, options, weights, token_ids, cfg.seed)
    return Plan(
        phases=[Phase("era", objective)],
        finalize=[Stage("contract", contract_mlp, evaluate="post_ablation")]
        + ([coherence] if coherence else []),
        metrics={} if coherence else {"coherence": {"best_step": 0}},
    )
