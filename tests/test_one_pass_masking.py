"""Every masking method's one-pass step (a step's blocks of every label in one forward/backward,
each row masked as its label's own pass would be) against the per-label passes (`one_pass=False`,
the reference path), on a real GPT-Neo: the step's gradient to relative 1e-5, the update in the
shared and strict optimizers, and the exact zeros each label's rows must leave.

Tolerance: the gradients differ only by the float32 rounding of their summation order (measured on
a CPU: at most 4e-7 of a tensor's largest element), so each tensor must match to 1e-5 of its
largest element; a masking error moves whole slices by their full size."""

import dataclasses

import pytest
import torch
from helpers import EOS, groups, random_blocks, tiny_gpt_neo

import unlearnbench.training as training
from unlearnbench.config import TrainConfig
from unlearnbench.data.packing import IGNORE, inputs_and_targets
from unlearnbench.losses import autocast, lm_loss
from unlearnbench.methods import RunContext
from unlearnbench.methods.activation_masking import ActivationMaskingOptions
from unlearnbench.methods.activation_masking import setup as am_setup
from unlearnbench.methods.gradient_routing import GradientRoutingOptions
from unlearnbench.methods.gradient_routing import setup as gr_setup
from unlearnbench.methods.sgtm import SGTMOptions
from unlearnbench.methods.sgtm import setup as sgtm_setup
from unlearnbench.models.kernels import use_fused_kernels
from unlearnbench.models.partition import Partition, forget_masks, retain_bias_names

CFG = TrainConfig(steps=2, batch_size=6, lr=1e-2, warmup_steps=0, grad_clip=0.0)
PART = dict(forget_mlp_dim=16, forget_heads=1)

# name -> (setup, options): every masking method, and SGTM's variants that change what shares a pass
METHODS = {
    "sgtm": (sgtm_setup, SGTMOptions(**PART)),
    "sgtm-one-layer": (sgtm_setup, SGTMOptions(**PART, layers=(1,))),
    "sgtm-mask-embeddings": (sgtm_setup, SGTMOptions(**PART, mask_embeddings=True)),
    "gradient-routing": (gr_setup, GradientRoutingOptions(**PART)),
    "activation-masking": (am_setup, ActivationMaskingOptions(**PART)),
}


def objective(method: str, model, **kw):
    setup, options = METHODS[method]
    ctx = RunContext(config=None, benchmark=None, model=model)
    return setup(ctx, dataclasses.replace(options, **kw))


def train_recording(method, cfg, one_pass, monkeypatch, data=None, seed=0, **kw):
    """Train a fresh tiny model; returns (its parameters, each step's gradient, forward sizes)."""
    model = tiny_gpt_neo()
    steps, forwards = [], []
    reduce, loss = training.all_reduce_gradients, training.lm_loss

    def spy_reduce(params, step_loss):  # the step's summed gradient, as the optimizer gets it
        out = reduce(params, step_loss)
        steps.append([None if p.grad is None else p.grad.clone() for p in params])
        return out

    def spy_loss(m, x, y):
        forwards.append(len(x))
        return loss(m, x, y)

    monkeypatch.setattr(training, "all_reduce_gradients", spy_reduce)
    monkeypatch.setattr(training, "lm_loss", spy_loss)
    data = data or groups(n_forget=4, n_retain=4, n_unlabeled=4)  # drawn 3 or 6 per step
    training.train(
        objective(method, model, one_pass=one_pass, **kw), data, cfg, seed, EOS, progress=False
    )
    monkeypatch.setattr(training, "all_reduce_gradients", reduce)
    monkeypatch.setattr(training, "lm_loss", loss)
    names = [n for n, _ in model.named_parameters()]
    grads = [dict(zip(names, step, strict=True)) for step in steps]
    return {n: p.detach().clone() for n, p in model.named_parameters()}, grads, forwards


