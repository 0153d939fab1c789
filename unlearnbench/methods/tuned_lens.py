"""`tuned-lens`: unlearning through tuned lenses (EleutherAI/unlearn, `lens_unlearn.py`).

Two phases of the run, both trained by the runner with THE loop:
1. `lenses`. One affine translator per block l < L-1 (Belrose et al. 2023, tuned lens): the lens
   logits are unembed(h_l + A_l h_l + b_l) with A_l, b_l zero at init (so it starts as the logit lens)
   and `unembed` = a frozen copy of the base's final layer norm and head. The last block needs no
   lens: its output through the unembedding is the model's own prediction (identity lens). Lenses
   train on all training blocks (the base model's own data; the reference trains on the
   pretraining corpus) while the model stays frozen, by KL(p_model || p_lens) to the model's own
   final distribution (Belrose et al. 2023, section 3; EleutherAI/unlearn,
   unlearn/algorithm/tuned_lens/train.py lines 366-392, `F.kl_div(lens log-probs, final probs)`),
   or with `lens_loss="ce"` by next-token cross-entropy.
2. `unlearn`. LoRA adapters on every block, on the attention's q/k/v projections by default
   (`lora_target`, below), lenses frozen. Forget-labeled blocks:
   c_f * mean over lenses of the forget objective; retain-labeled blocks: c_r * mean over lensed
   layers of the per-position L2 distance of h_l to the adapter-free model's. Reference schedule
   over training progress s = step / total: c_r = retain_coef * s, c_f = remove_coef * (1 - s/4).

Forget objectives, each divided by log V as in the reference:
- "entropy" (default): cross-entropy of the lens distribution against uniform targets, i.e. the
  expectation of the reference's cross-entropy against uniformly random target tokens (computed
  exactly instead of sampled). It is minimized by the uniform distribution (maximal entropy).
- "ce": the negative next-token cross-entropy (cross-entropy maximization).
Both average over counted positions, so per-token unlearning (`forget_tokens`, token_selection.py)
restricts them to the selected positions.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from unlearnbench.data.packing import IGNORE
from unlearnbench.methods import Phase, Plan, RunContext, Stage, register_method
from unlearnbench.methods._posthoc import ramped_coefficients
from unlearnbench.methods.token_selection import apply_token_selection, check_token_options
from unlearnbench.models.hidden import block_outputs, num_blocks, transformer_body
from unlearnbench.models.lora import GPT_NEO_LORA_TARGETS, add_lora, lora_parameter_names, merge
from unlearnbench.training import Objective


@dataclass(frozen=True)
class TunedLensOptions:
    objective: str = "entropy"  # reference: entropy maximization (random-target CE) | "ce"
    lens_steps: int = 100  # ours: the lens loss flattens within ~100 steps on the tiny preset
    lens_lr: float = 1e-3  # reference: lr 1e-3 (tuned_lens/train.py line 42; Muon + AdamW there)
    # reference: KL to the model's final distribution (tuned_lens/train.py line 382) | "ce"
    lens_loss: str = "kl"
    retain_coef: float = 5.0  # reference: retain_coef 5
    remove_coef: float = 5.0  # reference: remove_coef 5
    lora_r: int = 16  # reference: lora_r 16
    lora_alpha: float = 16.0  # reference: lora_alpha 16
    lora_dropout: float = 0.05  # reference: 0.05
    # reference: lens_unlearn.py lines 584-603 give peft no target_modules for non-OLMo models, so
    # peft's default for the GPT-NeoX model applies, `query_key_value` (the fused q/k/v
    # projection): here "qkv" = q_proj, k_proj, v_proj; "all" = every linear map of a block
    lora_target: str = "qkv"
    forget_tokens: str = "all"  # per-token unlearning: "all" | "ratio" | "list" (ours)
    forget_token_list: tuple[str, ...] = ()  # "list": vocabulary entries or one-token texts
    forget_token_threshold: float = 0.5  # "ratio": ERA weight below this (ours: w = 1/2)
    # which positions: "target" (those predicting a selected token, as ERA routes) | "input"
    forget_token_position: str = "target"


class Lenses(nn.Module):
    """Affine translators for blocks 0..L-2 and a frozen copy of the base's unembedding."""

    def __init__(self, model):
        super().__init__()
        body = transformer_body(model)
        n, d = len(body.h), body.ln_f.normalized_shape[0]
        self.translators = nn.ModuleList(nn.Linear(d, d) for _ in range(n - 1))
        for t in self.translators:  # zero init: the lens starts as the logit lens
            nn.init.zeros_(t.weight)
            nn.init.zeros_(t.bias)
        self.ln_f = copy.deepcopy(body.ln_f)
        self.head = copy.deepcopy(model.get_output_embeddings())
        for p in list(self.ln_f.parameters()) + list(self.head.parameters()):
            p.requires_grad_(False)

    def translator_parameters(self) -> list[nn.Parameter]:
        return list(self.translators.parameters())

    def forward(self, h: torch.Tensor, layer: int) -> torch.Tensor:
        """Lens logits (B, T, V) of block `layer`'s output h (B, T, d); the last block: identity."""
        if layer < len(self.translators):
            h = h + self.translators[layer](h)  # (B, T, d)
        return self.head(self.ln_f(h))  # (B, T, V)


