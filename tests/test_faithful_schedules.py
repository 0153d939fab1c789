"""Issue 35's reference behaviours: schedules (ERA and DEMix's nanoGPT warmup from 0 and cosine to
lr/10 with 41 coherence steps; the EleutherAI methods' HF linear decay), tuned-lens's default
(full fine-tuning with a KL retain term, lenses fit on forget data at a constant lr) and
sequential-unlearn's retain L2 over block outputs."""

import math

import pytest
import torch
import torch.nn.functional as F
from helpers import EOS, VOCAB, random_blocks, tiny_gpt_neo

from unlearnbench import runner
from unlearnbench.data.packing import inputs_and_targets
from unlearnbench.methods.demix import DEMixOptions
from unlearnbench.methods.era import ERAOptions
from unlearnbench.methods.sequential_unlearn import SequentialOptions, layer_objective
from unlearnbench.methods.tuned_lens import (
    Lenses,
    TunedLensOptions,
    lens_phase,
    retain_kl,
    unlearning_objective,
)
from unlearnbench.models.hidden import block_outputs, frozen_copy
from unlearnbench.training import lr_lambda


def resolved(method: str, **over):
    return runner.resolve_run_config(method, "storyworld-lang", "tiny", 0, over).train


@pytest.mark.parametrize("method", ["era", "demix"])
def test_era_and_demix_warm_up_from_zero_and_decay_to_a_tenth(method):
    t = resolved(method, steps=1000)
    f = lr_lambda(t, t.steps)
    assert (t.warmup_steps, t.warmup_start_factor, t.min_lr_ratio) == (100, 0.0, 0.1)
    assert f(0) == 0.0 and f(50) == pytest.approx(0.5)  # tinystories_era.py:219, lr * it / 100
    assert f(100) == pytest.approx(1.0) and f(1000) == pytest.approx(0.1)
    # nanoGPT's cosine: halfway through the decay, lr/10 + (lr - lr/10) / 2
    assert f(550) == pytest.approx(0.1 + 0.9 * 0.5)
    assert (t.beta1, t.beta2, t.weight_decay) == (0.9, 0.95, 0.1)


def test_era_and_demix_coherence_runs_41_steps():
    # tinystories_era.py:724 range(num_steps_coherence_finetuning + 1), with 40
    assert ERAOptions().coherence_steps == DEMixOptions().coherence_steps == 41


@pytest.mark.parametrize(
    "method", ["tuned-lens", "sequential-unlearn", "orthogonal-circuit-breakers"]
)
def test_hf_trainer_methods_decay_linearly_to_zero(method):
    t = resolved(method, steps=10)
    f = lr_lambda(t, t.steps)
    assert t.lr_decay == "linear" and t.warmup_steps == 0
    assert [round(f(s), 6) for s in (0, 5, 10)] == [1.0, 0.5, 0.0]


def test_the_schedule_stays_cosine_for_the_others_and_constant_is_flat():
    t = resolved("sgtm", steps=200)
    f = lr_lambda(t, t.steps)
    mid = t.warmup_steps + (t.steps - t.warmup_steps) // 2
    assert t.lr_decay == "cosine" and f(mid) == pytest.approx(0.5, abs=0.01)
    flat = lr_lambda(resolved("sgtm", lr_decay="constant", warmup_steps=0), 100)
    assert {flat(s) for s in (0, 50, 99)} == {1.0}


def test_orthogonal_circuit_breakers_pin_the_reference_micro_batch():
    # the orthogonality term is over a forward's forget rows: the reference's pdbs 4
    assert resolved("orthogonal-circuit-breakers").micro_batch_size == 4


# --- tuned-lens ----------------------------------------------------------------------------------


