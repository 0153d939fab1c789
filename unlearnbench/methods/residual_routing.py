"""`residual-routing`: route chosen tokens' gradient to one residual-stream dimension (the steering
scalar of Cloud et al. 2024, "Gradient Routing", section on localizing a concept to a scalar;
kxcloud/gradient-routing projects/nanoGPT-factrep/california-steering-scalar.py and its model.py).

Pretraining from scratch with a detach mask on the residual stream at the OUTPUT of each routed
block: x' = m * x + (1 - m) * x.detach() (forward unchanged; model.py:214-215). At positions whose
target (predicted next token) is one of the routed tokens, m is 1 on dimension `dim` and 0 on every
other dimension, so there the residual stream passes gradient only through `dim`; at every other
position m = 1 (no masking at all). The routed tokens' gradient (and any gradient reaching their
positions' residual) is thereby confined to dimension `dim` of the routed blocks' outputs, so
that dimension becomes a scalar that carries the concept. Labels are not used unless the token set
is chosen from them (below).

Blocks: the reference masks blocks 6-18 of a 16-block model (`blocks_to_mask`, which names block
10 twice and blocks 16-18 that do not exist): blocks 6..15, the blocks after the first 6/16 of the
depth. `layers` empty keeps that proportion: blocks floor(6 L / 16) .. L - 1, i.e. blocks 1-3 of a
4-block model (`tiny`) and blocks 2-5 of a 6-block one (see `default_layers`).

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
from unlearnbench.models import arch
from unlearnbench.training import Objective


@dataclass(frozen=True)
class ResidualRoutingOptions:
    # one concept token, california-steering-scalar.py:234 " California"; empty = chosen below
    tokens: tuple[str, ...] = ()
    n_tokens: int = 1  # ours: when `tokens` is empty, the most forget-specific tokens by ERA ratio
    # california-steering-scalar.py:248 "resid_dims_to_mask=[[0], list(range(n_embd))]"
    dim: int = 0
    # blocks whose output is masked; empty = the reference's range in proportion to depth
    # (california-steering-scalar.py:245 "blocks_to_mask=[6, 7, 8, 9, 10, 10, 11, 12, 13, 14, 15,"
    # with n_layer 16: blocks 6..15), see default_layers
    layers: tuple[int, ...] = ()
    report_top: int = 20  # ours: nearest vocabulary entries listed in the record


# the reference's first masked block over its depth: 6 of 16 blocks
REFERENCE_FIRST, REFERENCE_DEPTH = 6, 16


def default_layers(n: int) -> tuple[int, ...]:
    """The reference's masked blocks scaled to n blocks: floor(6 n / 16) .. n - 1 (16 -> 6..15,
    6 -> 2..5, 4 -> 1..3). Flooring keeps at least the reference's fraction of blocks masked."""
    return tuple(range(n * REFERENCE_FIRST // REFERENCE_DEPTH, n))


def residual_mask(targets: torch.Tensor, token_ids: torch.Tensor, d: int, dim: int) -> torch.Tensor:
    """(B, T, d) float mask: at routed positions one-hot on `dim`, elsewhere all ones.

    The reference's mask ids are chosen by target (california-steering-scalar.py:574 "mask_idxs =
    mask_rule(Y)"); id 0 (the routed token) selects dims [0], the rest list(range(n_embd))."""
    routed = torch.isin(targets, token_ids.to(targets.device)) & (targets != IGNORE)  # (B, T)
    m = torch.ones(*targets.shape, d, device=targets.device)  # (B, T, d)
    m[routed] = 0.0
    m[..., dim][routed] = 1.0
    return m


def route(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Detach identity: forward value x, gradient scaled by m elementwise (model.py:215)."""
    return m * x + (1 - m) * x.detach()


def routing_hooks(model, layers, mask: torch.Tensor) -> list:
    """Forward hooks masking the residual stream leaving each block of `layers` (the reference's
    Block.forward applies the mask after the MLP's residual add, model.py:213-215)."""
    stack = arch.blocks(model)

    def hook(module, args, output):
        if isinstance(output, tuple):
            x = output[0]
            return (route(x, mask.to(x.dtype)),) + tuple(output[1:])
        return route(output, mask.to(output.dtype))

    return [stack[li].register_forward_hook(hook) for li in layers]


def nearest_vocabulary(model, dim: int, top: int) -> tuple[list[int], torch.Tensor]:
    """Ids of the `top` entries whose effective unembedding has the largest cosine with e_dim,
    and the cosines of all entries (V,)."""
    with torch.no_grad():
        W = model.get_output_embeddings().weight.float()  # (V, d)
        gain = arch.final_norm(model).weight.float()  # (d,)
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


# version 2: the reference's rule (routed positions pass gradient only through `dim`, at the
# outputs of the blocks after the first 6/16 of the depth); version 1 masked `dim` at the other
# positions, at every block's input: the inverse
@register_method(
    "residual-routing",
    kind="training",
    options=ResidualRoutingOptions,
    version=2,
    train_defaults={
        # kxcloud/gradient-routing projects/nanoGPT-factrep/california-steering-scalar.py:76
        # "grad_clip = 1.0  # clip gradients at this value" (applied :605-608)
        "grad_clip": 1.0,
        # nanoGPT's configure_optimizers: no decay on biases and norms, model.py:520 "nodecay_params
        # = [p for n, p in param_dict.items() if p.dim() < 2]"
        "weight_decay_groups": "matrices",
    },
)
def setup(ctx: RunContext, options: ResidualRoutingOptions) -> Objective:
    """Residual-dimension routing: chosen tokens alone train one residual dimension."""
    model = ctx.model
    d, n = model.config.hidden_size, model.config.num_layers
    if not 0 <= options.dim < d:
        raise ValueError(f"dim {options.dim} outside 0..{d - 1}")
    layers = tuple(options.layers) or default_layers(n)
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
