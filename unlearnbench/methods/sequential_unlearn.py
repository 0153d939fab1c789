"""`sequential-unlearn`: back-to-front unlearning, one block at a time (EleutherAI/unlearn,
`unlearn/algorithm/sequential_retain.py`).

For each block l in turn, from the top down (`start_layer`, `start_layer - layer_step`, ... down to
`end_layer`), one phase of the training loop in which only block l trains:
- forget-labeled blocks: the output of block l of the model being unlearned is run through the
  FROZEN base model's later blocks, final layer norm and head, and the forget objective (entropy
  maximization, or CE maximization) is applied to those logits, divided by log V. So each block
  is unlearned against the later computation it will actually feed in the original model;
- retain-labeled blocks: through the UPDATED model (its own later blocks): mean over every block's
  output and all positions of ||h - h_base||_2 (the reference's default "l2" retain loss over
  `retain_layers` = every block's output, sequential_retain.py:256-299, 382).
Reference schedule within each phase, s = step / steps: c_r = retain_coef * s,
c_f = remove_coef * (1 - s / 4). Each block is one phase (`block-<l>`) of the run, trained by the
runner's loop: checkpointed, resumable, and counted in the record's tokens and time.

Deviation: the reference trains LoRA adapters on every block in every phase (the forget gradient
reaches only blocks up to l, the retain gradient all of them). Here only block l's own parameters
train in its phase (full parameters), so a phase cannot undo a later block's unlearning.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from unlearnbench.methods import Phase, Plan, RunContext, register_method
from unlearnbench.methods._posthoc import ramped_coefficients
from unlearnbench.methods.token_selection import apply_token_selection
from unlearnbench.methods.tuned_lens import forget_objective, retain_l2
from unlearnbench.models import arch
from unlearnbench.models.hidden import block_outputs, frozen_copy
from unlearnbench.training import Objective


@dataclass(frozen=True)
class SequentialOptions:
    # the last block, sequential_retain.py:430 "run_cfg.start_layer = num_layers - 1" (-1 here)
    start_layer: int = -1
    # sequential_retain.py:385 "end_layer: int = 8" with :386 "layer_step: int = 4" of 32 blocks
    # (blocks 31, 27, ..., 11: the top three quarters); -1 = the same fraction of our depth,
    # round(L * 8 / 32), i.e. block 1 of 4
    end_layer: int = -1
    layer_step: int = 1  # ours: 1 (4 / 32 of 4 blocks rounds up to 1)
    # max entropy: sequential_retain.py:339 "random_targets = torch.randint(" (CE to random
    # targets) | "ce"
    objective: str = "entropy"
    remove_coef: float = 10.0  # sequential_retain.py:380 "remove_coef: float = 10.0"
    retain_coef: float = 5.0  # sequential_retain.py:379 "retain_coef: float = 5.0"
    forget_tokens: str = "all"  # per-token unlearning: "all" | "ratio" | "list" (ours)
    forget_token_list: tuple[str, ...] = ()  # "list": vocabulary entries or one-token texts (ours)
    forget_token_threshold: float = 0.5  # "ratio": ERA weight below this (ours: w = 1/2)
    # which positions (ours): "target" (those predicting a selected token, as ERA routes) | "input"
    forget_token_position: str = "target"


def layer_order(n: int, options: SequentialOptions) -> list[int]:
    """Blocks to unlearn, top down."""
    start = n - 1 if options.start_layer < 0 else options.start_layer
    end = int(n * 8 / 32 + 0.5) if options.end_layer < 0 else options.end_layer
    if not (0 <= end <= start < n) or options.layer_step < 1:
        raise ValueError(
            f"sequential-unlearn needs 0 <= end_layer <= start_layer < {n} and layer_step >= 1 "
            f"(got {start}, {end}, {options.layer_step})"
        )
    return list(range(start, end - 1, -options.layer_step))


def logits_through(frozen, inputs: torch.Tensor, layer: int, h: torch.Tensor) -> torch.Tensor:
    """Logits (B, T, V) of the frozen model with block `layer`'s output replaced by h (B, T, d):
    its later blocks, final norm and head run on h, and the gradient flows back into h."""
    block = arch.blocks(frozen)[layer]

    def replace(module, args, output):
        if isinstance(output, tuple):
            return (h.to(output[0].dtype),) + tuple(output[1:])
        return h.to(output.dtype)

    handle = block.register_forward_hook(replace)
    try:
        return frozen(input_ids=inputs).logits
    finally:
        handle.remove()


def layer_objective(model, frozen, layer: int, options: SequentialOptions) -> Objective:
    """One phase: only block `layer` trains."""
    coeffs, on_step = ramped_coefficients(options.remove_coef, options.retain_coef)
    n = arch.num_blocks(model)

    def loss(m, inputs, targets, label):
        if label == "forget":
            h = block_outputs(m, inputs, [layer])[layer]  # (B, T, d), the updated model's
            logits = logits_through(frozen, inputs, layer, h)  # (B, T, V)
            return coeffs["forget"] * forget_objective(logits, targets, options.objective)
        # every block's output (sequential_retain.py:382 "retain_layers: list[int] =
        # field(default_factory=lambda: list(range(32)))"), not the embeddings nor ln_f's output
        with torch.no_grad():
            ref = block_outputs(frozen, inputs, range(n))  # {l: (B, T, d)}
        return coeffs["retain"] * retain_l2(block_outputs(m, inputs, range(n)), ref, n)

    return Objective(
        model=model,
        # sequential_retain.py:460 "global_batch_size = 32" of (retain, forget) pairs
        batch_plan={"forget": 0.5, "retain": 0.5},
        loss=loss,
        trainable=arch.block_parameter_names(model, layer),
        reduction="labels",
        on_step=on_step,
    )


# version 2: its default base, the no-filter run, now trains as the SGTM reference does.
# Version 3: the retain L2 over block outputs (not the HF hidden-state stack), linear decay
@register_method(
    "sequential-unlearn",
    kind="posthoc",
    options=SequentialOptions,
    train_defaults={
        # ours: 50 steps per block at batch 4 + 4; the reference: one epoch of 1024 examples per
        # block at sequential_retain.py:460 "global_batch_size = 32" (32 steps; preset: 64 blocks)
        "steps": 50,
        "lr": 1e-3,  # sequential_retain.py:377 "lr: float = 1e-3"
        "batch_size": 8,  # ours: 4 + 4 blocks
        "grad_clip": 1.0,  # sequential_retain.py:485 "max_grad_norm=1.0,"
        # HF Trainer decays all but biases and layer norms (get_decay_parameter_names); weight
        # decay sequential_retain.py:481 "weight_decay=0.01,"
        "weight_decay_groups": "matrices",
        "weight_decay": 0.01,
        # transformers TrainingArguments' defaults, which sequential_retain.py:474-488 leaves as
        # they are (sequential_retain.py:485 "max_grad_norm=1.0," and no scheduler or warmup):
        # warmup 0, lr_scheduler_type "linear" to 0, adam_beta2 0.999
        "warmup_steps": 0,
        "lr_decay": "linear",
        "beta2": 0.999,
    },
    version=3,
)
def setup(ctx: RunContext, options: SequentialOptions) -> Plan:
    """Sequential unlearning: top block first, each through the frozen base's later blocks."""
    if options.objective not in ("entropy", "ce"):
        raise ValueError(f"objective must be 'entropy' or 'ce', got {options.objective!r}")
    model = ctx.model
    layers = layer_order(arch.num_blocks(model), options)
    frozen = frozen_copy(model)
    objectives = [
        apply_token_selection(ctx, layer_objective(model, frozen, layer, options), options)
        for layer in layers
    ]
    return Plan(
        phases=[Phase(f"block-{layer}", o) for layer, o in zip(layers, objectives, strict=True)],
        metrics={"sequential_layers": layers, **objectives[-1].extra_metrics},
    )
