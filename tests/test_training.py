"""The one training loop: exact per-label masking, the strict optimizer, reproducibility."""

import dataclasses

import pytest
import torch
from helpers import EOS, groups, tiny_gpt_neo

from unlearnbench.config import TrainConfig
from unlearnbench.data.packing import IGNORE, inputs_and_targets
from unlearnbench.losses import lm_loss
from unlearnbench.methods import RunContext
from unlearnbench.methods.sgtm import SGTMOptions, masks_for
from unlearnbench.methods.sgtm import setup as sgtm_setup
from unlearnbench.models.partition import Partition, activation_mode, forget_masks
from unlearnbench.training import Objective, lr_lambda, make_optimizer, train

CFG = TrainConfig(steps=1, batch_size=8, micro_batch_size=8, lr=1e-2, warmup_steps=0, grad_clip=0.0)
OPTS = SGTMOptions(forget_mlp_dim=16, forget_heads=1)


def sgtm_objective(model, **kw):
    ctx = RunContext(config=None, benchmark=None, model=model)
    return sgtm_setup(ctx, dataclasses.replace(OPTS, **kw))


def params(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("label", ["retain", "forget"])
def test_strict_optimizer_freezes_the_masked_side(label):
    model = tiny_gpt_neo()
    part = Partition.for_model(model, 16, 1)
    fmask = forget_masks(model, part)
    before = params(model)
    data = [g for g in groups() if g.label == label]
    # two steps, so momentum from step 1 would move parameters in step 2 if it were kept
    train(
        sgtm_objective(model, optimizer="strict"),
        data,
        dataclasses.replace(CFG, steps=2, batch_size=4),
        0,
        EOS,
        progress=False,
    )
    after = params(model)
    for name, m in fmask.items():
        frozen = m if label == "retain" else ~m
        assert torch.equal(after[name][frozen], before[name][frozen]), f"{name} moved under strict"
        assert not torch.equal(after[name][~frozen], before[name][~frozen]), f"{name} did not learn"


def test_shared_optimizer_moves_masked_parameters_through_weight_decay():
    model = tiny_gpt_neo()
    part = Partition.for_model(model, 16, 1)
    fmask = forget_masks(model, part)
    before = params(model)
    data = [g for g in groups() if g.label == "retain"]
    train(
        sgtm_objective(model, optimizer="shared"),
        data,
        dataclasses.replace(CFG, batch_size=4),
        0,
        EOS,
        progress=False,
    )
    after = params(model)
    name = "transformer.h.0.mlp.c_fc.weight"
    m = fmask[name]
    # zero gradient, but AdamW's decoupled weight decay still shrinks theta_forget (reference behaviour)
    assert not torch.equal(after[name][m], before[name][m])
    expected = before[name][m] * (1 - CFG.lr * CFG.weight_decay)
    torch.testing.assert_close(after[name][m], expected)


def _manual_sgtm_step(model, data):
    """An independent computation of one SGTM step on a mixed batch: each label's gradient is
    computed and masked on its own, then the parts are summed with token weights."""
    part = Partition.for_model(model, 16, 1)
    masks = masks_for(model, part, False)
    total = sum(int((g.blocks[:, 1:] != EOS).sum()) for g in data)
    summed = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for g in data:
        model.zero_grad(set_to_none=True)
        inputs, targets = inputs_and_targets(g.blocks, EOS)
        n = int((targets != IGNORE).sum())
        mode = "zero_forget" if g.label == "retain" else "plain"
        with activation_mode(model, part, mode):
            (lm_loss(model, inputs, targets) * n / total).backward()
        for name, p in model.named_parameters():
            grad = p.grad * masks[g.label][name] if name in masks.get(g.label, {}) else p.grad
            summed[name] += grad
    opt = make_optimizer(list(model.named_parameters()), CFG)
    for name, p in model.named_parameters():
        p.grad = summed[name]
    for group in opt.param_groups:
        group["lr"] = CFG.lr * lr_lambda(CFG, CFG.steps)(0)
    opt.step()
    return params(model)


def test_mixed_label_batch_equals_per_label_parts():
    data = groups(n_forget=4, n_retain=4)
    looped = tiny_gpt_neo()
    train(sgtm_objective(looped), data, CFG, 0, EOS, progress=False)
    manual = _manual_sgtm_step(tiny_gpt_neo(), data)
    # AdamW's first step moves each element by about lr (1e-2) whatever its gradient's size, so a
    # near-zero gradient's rounding shows up to ~1e-6 (2.1e-6 on one element of 1024, seen on one
    # CPU); a masking error would move whole rows by ~1e-2
    for name, p in looped.named_parameters():
        torch.testing.assert_close(p.detach(), manual[name], atol=1e-5, rtol=1e-5, msg=name)


@pytest.mark.parametrize("optimizer", ["shared", "strict"])
def test_sgtm_rows_of_every_label_in_one_pass_give_the_per_label_update(optimizer, monkeypatch):
    """One forward/backward over a step's blocks of every label (each retain row's forget units
    zeroed, each forget row's weight gradient on theta_forget only) gives the update of their
    separate passes, up to rounding, in fewer passes."""
    data = groups(n_forget=2, n_retain=1, n_unlabeled=2)
    cfg = dataclasses.replace(CFG, batch_size=5, micro_batch_size=4)
    forwards = {}
    import unlearnbench.training as training

    results = {}
    for one_pass in (False, True):
        model = tiny_gpt_neo()
        calls = []
        real_loss = training.lm_loss
        monkeypatch.setattr(
            training,
            "lm_loss",
            lambda m, x, y, calls=calls, f=real_loss: calls.append(len(x)) or f(m, x, y),
        )
        train(
            sgtm_objective(model, optimizer=optimizer, one_pass=one_pass),
            data,
            cfg,
            0,
            EOS,
            progress=False,
        )
        monkeypatch.setattr(training, "lm_loss", real_loss)
        results[one_pass], forwards[one_pass] = params(model), calls
    for name, p in results[False].items():
        torch.testing.assert_close(results[True][name], p, atol=1e-6, rtol=1e-5, msg=name)
    # forget 2, retain 1 and unlabeled 2 blocks: micro-batches of 4 and 1 instead of 2, 1 and 2
    assert sorted(forwards[False]) == [1, 2, 2] and sorted(forwards[True]) == [1, 4]
    # theta_forget got nothing from the retain rows: the same step without forget or unlabeled
    # blocks leaves it where weight decay alone puts it
    model = tiny_gpt_neo()
    before = params(model)
    only_retain = [g for g in data if g.label == "retain"]
    train(
        sgtm_objective(model, optimizer=optimizer),
        only_retain,
        dataclasses.replace(cfg, batch_size=1),
        0,
        EOS,
        progress=False,
    )
    part = Partition.for_model(model, 16, 1)
    name = "transformer.h.0.mlp.c_fc.weight"
    m = forget_masks(model, part)[name]
    shrink = 1.0 if optimizer == "strict" else 1 - CFG.lr * CFG.weight_decay
    torch.testing.assert_close(params(model)[name][m], before[name][m] * shrink)


def test_masking_the_summed_gradient_would_differ():
    """Documents why per-label masking matters: masking after summing leaks retain-data gradient
    into theta_forget (or drops forget gradient), so the loop must not do that."""
    data = groups(n_forget=4, n_retain=4)
    model = tiny_gpt_neo()
    part = Partition.for_model(model, 16, 1)
    fmask = forget_masks(model, part)
    total = sum(int((g.blocks[:, 1:] != EOS).sum()) for g in data)
    model.zero_grad()
    for g in data:  # plain forward for both: what a label-blind loop would do
        inputs, targets = inputs_and_targets(g.blocks, EOS)
        n = int((targets != IGNORE).sum())
        (lm_loss(model, inputs, targets) * n / total).backward()
    blind = model.get_submodule("transformer.h.0.mlp.c_fc").weight.grad[
        fmask["transformer.h.0.mlp.c_fc.weight"]
    ]
    looped = tiny_gpt_neo()
    seen = {}

    def record(m, label):
        seen[label] = m.get_submodule("transformer.h.0.mlp.c_fc").weight.grad.clone()

    obj = sgtm_objective(looped, one_pass=False)  # its own pass per label, to read each gradient
    obj.after_backward = record
    train(obj, data, CFG, 0, EOS, progress=False)
    exact = seen["forget"][fmask["transformer.h.0.mlp.c_fc.weight"]]
    assert not torch.allclose(blind, exact), "retain data would leak into theta_forget"


def test_micro_batching_does_not_change_the_update(monkeypatch):
    # plain SGD makes the update linear in the accumulated gradient, so rounding is all that differs
    # (Adam's g / sqrt(v) turns rounding noise on near-zero gradients into full-size steps)
    monkeypatch.setattr(
        "unlearnbench.training.make_optimizer",
        lambda named, cfg: torch.optim.SGD([p for _, p in named], lr=cfg.lr),
    )
    data = groups(n_forget=4, n_retain=4, n_unlabeled=4)
    a, b = tiny_gpt_neo(), tiny_gpt_neo()
    cfg = dataclasses.replace(CFG, steps=3, batch_size=12)
    train(
        sgtm_objective(a),
        data,
        dataclasses.replace(cfg, micro_batch_size=12),
        0,
        EOS,
        progress=False,
    )
    train(
        sgtm_objective(b),
        data,
        dataclasses.replace(cfg, micro_batch_size=1),
        0,
        EOS,
        progress=False,
    )
    for (name, p), q in zip(a.named_parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, atol=1e-7, rtol=1e-5, msg=name)


def test_same_seed_is_bit_identical_and_seeds_differ():
    data = groups(n_forget=8, n_retain=8)
    cfg = dataclasses.replace(CFG, steps=4, batch_size=4, micro_batch_size=2)
    runs = []
    for seed in (0, 0, 1):
        model = tiny_gpt_neo()
        res = train(Objective(model=model), data, cfg, seed, EOS, progress=False)
        runs.append((params(model), [h["loss"] for h in res.history]))
    assert runs[0][1] == runs[1][1]
    assert all(torch.equal(runs[0][0][n], runs[1][0][n]) for n in runs[0][0])
    assert runs[0][1] != runs[2][1], "a different seed must draw different batches"


def test_trains_on_and_batch_plan_select_blocks():
    data = groups(n_forget=4, n_retain=4)
    seen = []

    def loss(model, inputs, targets, label):
        seen.append(label)
        return lm_loss(model, inputs, targets)

    model = tiny_gpt_neo()
    obj = Objective(model=model, loss=loss, trains_on=lambda g: g.label != "forget")
    train(obj, data, dataclasses.replace(CFG, steps=3, batch_size=4), 0, EOS, progress=False)
    assert set(seen) == {"retain"}
    seen.clear()
    obj = Objective(
        model=model, loss=loss, batch_plan={"forget": 0.5, "retain": 0.5}, reduction="labels"
    )
    cfg = dataclasses.replace(CFG, steps=2, batch_size=4, micro_batch_size=1)
    train(obj, data, cfg, 0, EOS, progress=False)
    assert seen.count("forget") == 4 and seen.count("retain") == 4


def test_no_blocks_selected_is_an_error():
    data = [g for g in groups() if g.label == "forget"]
    obj = Objective(model=tiny_gpt_neo(), trains_on=lambda g: g.label != "forget")
    with pytest.raises(ValueError, match="no training blocks"):
        train(obj, data, CFG, 0, EOS, progress=False)


def test_label_blind_objectives_run_one_pass_with_the_same_update(monkeypatch):
    """no-filter's blocks of all labels run as one pass; the update equals the per-label sum."""
    from unlearnbench.training import label_blind

    monkeypatch.setattr(
        "unlearnbench.training.make_optimizer",
        lambda named, cfg: torch.optim.SGD([p for _, p in named], lr=cfg.lr),
    )
    data = groups(n_forget=4, n_retain=4, n_unlabeled=4)
    cfg = dataclasses.replace(CFG, steps=2, batch_size=12, micro_batch_size=12)
    blind, per_label = tiny_gpt_neo(), tiny_gpt_neo()
    passes = []

    def counting_loss(model, inputs, targets, label):
        passes.append(label)
        return lm_loss(model, inputs, targets)

    obj = Objective(model=blind)
    assert label_blind(obj)
    train(obj, data, cfg, 0, EOS, progress=False)
    seen = Objective(model=per_label, loss=counting_loss)  # a custom loss: labels run apart
    assert not label_blind(seen)
    train(seen, data, cfg, 0, EOS, progress=False)
    assert len(passes) > 2, "the per-label objective must run several passes per step"
    for (name, p), q in zip(blind.named_parameters(), per_label.parameters(), strict=True):
        torch.testing.assert_close(p, q, atol=1e-7, rtol=1e-5, msg=name)


def test_compile_is_refused_for_objectives_that_hook_the_forward():
    """torch.compile does not guard on submodule hooks: a masked pass would silently run unmasked."""
    from unlearnbench.config import ConfigError

    model = tiny_gpt_neo()
    before = params(model)
    with pytest.raises(ConfigError, match="compile"):
        train(
            sgtm_objective(model),
            groups(),
            dataclasses.replace(CFG, compile=True),
            0,
            EOS,
            progress=False,
        )
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
    assert not hasattr(model, "_compiled_call_impl") or model._compiled_call_impl is None
