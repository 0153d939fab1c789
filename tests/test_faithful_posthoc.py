"""Post-hoc methods follow their reference implementations by default: circuit breakers' constant
learning rate, LoRA depth and cut retain L2; orthogonal circuit breakers' LoRA targets and weight
decay; checkpoint transfer's KL retain term and ridge fit; adaptive RMU's per-block coefficient."""

import copy
import dataclasses
import re

import pytest
import torch
import torch.nn.functional as F
from helpers import EOS, groups, tiny_gpt_neo

from unlearnbench import runner
from unlearnbench.data.packing import inputs_and_targets
from unlearnbench.methods.checkpoint_transfer import (
    CheckpointTransferOptions,
    checkpoint_transfer_objective,
    fit_affine,
)
from unlearnbench.methods.circuit_breakers import (
    CircuitBreakerOptions,
    circuit_breaker_objective,
    lora_blocks,
    retain_l2_loss,
)
from unlearnbench.methods.orthogonal_circuit_breakers import (
    OrthCircuitBreakerOptions,
    orth_circuit_breaker_objective,
)
from unlearnbench.methods.rmu import RMUOptions, adaptive_control, random_direction, rmu_objective
from unlearnbench.models.arch import final_norm
from unlearnbench.models.hidden import block_outputs
from unlearnbench.training import train


def adapted_blocks(peft_model) -> set[int]:
    """Block indices that carry LoRA parameters."""
    found = (
        re.search(r"\.h\.(\d+)\.", n) for n, _ in peft_model.named_parameters() if "lora_" in n
    )
    return {int(m.group(1)) for m in found if m}


def randomize_lora(peft_model, seed=0):
    """Nonzero adapters (LoRA B starts at 0), so the adapted model differs from the base."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in peft_model.named_parameters():
            if "lora_" in n:
                p.copy_(0.3 * torch.randn(p.shape, generator=g))


# ---------------------------------------------------------------- circuit breakers


def test_circuit_breakers_learning_rate_is_constant_across_steps():
    # the method's resolved training config, run by the loop the runner uses (the record's history
    # is the loop's); on a small model so the test is fast
    sets = {"steps": 3, "micro_batch_size": 16}
    cfg = runner.resolve_run_config("circuit-breakers", "storyworld-lang", "tiny", 0, sets)
    opts = CircuitBreakerOptions(lora_r=2, lora_dropout=0.0)
    objective = circuit_breaker_objective(tiny_gpt_neo(layers=4), opts)
    result = train(objective, groups(8, 8), cfg.train, 0, EOS, progress=False)
    lrs = [h["lr"] for h in result.history if "lr" in h]
    assert len(lrs) == 3 and all(lr == pytest.approx(cfg.train.lr, rel=1e-12) for lr in lrs), lrs


def test_circuit_breakers_lora_reaches_one_block_past_the_deepest_target():
    # the reference: hidden states 10 and 20 of 32 blocks (blocks 9 and 19), LoRA on blocks 0..20
    assert lora_blocks((9, 19), 32) == range(21)
    assert lora_blocks((3,), 4) == range(4)  # the last block: nothing deeper to adapt
    for layers, targets, want in ((6, (1, 2), {0, 1, 2, 3}), (4, (), {0, 1, 2, 3})):
        opts = CircuitBreakerOptions(target_layers=targets, lora_r=2, lora_dropout=0.0)
        objective = circuit_breaker_objective(tiny_gpt_neo(layers=layers), opts)
        assert adapted_blocks(objective.model) == want, (layers, targets)


def test_circuit_breakers_retain_l2_covers_the_model_cut_after_the_last_lora_block():
    opts = CircuitBreakerOptions(target_layers=(1, 2), lora_r=2, lora_dropout=0.0)
    objective = circuit_breaker_objective(tiny_gpt_neo(layers=6), opts)
    peft_model = objective.model
    randomize_lora(peft_model)
    objective.on_step(10, 10)  # p = 1/2: c_retain = alpha / 2 = 5
    x, y = inputs_and_targets(groups()[1].blocks, EOS)
    ln_f = final_norm(peft_model)

    def by_hand(cut: bool):
        with torch.no_grad():
            hs = peft_model(input_ids=x, output_hidden_states=True).hidden_states  # 7 states
        if not cut:
            return torch.stack(hs)
        # LoRA on blocks 0..3: the cut model's states are embeddings, blocks 0..2, ln_f(block 3)
        return torch.stack([*hs[:4], ln_f(hs[4])])

    with torch.no_grad():
        got = objective.loss(peft_model, x, y, "retain")
        adapted_cut, adapted_all = by_hand(True), by_hand(False)
        with peft_model.disable_adapter():
            base_cut, base_all = by_hand(True), by_hand(False)
    assert adapted_cut.shape[0] == 5
    torch.testing.assert_close(got, 5.0 * retain_l2_loss(adapted_cut, base_cut))
    assert not torch.isclose(got, 5.0 * retain_l2_loss(adapted_all, base_all))

    # the reference's `full_layers`: every state of the whole model
    full_opts = dataclasses.replace(opts, full_layers=True)
    full = circuit_breaker_objective(tiny_gpt_neo(layers=6), full_opts)
    randomize_lora(full.model)
    full.on_step(10, 10)
    with torch.no_grad():
        full_loss = full.loss(full.model, x, y, "retain")
    torch.testing.assert_close(full_loss, 5.0 * retain_l2_loss(adapted_all, base_all))


# ---------------------------------------------------------------- orthogonal circuit breakers


def test_orthogonal_circuit_breakers_default_adapts_attention_and_mlp_with_weight_decay():
    objective = orth_circuit_breaker_objective(tiny_gpt_neo(layers=2), OrthCircuitBreakerOptions())
    for part in ("q_proj", "v_proj", "out_proj", "mlp.c_fc", "mlp.c_proj"):
        assert any(f"{part}.lora_A" in n for n in objective.trainable), part
    cfg = runner.resolve_run_config("orthogonal-circuit-breakers", "storyworld-lang", "tiny", 0, {})
    assert cfg.train.weight_decay == 0.01


# ---------------------------------------------------------------- checkpoint transfer


def test_affine_fit_is_the_closed_form_ridge_with_an_unpenalized_bias():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 5, generator=g) + 3.0  # few samples and an offset: the ridge shows
    y = (
        x @ torch.randn(5, 5, generator=g).T
        + torch.randn(5, generator=g)
        + 0.5 * torch.randn(40, 5, generator=g)
    )
    alpha = 7.0
    A, b = fit_affine(x, y, alpha)
    # independent solution: least squares on [X, 1] with sqrt(alpha) I rows penalizing A only
    X = torch.cat([x, torch.ones(40, 1)], 1).double()
    penalty = torch.cat([alpha**0.5 * torch.eye(5), torch.zeros(5, 1)], 1).double()
    W = torch.linalg.lstsq(
        torch.cat([X, penalty]), torch.cat([y.double(), torch.zeros(5, 5)])
    ).solution
    torch.testing.assert_close(A, W[:-1].T.float(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(b, W[-1].float(), atol=1e-5, rtol=1e-5)
    plain_A, _ = fit_affine(x, y, 0.0)
    assert (plain_A - A).abs().max() > 1e-2  # alpha changes the fit: it is not plain least squares
    assert CheckpointTransferOptions().ridge_alpha == 0.01


def perturb_final_norm(model, seed=0):
    """Change only the final layer norm: the logits move, the block outputs do not."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in final_norm(model).parameters():
            p.add_(0.5 * torch.randn(p.shape, generator=g))


