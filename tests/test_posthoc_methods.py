"""Post-hoc methods: RMU, circuit breakers, tuned-lens unlearning, and the loss-based baselines
(gradient ascent, gradient difference, NPO), on tiny GPT-Neo models."""

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from helpers import EOS, VOCAB, groups, random_blocks, tiny_gpt_neo

from unlearnbench.config import TrainConfig
from unlearnbench.data.packing import IGNORE, BlockGroup, inputs_and_targets
from unlearnbench.methods import RunContext
from unlearnbench.methods._loss_based import nll, npo_loss, sequence_logprob, token_logprobs
from unlearnbench.methods.circuit_breakers import (
    CircuitBreakerOptions,
    circuit_breaker_objective,
    default_target_layers,
    reroute_loss,
    retain_l2_loss,
    schedule,
)
from unlearnbench.methods.grad_ascent import GradAscentOptions
from unlearnbench.methods.grad_ascent import setup as grad_ascent_setup
from unlearnbench.methods.grad_diff import grad_diff_loss
from unlearnbench.methods.npo import NPOOptions
from unlearnbench.methods.npo import setup as npo_setup
from unlearnbench.methods.rmu import (
    RMUOptions,
    random_direction,
    rmu_objective,
    rmu_parameter_names,
)
from unlearnbench.methods.tuned_lens import (
    Lenses,
    TunedLensOptions,
    forget_objective,
    lens_losses,
    lens_phase,
    unlearning_objective,
)
from unlearnbench.models.hidden import block_outputs
from unlearnbench.training import train

CFG = TrainConfig(steps=8, batch_size=8, micro_batch_size=8, lr=1e-2, warmup_steps=0, grad_clip=0.0)


