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


def eval_micro_batch(device: str, context: int, vocab: int) -> int:
    """Blocks per evaluation forward pass. On CPU, small: the (B, T, V) logits and (B, H, T, T)
    attention scores of a large batch fall out of cache: on 2 cores, 16 tiny-model blocks per pass
    ran at 0.56x the tokens/s of 2 blocks per pass (11.9k vs 21.4k; 1 block: 18.1k, 4: 18.6k).
    On an accelerator, large: it is the batch that fills the device."""
    if torch.device(device).type != "cpu":
        return 32
    return max(1, 2**20 // (context * vocab))  # ~4 MB of fp32 logits per pass


@torch.no_grad()
def split_losses(
    model,
    blocks_by_split: dict[str, torch.Tensor],
    eos_id: int,
    micro_batch_size: int | None = None,
    device: str = "cpu",
    bf16: bool = False,
) -> dict[str, float]:
    """Mean token cross-entropy (nats) per split over the given test blocks: total loss over all
    counted tokens divided by their number, so every method is scored on the same tokens.
    `micro_batch_size` None: `eval_micro_batch` for the device (the loss does not depend on it)."""
    was_training = model.training
    model.eval()
    out: dict[str, float] = {}
    if micro_batch_size is None and blocks_by_split:
        context = next(iter(blocks_by_split.values())).shape[1] - 1
        vocab = getattr(getattr(model, "config", None), "vocab_size", None) or 50257
        micro_batch_size = eval_micro_batch(device, context, vocab)
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
