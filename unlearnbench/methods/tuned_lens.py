"""`tuned-lens`: unlearning through tuned lenses (EleutherAI/unlearn, `lens_unlearn.py`).

Two phases of the run, both trained by the runner with THE loop:
1. `lenses`. One affine translator per block l < L-1 (Belrose et al. 2023, tuned lens): the lens
   logits are unembed(h_l + A_l h_l + b_l) with A_l, b_l zero at init (so it starts as the logit lens)
   and `unembed` = a frozen copy of the base's final layer norm and head. The last block needs no
   lens: its output through the unembedding is the model's own prediction (identity lens). Lenses
   train while the model stays frozen, by KL(p_model || p_lens) to the model's own final
   distribution (Belrose et al. 2023, section 3; unlearn/algorithm/tuned_lens/train.py:382-386,
   `F.kl_div(pred_log_probs, target_log_probs.exp(), reduction="batchmean")`), or with
   `lens_loss="ce"` by next-token cross-entropy. As the reference, on the forget corpus
   (scripts/train_tuned_lens.sh: `--bio_forget_path`; here the forget-labeled blocks) with weight
   decay 0.01, a constant learning rate and clipping at 1.0 (train.py:42-43, 404); ours: AdamW for
   every lens parameter where the reference uses Muon for the matrices and AdamW for the biases
   (Muon is not in torch's optimizers we depend on). `lens_data="all"` fits them on every
   training block instead.
2. `unlearn`, lenses frozen. Forget-labeled blocks: c_f * mean over lenses of the forget objective.
   Retain-labeled blocks: c_r * the retain term. Reference schedule over training progress
   s = step / total: c_r = retain_coef * s, c_f = remove_coef * (1 - s/4).
   - Default (the reference's: `lora: bool = False`, lens_unlearn.py:534; LensSFTTrainer): full
     fine-tuning of every parameter; retain term KL(p_base || p_model) of the next-token
     distributions against a frozen copy of the base (`retain_loss="kl"`, lens_unlearn.py:269-285),
     or the L2 distance of block outputs (`retain_loss="l2"`, lines 287-325).
   - `lora=True` (the reference's LensLoRATrainer): LoRA adapters on every block, on the attention's
     q/k/v projections by default (`lora_target`, below); retain term: mean over lensed layers of the
     per-position L2 distance of h_l to the adapter-free model's (lines 448-461), or KL.

Forget objectives, each divided by log V as in the reference:
- "entropy" (default): cross-entropy of the lens distribution against uniform targets, i.e. the
  expectation of the reference's cross-entropy against uniformly random target tokens (computed
  exactly instead of sampled). It is minimized by the uniform distribution (maximal entropy).
- "ce": the negative next-token cross-entropy (cross-entropy maximization).
Both average over counted positions, so per-token unlearning (`forget_tokens`, token_selection.py)
restricts them to the selected positions.

Noticed, not followed: the reference's lens trainer feeds lens i the HF hidden state i (the
embeddings for i = 0, block i-1's output after; train.py:362 `outputs.hidden_states[:-1]`) while
unlearning applies lens i to block i's output (lens_unlearn.py `gpt_neox.layers.{i}`). Here lens l
is fit and used on block l's output.
"""

from __future__ import annotations

import contextlib
import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from unlearnbench.data.packing import IGNORE
from unlearnbench.methods import Phase, Plan, RunContext, Stage, register_method
from unlearnbench.methods._posthoc import all_parameter_names, ramped_coefficients
from unlearnbench.methods.token_selection import apply_token_selection, check_token_options
from unlearnbench.models import arch
from unlearnbench.models.hidden import block_outputs, frozen_copy
from unlearnbench.models.lora import add_lora, lora_parameter_names, merge
from unlearnbench.training import Objective


