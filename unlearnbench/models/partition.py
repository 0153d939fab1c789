"""The forget/retain partition of a GPT-Neo, activation masking per pass, the one-pass step that
runs each batch row as its own pass would (activations and weight gradients), and ablation.

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


# --- one pass of mixed rows: each batch row as its own pass would run it ----------------------
#
# A row's pass, on one side of a partitioned linear map (its units: retain [:s], forget [s:]), as
# (retain, forget) flags: the units whose VALUES pass the edit point (the others are zeroed), those
# THROUGH which gradient flows back to the map's input, and those whose weights it UPDATES. The edit
# point is c_fc's output and out_proj's input, where `activation_mode` edits a whole pass.
_PASS = {  # activation mode -> (values, through)
    "plain": ((True, True), (True, True)),
    "zero_forget": ((True, False), (True, False)),
    "zero_retain": ((False, True), (False, True)),
    "detach_retain": ((True, True), (False, True)),
}


def _runs(flags: list) -> list[tuple[int, int, object]]:
    """Maximal runs of equal entries: [(first row, end row, entry)]."""
    out: list[tuple[int, int, object]] = []
    for b, f in enumerate(flags):
        if out and out[-1][2] == f:
            out[-1] = (out[-1][0], b + 1, f)
        else:
            out.append((b, b + 1, f))
    return out


def _on(flags: list[bool]) -> list[tuple[int, int, bool]]:
    """The runs of rows whose flag is True."""
    return [run for run in _runs(flags) if run[2]]


@dataclass(frozen=True)
class _RowPlan:
    """What one partitioned linear map does with each row of a micro-batch, as runs of rows.
    side "out": the units are the map's outputs (W's rows: c_fc, q/k/v); "in": its inputs (W's
    columns: c_proj, out_proj). `value` and `through`: [(a, b, (retain, forget))]; `update`:
    (retain rows, forget rows) that update each side's weights, as [(a, b, True)]; `bias`: the rows
    that update an output bias (side "in"; on side "out" the bias follows its units)."""

    side: str
    value: list
    through: list
    update: tuple[list, list]
    bias: list

    @staticmethod
    def make(side: str, edit: bool, modes: list[str], forget_only: list[bool]) -> _RowPlan:
        both = (True, True)
        value = [_PASS[m][0] if edit else both for m in modes]
        through = [_PASS[m][1] if edit else both for m in modes]
        # the weights a row reaches: on side "out" through its output gradient (an edited unit
        # passes none), on side "in" through its input values; SGTM's forget rows: forget only
        reach = through if side == "out" else value
        update = [(r and not fo, f) for (r, f), fo in zip(reach, forget_only, strict=True)]
        retain, forget = ([u[k] for u in update] for k in (0, 1))
        bias = [not fo for fo in forget_only]
        return _RowPlan(side, _runs(value), _runs(through), (_on(retain), _on(forget)), _on(bias))

    def plain(self, n: int) -> bool:
        """True when every row runs as a plain pass would (then nn.Linear itself runs)."""
        whole = [(0, n, (True, True))]
        return (
            self.value == whole
            and self.through == whole
            and self.update == ([(0, n, True)], [(0, n, True)])
            and self.bias == [(0, n, True)]
        )


def _mm_sum(out: torch.Tensor, terms: list) -> None:
    """out = the sum of the products a @ b over `terms` [(a, b)], in place (0 when none). Below
    float32 (bf16 autocast) the products are summed in float32 and rounded once, as the per-label
    passes' gradients are (each pass's product rounded, their sum taken in the fp32 parameters')."""
    if not terms:
        out.zero_()
    elif len(terms) == 1 or out.dtype in (torch.float32, torch.float64):
        for k, (a, b) in enumerate(terms):
            torch.mm(a, b, out=out) if k == 0 else out.addmm_(a, b)
    else:
        out.copy_(sum(torch.mm(a, b).float() for a, b in terms))


