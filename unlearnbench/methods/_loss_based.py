"""Losses of the classic loss-based unlearning baselines (gradient ascent, gradient difference,
NPO), as functions on logits and log-probabilities so tests can check them by hand.

Conventions follow open-unlearning (locuslab/open-unlearning, `src/trainer/unlearn/`):
- gradient ascent: minimize -NLL(forget);
- gradient difference: gamma * (-NLL(forget)) + alpha * NLL(retain), gamma = alpha = 1;
- NPO (Zhang et al. 2024, "Negative Preference Optimization"): per sequence,
  -(2 / beta) * logsigmoid(-beta * (log p_theta(y|x) - log p_ref(y|x))), averaged over sequences,
  with log p the sum of token log-probabilities; plus alpha * NLL(retain) (open-unlearning's NPO,
  "NPO+RT" in the paper).
Here a "sequence" is one packed training block; its counted tokens are the non-separator targets.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from unlearnbench.data.packing import IGNORE

# Training defaults of the three baselines. open-unlearning's TOFU recipe, for 1B-8B models:
# configs/trainer/finetune.yaml (8 per device (:3) x 4 accumulation steps (:5) = 32 sequences per
# optimizer step on one device, paged AdamW :15) with configs/experiment/unlearn/tofu/default.yaml (lr 1e-5,
# weight decay 0.01, 10 epochs, one warmup epoch: :44-47), then the HF Trainer's default linear
# decay to 0 (its MUSE recipe sets "constant", experiment/unlearn/muse/default.yaml:48).
# Ours: at our 4-layer scale lr 1e-5 barely moves the model in a CPU budget; 1e-4 for 100 steps
# moves the forget loss clearly (see the README's table).
LOSS_BASED_TRAIN_DEFAULTS = {
    "steps": 100,
    "lr": 1e-4,
    "batch_size": 8,  # ours (open-unlearning TOFU: 8 x 4 accumulation = 32)
    "warmup_steps": 10,  # ours: 10% of the steps (open-unlearning: one of ten epochs)
    "weight_decay": 0.01,  # tofu/default.yaml:46 "weight_decay: 0.01"
    # transformers TrainingArguments' defaults, which open-unlearning's trainer args leave as they
    # are (trainer/finetune.yaml:2-24 set neither adam_beta2 nor max_grad_norm; :15 "optim:
    # paged_adamw_32bit"): adam_beta2 0.999, max_grad_norm 1.0
    "beta2": 0.999,
    "min_lr_ratio": 1.0,  # ours: constant after warmup (open-unlearning TOFU: linear decay to 0)
    # max_grad_norm's default, as beta2 above: trainer/finetune.yaml:2-24 (no max_grad_norm,
    # :15 "optim: paged_adamw_32bit")
    "grad_clip": 1.0,
    # HF Trainer decays all but biases and layer norms (get_decay_parameter_names): base.py:15
    # "class FinetuneTrainer(Trainer):" keeps the HF Trainer's optimizer
    "weight_decay_groups": "matrices",
}


def token_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log p(target) per position (B, T); 0 where the target is not counted (IGNORE)."""
    logp = F.log_softmax(logits.float(), dim=-1)  # (B, T, V)
    safe = targets.clamp(min=0)  # IGNORE -> 0, masked below
    picked = logp.gather(-1, safe.unsqueeze(-1)).squeeze(-1)  # (B, T)
    return picked * (targets != IGNORE)


def sequence_logprob(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log p(y|x) per sequence (B,): the sum of counted token log-probabilities."""
    return token_logprobs(logits, targets).sum(dim=-1)


def nll(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean token negative log-likelihood over counted targets (the training LM loss)."""
    return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=IGNORE)


def npo_loss(logp: torch.Tensor, logp_ref: torch.Tensor, beta: float) -> torch.Tensor:
    """NPO on sequence log-probs (B,) of the model and the frozen reference: scalar mean."""
    return (-(2.0 / beta) * F.logsigmoid(-beta * (logp - logp_ref))).mean()
