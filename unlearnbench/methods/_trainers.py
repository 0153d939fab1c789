"""Training settings of the reference trainers that the training-time methods follow (not a method:
modules starting with "_" are not scanned). Each method passes one of these as `train_defaults`."""

from __future__ import annotations

# safety-research/selective-gradient-masking, src/sgtm/train/trainer.py: sgtm, gradient-routing,
# activation-masking and the no-filter and filter baselines of the SGTM paper all train with it
SGTM_TRAINER = {
    # SGTM reference: no clipping, trainer.py:558 "loss.backward()", then :564
    # 'optimizers["joint"].step()'
    "grad_clip": 0.0,
    # SGTM reference: one AdamW decays every parameter, trainer.py:358 "model.parameters(),"
    "weight_decay_groups": "all",
}

# kxcloud/gradient-routing, projects/tinystories: era and demix. Its schedule is nanoGPT's get_lr
# (tinystories_era.py:211-227): linear warmup from 0 over 100 steps, cosine to lr/10
ERA_TRAINER = {
    # no clipping: tinystories_era.py:584 "loss.backward()", then :589 "optim.step()"
    "grad_clip": 0.0,
    # one AdamW over every parameter, tinystories_era.py:477 "list(model.parameters()) +
    # [forget_data_bias_term]," with shared_settings.py:87 "optimizer_kwargs=dict(betas=(0.9, 0.95),
    # weight_decay=0.1)"
    "weight_decay_groups": "all",
    "weight_decay": 0.1,
    "beta1": 0.9,
    "beta2": 0.95,
    "warmup_steps": 100,  # tinystories_era.py:214 "warmup_iters = 100"
    # tinystories_era.py:219 "return experiment_cfg.learning_rate * it / warmup_iters"
    "warmup_start_factor": 0.0,
    "min_lr_ratio": 0.1,  # tinystories_era.py:213 "min_lr = experiment_cfg.learning_rate / 10"
}
