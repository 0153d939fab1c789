"""`no-filter`: train on everything; labels are ignored. The reference every method is compared to.

`forget_after` > 0 is a curriculum for `checkpoint-transfer`: documents labeled forget are held back
until that fraction of the steps has passed, so the run's early snapshots (`snapshot_every`) are
models that have not seen the (labeled) forget data. It reads labels only, never the true split:
with recall < 1 the unlabeled forget documents are in the stream from the start.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from unlearnbench.methods import RunContext, register_method
from unlearnbench.methods._trainers import SGTM_TRAINER
from unlearnbench.training import Objective


@dataclass(frozen=True)
class NoFilterOptions:
    # fraction of the steps before forget-labeled documents enter the stream (0 = from the start;
    # ours, for checkpoint-transfer's "ignorant checkpoint", EleutherAI unlearn's setting)
    forget_after: float = 0.0
    OMIT_AT_DEFAULT: ClassVar[tuple[str, ...]] = ("forget_after",)  # earlier runs keep their ids


def forget_after_curriculum(fraction: float):
    """Curriculum: forget-labeled groups are drawn from step ceil(fraction * total) on."""

    def admits(group, step: int, total: int) -> bool:
        return group.label != "forget" or step >= fraction * total

    return admits


# version 2: the SGTM trainer's defaults (no clipping, weight decay on every parameter).
# training_curve, ours: its test losses at 16 points of its training, the curve a run's compute
# penalty is read from (results/compute_penalty.py); resolution 1/16 of the compute, between
# points interpolated (evaluating changes no training number, so its version stays)
@register_method(
    "no-filter",
    kind="training",
    options=NoFilterOptions,
    train_defaults=SGTM_TRAINER,
    version=2,
    training_curve=16,
)
def setup(ctx: RunContext, options: NoFilterOptions) -> Objective:
    """Baseline: plain language modelling on all training documents, labels ignored."""
    if not 0.0 <= options.forget_after < 1.0:
        raise ValueError(f"forget_after must be in [0, 1), got {options.forget_after}")
    curriculum = forget_after_curriculum(options.forget_after) if options.forget_after else None
    return Objective(model=ctx.model, curriculum=curriculum)
