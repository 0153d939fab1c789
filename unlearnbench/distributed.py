"""Data parallelism for THE loop with torch.distributed (launched by `torchrun`).

Every rank draws the same global batch from the same seeded sampler and takes its own shard of it
(rows `rank::world` in a fixed order), so no data is exchanged and the global batch is the same as in
one process. Each rank computes its per-label gradients and masks them on its own (masking is
elementwise and the same on every rank, so mask-then-sum equals sum-then-mask per label); the loop
then sums the accumulated, already-masked gradient over ranks once per step. We do not use
DistributedDataParallel: its hooks reduce inside every backward, before a label's mask could apply.

Exactness holds for gradient edits that are linear and the same on every rank (masks, scaling). An
`after_backward` edit that is not linear in the gradient (e.g. per-label clipping) would see only
this rank's part of the label's gradient; the loop calls it only on ranks that hold the label.

Only rank 0 writes records, checkpoints and progress bars.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn


def world() -> tuple[int, int]:
    """(rank, world size); (0, 1) without a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    return world()[0] == 0


def init_from_env(device: str) -> None:
    """Join the process group that `torchrun` describes in the environment (WORLD_SIZE > 1): gloo on
    CPU, NCCL on CUDA with one GPU per local rank. A no-op in a single process or when joined."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not dist.is_available():
        return
    if dist.is_initialized():
        return
    if device.startswith("cuda"):
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))  # "cuda" = this rank's GPU
        dist.init_process_group("nccl")
    else:
        dist.init_process_group("gloo")


def barrier() -> None:
    if world()[1] > 1:
        dist.barrier()


def shard(batch: dict[int, torch.Tensor], rank: int, size: int) -> dict[int, torch.Tensor]:
    """This rank's rows of a global batch {group index: (n, T + 1) blocks}: rows are numbered in group
    order and rank r takes rows r, r + size, ... (a group whose rows all go elsewhere is absent)."""
    if size == 1:
        return batch
    out: dict[int, torch.Tensor] = {}
    offset = 0
    for gi, blocks in batch.items():
        first = (rank - offset) % size  # the first row of this group that belongs to `rank`
        mine = blocks[first::size]
        if len(mine):
            out[gi] = mine
        offset += len(blocks)
    return out


@torch.no_grad()
def all_reduce_gradients(params: list[nn.Parameter], loss: torch.Tensor) -> torch.Tensor:
    """Sum gradients and the step loss over ranks, in one flat buffer per call.

    A parameter that no rank gave a gradient keeps `grad = None`, so AdamW skips it (no decay, no
    moment update) exactly as it would in one process. Returns the summed loss."""
    if world()[1] == 1:
        return loss
    ref = next(p for p in params)
    dtype = ref.dtype
    assert all(p.dtype == dtype for p in params), "gradient reduction expects one parameter dtype"
    flat = torch.cat(
        [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params]
        + [
            torch.tensor(
                [float(p.grad is not None) for p in params], dtype=dtype, device=ref.device
            )
        ]
    )
    dist.all_reduce(flat)
    loss = loss.clone()
    dist.all_reduce(loss)  # float64: the loss is reported in double precision
    offset = 0
    flags = flat[-len(params) :].tolist()
    for p, flag in zip(params, flags, strict=True):
        n = p.numel()
        p.grad = flat[offset : offset + n].view_as(p) if flag > 0 else None
        offset += n
    return loss
