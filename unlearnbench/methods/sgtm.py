"""`sgtm`: Selective Gradient Masking (Shilov et al. 2025), the reference's `parameter_masking`.

Per label (the reference code, which its README describes differently; we follow the code):
- forget: full forward; then the gradients of theta_retain are zeroed (and, with `mask_embeddings`,
  those of the embeddings and the masked blocks' layer norms too), so only theta_forget learns;
- retain: forward with forget MLP units and forget heads zeroed, so theta_forget gets no gradient;
- unlabeled: plain forward and backward.
A step's blocks of every label run in one forward/backward (`one_pass`): each retain row with its
forget units zeroed, each forget row through masked linear maps whose weight gradient takes it only
on theta_forget (`models.partition.row_modes`; the forward and the gradient flowing to
earlier layers unchanged): the same gradient as the per-label passes, up to rounding. With
`mask_embeddings`, forget blocks keep their own pass (their gradient on the embeddings and layer
norms is zeroed after it).
Finalize: ablate (zero) theta_forget.

Sampling: `sampling="mixed"` (ours, the default) labels each document and draws every step's
blocks from all of them, so one step mixes forget, retain and unlabeled blocks; each block is
masked by its own label, so the update is the sum of the per-label masked gradients (each masked
element exactly 0; the values up to rounding in the one pass). `sampling="single_source"` is the reference's: each step's whole batch comes
from one source, drawn per step in proportion to the sources' sizes (trainer.py:248-259 shuffles
one entry per training example and reads one per step; 510-533 label the step), so the optimizer
sees forget-only, retain-only and default-only steps, as in the paper's runs. Ours labels per
document, not per step, and draws the step's label without replacement from one entry per labeled
block (the reference: per example).

Optimizer: `shared` is the reference's one AdamW: parameters whose gradient was zeroed still move
through momentum and weight decay. `strict` keeps them bit-identical (no momentum, no decay) in every
step in which no label was allowed to update them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from unlearnbench.data.labels import LABELS
from unlearnbench.methods import RunContext, register_method
from unlearnbench.methods._trainers import SGTM_TRAINER
from unlearnbench.models.partition import (
    Partition,
    ablate,
    activation_mode,
    forget_masks,
    joint_parameter_names,
    retain_bias_names,
    row_modes,
)
from unlearnbench.training import Objective, check_sampling


@dataclass(frozen=True)
class SGTMOptions:
    forget_mlp_dim: int = 64  # per masked block: tinystories/tradeoff.sh:8 "ROUTE_MLP_DIM=64"
    # per masked block: tradeoff.sh:9 "ROUTE_ATTN_HEADS=1" of 32 (configs/tinystories/64M.yaml:4
    # "num_heads: 32"); our tiny preset has 8 heads
    forget_heads: int = 1
    # off, as in the TinyStories runs (tradeoff.sh:15-31 pass no --mask-embeddings) and the
    # reference's default (trainer.py:692 "default=False,"); the Wikipedia runs set it (wiki/run.sh:29
    # "--mask-embeddings"), as the sgtm-wikipedia presets do
    mask_embeddings: bool = False
    # "shared": the reference's one AdamW over every parameter, trainer.py:356-357 'if
    # args.optimizer_strategy == "legacy": optimizers["joint"] = optim.AdamW(' (:816
    # 'default="legacy")' is its default); "strict" is ours (no momentum or decay moves a masked
    # element)
    optimizer: str = "shared"
    # masked blocks; empty = all: trainer.py:887-888 "if args.masked_layers is None:
    # args.masked_layers = list(range(args.num_layers))"
    layers: tuple[int, ...] = ()
    # finalize by zeroing theta_forget, the reference's ablated model: trainer.py:431
    # "model.module.ablate(trainable=False)", which zeroes (parameter_masking.py:46
    # "self.c_fc.weight_forget.data = torch.zeros_like(self.c_fc.weight_forget)")
    ablate: bool = True
    # "mixed" = ours: labels mixed within a step, exact per-label masking; "single_source" = the
    # reference's: one source per step (trainer.py:248-259, 510-533)
    sampling: str = "mixed"
    # ours: a step's blocks of every label in one forward/backward, each row masked as its label's
    # own pass would be (the gradient is the per-label passes' sum up to rounding, in fewer, fuller
    # micro-batches); False: one pass per label, the reference path (the reference's single-source
    # steps have one label each, so there is nothing to merge)
    one_pass: bool = True
    OMIT_AT_DEFAULT: ClassVar[tuple[str, ...]] = ("sampling",)  # earlier runs were all "mixed"

    def __post_init__(self):
        check_sampling("sgtm", self.sampling)


def masks_for(model, part: Partition, mask_embeddings: bool) -> dict[str, dict[str, torch.Tensor]]:
    """Per label, the parameter elements its gradient may touch (True = may update)."""
    forget = forget_masks(model, part)
    params = dict(model.named_parameters())
    on_forget = dict(forget)
    for name in retain_bias_names(model, part):  # theta_retain: no update from forget data
        on_forget[name] = torch.zeros_like(params[name], dtype=torch.bool)
    if mask_embeddings:
        for name in joint_parameter_names(model, part):
            on_forget[name] = torch.zeros_like(params[name], dtype=torch.bool)
    on_retain = {name: ~m for name, m in forget.items()}
    return {"forget": on_forget, "retain": on_retain}


# version 2: the SGTM trainer's defaults (no clipping, weight decay on every parameter);
# version 3: retain and unlabeled blocks in one pass (the same update up to rounding);
# version 4: forget blocks in that pass too (the same update up to rounding);
# version 5: the pass's partitioned maps as matrix products over the rows allowed (the same
# update up to float32 summation order)
@register_method(
    "sgtm", kind="training", options=SGTMOptions, train_defaults=SGTM_TRAINER, version=5
)
def setup(ctx: RunContext, options: SGTMOptions) -> Objective:
    """Selective gradient masking: forget data updates only theta_forget; ablate it at the end."""
    if options.optimizer not in ("shared", "strict"):
        raise ValueError(f"optimizer must be 'shared' or 'strict', got {options.optimizer!r}")
    model = ctx.model
    part = Partition.for_model(
        model, options.forget_mlp_dim, options.forget_heads, options.layers or None
    )
    device = next(model.parameters()).device
    masks = {
        label: {n: m.to(device) for n, m in per.items()}
        for label, per in masks_for(model, part, options.mask_embeddings).items()
    }

    def mode(label: str):
        return activation_mode(model, part, "zero_forget" if label == "retain" else "plain")

    def row_mode(labels: list[str]):  # one micro-batch's rows, each as its label's pass runs it
        modes = ["zero_forget" if label == "retain" else "plain" for label in labels]
        return row_modes(model, part, modes, forget_only=[label == "forget" for label in labels])

    # forget rows share the pass unless the embeddings and layer norms are masked too (those are
    # not linear maps of the partition: their gradient is masked after a forget pass of its own)
    shared = ("retain", "unlabeled") if options.mask_embeddings else LABELS

    def update_mask(label: str):
        # retain: theta_forget's gradient is already exactly zero through activation masking;
        # forget in the one pass: theta_retain's through `row_modes`' forget_only rows. The masks
        # apply in a label's own pass, and tell the strict optimizer which elements must not move.
        return masks.get(label)

    def finalize(m):
        return ablate(m, part) if options.ablate else m

    return Objective(
        model=model,
        mode=mode,
        update_mask=update_mask,
        strict=options.optimizer == "strict",
        finalize=finalize,
        sampling=options.sampling,
        one_pass=shared if options.one_pass else (),
        row_mode=row_mode,
    )
