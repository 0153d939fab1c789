"""ERA (expand, route, ablate, coherence) and DEMix on a real GPT-Neo."""

import math
from types import SimpleNamespace

import torch
from helpers import EOS, VOCAB, random_blocks, tiny_gpt_neo
from transformers import GPTNeoForCausalLM

from unlearnbench.config import TrainConfig
from unlearnbench.data.packing import BlockGroup, inputs_and_targets
from unlearnbench.losses import split_losses
from unlearnbench.methods import RunContext, labeled_view
from unlearnbench.methods._coherence import coherence_phase
from unlearnbench.methods._token_weights import token_weights, unigram_counts
from unlearnbench.methods.demix import (
    DEMixOptions,
    TwoExperts,
    add_forget_experts,
    keep_retain_experts,
)
from unlearnbench.methods.demix import setup as demix_setup
from unlearnbench.methods.era import ERAOptions, era_mask, era_objective
from unlearnbench.methods.routing import routed_positions
from unlearnbench.models.expand import added_units, contract_mlp, expand_mlp
from unlearnbench.training import Objective, train


def logits(model, inputs):
    with torch.no_grad():
        return model(input_ids=inputs).logits


INPUTS, TARGETS = inputs_and_targets(random_blocks(3), EOS)


# --- expand / contract -----------------------------------------------------------------------------


def test_expanded_model_with_zero_added_units_computes_the_original_logits():
    model = tiny_gpt_neo()
    base = logits(model, INPUTS)
    orig = {n: p.detach().clone() for n, p in model.named_parameters()}
    expand_mlp(model, (0,), 8, torch.Generator().manual_seed(0))
    fc = model.transformer.h[0].mlp.c_fc
    assert fc.weight.shape == (72, 32) and model.transformer.h[0].mlp.c_proj.weight.shape == (
        32,
        72,
    )
    assert model.transformer.h[1].mlp.c_fc.weight.shape == (64, 32), "only target layers expand"
    assert torch.equal(fc.weight[:64], orig["transformer.h.0.mlp.c_fc.weight"]), "originals kept"
    assert (fc.bias[64:] == 0).all() and fc.weight[64:].abs().sum() > 0
    assert abs(fc.weight[64:].std().item() - 0.02) < 0.005, "added units initialized like the model"
    assert not torch.allclose(logits(model, INPUTS), base), "random added units change the output"
    with torch.no_grad():
        model.transformer.h[0].mlp.c_proj.weight[:, 64:] = 0.0
    torch.testing.assert_close(logits(model, INPUTS), base)


def test_contraction_restores_the_shape_and_equals_zero_ablating_added_units(tmp_path):
    model = tiny_gpt_neo()
    expand_mlp(model, (0, 1), 8, torch.Generator().manual_seed(0))
    with torch.no_grad():  # make the added units matter, then compare with zero-ablating them
        for i in (0, 1):
            model.transformer.h[i].mlp.c_fc.bias[64:] = 0.5
    assert added_units(model) == {0: slice(64, 72), 1: slice(64, 72)}
    zeroed = {k: v.clone() for k, v in model.state_dict().items()}
    for i in (0, 1):
        zeroed[f"transformer.h.{i}.mlp.c_fc.weight"][64:] = 0.0
        zeroed[f"transformer.h.{i}.mlp.c_fc.bias"][64:] = 0.0
    reference = tiny_gpt_neo()
    expand_mlp(reference, (0, 1), 8)
    reference.load_state_dict(zeroed)
    contracted = contract_mlp(model)
    assert added_units(contracted) == {}
    for n, p in tiny_gpt_neo().named_parameters():
        assert dict(contracted.named_parameters())[n].shape == p.shape, n
    torch.testing.assert_close(logits(contracted, INPUTS), logits(reference, INPUTS))
    contracted.save_pretrained(tmp_path)  # a plain GPT-Neo of the original shape
    loaded = GPTNeoForCausalLM.from_pretrained(tmp_path)
    torch.testing.assert_close(logits(loaded, INPUTS), logits(contracted, INPUTS))


# --- routing weights and masks ---------------------------------------------------------------------


