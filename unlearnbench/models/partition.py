"""The forget/retain partition of a GPT-Neo, activation masking (per pass or per batch row), the
per-row weight-gradient masking of SGTM's one-pass step, and ablation.

In each masked block the MLP hidden units and the attention heads are split: retain first, forget
last (SGTM reference). theta_forget is

    mlp.c_fc.weight[r:], mlp.c_fc.bias[r:], mlp.c_proj.weight[:, r:]          r = d_mlp - forget_mlp_dim
    attn.{q,k,v}_proj.weight[rd:], attn.out_proj.weight[:, rd:]               rd = (H - forget_heads) * d_head

The output biases (`c_proj.bias`, `out_proj.bias`) belong to theta_retain. Embeddings, layer norms and
the head are joint (outside the split).
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from unlearnbench.models.arch import require_gpt_neo

# activation masking modes (see `activation_mode`)
MODES = ("plain", "zero_forget", "detach_retain", "zero_retain")


@dataclass(frozen=True)
class Partition:
    forget_mlp_dim: int
    forget_heads: int
    layers: tuple[int, ...]  # masked blocks

    @staticmethod
    def for_model(model, forget_mlp_dim: int, forget_heads: int, layers=None) -> Partition:
        require_gpt_neo(model, "the forget/retain partition")
        cfg = model.config
        d_mlp = cfg.intermediate_size or 4 * cfg.hidden_size
        if not 0 <= forget_mlp_dim < d_mlp:
            raise ValueError(f"forget_mlp_dim must be in [0, {d_mlp}), got {forget_mlp_dim}")
        if not 0 <= forget_heads < cfg.num_heads:
            raise ValueError(f"forget_heads must be in [0, {cfg.num_heads}), got {forget_heads}")
        layers = tuple(range(cfg.num_layers)) if layers is None else tuple(layers)
        bad = [i for i in layers if not 0 <= i < cfg.num_layers]
        if bad:
            raise ValueError(f"layers {bad} outside [0, {cfg.num_layers})")
        return Partition(forget_mlp_dim, forget_heads, layers)


def _dims(model, part: Partition) -> tuple[int, int]:
    cfg = model.config
    d_mlp = cfg.intermediate_size or 4 * cfg.hidden_size
    d_head = cfg.hidden_size // cfg.num_heads
    return d_mlp - part.forget_mlp_dim, (cfg.num_heads - part.forget_heads) * d_head


def forget_masks(model, part: Partition) -> dict[str, torch.Tensor]:
    """Boolean masks (True = theta_forget) for every parameter that the partition splits."""
    r, rd = _dims(model, part)
    masks: dict[str, torch.Tensor] = {}
    params = dict(model.named_parameters())
    for i in part.layers:
        p = f"transformer.h.{i}."
        for name, index in [
            ("mlp.c_fc.weight", (slice(r, None), slice(None))),
            ("mlp.c_fc.bias", (slice(r, None),)),
            ("mlp.c_proj.weight", (slice(None), slice(r, None))),
            ("attn.attention.q_proj.weight", (slice(rd, None), slice(None))),
            ("attn.attention.k_proj.weight", (slice(rd, None), slice(None))),
            ("attn.attention.v_proj.weight", (slice(rd, None), slice(None))),
            ("attn.attention.out_proj.weight", (slice(None), slice(rd, None))),
        ]:
            m = torch.zeros_like(params[p + name], dtype=torch.bool)
            m[index] = True
            masks[p + name] = m
    return masks


def retain_bias_names(model, part: Partition) -> list[str]:
    """The output biases of the masked blocks: outside the unit split but part of theta_retain."""
    return [
        f"transformer.h.{i}.{name}"
        for i in part.layers
        for name in ("mlp.c_proj.bias", "attn.attention.out_proj.bias")
    ]


def joint_parameter_names(model, part: Partition) -> list[str]:
    """Parameters outside the split that SGTM's `mask_embeddings` also freezes on forget data:
    embeddings and the masked blocks' layer norms (the tied head comes with wte)."""
    names = ["transformer.wte.weight", "transformer.wpe.weight"]
    for i in part.layers:
        for ln in ("ln_1", "ln_2"):
            names += [f"transformer.h.{i}.{ln}.weight", f"transformer.h.{i}.{ln}.bias"]
    return names


@torch.no_grad()
def ablate(model, part: Partition) -> nn.Module:
    """Zero theta_forget in place and return the model."""
    params = dict(model.named_parameters())
    for name, mask in forget_masks(model, part).items():
        params[name].masked_fill_(mask.to(params[name].device), 0.0)
    return model


