"""`era`: Expand, Route, Ablate (Cloud et al. 2024, "Gradient Routing", TinyStories setting).

- Expand: append `expand_mlp_dim` units to the MLPs of the target layers (paper: 64 units in the
  first 5 of 8 layers). The original units keep their initialization; the added ones are
  initialized like the model (N(0, 0.02), zero bias).
- Route: on the post-activation MLP units of the target layers, per position, by the token being
  predicted (the target). Inside forget-labeled documents, target token t has weight
  w_t = 1 - sigmoid((r - 1/r) - 4), r = f_F(t) / f_R(t) from add-k smoothed unigram frequencies of
  the labeled-forget and labeled-retain training documents (k = 1 forget, 20 retain), and the mask is
  (1 - w_t) * m_target + w_t with m_target = 1 on the added units and -0.75 on the original ones
  (gradient ascent through them). Retain and unlabeled documents: all ones. The mask enters as the
  detach identity m * a + (1 - m) * a.detach(): the forward value is unchanged.
  With `route_tokens`, routed positions (target in the set) get w = 0, all others w = 1, whatever the
  document label (the virology experiment).
- L1 penalty on the target layers' activations (paper: 1e-4).
- Ablate: delete the added units; the model is a plain GPT-Neo of the original shape again.
- Coherence: fine-tune on one fixed batch of labeled-retain training blocks with THE training loop,
  measuring retain loss on other labeled-retain training blocks after every step, and keep the best
  step, the un-fine-tuned model (step 0) included.
Metrics: `pre_finalize` (expanded model), `post_ablation` (contracted, before coherence), the final
losses (after coherence), and `coherence` (best step and its selection loss).

Paper vs reference code: the paper expands only the target layers, the code every layer (only the
target layers routed); we follow the paper and offer the code's choice as `expand_all_layers` (the
added units of every layer are deleted at ablation, so the shape is the original). Adam betas: we
could not confirm either value, so the harness's (0.9, 0.95) apply; set `train.beta2` to change them.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass

import torch

from unlearnbench.data.packing import IGNORE, BlockGroup
from unlearnbench.losses import lm_loss, split_losses
from unlearnbench.methods import RunContext, register_method
from unlearnbench.methods._trainers import ERA_TRAINER
from unlearnbench.methods.routing import labeled_blocks, resolve_route_tokens, routed_positions
from unlearnbench.models.expand import contract_mlp, expand_mlp
from unlearnbench.training import Objective, train


@dataclass(frozen=True)
class ERAOptions:
    expand_mlp_dim: int = 64  # Cloud et al.: +64 MLP units per target layer
    layers: tuple[
        int, ...
    ] = ()  # target layers; empty = the first ceil(5/8 of them) (paper: 0-4 of 8)
    expand_all_layers: bool = False  # paper: target layers only; reference code: every layer
    original_scale: float = -0.75  # Cloud et al.: m_target on the original units (negative: ascent)
    forget_smoothing: float = 1.0  # Cloud et al.: add-k on forget unigram counts
    retain_smoothing: float = 20.0  # Cloud et al.: add-k on retain unigram counts
    weight_shift: float = 4.0  # Cloud et al.: w = 1 - sigmoid((r - 1/r) - 4)
    l1_coef: float = 1e-4  # Cloud et al.: L1 on the target layers' activations
    coherence_steps: int = 40  # Cloud et al.: up to 40 steps, best kept
    coherence_lr: float = 5e-5  # Cloud et al.: AdamW lr 5e-5
    coherence_weight_decay: float = 0.0  # ours: the paper states no weight decay for this phase
    # Cloud et al.: 64 retain stories (~12k GPT-2 tokens); ours: 16 blocks of the tiny preset's 256
    coherence_blocks: int = 16
    coherence_eval_blocks: int = 16  # ours: blocks of other retain documents to pick the best step
    route_tokens: tuple[
        str, ...
    ] = ()  # Cloud et al. virology: route by target token; empty = labels
    route_tokens_file: str = ""  # ours: the same, one token per line


# --- routing weights and masks -------------------------------------------------------------------


def unigram_counts(blocks: torch.Tensor, vocab_size: int, eos_id: int) -> torch.Tensor:
    """(V,) counts of the target tokens of (N, T + 1) blocks (each token once; separators not)."""
    targets = blocks[:, 1:].flatten()
    targets = targets[targets != eos_id]
    return torch.bincount(targets, minlength=vocab_size).double()


def token_weights(
    forget_counts: torch.Tensor,
    retain_counts: torch.Tensor,
    forget_smoothing: float = 1.0,
    retain_smoothing: float = 20.0,
    shift: float = 4.0,
) -> torch.Tensor:
    """(V,) w_t = 1 - sigmoid((r - 1/r) - shift), r = f_F / f_R of add-k smoothed frequencies.
    w near 0: a forget-specific token, routed fully; w near 1: a common token, hardly routed."""
    f_forget = (forget_counts + forget_smoothing) / (forget_counts + forget_smoothing).sum()
    f_retain = (retain_counts + retain_smoothing) / (retain_counts + retain_smoothing).sum()
    r = f_forget / f_retain
    return (1.0 - torch.sigmoid((r - 1.0 / r) - shift)).float()


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


# --- coherence -----------------------------------------------------------------------------------


def coherence_finetune(model, fit_blocks, eval_blocks, train_cfg, seed, eos_id, options):
    """Fine-tune on the fixed batch `fit_blocks` with THE loop; return the model at the step with the
    lowest retain loss on `eval_blocks` (step 0, the input model, included) and that step's info."""

    def retain_loss(m) -> float:
        losses = split_losses(m, {"retain": eval_blocks}, eos_id, None, train_cfg.device)
        return losses["retain"]

    if options.coherence_steps <= 0:
        return model, {"best_step": 0}
    best = {"step": 0, "loss": retain_loss(model), "state": copy.deepcopy(model.state_dict())}
    step = [0]

    def evaluate(m) -> dict:
        step[0] += 1
        loss = retain_loss(m)
        if loss < best["loss"]:
            best.update(step=step[0], loss=loss, state=copy.deepcopy(m.state_dict()))
        return {"retain": loss}

    cfg = dataclasses.replace(
        train_cfg,
        steps=options.coherence_steps,
        batch_size=len(fit_blocks),  # the full fixed batch every step
        lr=options.coherence_lr,
        weight_decay=options.coherence_weight_decay,
        warmup_steps=0,
        min_lr_ratio=1.0,  # constant learning rate
        eval_every=1,
    )
    group = BlockGroup("retain", "retain", False, fit_blocks)
    train(Objective(model=model), [group], cfg, seed, eos_id, evaluate=evaluate, progress=False)
    evaluate(model)  # the loop does not evaluate after its last step
    model.load_state_dict(best["state"])
    return model, {"best_step": best["step"], "retain_selection_loss": best["loss"]}