def test_token_weights_formula_on_hand_made_counts():
    forget = torch.tensor([99.0, 0.0, 9.0, 0.0])
    retain = torch.tensor([0.0, 80.0, 60.0, 0.0])
    w = token_weights(forget, retain, 1.0, 20.0, 4.0)
    f = [(c + 1) / (108 + 4) for c in (99, 0, 9, 0)]
    r = [(c + 20) / (140 + 80) for c in (0, 80, 60, 0)]
    expected = [1 - 1 / (1 + math.exp(-((a / b - b / a) - 4))) for a, b in zip(f, r, strict=True)]
    torch.testing.assert_close(w, torch.tensor(expected), rtol=1e-5, atol=1e-6)
    assert w[0] < 0.01 and w[1] > 0.99, "forget-specific tokens route, retain-specific ones do not"


def test_unigram_counts_count_targets_once_without_separators():
    blocks = torch.tensor([[0, 1, 2, 2], [2, 3, 0, 1]])  # (2, T + 1); EOS = 0
    assert unigram_counts(blocks, 5, 0).tolist() == [0, 2, 2, 1, 0]  # targets 1 2 2 | 3 (0) 1


def test_era_mask_formula():
    w = torch.tensor([[0.0, 1.0, 0.25]])  # (1, 3)
    m_target = torch.tensor([-0.75, -0.75, 1.0])
    mask = era_mask(w, m_target)  # (1, 3, 3)
    assert mask[0, 0].tolist() == [-0.75, -0.75, 1.0]
    assert mask[0, 1].tolist() == [1.0, 1.0, 1.0]
    torch.testing.assert_close(mask[0, 2], torch.tensor([0.75 * -0.75 + 0.25] * 2 + [1.0]))


def _era(weights=None, token_ids=None, layers=(1,), l1=0.0):
    model = tiny_gpt_neo()
    opts = ERAOptions(expand_mlp_dim=8, layers=layers, l1_coef=l1, coherence_steps=0)
    return era_objective(model, opts, weights, token_ids, 0)


def _c_proj_input_grads(obj, label):
    """Gradient of the loss w.r.t. the target layer's post-activation units (B, T, 72)."""
    model = obj.model
    seen = []

    def capture(m, args):  # registered before the routing hook: the raw activations
        args[0].retain_grad()
        seen.append(args[0])

    h = model.transformer.h[1].mlp.c_proj.register_forward_pre_hook(capture)
    model.zero_grad(set_to_none=True)
    obj.loss(model, INPUTS, TARGETS, label).backward()
    h.remove()
    c_fc_grad = model.transformer.h[1].mlp.c_fc.weight.grad.clone()
    return seen[0].grad, c_fc_grad


def test_negative_scale_flips_original_units_gradients_on_routed_forget_tokens():
    obj = _era(weights=torch.zeros(VOCAB))  # every token fully routed (w = 0)
    plain_act, plain_fc = _c_proj_input_grads(obj, "retain")  # retain: all-ones mask
    routed_act, routed_fc = _c_proj_input_grads(obj, "forget")
    # the target layer is the last one: the upstream gradient is the same in both runs
    torch.testing.assert_close(routed_act[..., :64], -0.75 * plain_act[..., :64])
    torch.testing.assert_close(routed_act[..., 64:], plain_act[..., 64:])
    torch.testing.assert_close(routed_fc[:64], -0.75 * plain_fc[:64])  # input weights: ascent
    torch.testing.assert_close(routed_fc[64:], plain_fc[64:])
    assert plain_fc[:64].abs().sum() > 0


def test_unlabeled_and_retain_documents_are_not_routed():
    obj = _era(weights=torch.zeros(VOCAB))
    a, _ = _c_proj_input_grads(obj, "retain")
    b, _ = _c_proj_input_grads(obj, "unlabeled")
    torch.testing.assert_close(a, b)


