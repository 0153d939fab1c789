"""Shared helpers of the gradient routing family (gradient-routing, activation-masking, era, demix).

- Token-level routing (Cloud et al. 2024, virology experiment): instead of document labels, a set of
  token strings decides which positions are routed: a position is routed when its TARGET (the token
  being predicted) is in the set, whatever the document's label.
- Per-position activation masking on the forget/retain partition (the label-level version is
  `models.partition.activation_mode`).
- Ablation by the input side of the partition: zero the forget rows of `c_fc` (weight and bias) and
  of q/k/v.
- The labeled training blocks a method may read (never the true split).

This module registers no method; it holds functions the method files share.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch

from unlearnbench.config import ConfigError
from unlearnbench.data.labels import LABELS
from unlearnbench.data.packing import IGNORE
from unlearnbench.losses import lm_loss
from unlearnbench.models.partition import (
    MODES,
    Partition,
    _dims,
    _unit_masks,
    activation_mode,
    edit_units,
    row_modes,
    unit_hooks,
)
from unlearnbench.training import Objective

# --- token routing -------------------------------------------------------------------------------


def resolve_route_tokens(tokenizer, tokens: tuple[str, ...], path: str = "") -> torch.Tensor | None:
    """Token ids of the routed set, or None when no set is given (route by document label).

    Each entry is a vocabulary entry as written (e.g. "Ġforest" in a byte-level BPE), or a text that
    encodes to exactly one token; a leading "_" stands for a space, as in the paper's "_virus".
    `path` names a file with one entry per line (blank lines skipped; other whitespace kept).
    """
    entries = list(tokens)
    if path:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"route_tokens_file not found: {path}")
        entries += [line.rstrip("\r\n") for line in p.read_text().splitlines()]
        entries = [e for e in entries if e.strip()]
    if not entries:
        return None
    vocab = tokenizer.get_vocab()
    ids = []
    for entry in entries:
        if entry in vocab:
            ids.append(vocab[entry])
            continue
        text = " " + entry[1:] if entry.startswith("_") else entry
        enc = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(enc) != 1:
            raise ConfigError(
                f"route token {entry!r} is not one token of this tokenizer (encodes to {len(enc)})"
            )
        ids.append(enc[0])
    return torch.tensor(sorted(set(ids)), dtype=torch.long)


def routed_positions(targets: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
    """(B, T) bool: positions whose target token is in the routed set (uncounted targets never)."""
    routed = torch.isin(targets, token_ids.to(targets.device))  # (B, T)
    return routed & (targets != IGNORE)


# --- per-position activation masking -------------------------------------------------------------


@contextlib.contextmanager
def position_mode(model, part: Partition, routed: torch.Tensor, mode: str, rest: str = "plain"):
    """Like `activation_mode`, per position: `mode` at routed positions (B, T), `rest` elsewhere.
    Same hook points: MLP units before the activation, heads' outputs before `out_proj`."""
    assert mode in MODES and rest in MODES, (mode, rest)
    sel = routed[..., None]  # (B, T, 1)

    def make_edit(start: int):
        def edit(x: torch.Tensor) -> torch.Tensor:  # (B, T, n)
            keep, drop = _unit_masks(x.shape[-1], start, x.device, x.dtype)  # (n,) each
            return torch.where(
                sel, edit_units(x, mode, keep, drop), edit_units(x, rest, keep, drop)
            )

        return edit

    with unit_hooks(model, part, make_edit):
        yield model


# --- ablation ------------------------------------------------------------------------------------


def input_ablation_names(model, part: Partition) -> dict[str, tuple]:
    """Parameter name -> index of its forget rows: c_fc weight and bias, q/k/v weight."""
    r, rd = _dims(model, part)
    out = {}
    for i in part.layers:
        p = f"transformer.h.{i}."
        out[p + "mlp.c_fc.weight"] = (slice(r, None),)
        out[p + "mlp.c_fc.bias"] = (slice(r, None),)
        for proj in ("q_proj", "k_proj", "v_proj"):
            out[p + f"attn.attention.{proj}.weight"] = (slice(rd, None),)
    return out


@torch.no_grad()
def ablate_inputs(model, part: Partition):
    """Zero the forget rows of c_fc (weight, bias) and q/k/v in place. A forget MLP unit then has
    pre-activation 0 and gelu_new(0) = 0; a forget head has q = k = v = 0 (GPT-Neo's q/k/v have no
    bias), so its output is 0: the function equals zeroing all of theta_forget."""
    params = dict(model.named_parameters())
    for name, index in input_ablation_names(model, part).items():
        params[name][index] = 0.0
    return model


# --- labeled training data -----------------------------------------------------------------------


def labeled_blocks(ctx, label: str) -> torch.Tensor:
    """All training blocks (N, T + 1) whose documents carry `label`, as the training loop sees them.
    Reads labels only, never the true split."""
    return ctx.labeled_blocks(label)


# --- the partition routing objective (gradient-routing, activation-masking) ----------------------


def partition_routing_objective(ctx, options, forget_mode: str) -> Objective:
    """Route on the SGTM partition by activation edits only (no gradient masks):

    - label routing: forget-labeled documents run in `forget_mode` ("detach_retain" or
      "zero_retain"), retain-labeled documents with the forget units and heads zeroed
      ("zero_forget"), unlabeled documents plain. With `options.one_pass` (the default) a step's
      blocks of every label share one forward/backward, each row in its label's mode (a row-wise
      select on the activations: the per-label passes' gradient up to rounding);
    - token routing (`route_tokens`): positions whose target is routed run in `forget_mode`, all
      other positions plain, whatever the label (one pass per label).
    Finalize: `ablate_inputs` (forget rows of c_fc and q/k/v zeroed) when `options.ablate`.
    """
    model = ctx.model
    part = Partition.for_model(
        model, options.forget_mlp_dim, options.forget_heads, options.layers or None
    )
    tokenizer = ctx.benchmark.tokenizer if ctx.benchmark is not None else None  # None: no tokens
    token_ids = resolve_route_tokens(tokenizer, options.route_tokens, options.route_tokens_file)

    def finalize(m):
        return ablate_inputs(m, part) if options.ablate else m

    sampling = getattr(options, "sampling", "mixed")
    if token_ids is not None:  # routing happens per position in `loss`, whatever the label

        def loss(m, inputs, targets, label):
            with position_mode(m, part, routed_positions(targets, token_ids), forget_mode):
                return lm_loss(m, inputs, targets)

        return Objective(
            model=model,
            mode=lambda label: contextlib.nullcontext(),
            loss=loss,
            finalize=finalize,
            sampling=sampling,
        )

    def label_mode(label: str) -> str:
        return {"forget": forget_mode, "retain": "zero_forget"}.get(label, "plain")

    def mode(label: str):
        return activation_mode(model, part, label_mode(label))

    def row_mode(labels: list[str]):  # one micro-batch's rows, each in its label's mode
        return row_modes(model, part, [label_mode(label) for label in labels])

    return Objective(
        model=model,
        mode=mode,
        finalize=finalize,
        sampling=sampling,
        one_pass=LABELS if options.one_pass else (),
        row_mode=row_mode,
    )
