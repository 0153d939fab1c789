"""The SGTM partition on a real GPT-Neo: which parameters get gradient in each mode, and ablation."""

import pytest
import torch
import torch.nn.functional as F
from helpers import EOS, VOCAB, random_blocks, tiny_gpt_neo

from unlearnbench.data.packing import inputs_and_targets
from unlearnbench.losses import lm_loss
from unlearnbench.methods.sgtm import masks_for
from unlearnbench.models.partition import (
    Partition,
    _PartitionLinear,
    _RowPlan,
    _unit_masks,
    ablate,
    activation_mode,
    edit_units,
    forget_masks,
    joint_parameter_names,
    retain_bias_names,
    row_modes,
)


def _backward(model, mode_part=None, mode="plain"):
    inputs, targets = inputs_and_targets(random_blocks(3), EOS)
    model.zero_grad(set_to_none=True)
    if mode_part is None:
        lm_loss(model, inputs, targets).backward()
    else:
        with activation_mode(model, mode_part, mode):
            lm_loss(model, inputs, targets).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.fixture
def model_and_part():
    model = tiny_gpt_neo()
    return model, Partition.for_model(model, forget_mlp_dim=16, forget_heads=1)


def test_forget_masks_slice_shapes(model_and_part):
    model, part = model_and_part
    masks = forget_masks(model, part)
    # 2 layers x (c_fc w, c_fc b, c_proj w, q, k, v, out_proj w)
    assert len(masks) == 14
    fc = masks["transformer.h.0.mlp.c_fc.weight"]  # (64, 32)
    assert fc[48:].all() and not fc[:48].any()
    proj = masks["transformer.h.0.mlp.c_proj.weight"]  # (32, 64)
    assert proj[:, 48:].all() and not proj[:, :48].any()
    q = masks["transformer.h.1.attn.attention.q_proj.weight"]  # (32, 32), d_head 8
    assert q[24:].all() and not q[:24].any()
    out = masks["transformer.h.1.attn.attention.out_proj.weight"]
    assert out[:, 24:].all() and not out[:, :24].any()
    # output biases belong to retain
    assert "transformer.h.0.mlp.c_proj.bias" not in masks
    assert "transformer.h.0.attn.attention.out_proj.bias" not in masks


def test_forget_rows_give_theta_retain_exactly_zero_gradient(model_and_part):
    """SGTM's forget pass as the method runs it (rows marked forget, no mask applied afterwards):
    theta_retain's slices and output biases get exactly zero, theta_forget and joint get some."""
    model, part = model_and_part
    inputs, targets = inputs_and_targets(random_blocks(3), EOS)
    model.zero_grad(set_to_none=True)
    with row_modes(model, part, ["plain"] * 3, forget_only=[True] * 3):
        lm_loss(model, inputs, targets).backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    fmask = forget_masks(model, part)
    for name, g in grads.items():
        if name in fmask:
            assert (g[~fmask[name]] == 0).all(), f"{name}: retain slice got gradient"
            assert g[fmask[name]].abs().sum() > 0, f"{name}: forget slice got no gradient"
        elif name.endswith(("c_proj.bias", "out_proj.bias")):
            assert (g == 0).all(), f"{name} is theta_retain and must not learn on forget data"
        else:
            assert g.abs().sum() > 0, f"{name}: joint parameter got no gradient"


def test_masked_embeddings_leave_forget_data_only_theta_forget(model_and_part):
    """The forget update mask admits theta_forget's elements and never theta_retain's output
    biases; with mask_embeddings it freezes the joint parameters too, without it leaves them."""
    model, part = model_and_part
    fmask = forget_masks(model, part)
    joint = set(joint_parameter_names(model, part))
    assert joint, "the partition names joint parameters"
    for mask_embeddings in (False, True):
        allowed = masks_for(model, part, mask_embeddings)["forget"]
        for name, _ in model.named_parameters():
            if name in fmask:
                assert torch.equal(allowed[name], fmask[name]), name
            elif name in joint:
                assert (name in allowed) == mask_embeddings, name
                assert name not in allowed or not allowed[name].any(), name
            elif name in retain_bias_names(model, part):  # theta_retain's output biases
                assert not allowed[name].any(), name
            else:  # outside the masked blocks (the final layer norm): free on forget data
                assert name not in allowed, name


