"""Fact-probe scoring, direction ablation and calibration on hand-made models."""

from __future__ import annotations

import math
from types import SimpleNamespace

import torch
from helpers import EOS, random_blocks, tiny_gpt_neo
from torch import nn

from unlearnbench.data.packing import BlockGroup
from unlearnbench.evals.calibrated_loss import CalibrationOptions, calibrate
from unlearnbench.evals.direction_ablation import estimate_directions, method_layers, projected_out
from unlearnbench.evals.fact_probes import mcnemar_p, option_logprobs, probe_accuracy
from unlearnbench.losses import split_losses

WORDS = ["<eos>", "pip", "lives", "in", "the", "cave", "barn", "la", "cueva", "casa"]


class WordTokenizer:
    """Whitespace tokenizer over WORDS (options keep their leading space, as in storyworld)."""

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [WORDS.index(w) for w in text.split()]}


class BigramModel(nn.Module):
    """logits[b, t] = table[input_ids[b, t]]: the next-token distribution depends on one token."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.table = nn.Parameter(table)

    def forward(self, input_ids):
        return SimpleNamespace(logits=self.table[input_ids])  # (B, T, V)


def test_option_scores_are_total_log_likelihoods_and_pick_the_answer():
    V = len(WORDS)
    table = torch.zeros(V, V)
    table[WORDS.index("the"), WORDS.index("cave")] = 3.0  # "the" -> "cave" likely
    table[WORDS.index("in"), WORDS.index("la")] = 2.0
    table[WORDS.index("la"), WORDS.index("casa")] = 1.0
    model = BigramModel(table)
    tok = WordTokenizer()
    scores = option_logprobs(
        model,
        tok,
        ["pip lives in the", "pip lives in"],
        [[" barn", " cave"], [" la cueva", " la casa"]],
    )
    logp = torch.log_softmax(table, dim=-1)
    w = WORDS.index
    assert math.isclose(scores[0][1], float(logp[w("the"), w("cave")]), rel_tol=1e-6)
    # a two-token option: both tokens count
    expected = float(logp[w("in"), w("la")] + logp[w("la"), w("casa")])
    assert math.isclose(scores[1][1], expected, rel_tol=1e-6)
    probes = [
        SimpleNamespace(prompt="pip lives in the", options=(" barn", " cave"), answer=1),
        SimpleNamespace(prompt="pip lives in", options=(" la cueva", " la casa"), answer=0),
    ]
    acc = probe_accuracy(model, tok, probes, batch_size=1)  # batch 1 and 2 agree
    assert acc == {"accuracy": 0.5, "chance": 0.5, "n": 2}


def test_mcnemar_p_is_the_exact_binomial_test_of_the_flips():
    assert mcnemar_p(0, 0) == 1.0  # nothing flipped: no evidence of change
    assert mcnemar_p(5, 5) == 1.0
    assert mcnemar_p(10, 0) == mcnemar_p(0, 10) == 2 / 2**10  # all 10 flips one way
    # 3 of 12 one way: 2 * P(X <= 3), X ~ Binomial(12, 1/2) = 2 * 299 / 4096
    assert abs(mcnemar_p(9, 3) - 2 * 299 / 4096) < 1e-12
    assert mcnemar_p(103, 66) < 0.01 < mcnemar_p(59, 49)


def _orthogonal_base(k: int, upto: int):
    """A tiny GPT-Neo whose residual stream has coordinate k exactly 0 through block `upto`."""
    model = tiny_gpt_neo(seed=1, layers=2)
    body = model.transformer
    with torch.no_grad():
        body.wte.weight[:, k] = 0
        body.wpe.weight[:, k] = 0
        for block in body.h[: upto + 1]:
            block.attn.attention.out_proj.weight[k] = 0
            block.attn.attention.out_proj.bias[k] = 0
            block.mlp.c_proj.weight[k] = 0
            block.mlp.c_proj.bias[k] = 0
    return model


def test_direction_ablation_recovers_the_base_loss_for_a_known_direction():
    k, layer = 3, 0
    base = _orthogonal_base(k, layer)
    unlearned = _orthogonal_base(k, layer)
    with torch.no_grad():  # the "method" adds 8 * e_k to block 0's output on every input
        unlearned.transformer.h[layer].mlp.c_proj.bias[k] = 8.0
    blocks = random_blocks(6, context=16, seed=4)
    dirs = estimate_directions(unlearned, base, blocks, [layer])
    u, norm = dirs[layer]
    assert math.isclose(norm, 8.0, rel_tol=1e-5)
    assert torch.allclose(u, torch.nn.functional.one_hot(torch.tensor(k), 32).float(), atol=1e-6)
    test = {"forget": random_blocks(4, context=16, seed=5)}
    base_loss = split_losses(base, test, EOS)["forget"]
    hurt = split_losses(unlearned, test, EOS)["forget"]
    assert abs(hurt - base_loss) > 1e-3  # the added direction changes the loss
    with projected_out(unlearned, {layer: u}):
        assert math.isclose(split_losses(unlearned, test, EOS)["forget"], base_loss, rel_tol=1e-5)
    assert math.isclose(split_losses(unlearned, test, EOS)["forget"], hurt)  # hook removed


def test_method_layers_from_the_record():
    rec = lambda o: {"config": {"method_options": o}}  # noqa: E731
    assert method_layers(rec({"layer": -1}), 4) == [2]  # RMU's rule: the middle block
    assert method_layers(rec({"layer": 1}), 4) == [1]
    assert method_layers(rec({"target_layers": [1, 3]}), 4) == [1, 3]
    assert method_layers(rec({"strict": True}), 4) == []
    cb = {"method": "circuit-breakers", "config": {"method_options": {"target_layers": []}}}
    assert method_layers(cb, 32) == [9, 19]  # its defaults: hidden states 10 and 20


def test_calibration_trains_only_the_output_bias():
    model = tiny_gpt_neo(seed=2)
    assert model.lm_head.bias is None  # GPT-Neo's head has no bias: calibration adds one
    groups = [
        BlockGroup("forget", "forget", False, random_blocks(4, 16, 1)),
        BlockGroup("retain", "retain", False, random_blocks(4, 16, 2)),
    ]
    opts = CalibrationOptions(steps=20, batch_size=2)
    calibrated, name = calibrate(model, groups, opts, EOS)
    assert name == "lm_head.bias" and model.lm_head.bias is None  # the original is untouched
    new = dict(calibrated.named_parameters())
    for n, p in model.named_parameters():
        assert torch.equal(p, new[n]), f"{n} changed"
    g = torch.Generator().manual_seed(opts.seed)
    init = torch.randn(len(new[name]), generator=g) * opts.init_std
    assert not torch.allclose(new[name], init)  # the bias trained
    # the tied embedding is still tied
    assert calibrated.lm_head.weight.data_ptr() == calibrated.transformer.wte.weight.data_ptr()


def test_split_losses_do_not_depend_on_the_evaluation_batching():
    from unlearnbench.losses import eval_micro_batch

    model = tiny_gpt_neo()
    blocks = {"forget": random_blocks(7, 32, seed=1), "retain": random_blocks(5, 32, seed=2)}
    reference = split_losses(model, blocks, EOS, micro_batch_size=7)
    for mb in (1, 3, None):
        got = split_losses(model, blocks, EOS, micro_batch_size=mb)
        for split in blocks:
            assert math.isclose(got[split], reference[split], rel_tol=1e-5), (mb, split)
    # small passes on CPU (cache-bound), large ones on an accelerator; never zero
    assert eval_micro_batch("cpu", 256, 2048) == 2
    assert eval_micro_batch("cpu", 512, 50257) == 1
    assert eval_micro_batch("cpu", 16, 64) > 16
    assert eval_micro_batch("cuda", 256, 2048) == 32
