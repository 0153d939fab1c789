"""The forget/retain partition of a GPT-Neo, activation masking, and ablation.

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
from torch import nn


@dataclass(frozen=True)
class Partition:
    forget_mlp_dim: int
    forget_heads: int
    layers: tuple[int, ...]  # masked blocks

    @staticmethod
    def for_model(model, forget_mlp_dim: int, forget_heads: int, layers=None) -> Partition:
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
    assert mode in ("plain", "zero_forget", "detach_retain", "zero_retain"), mode
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
def zero_forget_rows(model, part: Partition, rows: torch.Tensor):
    """ "zero_forget" on the batch rows where `rows` (B,) is True, "plain" on the others, in one
    forward: SGTM's retain and unlabeled blocks of a step in one pass (each retain row gives
    theta_forget exactly zero gradient, as its own pass would)."""
    if not part.layers:
        yield model
        return

    def make_edit(start: int):
        def edit(x: torch.Tensor) -> torch.Tensor:  # x: (B, T, n) with retain units first
            keep, _ = _unit_masks(x.shape[-1], start, x.device, x.dtype)  # (n,)
            masked = rows.to(x.device)[:, None, None]  # (B, 1, 1)
            return torch.where(masked, x * keep, x)  # (B, T, n)

        return edit

    with unit_hooks(model, part, make_edit):
        yield model


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