def assert_same_gradient(one: torch.Tensor, ref: torch.Tensor, name: str, tol=1e-5) -> None:
    scale = ref.abs().max().item()
    torch.testing.assert_close(one, ref, rtol=tol, atol=tol * scale, msg=name)


def ceil(a: int, b: int) -> int:
    return -(-a // b)


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("micro_batch_size", [6, 3, 1])  # 3: the retain rows split across two
@pytest.mark.parametrize("fused", [True, False])
def test_one_pass_gradient_equals_the_per_label_sum(method, micro_batch_size, fused, monkeypatch):
    """One step over 2 blocks of each label (each block with a separator inside), in group order
    forget, retain, unlabeled: the step's gradient of the one pass equals the per-label passes'."""
    data = groups(n_forget=2, n_retain=2, n_unlabeled=2)
    cfg = dataclasses.replace(CFG, steps=1, micro_batch_size=micro_batch_size, fused_kernels=fused)
    _, [ref], ref_forwards = train_recording(method, cfg, False, monkeypatch, data)
    _, [one], one_forwards = train_recording(method, cfg, True, monkeypatch, data)
    for name, g in ref.items():
        assert (g is None) == (one[name] is None), name
        if g is not None:
            assert_same_gradient(one[name], g, name)
    # the passes each path ran: three labels of 2 blocks, or 6 blocks in one pass (SGTM with
    # masked embeddings keeps its forget blocks in a pass of their own)
    m = micro_batch_size
    assert len(ref_forwards) == 3 * ceil(2, m), ref_forwards
    shared = ceil(2, m) + ceil(4, m) if method == "sgtm-mask-embeddings" else ceil(6, m)
    assert len(one_forwards) == shared, one_forwards


@pytest.mark.parametrize(
    "method, optimizer",  # only sgtm has a strict optimizer
    [
        ("sgtm", "shared"),
        ("sgtm", "strict"),
        ("gradient-routing", "shared"),
        ("activation-masking", "shared"),
    ],
)
def test_one_pass_update_equals_the_per_label_update(method, optimizer, monkeypatch):
    """Four AdamW steps of 2 forget or retain blocks: at seed 1 the first step holds retain blocks
    only, the last forget blocks only, the others both (strict mode freezes the other side in the
    single-label steps). Strict: after the first step theta_forget is its initial value, bit for
    bit, on both paths."""
    kw = {"optimizer": optimizer} if method == "sgtm" else {}
    cfg = dataclasses.replace(CFG, steps=4, batch_size=2, micro_batch_size=2)
    data = groups(n_forget=4, n_retain=4)
    ref, _, _ = train_recording(method, cfg, False, monkeypatch, data, seed=1, **kw)
    one, _, _ = train_recording(method, cfg, True, monkeypatch, data, seed=1, **kw)
    for name, p in ref.items():
        # AdamW moves each element by about lr whatever its gradient's size, so a near-zero
        # gradient's rounding can show up to ~1e-6; a masking error would move slices by ~1e-2
        torch.testing.assert_close(one[name], p, atol=1e-5, rtol=1e-5, msg=name)
    if optimizer == "strict":
        init = dict(tiny_gpt_neo().named_parameters())
        fmask = forget_masks(tiny_gpt_neo(), Partition.for_model(tiny_gpt_neo(), **PART))
        first = dataclasses.replace(cfg, steps=1)
        for one_pass in (False, True):
            after, _, _ = train_recording(method, first, one_pass, monkeypatch, data, seed=1, **kw)
            for name, m in fmask.items():
                assert torch.equal(after[name][m], init[name][m]), f"{name} moved in strict mode"
                assert not torch.equal(after[name][~m], init[name][~m]), f"{name} did not learn"


# --- exact zeros ---------------------------------------------------------------------------------


def one_pass_gradient(obj, labels: list[str], counted: str | None, bf16: bool = False):
    """The gradient of one mixed micro-batch run in one pass; only the rows labeled `counted`
    contribute to the loss (the others' targets ignored; None: every row)."""
    model = obj.model
    inputs, targets = inputs_and_targets(random_blocks(len(labels)), EOS)
    if counted is not None:
        targets[[label != counted for label in labels]] = IGNORE
    model.zero_grad(set_to_none=True)
    with obj.row_mode(labels), autocast("cpu", bf16):
        lm_loss(model, inputs, targets).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}


