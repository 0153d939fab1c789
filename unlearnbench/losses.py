"""Language-model losses: the one training loss and the one evaluation loss for every method."""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from unlearnbench.data.packing import IGNORE, inputs_and_targets


def autocast(device: str, bf16: bool):
    if not bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)


def lm_loss(model, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy (nats) over counted targets of a micro-batch."""
    logits = model(input_ids=inputs).logits  # (B, T, V)
    return F.cross_entropy(
        logits.float().flatten(0, 1), targets.flatten(), ignore_index=IGNORE, reduction="mean"
    )


@torch.no_grad()
def split_losses(
    model,
    blocks_by_split: dict[str, torch.Tensor],
    eos_id: int,
    micro_batch_size: int = 16,
    device: str = "cpu",
    bf16: bool = False,
) -> dict[str, float]:
    """Mean token cross-entropy (nats) per split over the given test blocks: total loss over all
    counted tokens divided by their number, so every method is scored on the same tokens."""
    was_training = model.training
    model.eval()
    out: dict[str, float] = {}
    for split, blocks in blocks_by_split.items():
        total, count = 0.0, 0
        for i in range(0, len(blocks), micro_batch_size):
            inputs, targets = inputs_and_targets(blocks[i : i + micro_batch_size], eos_id)
            inputs, targets = inputs.to(device), targets.to(device)
            with autocast(device, bf16):
                logits = model(input_ids=inputs).logits  # (B, T, V)
            loss = F.cross_entropy(
                logits.float().flatten(0, 1),
                targets.flatten(),
                ignore_index=IGNORE,
                reduction="sum",
            )
            total += loss.item()
            count += int((targets != IGNORE).sum())
        assert count > 0, f"no counted tokens in the {split} test blocks"
        out[split] = total / count
    model.train(was_training)
    return out