def test_retain_mode_gives_theta_forget_exactly_zero_gradient(model_and_part):
    model, part = model_and_part
    grads = _backward(model, part, "zero_forget")  # activation masking alone, no gradient mask
    fmask = forget_masks(model, part)
    for name, m in fmask.items():
        assert (grads[name][m] == 0).all(), f"{name}: theta_forget got gradient in retain mode"
        assert grads[name][~m].abs().sum() > 0, f"{name}: theta_retain got no gradient"


def test_plain_mode_equals_the_unhooked_model(model_and_part):
    model, part = model_and_part
    x = random_blocks(2)[:, :-1]
    with torch.no_grad():
        ref = model(input_ids=x).logits
        with activation_mode(model, part, "plain"):
            same = model(input_ids=x).logits
        with activation_mode(model, part, "zero_forget"):
            masked = model(input_ids=x).logits
        after = model(input_ids=x).logits  # hooks removed on exit
    assert torch.equal(ref, same) and torch.equal(ref, after)
    assert not torch.allclose(ref, masked)


def test_ablation_zeroes_exactly_theta_forget(model_and_part):
    model, part = model_and_part
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    ablate(model, part)
    fmask = forget_masks(model, part)
    for name, p in model.named_parameters():
        if name in fmask:
            assert (p[fmask[name]] == 0).all()
            assert torch.equal(p[~fmask[name]], before[name][~fmask[name]])
        else:
            assert torch.equal(p, before[name]), f"{name} changed by ablation"


def test_ablated_model_equals_retain_mode(model_and_part):
    model, part = model_and_part
    x = random_blocks(2)[:, :-1]
    with torch.no_grad(), activation_mode(model, part, "zero_forget"):
        masked = model(input_ids=x).logits
    ablate(model, part)
    with torch.no_grad():
        ablated = model(input_ids=x).logits
    torch.testing.assert_close(ablated, masked, atol=1e-5, rtol=1e-5)


def test_partition_rejects_out_of_range_sizes():
    model = tiny_gpt_neo()
    with pytest.raises(ValueError, match="forget_mlp_dim"):
        Partition.for_model(model, forget_mlp_dim=64, forget_heads=1)
    with pytest.raises(ValueError, match="forget_heads"):
        Partition.for_model(model, forget_mlp_dim=8, forget_heads=4)


def test_row_modes_run_each_row_in_its_own_mode():
    model = tiny_gpt_neo()
    part = Partition.for_model(model, 16, 1)
    x = torch.randint(1, VOCAB, (4, 12), generator=torch.Generator().manual_seed(0))
    modes = ["zero_forget", "plain", "zero_retain", "detach_retain"]
    alone = {}
    for mode in set(modes):
        with activation_mode(model, part, mode):
            alone[mode] = model(input_ids=x).logits  # (B, T, V)
    assert not torch.allclose(alone["plain"], alone["zero_forget"])
    with row_modes(model, part, modes):
        mixed = model(input_ids=x).logits
    for b, mode in enumerate(modes):  # each row's value bit for bit as in its own mode's pass
        assert torch.equal(mixed[b], alone[mode][b]), mode
    assert torch.equal(model(input_ids=x).logits, alone["plain"])  # the plain forward after


def test_forget_only_rows_leave_the_forward_and_restore_the_modules():
    model = tiny_gpt_neo()
    part = Partition.for_model(model, 16, 1)
    x = torch.randint(1, VOCAB, (3, 12), generator=torch.Generator().manual_seed(0))
    plain = model(input_ids=x).logits
    with row_modes(model, part, ["plain"] * 3, forget_only=[True, False, True]):
        masked = model(input_ids=x).logits
    torch.testing.assert_close(masked, plain, atol=1e-6, rtol=1e-6)  # F.linear as nn.Linear
    assert not any("forward" in vars(m) for m in model.modules()), "a patched forward was left"