LABELS = ["forget", "retain", "unlabeled", "retain", "forget"]


@pytest.mark.parametrize("fused, bf16", [(True, False), (False, False), (True, True)])
def test_sgtm_one_pass_exact_zeros(fused, bf16):
    """In a mixed one-pass micro-batch: retain rows give theta_forget exactly 0; forget rows give
    theta_retain and the output biases exactly 0, theta_forget and the joint parameters their
    plain gradient (the forward uses the whole model; gradient flows through theta_retain). Under
    bf16 autocast too (the zeros exact, the gradients float32, the rest to bf16's rounding)."""
    model = use_fused_kernels(tiny_gpt_neo(), fused)
    obj = objective("sgtm", model, one_pass=True)
    fmask = forget_masks(model, Partition.for_model(model, **PART))
    biases = set(retain_bias_names(model, Partition.for_model(model, **PART)))
    from_retain = one_pass_gradient(obj, LABELS, "retain", bf16)
    for name, m in fmask.items():
        assert (from_retain[name][m] == 0).all(), f"{name}: theta_forget learned from retain rows"
        assert (from_retain[name][~m] != 0).any(), f"{name}: theta_retain got nothing"
    from_forget = one_pass_gradient(obj, LABELS, "forget", bf16)
    # the same rows in a plain pass: theta_forget's and the joint parameters' reference gradient
    inputs, targets = inputs_and_targets(random_blocks(len(LABELS)), EOS)
    targets[[label != "forget" for label in LABELS]] = IGNORE
    model.zero_grad(set_to_none=True)
    with autocast("cpu", bf16):
        loss = lm_loss(model, inputs, targets)
    loss.backward()
    plain = {n: p.grad for n, p in model.named_parameters()}
    tol = 2e-2 if bf16 else 1e-5  # bf16 keeps 8 bits of mantissa
    for name, g in from_forget.items():
        assert g.dtype == torch.float32, name
        if name in fmask:
            m = fmask[name]
            assert (g[~m] == 0).all(), f"{name}: theta_retain learned from forget rows"
            assert_same_gradient(g[m], plain[name][m], name, tol)
        elif name in biases:
            assert (g == 0).all(), f"{name}: an output bias (theta_retain) learned from forget rows"
        else:  # embeddings, layer norms: the full gradient, through theta_retain too
            assert g.abs().sum() > 0, name
            assert_same_gradient(g, plain[name], name, tol)


@pytest.mark.parametrize("method", ["gradient-routing", "activation-masking"])
def test_routing_one_pass_exact_zeros(method):
    """Retain rows give theta_forget exactly 0; forget rows give the retain rows of c_fc and
    q/k/v exactly 0 (and, when masking, the retain columns of c_proj and out_proj)."""
    model = tiny_gpt_neo()
    obj = objective(method, model, one_pass=True)
    fmask = forget_masks(model, Partition.for_model(model, **PART))
    from_retain = one_pass_gradient(obj, LABELS, "retain")
    for name, m in fmask.items():
        assert (from_retain[name][m] == 0).all(), f"{name}: theta_forget learned from retain rows"
    from_forget = one_pass_gradient(obj, LABELS, "forget")
    for name, m in fmask.items():
        outputs = name.endswith(("c_proj.weight", "out_proj.weight"))
        if outputs and method == "gradient-routing":  # detached values still reach c_proj
            assert (from_forget[name][~m] != 0).any(), name
        else:
            assert (from_forget[name][~m] == 0).all(), f"{name}: retain side learned from forget"
        assert (from_forget[name][m] != 0).any(), f"{name}: forget side got nothing"