LORA_TARGETS = {"qkv": ("q_proj", "k_proj", "v_proj"), "all": GPT_NEO_LORA_TARGETS}


def lens_losses(lenses: Lenses, model, inputs, targets, kind: str = "ce") -> list[torch.Tensor]:
    """The loss of every lens (blocks 0..L-2) on a micro-batch, averaged over counted positions:
    "kl": KL(p_model || p_lens) to the model's own final distribution (the tuned lens's loss);
    "ce": next-token cross-entropy."""
    n = len(lenses.translators)
    if kind == "ce":
        hs = block_outputs(model, inputs, range(n))
        return [
            F.cross_entropy(
                lenses(hs[i], i).float().flatten(0, 1), targets.flatten(), ignore_index=IGNORE
            )
            for i in range(n)
        ]
    if kind != "kl":
        raise ValueError(f"lens_loss must be 'kl' or 'ce', got {kind!r}")
    counted = targets != IGNORE  # (B, T)
    with torch.no_grad():  # the model is frozen in this phase: its distribution is the target
        final = F.log_softmax(model(input_ids=inputs).logits.float(), dim=-1)[counted]  # (N, V)
    hs = block_outputs(model, inputs, range(n))
    # ours: mean over positions; the reference's "batchmean" sums over a sequence's positions
    # (a constant factor, which Adam's update does not see)
    return [
        F.kl_div(
            F.log_softmax(lenses(hs[i], i).float(), dim=-1)[counted],
            final,
            reduction="batchmean",
            log_target=True,
        )
        for i in range(n)
    ]


def forget_objective(logits: torch.Tensor, targets: torch.Tensor, kind: str) -> torch.Tensor:
    """The forget term for one lens's logits (B, T, V), divided by log V (minimize it)."""
    counted = targets != IGNORE  # (B, T)
    logp = F.log_softmax(logits.float(), dim=-1)[counted]  # (N, V)
    log_v = math.log(logits.shape[-1])
    if kind == "entropy":
        return -logp.mean(dim=-1).mean() / log_v  # CE(uniform, p), mean over positions
    if kind == "ce":
        return -F.nll_loss(logp, targets[counted]) / log_v
    raise ValueError(f"tuned-lens objective must be 'entropy' or 'ce', got {kind!r}")


def lens_training_objective(model, lenses: Lenses, kind: str = "kl") -> Objective:
    """Phase 1: only the lenses train (the model's parameters are not trainable)."""

    def loss(m, inputs, targets, label):
        return torch.stack(lens_losses(lenses, m, inputs, targets, kind)).mean()

    return Objective(
        model=model, loss=loss, trainable=[], extra_parameters=lenses.translator_parameters()
    )