# --- the method ----------------------------------------------------------------------------------


def era_objective(model, options, weights, token_ids, seed, coherence) -> Objective:
    """ERA on `model` (expanded here), with per-token weights (V,) (or routed `token_ids`), and
    `coherence(model) -> (model, info)` run after contraction. `post_ablation(model)` metrics are
    recorded when `coherence` has an `evaluate` attribute (the run's evaluation)."""
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

    def finalize(m):
        m = contract_mlp(m)
        evaluate = getattr(coherence, "evaluate", None)
        if evaluate is not None:
            post = evaluate(m)
            objective.extra_metrics["post_ablation"] = {f"{s}_loss": v for s, v in post.items()}
        m, info = coherence(m)
        objective.extra_metrics["coherence"] = info
        return m

    objective.loss = loss
    objective.finalize = finalize
    return objective


# version 2: the reference trainer's defaults (no clipping, weight decay on every parameter)
@register_method("era", kind="training", options=ERAOptions, train_defaults=ERA_TRAINER, version=2)
def setup(ctx: RunContext, options: ERAOptions) -> Objective:
    """Expand-Route-Ablate: route forget tokens into added MLP units, delete them, fine-tune."""
    if options.expand_mlp_dim < 1:
        raise ValueError(f"expand_mlp_dim must be >= 1, got {options.expand_mlp_dim}")
    cfg, bench, model = ctx.config, ctx.benchmark, ctx.model
    vocab, eos = model.config.vocab_size, bench.eos_id
    token_ids = resolve_route_tokens(
        bench.tokenizer, options.route_tokens, options.route_tokens_file
    )
    retain = labeled_blocks(ctx, "retain")
    weights = None
    if token_ids is None:
        forget = labeled_blocks(ctx, "forget")
        if not len(forget) or not len(retain):
            raise ValueError("era needs labeled forget and labeled retain training documents")
        weights = token_weights(
            unigram_counts(forget, vocab, eos),
            unigram_counts(retain, vocab, eos),
            options.forget_smoothing,
            options.retain_smoothing,
            options.weight_shift,
        )
    # the coherence batch and its selection set: disjoint labeled-retain blocks, seeded order
    order = torch.randperm(len(retain), generator=torch.Generator().manual_seed(cfg.seed))
    fit = retain[order[: options.coherence_blocks]]
    held = retain[order[options.coherence_blocks :][: options.coherence_eval_blocks]]
    if options.coherence_steps > 0 and (not len(fit) or not len(held)):
        raise ValueError("era's coherence phase needs labeled retain blocks (or coherence_steps=0)")

    def coherence(m):
        return coherence_finetune(m, fit, held, cfg.train, cfg.seed, eos, options)

    coherence.evaluate = ctx.evaluate
    return era_objective(model, options, weights, token_ids, cfg.seed, coherence)