def snapshot(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def disjoint_groups(n=8, context=16):
    """Forget blocks over tokens 1..30 and retain blocks over 31..60: inputs a method can tell apart
    (the helpers' random blocks share one distribution)."""
    out = []
    for gi, (label, lo, hi) in enumerate((("forget", 1, 31), ("retain", 31, VOCAB))):
        g = torch.Generator().manual_seed(gi)
        out.append(
            BlockGroup(label, label, False, torch.randint(lo, hi, (n, context + 1), generator=g))
        )
    return out


def blocks_of(label, data=None):
    data = data or groups()
    return torch.cat([g.blocks for g in data if g.label == label])


# ---------------------------------------------------------------- RMU


def test_rmu_selects_mlp_weights_of_blocks_l_minus_2_to_l_by_name():
    model = tiny_gpt_neo(layers=4)
    names = rmu_parameter_names(model, 2, 3, ("mlp.c_proj.weight",))
    assert names == [f"transformer.h.{i}.mlp.c_proj.weight" for i in (0, 1, 2)]
    sgtm = rmu_parameter_names(model, 3, 3, ("mlp.c_fc.weight", "mlp.c_fc.bias"))
    assert sgtm[0] == "transformer.h.1.mlp.c_fc.weight" and len(sgtm) == 6
    with pytest.raises(ValueError):
        rmu_parameter_names(model, 2, 3, ("mlp.down_proj.weight",))  # Llama's name: not GPT-Neo


def test_rmu_direction_is_fixed_by_seed_unit_and_nonnegative():
    u = random_direction(32, seed=3)
    assert u.shape == (1, 1, 32)
    assert torch.equal(u, random_direction(32, seed=3))
    assert not torch.equal(u, random_direction(32, seed=4))
    assert (u >= 0).all() and math.isclose(float(u.norm()), 1.0, rel_tol=1e-6)


def test_rmu_moves_only_the_named_parameters_toward_c_u_and_keeps_retain():
    torch.manual_seed(0)
    model = tiny_gpt_neo(layers=4)
    base = tiny_gpt_neo(layers=4)  # identical weights (same seed): the frozen reference
    layer, data = 2, disjoint_groups()
    xf, _ = inputs_and_targets(blocks_of("forget", data), EOS)
    xr, _ = inputs_and_targets(blocks_of("retain", data), EOS)
    with torch.no_grad():
        hf0 = block_outputs(model, xf, [layer])[layer]
        norm = float(hf0.norm(dim=-1).mean())
    control = 4 * norm * random_direction(32, 0)  # (1, 1, d)
    objective = rmu_objective(model, layer, control, RMUOptions(alpha=1.0))
    before = snapshot(model)
    cfg = dataclasses.replace(CFG, steps=20, lr=2e-2)
    train(objective, data, cfg, 0, EOS, progress=False)
    after = snapshot(model)
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    assert (
        changed
        == set(objective.trainable)
        == set(rmu_parameter_names(model, 2, 3, ("mlp.c_proj.weight",)))
    )
    with torch.no_grad():
        hf1 = block_outputs(model, xf, [layer])[layer]
        hr0 = block_outputs(base, xr, [layer])[layer]
        hr1 = block_outputs(model, xr, [layer])[layer]
    to_target_before = F.mse_loss(hf0, control.expand_as(hf0))
    to_target_after = F.mse_loss(hf1, control.expand_as(hf1))
    assert to_target_after < 0.8 * to_target_before, (to_target_before, to_target_after)
    forget_shift = F.mse_loss(hf1, hf0)
    retain_shift = F.mse_loss(hr1, hr0)
    assert retain_shift < 0.2 * forget_shift, (retain_shift, forget_shift)


# ---------------------------------------------------------------- circuit breakers


def test_circuit_breaker_loss_pieces_by_hand():
    a = torch.tensor([[[[1.0, 0.0], [0.0, 2.0]]]])  # (K=1, B=1, T=2, d=2)
    same = reroute_loss(a, a.clone())
    assert math.isclose(float(same), 1.0, rel_tol=1e-6)
    opposite = reroute_loss(a, -a)  # cosine -1: ReLU gives 0
    assert float(opposite) == 0.0
    b = torch.tensor([[[[1.0, 1.0], [0.0, 1.0]]]])  # cosines 1/sqrt(2) and 1
    assert math.isclose(float(reroute_loss(a, b)), (1 / math.sqrt(2) + 1) / 2, rel_tol=1e-6)
    # L2 per position: |(0,-1)| = 1 and |(0,1)| = 1 -> mean 1
    assert math.isclose(float(retain_l2_loss(a, b)), 1.0, rel_tol=1e-6)
    assert schedule(0, 100, 10.0) == (0.0, 10.0)
    assert schedule(100, 100, 10.0) == (5.0, 5.0)
    assert schedule(50, 100, 10.0) == (2.5, 7.5)
    assert default_target_layers(32) == (9, 19)  # the reference's hidden states 10 and 20
    assert default_target_layers(4) == (0, 2)


def test_circuit_breakers_train_only_lora_merge_to_plain_gpt_neo_and_lower_cosine():
    from transformers import GPTNeoForCausalLM

    model = tiny_gpt_neo(layers=4)
    opts = CircuitBreakerOptions(target_layers=(1, 2), lora_r=4, lora_alpha=8.0, lora_dropout=0.0)
    objective = circuit_breaker_objective(model, opts)
    peft_model = objective.model
    assert objective.trainable and all("lora_" in n for n in objective.trainable)
    before = snapshot(peft_model)
    xf, _ = inputs_and_targets(blocks_of("forget"), EOS)

    def forget_cosine():
        with torch.no_grad():
            h = block_outputs(peft_model, xf, [1, 2])
            with peft_model.disable_adapter():
                h0 = block_outputs(peft_model, xf, [1, 2])
        return float(sum(F.cosine_similarity(h[i], h0[i], dim=-1).mean() for i in (1, 2)) / 2)

    cos0 = forget_cosine()
    train(objective, groups(), dataclasses.replace(CFG, steps=10, lr=1e-2), 0, EOS, progress=False)
    cos1 = forget_cosine()
    assert cos0 > 0.999 and cos1 < cos0 - 0.05, (cos0, cos1)
    after = snapshot(peft_model)
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    assert changed and all("lora_" in n for n in changed), sorted(changed)[:3]
    assert any("lora_B" in n for n in changed)
    peft_model.eval()
    x = torch.randint(1, VOCAB, (2, 12))
    with torch.no_grad():
        adapted = peft_model(input_ids=x).logits
    merged = objective.finalize(peft_model)
    assert type(merged) is GPTNeoForCausalLM
    assert not any("lora" in n for n, _ in merged.named_parameters())
    with torch.no_grad():
        torch.testing.assert_close(merged(input_ids=x).logits, adapted, atol=1e-5, rtol=1e-4)


# ---------------------------------------------------------------- tuned lens


def train_lenses(model, data, cfg, seed, eos, options):
    """The lens phase as the runner trains it."""
    phase, lenses = lens_phase(model, options)
    train(phase.objective, data, dataclasses.replace(cfg, **phase.train), seed, eos, progress=False)
    return lenses


def test_tuned_lens_lenses_train_by_kl_to_the_model_final_distribution_by_default():
    model = tiny_gpt_neo(layers=4)
    assert TunedLensOptions().lens_loss == "kl"
    phase, lenses = lens_phase(model, TunedLensOptions())
    with torch.no_grad():  # a lens that is not the logit lens, so KL and CE differ in shape
        for t in lenses.translators:
            t.weight.normal_(0, 0.1)
    x, y = inputs_and_targets(random_blocks(2), EOS)
    got = phase.objective.loss(model, x, y, "retain")
    hs = block_outputs(model, x, range(3))
    counted = y != IGNORE
    with torch.no_grad():
        p = F.softmax(model(input_ids=x).logits.float(), -1)[counted]  # (N, V)
        expected = []
        for i in range(3):
            q = F.log_softmax(lenses(hs[i], i).float(), -1)[counted]
            expected.append((p * (p.log() - q)).sum(-1).mean())  # KL(p || q) per position
    torch.testing.assert_close(got, torch.stack(expected).mean())
    ce_phase, _ = lens_phase(model, TunedLensOptions(lens_loss="ce"))
    ce = ce_phase.objective.loss(model, x, y, "retain")
    assert not torch.allclose(ce, got)


def test_tuned_lens_lora_adapts_only_the_attention_projections_by_default():
    model = tiny_gpt_neo(layers=2)
    lenses = Lenses(model)
    objective = unlearning_objective(model, lenses, TunedLensOptions(lora=True, lora_r=2))
    adapted = {n.split(".lora_")[0].split(".")[-1] for n in objective.trainable}
    assert adapted == {"q_proj", "k_proj", "v_proj"}
    every = unlearning_objective(
        tiny_gpt_neo(layers=2), lenses, TunedLensOptions(lora=True, lora_target="all")
    )
    assert {n.split(".lora_")[0].split(".")[-1] for n in every.trainable} >= {"c_fc", "out_proj"}


def test_tuned_lens_training_lowers_lens_loss_and_leaves_model_alone():
    model = tiny_gpt_neo(layers=4)
    data = groups(n_forget=8, n_retain=8)
    x, y = inputs_and_targets(torch.cat([g.blocks for g in data]), EOS)
    before = snapshot(model)
    opts = TunedLensOptions(lens_steps=0)
    lenses0 = Lenses(model)
    with torch.no_grad():
        loss0 = float(torch.stack(lens_losses(lenses0, model, x, y, "kl")).mean())
    lenses = train_lenses(
        model, data, CFG, 0, EOS, dataclasses.replace(opts, lens_steps=20, lens_lr=1e-2)
    )
    with torch.no_grad():
        loss1 = float(torch.stack(lens_losses(lenses, model, x, y, "kl")).mean())
    assert loss1 < loss0 * 0.8, (loss0, loss1)
    after = snapshot(model)
    assert all(torch.equal(before[n], after[n]) for n in before), "lens training moved the model"


def test_tuned_lens_forget_objectives_by_hand():
    logits = torch.zeros(1, 2, 5)  # uniform: CE(uniform, p) = log 5 -> 1 after / log V
    targets = torch.tensor([[1, IGNORE]])
    assert math.isclose(float(forget_objective(logits, targets, "entropy")), 1.0, rel_tol=1e-6)
    logits = torch.tensor([[[2.0, 0.0, 0.0, 0.0, 0.0]]])
    logp = F.log_softmax(logits, -1)[0, 0]
    targets = torch.tensor([[3]])
    expected_entropy = float(-logp.mean() / math.log(5))
    assert math.isclose(
        float(forget_objective(logits, targets, "entropy")), expected_entropy, rel_tol=1e-6
    )
    assert math.isclose(
        float(forget_objective(logits, targets, "ce")), float(logp[3] / math.log(5)), rel_tol=1e-6
    )


def test_tuned_lens_unlearning_raises_forget_loss_through_the_lenses():
    model = tiny_gpt_neo(layers=4)
    data = groups(n_forget=8, n_retain=8)
    opts = TunedLensOptions(
        lens_steps=10,
        lens_lr=1e-2,
        lora=True,
        lora_r=4,
        lora_dropout=0.0,
        objective="ce",
        lens_loss="ce",
        lora_target="all",  # the tiny model's q/k/v adapters alone move its CE too little here
    )
    lenses = train_lenses(model, data, CFG, 0, EOS, opts)
    xf, yf = inputs_and_targets(blocks_of("forget", data), EOS)
    with torch.no_grad():
        ce0 = [float(v) for v in lens_losses(lenses, model, xf, yf)]
    objective = unlearning_objective(model, lenses, opts)
    assert all("lora_" in n for n in objective.trainable)
    train(objective, data, dataclasses.replace(CFG, steps=10, lr=1e-2), 0, EOS, progress=False)
    with torch.no_grad():
        ce1 = [float(v) for v in lens_losses(lenses, objective.model, xf, yf)]
    assert sum(ce1) > sum(ce0) + 0.1, (ce0, ce1)


# ---------------------------------------------------------------- loss-based baselines


def test_sequence_logprob_and_nll_by_hand():
    logits = torch.tensor([[[0.0, 1.0, 2.0], [1.0, 1.0, 1.0], [3.0, 0.0, 0.0]]])  # (1, 3, 3)
    targets = torch.tensor([[2, IGNORE, 0]])
    lse0 = math.log(1 + math.e + math.e**2)
    lse2 = math.log(math.e**3 + 2)
    expected = (2 - lse0) + (3 - lse2)  # the IGNORE position adds nothing
    assert math.isclose(float(sequence_logprob(logits, targets)[0]), expected, rel_tol=1e-6)
    assert float(token_logprobs(logits, targets)[0, 1]) == 0.0
    assert math.isclose(float(nll(logits, targets)), -expected / 2, rel_tol=1e-6)


def test_npo_loss_by_hand_and_its_gradient_weight():
    logp = torch.tensor([-3.0, -10.0], requires_grad=True)
    ref = torch.tensor([-2.0, -10.0])
    beta = 0.1
    loss = npo_loss(logp, ref, beta)
    sig = lambda z: 1 / (1 + math.exp(-z))  # noqa: E731
    by_hand = (-(2 / beta) * math.log(sig(-beta * -1.0)) - (2 / beta) * math.log(sig(0.0))) / 2
    assert math.isclose(float(loss.detach()), by_hand, rel_tol=1e-6)
    loss.backward()
    # d/dlogp of -(2/b) logsigmoid(-b x) is 2 sigmoid(b x), x = logp - ref; halved by the mean
    assert math.isclose(float(logp.grad[0]), sig(beta * -1.0), rel_tol=1e-5)
    assert math.isclose(float(logp.grad[1]), sig(0.0), rel_tol=1e-5)


def test_grad_diff_terms_by_hand():
    logits = torch.tensor([[[0.0, math.log(3.0)]]])  # p(1) = 3/4
    targets = torch.tensor([[1]])
    n = -math.log(0.75)
    assert math.isclose(
        float(grad_diff_loss(logits, targets, "forget", 2.0, 5.0)), -2.0 * n, rel_tol=1e-6
    )
    assert math.isclose(
        float(grad_diff_loss(logits, targets, "retain", 2.0, 5.0)), 5.0 * n, rel_tol=1e-6
    )


def test_grad_ascent_and_npo_objectives_on_a_model():
    model = tiny_gpt_neo()
    ctx = RunContext(config=None, benchmark=None, model=model)
    x, y = inputs_and_targets(blocks_of("forget"), EOS)
    ga = grad_ascent_setup(ctx, GradAscentOptions())
    with torch.no_grad():
        ce = F.cross_entropy(
            model(input_ids=x).logits.flatten(0, 1), y.flatten(), ignore_index=IGNORE
        )
        assert math.isclose(float(ga.loss(model, x, y, "forget")), -float(ce), rel_tol=1e-5)
    npo = npo_setup(ctx, NPOOptions(beta=0.1))
    assert npo.batch_plan == {"forget": 0.5, "retain": 0.5}
    with torch.no_grad():  # the model equals its reference at the start: (2/beta) log 2
        assert math.isclose(float(npo.loss(model, x, y, "forget")), 20 * math.log(2), rel_tol=1e-5)
        assert math.isclose(float(npo.loss(model, x, y, "retain")), float(ce), rel_tol=1e-5)
    with torch.no_grad():
        before = float(sequence_logprob(model(input_ids=x).logits, y).mean())
    train(npo, groups(), dataclasses.replace(CFG, steps=5, lr=1e-3), 0, EOS, progress=False)
    with torch.no_grad():
        after = float(sequence_logprob(model(input_ids=x).logits, y).mean())
    assert after < before, (before, after)  # NPO lowers the forget likelihood