def unlearning_objective(model, lenses: Lenses, options: TunedLensOptions) -> Objective:
    """Phase 2: LoRA on every block, lenses frozen, forget objective through every lens."""
    for p in lenses.parameters():
        p.requires_grad_(False)
    n = num_blocks(model)
    peft_model = add_lora(
        model,
        range(n),
        options.lora_r,
        options.lora_alpha,
        options.lora_dropout,
        targets=LORA_TARGETS[options.lora_target],
    )
    coeffs, on_step = ramped_coefficients(options.remove_coef, options.retain_coef)

    def loss(m, inputs, targets, label):
        hs = block_outputs(m, inputs, range(n))  # {l: (B, T, d)}
        if label == "forget":
            terms = [
                forget_objective(lenses(hs[i], i), targets, options.objective) for i in range(n)
            ]
            return coeffs["forget"] * torch.stack(terms).mean()
        with torch.no_grad(), m.disable_adapter():
            was = m.training
            m.eval()
            ref = block_outputs(m, inputs, range(n))
            m.train(was)
        dist = [(hs[i].float() - ref[i].float()).norm(dim=-1).mean() for i in range(n)]
        return coeffs["retain"] * torch.stack(dist).mean()

    return Objective(
        model=peft_model,
        batch_plan={"forget": 0.5, "retain": 0.5},  # reference: (retain, forget) pairs
        loss=loss,
        trainable=lora_parameter_names(peft_model),
        finalize=merge,
        reduction="labels",
        on_step=on_step,
    )


def lens_phase(model, options) -> tuple[Phase, Lenses]:
    """Phase 1: fit the lenses of `model` on the run's blocks; the model does not move."""
    lenses = Lenses(model).to(next(model.parameters()).device)
    phase = Phase(
        "lenses",
        lens_training_objective(model, lenses, options.lens_loss),
        train={
            "steps": options.lens_steps,
            "lr": options.lens_lr,
            "warmup_steps": 0,
            "min_lr_ratio": 0.1,
            "weight_decay": 0.0,
            "eval_every": 0,
        },
    )
    return phase, lenses


# version 2: its default base, the no-filter run, now trains as the SGTM reference does
@register_method(
    "tuned-lens",
    kind="posthoc",
    requires=("peft",),  # LoRA adapters (models/lora.py)
    options=TunedLensOptions,
    train_defaults={
        # reference: 1024 examples at global batch 32 (32 steps), lr 1e-3, AdamW wd 0.01; ours: more
        # steps at a smaller batch, as the tiny model sees far fewer tokens per step
        "steps": 100,
        "lr": 1e-3,
        "batch_size": 8,  # ours: 4 + 4 blocks (reference: lens_unlearn.py:529-631, 4 per device, 32)
        "grad_clip": 1.0,  # reference: lens_unlearn.py:663 max_grad_norm=1.0
        # reference: HF Trainer decays all but biases and layer norms (get_decay_parameter_names)
        "weight_decay_groups": "matrices",
        "warmup_steps": 0,
        "weight_decay": 0.01,
        "beta2": 0.999,
    },
    version=2,
)
def setup(ctx: RunContext, options: TunedLensOptions) -> Plan:
    """Tuned-lens unlearning: fit per-layer lenses, then maximize forget entropy through them."""
    if options.objective not in ("entropy", "ce"):
        raise ValueError(
            f"tuned-lens objective must be 'entropy' or 'ce', got {options.objective!r}"
        )
    if options.lens_loss not in ("kl", "ce"):
        raise ValueError(f"lens_loss must be 'kl' or 'ce', got {options.lens_loss!r}")
    if options.lora_target not in LORA_TARGETS:
        raise ValueError(f"lora_target must be one of {', '.join(LORA_TARGETS)}")
    check_token_options(options)  # before the lens phase, not after it
    lenses_phase, lenses = lens_phase(ctx.model, options)
    metrics: dict = {}

    def unlearning(model) -> Objective:  # built after the lens phase: LoRA wraps the model
        objective = apply_token_selection(
            ctx, unlearning_objective(model, lenses, options), options
        )
        metrics.update(objective.extra_metrics)
        return objective

    return Plan(
        phases=[lenses_phase, Phase("unlearn", unlearning)],
        finalize=[Stage("merge", merge)],
        metrics=metrics,
    )