class _PartitionLinear(torch.autograd.Function):
    """y = x W^T + b for a micro-batch whose rows run in different passes (`_RowPlan`), in one
    forward/backward without elementwise masks: a row's edited units are zeroed in place (output
    side) or left out of its products (input side), and every gradient is a sum of matrix products
    over the rows (and unit slices) allowed to contribute. A row left out contributes nothing, so
    a masked slice gets exactly the other rows' sum, as in their own passes."""

    @staticmethod
    def forward(ctx, x, weight, bias, plan: _RowPlan, s: int):  # x: (B, T, i), weight: (o, i)
        ctx.save_for_backward(x, weight)
        ctx.plan, ctx.s, ctx.has_bias = plan, s, bias is not None
        B, T, i = x.shape
        if plan.side == "out":  # the units are outputs: compute all, zero the edited ones
            y = F.linear(x, weight, bias)  # (B, T, o)
            for a, b, (r, f) in plan.value:
                if not r:
                    y[a:b, :, :s] = 0.0
                if not f:
                    y[a:b, :, s:] = 0.0
            return y
        if plan.value == [(0, B, (True, True))]:
            return F.linear(x, weight, bias)
        y = x.new_empty(B * T, weight.shape[0])  # (B T, o)
        x2 = x.reshape(B * T, i)
        for a, b, (r, f) in plan.value:  # each run with its edited input units zeroed
            xs = x2[a * T : b * T]
            if not (r and f):  # a copy of the run's rows, its edited units zeroed
                xs = xs.clone()
                if not r:
                    xs[:, :s] = 0.0
                if not f:
                    xs[:, s:] = 0.0
            if bias is None:
                torch.mm(xs, weight.t(), out=y[a * T : b * T])
            else:
                torch.addmm(bias, xs, weight.t(), out=y[a * T : b * T])
        return y.view(B, T, -1)

    @staticmethod
    def backward(ctx, g):  # g: (B, T, o)
        x, weight = ctx.saved_tensors
        plan, s = ctx.plan, ctx.s
        B, T, i = x.shape
        o = weight.shape[0]
        g2, x2 = g.reshape(B * T, o), x.reshape(B * T, i)

        def rows(a: int, b: int) -> slice:  # batch rows a..b -> their rows of g2 and x2
            return slice(a * T, b * T)

        units = (slice(0, s), slice(s, None))  # retain, forget
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:  # each row's gradient through the units it lets through
            if plan.through == [(0, B, (True, True))]:
                gx = g @ weight  # (B, T, i)
            else:
                gx2 = x2.new_empty(B * T, i)
                for a, b, keep in plan.through:
                    gr, gg = gx2[rows(a, b)], g2[rows(a, b)]
                    if all(keep):
                        torch.mm(gg, weight, out=gr)
                    elif plan.side == "in":  # the units are gx's columns: the others get 0
                        for u, on in zip(units, keep, strict=True):
                            torch.mm(gg, weight[:, u], out=gr[:, u]) if on else gr[:, u].zero_()
                    else:  # the units are g's columns: only theirs flows back
                        terms = [(gg[:, u], weight[u]) for u, on in zip(units, keep, strict=True)]
                        _mm_sum(gr, [t for t, on in zip(terms, keep, strict=True) if on])
                gx = gx2.view(B, T, i)
        if ctx.needs_input_grad[1]:  # each side's weights from the rows that may update them
            gw = weight.new_empty(weight.shape)  # (o, i)
            for u, runs in zip(units, plan.update, strict=True):
                if plan.side == "out":  # W's rows
                    terms = [(g2[rows(a, b), u].t(), x2[rows(a, b)]) for a, b, _ in runs]
                    _mm_sum(gw[u], terms)
                else:  # W's columns
                    terms = [(g2[rows(a, b)].t(), x2[rows(a, b), u]) for a, b, _ in runs]
                    _mm_sum(gw[:, u], terms)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            gb = g2.new_zeros(o, dtype=torch.promote_types(g2.dtype, torch.float32))  # `_mm_sum`
            if plan.side == "out":  # the bias follows its units
                for u, runs in zip(units, plan.update, strict=True):
                    for a, b, _ in runs:
                        gb[u] += g2[rows(a, b), u].sum(0)
            else:
                for a, b, _ in plan.bias:
                    gb += g2[rows(a, b)].sum(0)
            gb = gb.to(g2.dtype)
        return gx, gw, gb, None, None


@contextlib.contextmanager
def row_modes(model, part: Partition, modes: list[str], forget_only: list[bool] | None = None):
    """`activation_mode` per batch row, in one forward/backward: row b runs in `modes[b]`, and a row
    with `forget_only[b]` (SGTM's forget rows) updates theta_forget only: its forward and the
    gradient it sends to earlier layers are unchanged, but it reaches only the forget slices of the
    masked linear maps (the forget rows of c_fc and q/k/v, the forget columns of c_proj and
    out_proj) and not the output biases (theta_retain). Each row's values are its own pass's, and
    its gradient the same sum up to rounding, with exactly 0 where its pass gives 0, so a step's
    labels share one pass (gradient routing, activation masking, SGTM).

    While the context is open the masked blocks' partitioned linear maps run through
    `_PartitionLinear` (only those some row needs): no hooks and no elementwise masks."""
    assert all(m in MODES for m in modes), modes
    forget_only = forget_only if forget_only is not None else [False] * len(modes)
    assert len(forget_only) == len(modes), f"{len(forget_only)} flags for {len(modes)} rows"
    r, rd = _dims(model, part)
    plans = {  # (side, edit point) -> plan; the edits are at c_fc's output and out_proj's input
        key: _RowPlan.make(*key, modes, forget_only)
        for key in [("out", True), ("out", False), ("in", True), ("in", False)]
    }
    linears = []  # (module, index where its forget units begin, plan)
    for i in part.layers:
        block, attn = model.transformer.h[i], model.transformer.h[i].attn.attention
        linears += [
            (block.mlp.c_fc, r, plans["out", True]),
            (block.mlp.c_proj, r, plans["in", False]),
        ]
        linears += [(getattr(attn, f"{n}_proj"), rd, plans["out", False]) for n in ("q", "k", "v")]
        linears.append((attn.out_proj, rd, plans["in", True]))
    linears = [(lin, s, plan) for lin, s, plan in linears if not plan.plain(len(modes))]

    def masked_forward(lin: nn.Linear, s: int, plan: _RowPlan, x: torch.Tensor) -> torch.Tensor:
        assert len(x) == len(modes), f"{len(modes)} row modes for {len(x)} rows"
        # autocast as nn.Linear has it: inputs cast to the autocast dtype, outside the function,
        # so the casts' backward returns the gradients in the parameters' own dtype
        kind = x.device.type
        dtype = torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else x.dtype
        b = lin.bias.to(dtype) if lin.bias is not None else None
        return _PartitionLinear.apply(x.to(dtype), lin.weight.to(dtype), b, plan, s)

    for lin, s, plan in linears:  # an instance attribute shadows the class's forward
        lin.forward = functools.partial(masked_forward, lin, s, plan)
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
