"""residual-routing against its reference (kxcloud/gradient-routing california-steering-scalar.py,
model.py): which positions and which residual dimensions receive gradient, and which blocks."""

import pytest
import torch
import torch.nn.functional as F
from helpers import VOCAB, tiny_gpt_neo

from unlearnbench.methods.residual_routing import default_layers, residual_mask, routing_hooks

ROUTED = 11  # the routed token id


def block_output_grads(model, inputs, targets, layers, mask):
    """Gradient of the loss w.r.t. each block's raw output (before any routing mask), {l: (B,T,d)}."""
    raw = {}

    def keep(index):
        def fn(module, args, output):
            output[0].retain_grad()
            raw[index] = output[0]

        return fn

    body = model.transformer
    # registered first, so they see the block's output before the routing hook replaces it
    handles = [body.h[i].register_forward_hook(keep(i)) for i in range(len(body.h))]
    handles += routing_hooks(model, layers, mask) if mask is not None else []
    model.zero_grad()
    logits = model(input_ids=inputs).logits
    F.cross_entropy(logits.flatten(0, 1), targets.flatten()).backward()
    for h in handles:
        h.remove()
    return {i: x.grad for i, x in raw.items()}


def test_routed_positions_pass_gradient_only_through_the_routed_dimension():
    """At the last block's output (nothing downstream is masked): routed positions keep the plain
    gradient on `dim` and get none on any other dimension; every other position is untouched.
    The inverse rule (mask `dim` at the non-routed positions) fails each assertion."""
    torch.manual_seed(0)
    model = tiny_gpt_neo(layers=2)
    inputs = torch.randint(1, VOCAB, (2, 8))
    targets = torch.randint(1, VOCAB, (2, 8))
    targets[targets == ROUTED] = ROUTED + 1
    targets[0, 3] = targets[1, 5] = ROUTED
    routed = targets == ROUTED  # (B, T)
    dim, d, last = 3, model.config.hidden_size, 1
    mask = residual_mask(targets, torch.tensor([ROUTED]), d, dim)

    plain = block_output_grads(model, inputs, targets, [last], None)[last]
    masked = block_output_grads(model, inputs, targets, [last], mask)[last]
    others = [i for i in range(d) if i != dim]
    assert torch.allclose(masked[routed][:, dim], plain[routed][:, dim])
    assert torch.all(masked[routed][:, others] == 0)
    assert plain[routed][:, others].abs().sum() > 0  # there was gradient to remove
    assert torch.allclose(masked[~routed], plain[~routed])  # other positions: every dim unchanged


def test_the_mask_sits_at_block_outputs_of_the_routed_blocks_only():
    """Masking block 0 only: block 0's output at routed positions passes gradient only on `dim`;
    block 1 (not routed) is untouched, so its own output's gradient equals the plain one."""
    torch.manual_seed(1)
    model = tiny_gpt_neo(layers=2)
    inputs = torch.randint(1, VOCAB, (2, 8))
    targets = torch.randint(1, VOCAB, (2, 8))
    targets[0, 2] = ROUTED
    routed = targets == ROUTED
    dim, d = 0, model.config.hidden_size
    mask = residual_mask(targets, torch.tensor([ROUTED]), d, dim)

    plain = block_output_grads(model, inputs, targets, [0], None)
    masked = block_output_grads(model, inputs, targets, [0], mask)
    assert torch.allclose(masked[1], plain[1])  # downstream of nothing masked
    # what reaches block 0's output through the mask: at routed positions only `dim`
    grad_through = mask * masked[0]
    assert torch.all(grad_through[routed][:, 1:] == 0)
    assert grad_through[routed][:, dim].abs().sum() > 0


def test_residual_mask_ignores_padding_targets():
    targets = torch.tensor([[ROUTED, -100, 5]])
    m = residual_mask(targets, torch.tensor([ROUTED, -100]), 4, 2)
    assert m[0, 0].tolist() == [0, 0, 1, 0]
    assert m[0, 1].tolist() == [1, 1, 1, 1] and m[0, 2].tolist() == [1, 1, 1, 1]


@pytest.mark.parametrize(
    "n, blocks", [(16, range(6, 16)), (6, range(2, 6)), (4, range(1, 4)), (8, range(3, 8))]
)
def test_default_blocks_keep_the_reference_proportion(n, blocks):
    # reference: blocks 6..15 of 16 (its list names 6..18; 16..18 do not exist)
    assert default_layers(n) == tuple(blocks)
