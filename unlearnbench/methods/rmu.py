"""`rmu`: Representation Misdirection for Unlearning (Li et al. 2024, WMDP; reference code
`rmu/unlearn.py` of centerforaisafety/wmdp).

With h_l the output of block l (the residual stream after it):
- forget-labeled blocks: MSE(h_l(x_f), c * u), where u is drawn once per run with uniform [0, 1)
  entries and normalized to a unit vector, so forget inputs are pushed onto one large, fixed
  direction;
- retain-labeled blocks: alpha * MSE(h_l(x_r), h_l^frozen(x_r)) against a frozen copy of the base.
MSE averages over batch, positions and hidden units (reference: `F.mse_loss`). The step's loss is the
sum of the two (the loop's "labels" reduction). Only the MLP weights of blocks l-2..l are updated,
chosen by parameter name: a positional index (the reference's `params[6]`, Zephyr's
`mlp.down_proj.weight`) selects another tensor in other architectures (`attn.attention.out_proj.bias`
in a GPT-Neo block, `attention.dense.weight` in a GPT-NeoX block). The
default names GPT-Neo's MLP down-projection, `mlp.c_proj.weight`; on another architecture it means
that architecture's down-projection (models/arch.py): GPT-NeoX `mlp.dense_4h_to_h.weight`, GPT-2
`mlp.c_proj.weight` (a Conv1D), Llama/Mistral/Qwen2 `mlp.down_proj.weight`.

Scale of c (`coef_scale`):
- "relative" (ours, the default; neither the WMDP recipe nor adaptive RMU): one constant per run,
  c = `steering_coef` * (mean ||h_l|| of the base on retain-labeled training blocks). The
  reference's c (6.5 published for Zephyr-7B, 20 in its argparse defaults) is an absolute norm,
  meaningful only relative to the typical norm of h_l in that model; a multiple of our model's own
  norm transfers across model sizes. The default multiple 6.5 is the published absolute value
  reused as a ratio (ours, not tuned);
- "absolute": c = `steering_coef` as given (the WMDP reference's semantics; the SGTM preset,
  methods/rmu-wikipedia-254M.yaml);
- "adaptive": adaptive RMU (Dang et al. 2025, AAAI, "On Effects of Steering Latent Representation
  for Large Language Model Unlearning", arXiv 2408.06223): per forget block x, c(x) =
  `adaptive_beta` * ||h_l^frozen(x)||, the frozen base's norm at the steering layer averaged over
  the block's positions; beta 5 as the authors' runs (RebelsNLU-jaist/llm-unlearning README and
  experiments/adap_rmu.sh: --scale 5.0). Their code (baselines/adap_rmu/unlearn.py) computes the
  same quantity once, as the mean over the first forget batch, and keeps it; we compute it per block.

Per-token unlearning (`forget_tokens`, token_selection.py) averages the forget MSE over the
selected positions only; at its default ("all") every position counts, as in
the reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from unlearnbench.methods import RunContext, register_method
from unlearnbench.methods._posthoc import run_groups
from unlearnbench.methods.token_selection import apply_token_selection, position_mask
from unlearnbench.models import arch
from unlearnbench.models.hidden import block_outputs, frozen_copy, mean_hidden_norm
from unlearnbench.training import Objective


@dataclass(frozen=True)
class RMUOptions:
    # RMU layer l: -1 = num_layers // 2 (ours: the middle block, as SGTM's RMU baseline at block 7
    # of its 16-layer model; the reference's layer 7 of 32 for Zephyr is shallower)
    layer: int = -1
    # blocks l-2..l are updated: wiki/rmu.sh:22 "--layer-ids 5 6 7" (SGTM's RMU baseline; the
    # WMDP code of Li et al. 2024, read in a copy, defaults to layer_id 7 and layer_ids "5,6,7")
    update_layers: int = 3
    # parameter names (suffixes inside each updated block) that train. Li et al. 2024 (WMDP code,
    # rmu/unlearn.py param_ids default "6": Mistral's `mlp.down_proj.weight`, not checkable here as
    # centerforaisafety/wmdp is not in the references fetched) = GPT-Neo `mlp.c_proj.weight`; on
    # GPT-NeoX, GPT-2 or Llama GPT-Neo's name means their down-projection (models/arch.py). SGTM's
    # baseline trains the whole MLP, wiki/rmu.sh:23 "--param-ids 9 10 11 12" (the 254M preset)
    params: tuple[str, ...] = ("mlp.c_proj.weight",)
    # "relative" (ours): c = steering_coef x the mean norm of h_l on retain data. The reference's c
    # (6.5 published, 20 argparse) is an absolute norm tied to Zephyr-7B's activation scale; a
    # relative c of a few times the typical norm makes the forget term dominate at any scale.
    # 6.5 is the published absolute value reused as a ratio (ours)
    steering_coef: float = 6.5
    # "relative" (ours, the reason above) | "absolute" (reference) | "adaptive" (adaptive RMU)
    coef_scale: str = "relative"
    # "adaptive": c(x) = adaptive_beta x ||h_l^frozen(x)|| per forget block (steering_coef unused);
    # adaptive RMU's runs (Dang et al. 2025): --scale 5.0 (RebelsNLU-jaist/llm-unlearning README
    # and experiments/adap_rmu.sh, not among the references fetched)
    adaptive_beta: float = 5.0
    # Li et al. 2024, the published Zephyr run (WMDP README: "--alpha 1200,1200"; its argparse
    # default is "100,100", as SGTM's wiki/rmu.sh:17 "--alpha 100")
    alpha: float = 1200.0
    norm_blocks: int = 16  # retain blocks used to measure the mean norm of h_l (ours)
    forget_tokens: str = "all"  # per-token unlearning: "all" | "ratio" | "list" (ours)
    forget_token_list: tuple[str, ...] = ()  # "list": vocabulary entries or one-token texts (ours)
    forget_token_threshold: float = 0.5  # "ratio": ERA weight below this (ours: w = 1/2)
    # which positions (ours): "target" (those predicting a selected token, as ERA routes) | "input"
    forget_token_position: str = "target"
    # added after runs were recorded: left out of the run id while at its default
    OMIT_AT_DEFAULT: ClassVar[tuple[str, ...]] = ("adaptive_beta",)


COEF_SCALES = ("relative", "absolute", "adaptive")


def resolve_layer(model, layer: int) -> int:
    n = arch.num_blocks(model)
    index = n // 2 if layer < 0 else layer
    if not 0 <= index < n:
        raise ValueError(f"rmu layer {layer} outside 0..{n - 1}")
    return index


def rmu_parameter_names(model, layer: int, update_layers: int, suffixes) -> list[str]:
    """Names of the updated parameters: each block-relative name in `suffixes` (GPT-Neo's MLP
    down-projection translated to the model's architecture) in blocks l-update_layers+1..l."""
    names = {n for n, _ in model.named_parameters()}
    first = max(0, layer - update_layers + 1)
    out = [
        arch.block_prefix(model, i) + arch.in_architecture(model, s)
        for i in range(first, layer + 1)
        for s in suffixes
    ]
    missing = [n for n in out if n not in names]
    if missing:
        raise ValueError(f"rmu: no parameters named {missing[:3]} in the model")
    return out


def random_direction(d: int, seed: int) -> torch.Tensor:
    """u: uniform [0, 1) entries, normalized to unit length (reference: torch.rand then / norm);
    drawn from its own generator so it depends on the run seed only."""
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(1, 1, d, generator=g)  # (1, 1, d)
    return u / u.norm()


def forget_loss(
    h: torch.Tensor, control: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """MSE(h (B, T, d), c*u (1, 1, d)), averaged over every element, or over the positions where
    `mask` (B, T, 1) is 1 (per-token unlearning)."""
    if mask is None:
        return F.mse_loss(h.float(), control.expand_as(h).float())
    sq = (h.float() - control.float()) ** 2 * mask  # (B, T, d)
    return sq.sum() / (mask.sum() * h.shape[-1]).clamp(min=1.0)


def retain_loss(h: torch.Tensor, h_frozen: torch.Tensor, alpha: float) -> torch.Tensor:
    return alpha * F.mse_loss(h.float(), h_frozen.float())


def adaptive_control(u: torch.Tensor, h_frozen: torch.Tensor, beta: float) -> torch.Tensor:
    """Adaptive RMU's per-block target c(x) u, c(x) = beta * ||h_frozen(x)|| (the per-position norm
    averaged over the block's positions): u (1, 1, d), h_frozen (B, T, d) -> (B, 1, d)."""
    c = beta * h_frozen.float().norm(dim=-1).mean(dim=1)  # (B,)
    return c[:, None, None] * u


def rmu_objective(model, layer: int, control: torch.Tensor, options: RMUOptions) -> Objective:
    """The RMU objective on `model` given the resolved layer and the control vector c*u (1, 1, d),
    or, with coef_scale "adaptive", the unit direction u (1, 1, d) that each block's c(x) scales."""
    frozen = frozen_copy(model)
    control = control.to(next(model.parameters()).device)
    selective = options.forget_tokens != "all"  # the selection masks targets: average over those
    adaptive = options.coef_scale == "adaptive"

    def loss(m, inputs, targets, label):
        h = block_outputs(m, inputs, [layer])[layer]  # (B, T, d)
        if label == "forget":
            target = control  # (1, 1, d)
            if adaptive:
                with torch.no_grad():
                    h_frozen = block_outputs(frozen, inputs, [layer])[layer]  # (B, T, d)
                target = adaptive_control(control, h_frozen, options.adaptive_beta)  # (B, 1, d)
            return forget_loss(h, target, position_mask(targets) if selective else None)
        with torch.no_grad():
            h_ref = block_outputs(frozen, inputs, [layer])[layer]  # (B, T, d)
        return retain_loss(h, h_ref, options.alpha)

    return Objective(
        model=model,
        batch_plan={
            "forget": 0.5,
            "retain": 0.5,
        },  # reference: a forget and a retain batch per step
        loss=loss,
        trainable=rmu_parameter_names(model, layer, options.update_layers, options.params),
        reduction="labels",
    )


@register_method(
    "rmu",
    kind="posthoc",
    options=RMUOptions,
    version=2,  # 2: weight decay on every updated parameter (biases too)
    train_defaults={
        # reference: 150 batches at lr 5e-5 (a 7B model). Ours: at lr 5e-5 a 4-layer d-128 model
        # hardly moves in 150 steps; lr 1e-3 (our pretraining lr) for 150 steps
        "steps": 150,
        "lr": 1e-3,
        # 4 forget + 4 retain blocks: wiki/rmu.sh:19 "--batch-size 4", one forget and one retain
        # batch per step (train/rmu.py:216 'unlearn_batch = train_loader.get_batch("forget")')
        "batch_size": 8,
        # plain torch AdamW at a constant lr (no scheduler), no clipping: train/rmu.py:237-238
        # "loss.backward() optimizer.step()"
        "warmup_steps": 0,
        "min_lr_ratio": 1.0,
        # torch AdamW's defaults (weight_decay 0.01, betas (0.9, 0.999)): train/rmu.py:201
        # "optimizer = optim.AdamW(params, lr=args.lr)". The WMDP code (read in a copy, as
        # centerforaisafety/wmdp could not be fetched) uses transformers' AdamW, whose default
        # weight_decay is 0.0: not followed
        "weight_decay": 0.01,
        "beta2": 0.999,
        "grad_clip": 0.0,  # train/rmu.py:237-238 "loss.backward() optimizer.step()"
        # AdamW(params) decays every updated one: train/rmu.py:201 "optim.AdamW(params,"
        "weight_decay_groups": "all",
    },
)
def setup(ctx: RunContext, options: RMUOptions) -> Objective:
    """RMU: push forget activations at block l onto a fixed random direction, keep retain ones."""
    if options.coef_scale not in COEF_SCALES:
        raise ValueError(
            f"coef_scale must be one of {', '.join(COEF_SCALES)}, got {options.coef_scale!r}"
        )
    model = ctx.model
    layer = resolve_layer(model, options.layer)
    c = options.steering_coef
    if options.coef_scale == "adaptive":
        c = 1.0  # the loss scales the unit direction per forget block
    elif options.coef_scale == "relative":
        groups = run_groups(ctx)
        retain = torch.cat([g.blocks for g in groups if g.label == "retain"])[: options.norm_blocks]
        c = options.steering_coef * mean_hidden_norm(model, retain, layer)
    u = random_direction(arch.hidden_size(model), ctx.config.seed)
    return apply_token_selection(ctx, rmu_objective(model, layer, c * u, options), options)