@dataclass(frozen=True)
class TunedLensOptions:
    # random-target cross-entropy through every lens: lens_unlearn.py:98 "random_targets =
    # torch.randint(" | "ce"
    objective: str = "entropy"
    lora: bool = False  # lens_unlearn.py:534 "lora: bool = False" (full fine-tuning)
    # retain term of full fine-tuning: lens_unlearn.py:532 'retain_loss_type: Literal["l2", "kl"] =
    # "kl"' | "l2" (block outputs; the reference's LoRA trainer always uses l2, lines 448-461)
    retain_loss: str = "kl"
    lens_steps: int = 100  # ours: the lens loss flattens within ~100 steps on the tiny preset
    # tuned_lens/train.py:42 "lr: float = 1e-3"; ours: AdamW where the reference uses Muon for the
    # lens matrices (train.py:330 "optimizer = MuonAdamWLens(")
    lens_lr: float = 1e-3
    # tuned_lens/train.py:382 "kl_loss = F.kl_div(" to the model's final distribution | "ce"
    lens_loss: str = "kl"
    # which blocks fit the lenses: the forget corpus, scripts/train_tuned_lens.sh:13
    # '--bio_forget_path "data/bio_forget_ds"' (here the forget-labeled blocks) | "all": every
    # training block (version 2's lenses)
    lens_data: str = "forget"
    retain_coef: float = 5.0  # lens_unlearn.py:530 "retain_coef: float = 5.0"
    remove_coef: float = 5.0  # lens_unlearn.py:531 "remove_coef: float = 5.0"
    lora_r: int = 16  # lens_unlearn.py:533 "lora_r: int = 16" (with lora=True)
    lora_alpha: float = 16.0  # lens_unlearn.py:586 "lora_alpha=16,"
    lora_dropout: float = 0.05  # lens_unlearn.py:600 "lora_dropout=0.05,"
    # lens_unlearn.py:584-603 give peft no target_modules for non-OLMo models, so peft's default
    # for GPT-NeoX applies: one adapter on the fused q/k/v projection `query_key_value`. "qkv" = the
    # attention's query/key/value maps (models/arch.py): that fused map on GPT-NeoX (the reference's
    # choice), `c_attn` on GPT-2; ours on GPT-Neo and Llama, which have no fused projection: three
    # adapters, on q_proj, k_proj, v_proj (three rank-16 adapters can express more than one rank-16
    # adapter of the fused map); "all" = every linear map of a block
    lora_target: str = "qkv"
    forget_tokens: str = "all"  # per-token unlearning: "all" | "ratio" | "list" (ours)
    forget_token_list: tuple[str, ...] = ()  # "list": vocabulary entries or one-token texts (ours)
    forget_token_threshold: float = 0.5  # "ratio": ERA weight below this (ours: w = 1/2)
    # which positions (ours): "target" (those predicting a selected token, as ERA routes) | "input"
    forget_token_position: str = "target"


class Lenses(nn.Module):
    """Affine translators for blocks 0..L-2 and a frozen copy of the base's unembedding."""

    def __init__(self, model):
        super().__init__()
        n, d = arch.num_blocks(model), arch.hidden_size(model)
        self.translators = nn.ModuleList(nn.Linear(d, d) for _ in range(n - 1))
        for t in self.translators:  # zero init: the lens starts as the logit lens
            nn.init.zeros_(t.weight)
            nn.init.zeros_(t.bias)
        self.final_norm = copy.deepcopy(arch.final_norm(model))
        self.head = copy.deepcopy(model.get_output_embeddings())
        for p in list(self.final_norm.parameters()) + list(self.head.parameters()):
            p.requires_grad_(False)

    def translator_parameters(self) -> list[nn.Parameter]:
        return list(self.translators.parameters())

    def forward(self, h: torch.Tensor, layer: int) -> torch.Tensor:
        """Lens logits (B, T, V) of block `layer`'s output h (B, T, d); the last block: identity."""
        if layer < len(self.translators):
            h = h + self.translators[layer](h)  # (B, T, d)
        return self.head(self.final_norm(h))  # (B, T, V)


LORA_TARGETS = ("qkv", "all")  # models/arch.py `lora_targets` names the maps per architecture


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


