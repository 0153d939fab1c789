"""`activation-masking`: SGTM's comparison baseline `activation_masking` (Shilov et al. 2025).

As `gradient-routing`, but on forget-labeled documents the retain activations (retain MLP units
before the activation function, retain heads' outputs before `out_proj`) are zeroed instead of
detached: the forward pass itself runs on the forget units and heads only, so no retain-side
parameter of the masked blocks (c_fc and q/k/v retain rows, c_proj and out_proj retain columns)
gets gradient from forget data; output biases, embeddings and layer norms still do.
Retain-labeled documents: forget units and heads zeroed; unlabeled: plain. `route_tokens`: route by
target token. Finalize: zero the forget rows of c_fc (weight and bias) and of q/k/v.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from unlearnbench.methods import RunContext, register_method
from unlearnbench.methods._trainers import SGTM_TRAINER
from unlearnbench.methods.routing import partition_routing_objective
from unlearnbench.training import Objective, check_sampling


@dataclass(frozen=True)
class ActivationMaskingOptions:
    # ours: the SGTM partition, as no reference run trains activation masking (trainer.py:687
    # 'help="Masking strategy (gradient_routing, activation_masking, parameter_masking)",' names
    # it); per block, as its other runs: tinystories/tradeoff.sh:8 "ROUTE_MLP_DIM=64" and :9
    # "ROUTE_ATTN_HEADS=1"
    forget_mlp_dim: int = 64
    forget_heads: int = 1
    # masked blocks; empty = all: trainer.py:887-888 "if args.masked_layers is None:
    # args.masked_layers = list(range(args.num_layers))"
    layers: tuple[int, ...] = ()
    # finalize by zeroing the forget rows of c_fc and q/k/v: the reference's ablation
    # (activation_masking.py:43 "self.c_fc.weight_forget.data = torch.zeros_like(self.c_fc.weight_forget)",
    # :120 "self.q_proj.weight_forget.data = torch.zeros_like(self.q_proj.weight_forget)") also
    # zeroes c_proj's and out_proj's forget columns (:45, :123), which then only ever see zeros
    ablate: bool = True
    route_tokens: tuple[
        str, ...
    ] = ()  # Cloud et al. virology: route by target token; empty = labels
    route_tokens_file: str = ""  # ours: the same, one token per line
    # "mixed" = ours: labels mixed within a step; "single_source" = the SGTM reference's one
    # source per step (trainer.py:248-259, 510-533; see sgtm.py)
    sampling: str = "mixed"
    # ours: a step's blocks of every label in one forward/backward, each row in its label's mode
    # (the per-label passes' gradient up to rounding); False: one pass per label, the reference path
    one_pass: bool = True
    # earlier runs were all "mixed" and one pass per label (the version tells them apart)
    OMIT_AT_DEFAULT: ClassVar[tuple[str, ...]] = ("sampling", "one_pass")

    def __post_init__(self):
        check_sampling("activation-masking", self.sampling)


# version 2: the SGTM trainer's defaults (no clipping, weight decay on every parameter);
# version 3: a step's labels in one pass (the same update up to rounding);
# version 4: the pass's partitioned maps as matrix products over the rows allowed (the same
# update up to float32 summation order)
@register_method(
    "activation-masking",
    kind="training",
    options=ActivationMaskingOptions,
    train_defaults=SGTM_TRAINER,
    version=4,
)
def setup(ctx: RunContext, options: ActivationMaskingOptions) -> Objective:
    """Activation masking: forget data runs on the forget units and heads only (retain ones zeroed)."""
    return partition_routing_objective(ctx, options, forget_mode="zero_retain")
