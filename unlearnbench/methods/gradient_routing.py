"""`gradient-routing`: gradient routing as instantiated in SGTM's comparison (Shilov et al. 2025,
`gradient_routing`), on the same forget/retain partition as `sgtm`.

- forget-labeled documents: the retain activations (retain MLP units before the activation function,
  retain heads' outputs before `out_proj`) are detached: the forward value is unchanged and no
  gradient flows back through them, so the retain rows of c_fc and q/k/v learn nothing from forget
  data. Parameters downstream of the activations (c_proj, out_proj, biases, embeddings, layer norms)
  still get the full forget gradient: the mask is on activations, not parameters (Cloud et al. note).
- retain-labeled documents: forget units and heads zeroed (SGTM's retain mode).
- unlabeled documents: plain.
- `route_tokens`: route by target token instead of by label (see `methods.routing`).
Finalize: zero the forget rows of c_fc (weight and bias) and of q/k/v; functionally the same as
zeroing all of theta_forget (the forget units then output gelu_new(0) = 0, the forget heads 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from unlearnbench.methods import RunContext, register_method
from unlearnbench.methods._trainers import SGTM_TRAINER
from unlearnbench.methods.routing import partition_routing_objective
from unlearnbench.training import Objective, check_sampling


@dataclass(frozen=True)
class GradientRoutingOptions:
    # the SGTM reference's gradient-routing run, per routed block: tinystories/tradeoff.sh:34
    # 'ROUTE_STRATEGY="gradient_routing"' with :8 "ROUTE_MLP_DIM=64" and :9 "ROUTE_ATTN_HEADS=1"
    forget_mlp_dim: int = 64
    forget_heads: int = 1
    # routed blocks; empty = all: trainer.py:887-888 "if args.masked_layers is None:
    # args.masked_layers = list(range(args.num_layers))"
    layers: tuple[int, ...] = ()
    # finalize by zeroing the forget rows of c_fc and q/k/v, the reference's ablation
    # (gradient_routing.py:44 "self.c_fc.weight_forget.data = torch.zeros_like(self.c_fc.weight_forget)",
    # :114 "self.q_proj.weight_forget.data = torch.zeros_like(self.q_proj.weight_forget)")
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
        check_sampling("gradient-routing", self.sampling)


# version 2: the SGTM trainer's defaults (no clipping, weight decay on every parameter);
# version 3: a step's labels in one pass (the same update up to rounding);
# version 4: the pass's partitioned maps as matrix products over the rows allowed (the same
# update up to float32 summation order)
@register_method(
    "gradient-routing",
    kind="training",
    options=GradientRoutingOptions,
    train_defaults=SGTM_TRAINER,
    version=4,
)
def setup(ctx: RunContext, options: GradientRoutingOptions) -> Objective:
    """Gradient routing: forget data's gradient flows only through the forget units and heads."""
    return partition_routing_objective(ctx, options, forget_mode="detach_retain")
