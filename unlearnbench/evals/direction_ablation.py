"""`direction-ablation` ("clear the junk"): for representation methods (RMU, circuit breakers).

At each layer the method steered (from the run's `method_options`: `layer`, or `layers` /
`target_layers`), estimate the direction it added as the mean difference of block outputs on
forget training blocks between the unlearned model and its base, project that unit direction out
of the block's output at inference, and measure the losses again. A removal that this undoes was
shallow (Arditi 2024: RMU floods the residual stream with one large direction on hazardous inputs).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from unlearnbench.evals import (
    HIGHER,
    EvalContext,
    EvalResult,
    Metric,
    documents_of_split,
    groups_from_documents,
    register_eval,
)
from unlearnbench.losses import split_losses
from unlearnbench.models import arch
from unlearnbench.models.hidden import block_outputs


@dataclass(frozen=True)
class DirectionAblationOptions:
    n_blocks: int = 32  # ours: forget training blocks for the mean difference
    micro_batch_size: int = 8


def method_layers(record: dict, n_layers: int) -> list[int]:
    """The steered layers recorded in the run's method options ([] if none)."""
    opts = record["config"].get("method_options", {})
    layers: list[int] = []
    if isinstance(opts.get("layer"), int):
        # RMU's rule for layer -1: the middle block (unlearnbench.methods.rmu.resolve_layer)
        layers.append(n_layers // 2 if opts["layer"] < 0 else opts["layer"])
    for key in ("layers", "target_layers"):
        if isinstance(opts.get(key), list | tuple):
            layers += [int(x) for x in opts[key]]
    if record.get("method") == "circuit-breakers" and not opts.get("target_layers"):
        # empty = the method's default target layers
        from unlearnbench.methods.circuit_breakers import default_target_layers

        layers += list(default_target_layers(n_layers))
    return sorted(set(layers))


@torch.no_grad()
def estimate_directions(model, base, blocks: torch.Tensor, layers, micro_batch_size: int = 8):
    """{layer: (unit direction (d,), norm of the mean difference)} of h_l(model) - h_l(base) over
    every position of `blocks` (N, T + 1)."""
    sums: dict[int, torch.Tensor] = {}
    count = 0
    device = next(model.parameters()).device
    for m in (model, base):
        m.eval()
    for i in range(0, len(blocks), micro_batch_size):
        inputs = blocks[i : i + micro_batch_size, :-1].to(device)  # (B, T)
        h = block_outputs(model, inputs, layers)
        h0 = block_outputs(base, inputs, layers)
        for layer in layers:
            diff = (h[layer] - h0[layer]).float().sum(dim=(0, 1))  # (d,)
            sums[layer] = sums.get(layer, 0) + diff
        count += inputs.numel()
    out = {}
    for layer in layers:
        mean = sums[layer] / count  # (d,)
        norm = float(mean.norm())
        assert norm > 0, f"the model and its base agree at layer {layer}: no direction to ablate"
        out[layer] = (mean / norm, norm)
    return out


@contextlib.contextmanager
def projected_out(model, directions: dict[int, torch.Tensor]):
    """Within the block, every block l in `directions` has its output projected off the unit
    direction: h <- h - (h . u) u."""
    stack = arch.blocks(model)

    def hook(u):
        def fn(module, args, output):
            h = output[0] if isinstance(output, tuple) else output  # (B, T, d)
            v = u.to(h.dtype)
            h = h - (h @ v)[..., None] * v  # (B, T, d)
            return (h, *output[1:]) if isinstance(output, tuple) else h

        return fn

    handles = [stack[i].register_forward_hook(hook(u)) for i, u in directions.items()]
    try:
        yield model
    finally:
        for h in handles:
            h.remove()


def _load_base(ctx: EvalContext):
    from unlearnbench.models.build import load_model
    from unlearnbench.models.compat import check_compatible

    base = ctx.record.get("base")
    if not base:
        return None
    if ctx.store.exists(base):
        base = ctx.store.load(base)["model_path"]
    return check_compatible(load_model(base), base, ctx.benchmark, "base model").to(ctx.device)


@register_eval(
    "direction-ablation",
    options=DirectionAblationOptions,
    metrics=[
        Metric(
            "forget_loss",
            HIGHER,
            lambda s: (s.get("ablated") or {}).get("forget_loss"),
            "forget after direction ablation",
        )
    ],
)
def run(ctx: EvalContext, options: DirectionAblationOptions) -> EvalResult:
    """Project out the direction a representation method added at its layer; losses again."""
    layers = method_layers(ctx.record, arch.num_blocks(ctx.model))
    if not layers:
        return EvalResult({"applicable": False, "reason": "the method records no steered layer"})
    base = _load_base(ctx)
    if base is None:
        return EvalResult({"applicable": False, "reason": "the run records no base model"})
    docs = documents_of_split(ctx.benchmark, "forget")
    blocks = groups_from_documents(
        ctx.benchmark, {"forget": docs[: 4 * options.n_blocks]}, ctx.context
    )
    blocks = blocks[0].blocks[: options.n_blocks]
    dirs = estimate_directions(ctx.model, base, blocks, layers, options.micro_batch_size)
    evaluate = lambda m: split_losses(m, ctx.eval_blocks, ctx.eos_id, None, ctx.device)  # noqa: E731
    before = evaluate(ctx.model)
    with projected_out(ctx.model, {i: u for i, (u, _) in dirs.items()}):
        after = evaluate(ctx.model)
    return EvalResult(
        {
            "layers": layers,
            "direction_norm": {str(i): n for i, (_, n) in dirs.items()},
            "before": {f"{s}_loss": v for s, v in before.items()},
            "ablated": {f"{s}_loss": v for s, v in after.items()},
            "base": {f"{s}_loss": v for s, v in evaluate(base).items()},
        }
    )