def test_era_token_routing_masks_routed_positions_and_only_those():
    routed_ids = torch.unique(TARGETS[0, :4])
    obj = _era(token_ids=routed_ids)
    plain, _ = _c_proj_input_grads(_era(weights=torch.ones(VOCAB)), "forget")  # w = 1: no routing
    for label in ("retain", "unlabeled", "forget"):  # the label does not matter
        got, _ = _c_proj_input_grads(obj, label)
        routed = routed_positions(TARGETS, routed_ids)
        assert routed.any() and (~routed).any()
        torch.testing.assert_close(got[routed][:, :64], -0.75 * plain[routed][:, :64])
        torch.testing.assert_close(got[~routed], plain[~routed])
        torch.testing.assert_close(got[..., 64:], plain[..., 64:])


def test_l1_penalty_adds_to_the_loss_on_target_layers():
    a, b = _era(weights=torch.ones(VOCAB), l1=0.0), _era(weights=torch.ones(VOCAB), l1=1e-2)
    la = a.loss(a.model, INPUTS, TARGETS, "retain")
    lb = b.loss(b.model, INPUTS, TARGETS, "retain")
    assert lb > la


def test_era_finalize_returns_original_shape():
    model = tiny_gpt_neo()
    opts = ERAOptions(expand_mlp_dim=8, layers=(0,), coherence_steps=0)
    obj = era_objective(model, opts, torch.ones(VOCAB), None, 0)
    assert obj.model.transformer.h[0].mlp.c_fc.out_features == 72
    out = obj.finalize(obj.model)
    assert out.transformer.h[0].mlp.c_fc.out_features == 64


# --- coherence -------------------------------------------------------------------------------------


def test_best_step_selection_never_returns_a_model_worse_than_its_input():
    fit, held = random_blocks(4, seed=5), random_blocks(4, seed=6)
    for lr, steps in ((3.0, 3), (1e-2, 4)):  # a destructive lr, and an ordinary one
        cfg = TrainConfig(
            steps=steps, lr=lr, batch_size=4, micro_batch_size=4, grad_clip=0.0, warmup_steps=0
        )
        model = tiny_gpt_neo()
        before = split_losses(model, {"retain": held}, EOS, 4)["retain"]

        def select(m):
            return split_losses(m, {"retain": held}, EOS, 4)["retain"]

        group = BlockGroup("retain", "retain", False, fit)
        res = train(Objective(model=model), [group], cfg, 0, EOS, progress=False, select=select)
        after = select(model)
        assert after <= before + 1e-6, (lr, before, after)
        assert after == res.selection["selection_loss"]
        if lr == 3.0:
            assert res.selection["best_step"] == 0, "a destructive fine-tune keeps the input model"
        else:
            assert res.selection["best_step"] > 0 and after < before


def _ctx_with_retain(n_retain=40):
    groups = [
        BlockGroup("forget", "forget", False, random_blocks(6, seed=1)),
        BlockGroup("retain", "retain", False, random_blocks(n_retain, seed=2)),
    ]
    config = SimpleNamespace(seed=0, train=TrainConfig())
    return RunContext(
        config=config, benchmark=None, model=None, training_blocks=labeled_view(groups)
    )


def test_coherence_phase_uses_the_reference_optimizer_and_disjoint_labeled_retain_blocks():
    ctx = _ctx_with_retain()
    for options in (ERAOptions(coherence_blocks=8, coherence_eval_blocks=20), DEMixOptions()):
        phase = coherence_phase(ctx, options)
        # kxcloud/gradient-routing: AdamW betas (0.9, 0.95), weight decay 0.1, lr 5e-5, no clip
        assert phase.train["weight_decay"] == 0.1
        assert phase.train["weight_decay_groups"] == "all"  # every parameter, as the reference
        assert (phase.train["beta1"], phase.train["beta2"]) == (0.9, 0.95)
        assert phase.train["lr"] == 5e-5 and phase.train["grad_clip"] == 0.0
        assert phase.train["steps"] == 41  # tinystories_era.py:724, range(40 + 1)
        fit = phase.blocks["retain"]
        assert phase.train["batch_size"] == len(fit) == options.coherence_blocks
        retain = ctx.labeled_blocks("retain")
        fit_rows = {tuple(r) for r in retain[fit].tolist()}
        held_rows = {tuple(r) for r in phase.select_blocks.tolist()}
        assert not fit_rows & held_rows, "the selection blocks are not trained on"
        assert len(phase.select_blocks) == min(options.coherence_eval_blocks, 40 - len(fit))
    assert coherence_phase(ctx, ERAOptions(coherence_steps=0)) is None