@functools.lru_cache(maxsize=64)
def _unit_masks(n: int, start: int, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(keep, drop): (n,) with keep 1 on retain units and 0 on forget units, drop = 1 - keep.
    Built once per shape, device and dtype, not in every forward (never modified in place)."""
    with torch.inference_mode(False):  # cached tensors must be usable under autograd later
        keep = torch.ones(n, device=device, dtype=dtype)
        keep[start:] = 0.0
        return keep, 1.0 - keep


@contextlib.contextmanager
def activation_mode(model, part: Partition, mode: str):
    """Run the model's forward in a masking mode, for the duration of the block.

    - "plain": no change.
    - "zero_forget": forget MLP units are zeroed before the activation (gelu_new(0) = 0) and forget
      heads' outputs before `out_proj` (SGTM `retain` mode); theta_forget then gets exactly zero gradient.
    - "detach_retain": retain MLP pre-activations and retain heads' outputs are detached (gradient
      routing as in SGTM's comparison): forward unchanged, no gradient flows through them.
    - "zero_retain": retain MLP units and heads are zeroed (SGTM's activation masking).
    """
    assert mode in MODES, mode
    if mode == "plain" or not part.layers:
        yield model
        return

    def make_edit(start: int):
        def edit(x: torch.Tensor) -> torch.Tensor:  # x: (B, T, n) with retain units first
            keep, drop = _unit_masks(x.shape[-1], start, x.device, x.dtype)  # (n,) each
            return edit_units(x, mode, keep, drop)

        return edit

    with unit_hooks(model, part, make_edit):
        yield model


@contextlib.contextmanager
def row_modes(model, part: Partition, modes: list[str]):
    """`activation_mode` per batch row, in one forward: row b runs in `modes[b]`. Each row's units
    are edited exactly as its own pass would edit them (the same products), so a step's labels can
    share one forward/backward (gradient routing, activation masking, SGTM's retain rows)."""
    assert all(m in MODES for m in modes), modes
    if not part.layers or all(m == "plain" for m in modes):
        yield model
        return
    made: dict[tuple, tuple[torch.Tensor, torch.Tensor | None]] = {}  # built once per shape

    def row_masks(n: int, start: int, device, dtype):
        """(through, detached): (B, 1, n) each; a unit's value is x * (through + detached) = x,
        or 0 where both are 0; its gradient flows through `through` only (None: no detached)."""
        key = (n, start, device, dtype)
        if key not in made:
            keep, drop = _unit_masks(n, start, device, dtype)  # (n,) each
            ones, zeros = torch.ones_like(keep), torch.zeros_like(keep)
            table = {  # mode -> (through, detached)
                "plain": (ones, zeros),
                "zero_forget": (keep, zeros),
                "zero_retain": (drop, zeros),
                "detach_retain": (drop, keep),
            }
            through = torch.stack([table[m][0] for m in modes])[:, None]  # (B, 1, n)
            detached = torch.stack([table[m][1] for m in modes])[:, None]  # (B, 1, n)
            made[key] = (through, detached if "detach_retain" in modes else None)
        return made[key]

    def make_edit(start: int):
        def edit(x: torch.Tensor) -> torch.Tensor:  # x: (B, T, n) with retain units first
            through, detached = row_masks(x.shape[-1], start, x.device, x.dtype)
            assert len(through) == len(x), f"{len(modes)} row modes for {len(x)} rows"
            out = x * through
            return out if detached is None else out + x.detach() * detached

        return edit

    with unit_hooks(model, part, make_edit):
        yield model


class _RowMaskedLinear(torch.autograd.Function):
    """y = x W^T + b with the usual input gradient, and weight and bias gradients that take each
    batch row only where it may update. `side` "in" (c_fc, q/k/v: theta_forget is rows of W):
    `mask` (B, 1, o) masks the output gradient, in the weight's gradient g^T x and the bias's.
    "out" (c_proj, out_proj: theta_forget is columns of W): `mask` (B, 1, i) masks the input in
    g^T x, and `rows` (B,) the bias's gradient (the output bias is theta_retain). A masked product
    is an exact 0, so a masked slice's gradient is the sum over the other rows alone, as in their
    own pass."""

    @staticmethod
    def forward(ctx, x, weight, bias, side: str, mask, rows):  # x: (B, T, i), weight: (o, i)
        ctx.save_for_backward(x, weight, mask, rows)
        ctx.side, ctx.has_bias = side, bias is not None
        return F.linear(x, weight, bias)  # (B, T, o)

    @staticmethod
    def backward(ctx, g):  # g: (B, T, o)
        x, weight, mask, rows = ctx.saved_tensors
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = g @ weight  # (B, T, i): every row's gradient flows on to earlier layers
        g_w = g * mask if ctx.side == "in" else g  # (B, T, o)
        if ctx.needs_input_grad[1]:
            x_w = x * mask if ctx.side == "out" else x  # (B, T, i)
            gw = g_w.reshape(-1, g.shape[-1]).T @ x_w.reshape(-1, x.shape[-1])  # (o, i)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            if ctx.side == "in":
                gb = g_w.reshape(-1, g.shape[-1]).sum(0)  # (o,)
            else:  # summed over positions first, then the allowed rows
                gb = (g.sum(1) * rows[:, None]).sum(0)  # (o,)
        return gx, gw, gb, None, None, None


@contextlib.contextmanager
def theta_forget_rows(model, part: Partition, rows: torch.Tensor):
    """The batch rows where `rows` (B,) is True update only theta_forget, in one forward/backward
    with the other rows: their forward and the gradient they send to earlier layers are unchanged,
    but the masked linear maps' weight gradients take them only on the forget slices (the forget
    rows of c_fc and q/k/v, the forget columns of c_proj and out_proj), and the output biases
    (theta_retain) not at all. SGTM's forget rows, as a forget pass with theta_retain's gradient
    zeroed would give them, without the pass."""
    if not part.layers or not bool(rows.any()):
        yield model
        return
    r, rd = _dims(model, part)
    linears = []  # (module, index where its forget units begin, "in": rows of W | "out": columns)
    for i in part.layers:
        block, attn = model.transformer.h[i], model.transformer.h[i].attn.attention
        linears += [(block.mlp.c_fc, r, "in"), (block.mlp.c_proj, r, "out")]
        linears += [(getattr(attn, f"{n}_proj"), rd, "in") for n in ("q", "k", "v")]
        linears.append((attn.out_proj, rd, "out"))
    made: dict[tuple, torch.Tensor] = {}

    def retain_of_rows(n: int, start: int, device, dtype) -> torch.Tensor:
        """(B, 1, n): 0 at the retain units (< start) of the masked rows, 1 elsewhere."""
        key = (n, start, device, dtype)
        if key not in made:
            retain = torch.arange(n, device=device) < start  # (n,)
            hit = rows.to(device)[:, None] & retain[None, :]  # (B, n)
            made[key] = (~hit).to(dtype)[:, None]
        return made[key]

    def masked_forward(lin: nn.Linear, start: int, side: str, x: torch.Tensor) -> torch.Tensor:
        # autocast as nn.Linear has it: inputs cast to the autocast dtype, outside the function,
        # so the casts' backward returns the gradients in the parameters' own dtype
        kind = x.device.type
        dtype = torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else x.dtype
        x, w = x.to(dtype), lin.weight.to(dtype)
        b = lin.bias.to(dtype) if lin.bias is not None else None
        # "in": forget rows give the retain output units' weight rows and bias nothing; "out":
        # they reach only the forget input columns, and the output bias (theta_retain) not at all
        n = w.shape[0] if side == "in" else w.shape[1]
        mask = retain_of_rows(n, start, x.device, dtype)  # (B, 1, n)
        others = (~rows).to(x.device, dtype)  # (B,): 0 on the masked rows, for the output bias
        return _RowMaskedLinear.apply(x, w, b, side, mask, others)

    for lin, start, side in linears:  # an instance attribute shadows the class's forward
        lin.forward = functools.partial(masked_forward, lin, start, side)
    try:
        yield model
    finally:
        for lin, _, _ in linears:
            del lin.forward


def edit_units(x: torch.Tensor, mode: str, keep: torch.Tensor, drop: torch.Tensor) -> torch.Tensor:
    """One masking mode on units x (B, T, n), retain first; keep/drop (n,) from `_unit_masks`."""
    if mode == "zero_forget":
        return x * keep
    if mode == "zero_retain":
        return x * drop
    if mode == "detach_retain":
        return x.detach() * keep + x * drop  # value unchanged, no gradient into retain units
    return x


@contextlib.contextmanager
def unit_hooks(model, part: Partition, make_edit):
    """For the duration of the block, apply `make_edit(start)` to every masked block's MLP units
    before the activation (the output of `c_fc`) and to its heads' merged outputs (the input of
    `out_proj`); `start` is the index where the forget units begin."""
    r, rd = _dims(model, part)
    handles = []
    for i in part.layers:
        block = model.transformer.h[i]
        mlp_edit, attn_edit = make_edit(r), make_edit(rd)
        handles.append(block.mlp.c_fc.register_forward_hook(lambda m, a, out, f=mlp_edit: f(out)))
        handles.append(
            block.attn.attention.out_proj.register_forward_pre_hook(
                lambda m, args, f=attn_edit: (f(args[0]),) + tuple(args[1:])
            )
        )
    try:
        yield model
    finally:
        for h in handles:
            h.remove()
