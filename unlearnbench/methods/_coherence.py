"""The coherence fine-tune of Cloud et al. 2024, run after ablation by `era` and `demix`.
Not a method: modules starting with "_" are not scanned for registrations.

kxcloud/gradient-routing, projects/tinystories/tinystories_era.py (commit 896dba3), "PHASE TWO:
COHERENCE TRAINING" (lines 656-763): the contracted model (for DEMix, the model keeping its retain
expert, line 660) is fine-tuned on one fixed batch of 64 retain stories (line 700) with AdamW at lr
5e-5 and the experiment's optimizer kwargs, betas (0.9, 0.95) and weight decay 0.1 (lines 692-696;
projects/tinystories/shared_settings.py line 87), no clipping, for up to 40 steps
(bulk_runs_for_paper.py line 45, for ERA and DEMix alike, lines 61 and 77); after every step the
retain loss on 1000 other retain stories (line 701) picks the best step, the un-fine-tuned model
included (lines 715-763).

Ours: the batch and the selection set are labeled-retain training blocks (the reference uses true
retain stories; a method here never reads the truth), disjoint, in a seeded order. The phase is
trained by the runner with THE loop; the runner keeps the best step (`Phase.select_blocks`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from unlearnbench.methods import Phase
from unlearnbench.training import Objective


@dataclass(frozen=True)
class CoherenceOptions:
    """The coherence phase's options, shared by `era` and `demix` (their options extend it)."""

    # 41 optimizer steps: tinystories_era.py:724 "range(run_type_cfg.num_steps_coherence_finetuning
    # + 1)" with bulk_runs_for_paper.py:45 "coherence_finetuning = 40"
    coherence_steps: int = 41
    coherence_lr: float = 5e-5  # tinystories_era.py:694 "lr=5e-5,"
    # shared_settings.py:87 "optimizer_kwargs=dict(betas=(0.9, 0.95), weight_decay=0.1)"
    coherence_weight_decay: float = 0.1
    coherence_betas: tuple[float, float] = (0.9, 0.95)
    # no clipping: tinystories_era.py:730-731 "loss.backward() optim.step()"
    coherence_grad_clip: float = 0.0
    # ours: 16 blocks of 256 tokens, the reference's 64 retain stories (~12k GPT-2 tokens, ~50 of
    # our blocks; tinystories_era.py:700 "n_retain_train = 64") cut to a quarter for the CPU budget
    coherence_blocks: int = 16
    # reference: 1000 other retain stories (~200k tokens, line 701) to pick the best step; ours:
    # 64 blocks (~16k tokens), as 41 evaluations of 1000 stories would cost more than the tiny
    # preset's whole ERA run; set 800 for the reference's amount
    coherence_eval_blocks: int = 64


def coherence_phase(ctx, options) -> Phase | None:
    """The coherence Phase for `options` (coherence_steps, _lr, _weight_decay, _betas,
    _grad_clip, _blocks, _eval_blocks); None when coherence_steps <= 0."""
    if options.coherence_steps <= 0:
        return None
    retain = ctx.labeled_blocks("retain")
    order = torch.randperm(len(retain), generator=torch.Generator().manual_seed(ctx.config.seed))
    fit = order[: options.coherence_blocks]  # rows of the labeled-retain blocks
    held = retain[order[options.coherence_blocks :][: options.coherence_eval_blocks]]
    if not len(fit) or not len(held):
        raise ValueError(
            "the coherence phase needs labeled retain blocks for its batch and its selection "
            "(or coherence_steps=0)"
        )
    beta1, beta2 = options.coherence_betas
    return Phase(
        "coherence",
        objective=lambda model: Objective(model=model),
        train={
            "steps": options.coherence_steps,
            "batch_size": len(fit),  # the full fixed batch every step
            "lr": options.coherence_lr,
            "weight_decay": options.coherence_weight_decay,
            # reference: one AdamW over every parameter (tinystories_era.py lines 692-696)
            "weight_decay_groups": "all",
            "beta1": beta1,
            "beta2": beta2,
            "grad_clip": options.coherence_grad_clip,
            "warmup_steps": 0,
            "min_lr_ratio": 1.0,  # constant learning rate
            "eval_every": 0,
        },
        blocks={"retain": fit},
        select_blocks=held,
    )
