"""Training settings of the reference trainers that the training-time methods follow (not a method:
modules starting with "_" are not scanned). Each method passes one of these as `train_defaults`."""

from __future__ import annotations

# safety-research/selective-gradient-masking, src/sgtm/train/trainer.py: sgtm, gradient-routing,
# activation-masking and the no-filter and filter baselines of the SGTM paper all train with it
SGTM_TRAINER = {
    "grad_clip": 0.0,  # SGTM reference: no clipping (trainer.py:542-564: backward, then step)
    # SGTM reference: AdamW(model.parameters(), weight_decay=0.1) decays every parameter
    # (trainer.py:357-362)
    "weight_decay_groups": "all",
}

# kxcloud/gradient-routing, projects/tinystories: era and demix
ERA_TRAINER = {
    # gradient routing reference: no clipping (tinystories_era.py:545-590: backward, then step)
    "grad_clip": 0.0,
    # gradient routing reference: AdamW(model.parameters() + [bias], betas (0.9, 0.95), wd 0.1)
    # decays every parameter (tinystories_era.py:476-480, shared_settings.py:87)
    "weight_decay_groups": "all",
}
