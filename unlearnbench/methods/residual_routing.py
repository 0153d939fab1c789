"""`residual-routing`: route chosen tokens' gradient to one residual-stream dimension (the steering
scalar of Cloud et al. 2024, "Gradient Routing", section on localizing a concept to a scalar).

Pretraining from scratch with a detach mask on the residual stream at the input of every routed
block: x' = m * x + (1 - m) * x.detach() (forward unchanged). At positions whose target (predicted
next token) is one of the routed tokens, m = 1 everywhere (their gradient is untouched); at every
other position m is 1 except on dimension `dim`, where it is 0. So dimension `dim` of the residual
stream is written to, and read from, only for the routed tokens' benefit: it becomes a scalar that
carries them. Labels are not used unless the token set is chosen from them (below).

Tokens: `tokens` (vocabulary entries or one-token texts, "_" for a leading space), or, when empty,
the `n_tokens` most forget-specific tokens of the labeled training blocks by ERA's frequency ratio.
At the end the record lists the vocabulary entries whose effective unembedding vectors
(head rows times the final layer norm's gain) have the largest cosine with the routed dimension's
unit vector, and where the routed tokens rank among them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from unlearnbench.data.packing import IGNORE
from unlearnbench.methods import RunContext, register_method
from unlearnbench.methods.routing import labeled_blocks, resolve_route_tokens
from unlearnbench.methods.token_selection import select_by_ratio
from unlearnbench.models.hidden import transformer_body
from unlearnbench.training import Objective


@dataclass(frozen=True)
class ResidualRoutingOptions:
    tokens: tuple[str, ...] = ()  # Cloud et al.: one concept token (" California")
    n_tokens: int = 1  # ours: when `tokens` is empty, the most forget-specific tokens by ERA ratio
    dim: int = 0  # Cloud et al.: the 0th residual dimension
    layers: tuple[int, ...] = ()  # blocks whose input is masked; empty = every block (ours)
    report_top: int = 20  # ours: nearest vocabulary entries listed in the record


def residual_mask(targets: torch.Tensor, token_ids: torch.Tensor, d: int, dim: int) -> torch.Tensor:
    """(B, T, d) float mask: 0 at (non-routed position, `dim`), 1 elsewhere."""
    routed = torch.isin(targets, token_ids.to(targets.device)) & (targets != IGNORE)  # (B, T)
    m = torch.ones(*targets.shape, d, device=targets.device)  # (B, T, d)
    m[..., dim] = routed.float()
    return m


def route(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Detach identity: forward value x, gradient scaled by m elementwise."""
    return m * x + (1 - m) * x.detach()


def routing_hooks(model, layers, mask: torch.Tensor) -> list:
    """Pre-hooks masking the residual stream entering each block of `layers`."""
    body = transformer_body(model)

    def hook(module, args, kwargs):
        if args:
            return (route(args[0], mask.to(args[0].dtype)),) + tuple(args[1:]), kwargs
        x = kwargs["hidden_states"]
        return args, {**kwargs, "hidden_states": route(x, mask.to(x.dtype))}

    return [body.h[li].register_forward_pre_hook(hook, with_kwargs=True) for li in layers]


def nearest_vocabulary(model, dim: int, top: int) -> tuple[list[int], torch.Tensor]:
    """Ids of the `top` entries whose effective unembedding has the largest cosine with e_dim,
    and the cosines of all entries (V,)."""
    with torch.no_grad():
        W = model.get_output_embeddings().weight.float()  # (V, d)
        gain = transformer_body(model).ln_f.weight.float()  # (d,)
        U = W * gain  # (V, d): the logit of v is U[v] . normalized residual (+ bias terms)
        cos = U[:, dim] / U.norm(dim=-1).clamp(min=1e-12)  # (V,)
    return torch.argsort(cos, descending=True)[:top].tolist(), cos


def choose_tokens(ctx, options: ResidualRoutingOptions) -> torch.Tensor:
    ids = resolve_route_tokens(ctx.benchmark.tokenizer, options.tokens)
    if ids is not None:
        return ids
    forget, retain = labeled_blocks(ctx, "forget"), labeled_blocks(ctx, "retain")
    if not len(forget) or not len(retain):
        raise ValueError("residual-routing without `tokens` needs labeled forget and retain data")
    ranked = select_by_ratio(
        forget, retain, ctx.model.config.vocab_size, ctx.benchmark.eos_id, threshold=1.01
    )
    return ranked[: options.n_tokens].sort().values


@register_method(
    "residual-routing",
    kind="training",
    options=ResidualRoutingOptions,
    train_defaults={
        # reference: kxcloud/gradient-routing projects/nanoGPT-factrep/california-steering-scalar.py
        # grad_clip = 1.0 (l.76, applied l.605-608)
        "grad_clip": 1.0,
        # reference: nanoGPT's configure_optimizers, no decay on biases and norms (model.py:517-523)
        "weight_decay_groups": "matrices",
    },
)
def setup(ctx: RunContext, options: ResidualRoutingOptions) -> Objective:
    """Residual-dimension routing: chosen tokens alone train one residual dimension."""
    model = ctx.model
    d, n = model.config.hidden_size, model.config.num_layers
    if not 0 <= options.dim < d:
        raise ValueError(f"dim {options.dim} outside 0..{d - 1}")
    layers = tuple(options.layers) or tuple(range(n))
    if not all(0 <= li < n for li in layers):
        raise ValueError(f"layers {layers} outside 0..{n - 1}")
    token_ids = choose_tokens(ctx, options)
    tokenizer = ctx.benchmark.tokenizer
    objective = Objective(model=model)

    def loss(m, inputs, targets, label):
        handles = routing_hooks(m, layers, residual_mask(targets, token_ids, d, options.dim))
        try:
            logits = m(input_ids=inputs).logits  # (B, T, V)
        finally:
            for h in handles:
                h.remove()
        return torch.nn.functional.cross_entropy(
            logits.float().flatten(0, 1), targets.flatten(), ignore_index=IGNORE
        )

    def finalize(m):
        top, cos = nearest_vocabulary(m, options.dim, options.report_top)
        order = torch.argsort(cos, descending=True)
        rank = {int(t): int((order == t).nonzero()) + 1 for t in token_ids}
        objective.extra_metrics["residual_routing"] = {
            "dim": options.dim,
            "routed_tokens": tokenizer.convert_ids_to_tokens(token_ids.tolist()),
            "routed_token_ranks": [rank[int(t)] for t in token_ids],
            "nearest": [
                [tok, round(float(cos[i]), 4)]
                for tok, i in zip(tokenizer.convert_ids_to_tokens(top), top, strict=True)
            ],
        }
        return m

    objective.loss = loss
    objective.finalize = finalize
    return objective