def test_checkpoint_transfer_default_retain_term_is_kl_on_the_logits():
    early, data = tiny_gpt_neo(seed=1, layers=2), groups(8, 8)
    base = tiny_gpt_neo(seed=0, layers=2)  # the frozen base: the model before training
    x, y = inputs_and_targets(data[1].blocks, EOS)
    losses = {}
    for retain_loss in ("kl", "mse"):
        model = tiny_gpt_neo(seed=0, layers=2)
        options = CheckpointTransferOptions(retain_loss=retain_loss)
        objective = checkpoint_transfer_objective(model, early, data[1].blocks, options)
        objective.on_step(1, 1)  # c_retain = retain_coef = 5
        with torch.no_grad():
            assert objective.loss(model, x, y, "retain").item() == pytest.approx(0.0, abs=1e-6)
            perturb_final_norm(model)
            losses[retain_loss] = objective.loss(model, x, y, "retain")
            logp = F.log_softmax(model(input_ids=x).logits, -1)  # (B, T, V)
            logp0 = F.log_softmax(base(input_ids=x).logits, -1)
    kl = (logp0.exp() * (logp0 - logp)).sum(-1).mean()  # KL(p_base || p_model) per position
    torch.testing.assert_close(losses["kl"], 5.0 * kl, rtol=1e-4, atol=1e-6)
    assert losses["kl"].item() > 1e-3
    # the activation-MSE alternative does not see a change after the last block
    assert losses["mse"].item() == pytest.approx(0.0, abs=1e-6)
    assert CheckpointTransferOptions().retain_loss == "kl"


# ---------------------------------------------------------------- adaptive RMU


def test_adaptive_rmu_coefficient_scales_with_the_frozen_forget_norm():
    model = tiny_gpt_neo(layers=4)
    base = copy.deepcopy(model)
    u = random_direction(model.config.hidden_size, 0)  # (1, 1, d), unit
    opts = RMUOptions(coef_scale="adaptive", adaptive_beta=3.0, layer=1)
    objective = rmu_objective(model, 1, u, opts)
    with torch.no_grad():  # the model moves away from its frozen copy, as training does
        model.transformer.h[0].mlp.c_proj.weight.mul_(3.0)
    x, y = inputs_and_targets(groups()[0].blocks, EOS)
    with torch.no_grad():
        h = block_outputs(model, x, [1])[1]  # (B, T, d)
        norms = block_outputs(base, x, [1])[1].norm(dim=-1).mean(dim=1)  # frozen, (B,)
        want = F.mse_loss(h, (3.0 * norms)[:, None, None] * u.expand_as(h))
        torch.testing.assert_close(objective.loss(model, x, y, "forget"), want)
        # c(x) is linear in the frozen norm, per block
        h0 = block_outputs(base, x, [1])[1]
        torch.testing.assert_close(
            adaptive_control(u, 2 * h0, 3.0), 2 * adaptive_control(u, h0, 3.0)
        )
        assert adaptive_control(u, h0, 3.0).norm(dim=-1).flatten().std() > 0  # one c per block
    assert RMUOptions().adaptive_beta == 5.0 and RMUOptions().coef_scale == "relative"


def test_rmu_adaptive_beta_leaves_existing_run_ids_alone():
    plain = runner.resolve_run_config("rmu", "storyworld-lang", "tiny", 0, {})
    assert "adaptive_beta" not in plain.method_options  # at its default: not in the run id
    adaptive = {"coef_scale": "adaptive", "adaptive_beta": 4.0}
    set_beta = runner.resolve_run_config("rmu", "storyworld-lang", "tiny", 0, adaptive)
    assert set_beta.method_options["adaptive_beta"] == 4.0 and set_beta.run_id != plain.run_id