def retain_kl(
    logits: torch.Tensor, ref_logits: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    """KL(p_ref || p_model) of the next-token distributions, summed over counted positions and
    divided by the number of blocks: the reference's F.kl_div(..., reduction="batchmean") on
    (B, T, V) logits (lens_unlearn.py:281-285)."""
    counted = targets != IGNORE  # (B, T)
    logp = F.log_softmax(logits.float(), dim=-1)[counted]  # (N, V)
    ref = F.log_softmax(ref_logits.float(), dim=-1)[counted]  # (N, V)
    return F.kl_div(logp, ref, reduction="sum", log_target=True) / logits.shape[0]


def retain_l2(hs: dict, ref: dict, n: int) -> torch.Tensor:
    """Mean over blocks of the per-position L2 distance of block outputs to the reference's."""
    dist = [(hs[i].float() - ref[i].float()).norm(dim=-1).mean() for i in range(n)]
    return torch.stack(dist).mean()


def unlearning_objective(model, lenses: Lenses, options: TunedLensOptions) -> Objective:
    """Phase 2, lenses frozen, forget objective through every lens: full fine-tuning against a
    frozen copy of the model (the reference's default), or LoRA against the adapter-free model."""
    for p in lenses.parameters():
        p.requires_grad_(False)
    n = arch.num_blocks(model)
    if options.lora:
        trained = add_lora(
            model,
            range(n),
            options.lora_r,
            options.lora_alpha,
            options.lora_dropout,
            targets=arch.lora_targets(model, options.lora_target),
        )
        trainable, finalize = lora_parameter_names(trained), merge

        @contextlib.contextmanager
        def reference(m):  # the adapter-free model, in eval mode
            was = m.training
            with m.disable_adapter():
                m.eval()
                yield m
            m.train(was)
    else:
        frozen = frozen_copy(model)  # the base as it enters this phase (the lenses left it as is)
        trained, trainable, finalize = model, all_parameter_names(model), None

        @contextlib.contextmanager
        def reference(m):
            yield frozen

    coeffs, on_step = ramped_coefficients(options.remove_coef, options.retain_coef)

    def loss(m, inputs, targets, label):
        if label == "forget":
            hs = block_outputs(m, inputs, range(n))  # {l: (B, T, d)}
            terms = [
                forget_objective(lenses(hs[i], i), targets, options.objective) for i in range(n)
            ]
            return coeffs["forget"] * torch.stack(terms).mean()
        if options.retain_loss == "kl":
            with torch.no_grad(), reference(m) as ref_model:
                ref_logits = ref_model(input_ids=inputs).logits  # (B, T, V)
            return coeffs["retain"] * retain_kl(m(input_ids=inputs).logits, ref_logits, targets)
        with torch.no_grad(), reference(m) as ref_model:
            ref = block_outputs(ref_model, inputs, range(n))
        return coeffs["retain"] * retain_l2(block_outputs(m, inputs, range(n)), ref, n)

    return Objective(
        model=trained,
        # lens_unlearn.py:630 "global_batch_size = 32" of (retain, forget) pairs
        batch_plan={"forget": 0.5, "retain": 0.5},
        loss=loss,
        trainable=trainable,
        finalize=finalize,
        reduction="labels",
        on_step=on_step,
    )


def lens_phase(model, options) -> tuple[Phase, Lenses]:
    """Phase 1: fit the lenses of `model` on the run's forget-labeled blocks (or all of them);
    the model does not move."""
    lenses = Lenses(model).to(next(model.parameters()).device)
    objective = lens_training_objective(model, lenses, options.lens_loss)
    if options.lens_data == "forget":
        objective.batch_plan = {"forget": 1.0}
    phase = Phase(
        "lenses",
        objective,
        train={
            "steps": options.lens_steps,
            "lr": options.lens_lr,
            "batch_size": 8,  # tuned_lens/train.py:36 "batch_size: int = 8"
            "warmup_steps": 0,
            "lr_decay": "constant",  # train.py:330-335: MuonAdamWLens, no scheduler
            "weight_decay": 0.01,  # tuned_lens/train.py:43 "weight_decay: float = 0.01"
            # tuned_lens/train.py:404 "torch.nn.utils.clip_grad_norm_(ddp_lens.parameters(), 1.0)"
            "grad_clip": 1.0,
            "eval_every": 0,
        },
    )
    return phase, lenses


# version 2: its default base, the no-filter run, now trains as the SGTM reference does.
# Version 3: the reference's default, full fine-tuning with a KL retain term (LoRA is `lora=True`);
# lenses fit on the forget-labeled blocks at a constant lr; linear decay (HF Trainer's default)
@register_method(
    "tuned-lens",
    kind="posthoc",
    requires=("peft",),  # LoRA adapters (models/lora.py), with lora=True
    options=TunedLensOptions,
    train_defaults={
        # ours: 100 steps at a smaller batch, as the tiny model sees far fewer tokens per step; the
        # reference: one epoch of 1024 examples at global batch 32, lens_unlearn.py:630
        # "global_batch_size = 32" (32 steps)
        "steps": 100,
        "lr": 1e-3,  # lens_unlearn.py:528 "lr: float = 1e-3"
        # ours: 4 + 4 blocks; the reference's 32 (retain, forget) pairs are batch_size 64 (preset)
        "batch_size": 8,
        "grad_clip": 1.0,  # lens_unlearn.py:680 "max_grad_norm=1.0,"
        # HF Trainer decays all but biases and layer norms (get_decay_parameter_names); weight
        # decay lens_unlearn.py:676 "weight_decay=0.01,"
        "weight_decay_groups": "matrices",
        "weight_decay": 0.01,
        # lens_unlearn.py:542 "warmup_ratio: float = 0.0"
        "warmup_steps": 0,
        # transformers TrainingArguments' defaults, which lens_unlearn.py:668-684 leaves as they are
        # (lens_unlearn.py:682 'optim="adamw_torch",' and no scheduler): lr_scheduler_type "linear" to 0,
        # adam_beta2 0.999
        "lr_decay": "linear",
        "beta2": 0.999,
    },
    version=3,
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
    if options.retain_loss not in ("kl", "l2"):
        raise ValueError(f"retain_loss must be 'kl' or 'l2', got {options.retain_loss!r}")
    if options.lens_data not in ("forget", "all"):
        raise ValueError(f"lens_data must be 'forget' or 'all', got {options.lens_data!r}")
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
        finalize=[Stage("merge", merge)] if options.lora else [],
        metrics=metrics,
    )