def test_methods_see_labels_but_not_splits():
    groups = [
        BlockGroup("adjacent", "retain", True, random_blocks(2, seed=1)),
        BlockGroup("retain", "retain", False, random_blocks(3, seed=2)),
    ]
    view = labeled_view(groups)
    assert [v.label for v in view] == ["retain"], "one entry per label: the split is not told"
    assert not hasattr(view[0], "split")
    assert view[0].flagged_adjacent.tolist() == [True, True, False, False, False]
    assert torch.equal(view[0].blocks, torch.cat([g.blocks for g in groups]))


# --- DEMix -----------------------------------------------------------------------------------------


def _demix():
    model = tiny_gpt_neo()
    bench = SimpleNamespace(tokenizer=None)
    ctx = SimpleNamespace(config=SimpleNamespace(seed=0), benchmark=bench, model=model)
    return demix_setup(ctx, DEMixOptions(coherence_steps=0)).phases[0].objective


def test_demix_pre_finalize_measures_forget_with_the_forget_expert_and_retain_with_retain():
    model = tiny_gpt_neo()
    bench = SimpleNamespace(tokenizer=None)
    ctx = SimpleNamespace(config=SimpleNamespace(seed=0), benchmark=bench, model=model)
    plan = demix_setup(ctx, DEMixOptions(coherence_steps=0))
    expanded = plan.phases[0].objective.model
    with plan.pre_finalize_mode("forget"):
        forget_view = logits(expanded, INPUTS)
    with plan.pre_finalize_mode("retain"):
        retain_view = logits(expanded, INPUTS)
    assert torch.equal(forget_view, logits(expanded, INPUTS)), "forget: the forget expert"
    plain = keep_retain_experts(expanded)
    torch.testing.assert_close(retain_view, logits(plain, INPUTS))
    assert not torch.allclose(forget_view, retain_view)
    assert [s.name for s in plan.finalize] == ["ablate"]
    assert plan.finalize[0].evaluate == "post_ablation"


def _expert_grads(obj, label, targets=TARGETS):
    model = obj.model
    model.zero_grad(set_to_none=True)
    obj.loss(model, INPUTS, targets, label).backward()
    out = {"retain": 0.0, "forget": 0.0}
    for n, p in model.named_parameters():
        for e in out:
            if f".mlp.{e}." in n and p.grad is not None:
                out[e] += p.grad.abs().sum().item()
    return out


def test_demix_forget_documents_never_update_the_retain_expert_and_the_reverse():
    obj = _demix()
    g = _expert_grads(obj, "forget")
    assert g["retain"] == 0 and g["forget"] > 0
    for label in ("retain", "unlabeled"):
        g = _expert_grads(obj, label)
        assert g["forget"] == 0 and g["retain"] > 0


def test_demix_experts_are_initialized_like_the_model_and_ablation_keeps_retain():
    model = tiny_gpt_neo()
    base = logits(model, INPUTS)
    add_forget_experts(model, 0)
    block = model.transformer.h[0].mlp
    assert isinstance(block, TwoExperts)
    assert (
        abs(block.forget.c_fc.weight.std().item() - 0.02) < 0.005
        and (block.forget.c_fc.bias == 0).all()
    )
    assert not torch.allclose(logits(model, INPUTS), base), (
        "outside training the forget expert is active"
    )
    plain = keep_retain_experts(model)
    torch.testing.assert_close(logits(plain, INPUTS), base)
    assert set(dict(plain.named_parameters())) == set(dict(tiny_gpt_neo().named_parameters()))


def test_demix_token_routing_picks_the_expert_per_position():
    model = tiny_gpt_neo()
    add_forget_experts(model, 0)
    block = model.transformer.h[0].mlp
    x = torch.randn(2, 5, 32)
    route = torch.tensor([[True, False, True, False, False], [False] * 5])
    block.route = route
    out = block(x)
    torch.testing.assert_close(out[route], block.forget(x)[route])
    torch.testing.assert_close(out[~route], block.retain(x)[~route])