def test_tuned_lens_default_is_full_fine_tuning_with_a_kl_retain_term():
    torch.manual_seed(0)
    model = tiny_gpt_neo(layers=2)
    opts = TunedLensOptions()
    assert (opts.lora, opts.retain_loss, opts.lens_data) == (False, "kl", "forget")
    objective = unlearning_objective(model, Lenses(model), opts)
    assert objective.model is model and objective.finalize is None
    assert set(objective.trainable) == {n for n, _ in model.named_parameters()}
    x, y = inputs_and_targets(random_blocks(2), EOS)
    with torch.no_grad():
        base_logits = model(input_ids=x).logits
    objective.on_step(5, 10)  # retain weight 5 * 0.5
    with torch.no_grad():
        assert float(objective.loss(model, x, y, "retain")) == pytest.approx(0.0, abs=1e-6)
        model.transformer.h[0].mlp.c_fc.weight.add_(0.5)  # move the model away from the base
        got = objective.loss(model, x, y, "retain")
        expected = 2.5 * retain_kl(model(input_ids=x).logits, base_logits, y)
    torch.testing.assert_close(got, expected)
    assert float(got) > 0


def test_retain_kl_is_batchmean_over_counted_positions():
    logits = torch.randn(2, 3, 5)
    ref = torch.randn(2, 3, 5)
    targets = torch.tensor([[1, 2, -100], [0, 1, 2]])
    p = F.softmax(ref, -1)
    per_position = (p * (p.log() - F.log_softmax(logits, -1))).sum(-1)  # (2, 3)
    expected = (per_position * (targets != -100)).sum() / 2  # summed, divided by the rows
    torch.testing.assert_close(retain_kl(logits, ref, targets), expected)


def test_tuned_lens_lora_variant_and_its_l2_retain_term():
    model = tiny_gpt_neo(layers=2)
    objective = unlearning_objective(
        model, Lenses(model), TunedLensOptions(lora=True, retain_loss="l2", lora_r=2)
    )
    assert objective.trainable and all("lora_" in n for n in objective.trainable)
    x, y = inputs_and_targets(random_blocks(2), EOS)
    objective.on_step(5, 10)
    with torch.no_grad():
        retain = float(objective.loss(objective.model, x, y, "retain"))
    assert retain == pytest.approx(0.0, abs=1e-5)  # adapters start at zero: the base itself


def test_tuned_lens_lenses_fit_on_forget_blocks_at_a_constant_lr():
    model = tiny_gpt_neo(layers=2)
    phase, _ = lens_phase(model, TunedLensOptions())
    assert phase.objective.batch_plan == {"forget": 1.0}
    t = phase.train
    assert (t["lr_decay"], t["weight_decay"], t["grad_clip"], t["batch_size"]) == (
        "constant",
        0.01,
        1.0,
        8,
    )
    every, _ = lens_phase(model, TunedLensOptions(lens_data="all"))
    assert every.objective.batch_plan is None


# --- sequential-unlearn --------------------------------------------------------------------------


def test_sequential_retain_l2_is_over_block_outputs():
    torch.manual_seed(0)
    model = tiny_gpt_neo(layers=2)
    frozen = frozen_copy(model)
    with torch.no_grad():
        model.transformer.h[1].mlp.c_proj.weight.add_(0.3)
        model.transformer.wte.weight.add_(0.1)  # moves the embeddings too (in the HF stack)
    objective = layer_objective(model, frozen, 1, SequentialOptions())
    objective.on_step(1, 1)  # retain weight = retain_coef
    x = torch.randint(1, VOCAB, (2, 8))
    y = torch.randint(1, VOCAB, (2, 8))
    got = objective.loss(model, x, y, "retain")
    hs, ref = block_outputs(model, x, range(2)), block_outputs(frozen, x, range(2))
    dist = [(hs[i] - ref[i]).norm(dim=-1).mean() for i in range(2)]
    expected = SequentialOptions().retain_coef * torch.stack(dist).mean()
    torch.testing.assert_close(got, expected)
    assert not math.isclose(float(got.detach()), 0.0)