def _row_reference(x, weight, bias, side, edit, mode, forget_only, s):
    """One row (1, T, i) as its own pass runs it, with plain autograd: the pass's activation edit
    (`edit_units`, as `activation_mode` applies it) at c_fc's output (side "out") or out_proj's
    input (side "in"), and the weights a forget_only row may not update detached."""
    n = weight.shape[0] if side == "out" else weight.shape[1]
    keep, drop = _unit_masks(n, s, x.device, x.dtype)

    def edited(u):
        return edit_units(u, mode, keep, drop) if edit else u

    w_r, w_f = (weight[:s], weight[s:]) if side == "out" else (weight[:, :s], weight[:, s:])
    if forget_only:
        w_r = w_r.detach()
    w = torch.cat([w_r, w_f], dim=0 if side == "out" else 1)
    if side == "out":
        b = torch.cat([bias[:s].detach() if forget_only else bias[:s], bias[s:]])
        return edited(F.linear(x, w, b))
    return F.linear(edited(x), w, bias.detach() if forget_only else bias)


@pytest.mark.parametrize("side, edit", [("out", True), ("out", False), ("in", True), ("in", False)])
def test_partition_linear_equals_each_rows_own_pass(side, edit):
    """`_PartitionLinear` on rows in every mode, with and without forget_only, in non-contiguous
    runs: each row's output as its own pass gives it (bit for bit), the gradients the sum of the
    rows' own passes to rounding, and exactly 0 wherever that sum is exactly 0."""
    g = torch.Generator().manual_seed(0)
    T, i, o = 5, 12, 10
    s = 7 if side == "out" else 5  # where the forget units begin (of o outputs or i inputs)
    modes = ["plain", "zero_forget", "zero_retain", "detach_retain"] * 2 + ["zero_forget"]
    forget_only = [False] * 4 + [True] * 4 + [False]
    x = torch.randn(len(modes), T, i, generator=g, requires_grad=True)
    weight = torch.randn(o, i, generator=g, requires_grad=True)
    bias = torch.randn(o, generator=g, requires_grad=True)
    upstream = torch.randn(len(modes), T, o, generator=g)  # the loss's gradient at y
    plan = _RowPlan.make(side, edit, modes, forget_only)
    y = _PartitionLinear.apply(x, weight, bias, plan, s)
    rows = [
        _row_reference(x[b : b + 1], weight, bias, side, edit, modes[b], forget_only[b], s)
        for b in range(len(modes))
    ]
    assert torch.equal(y, torch.cat(rows)), "a row's output differs from its own pass"
    zeros = 0
    for counted in [None, *range(len(modes))]:  # every row, then each row alone
        up = (
            upstream
            if counted is None
            else upstream * (torch.arange(len(modes)) == counted)[:, None, None]
        )
        ours = torch.autograd.grad((y * up).sum(), (x, weight, bias), retain_graph=True)
        ref = torch.autograd.grad(
            (torch.cat(rows) * up).sum(), (x, weight, bias), retain_graph=True
        )
        for name, a, r in zip(("input", "weight", "bias"), ours, ref, strict=True):
            torch.testing.assert_close(a, r, rtol=1e-5, atol=1e-5, msg=f"{name}, row {counted}")
            assert (a[r == 0] == 0).all(), f"{name}, row {counted}: not exactly 0 as in its pass"
            zeros += int((r[r.abs().sum(-1) > 0] == 0).sum()) if counted is not None else 0
    assert zeros > 0, "no row's pass left an exact 0 inside a slice it reaches: nothing tested"


def test_a_bf16_gradient_over_several_row_runs_is_summed_in_float32():
    """Under bf16 autocast the one pass sums its row runs' weight-gradient products in float32 and
    rounds once, as the per-label passes' products are summed in the fp32 parameters' gradient (a
    bf16 running sum rounds at every run)."""
    from unlearnbench.models.partition import _mm_sum

    g = torch.Generator().manual_seed(0)
    terms = [
        (torch.randn(16, 8, generator=g).bfloat16(), torch.randn(8, 16, generator=g).bfloat16())
        for _ in range(8)
    ]
    out = torch.empty(16, 16, dtype=torch.bfloat16)
    _mm_sum(out, terms)
    expected = sum(torch.mm(a, b).float() for a, b in terms).bfloat16()
    assert torch.equal(out, expected)
