"""Quantization: exact on representable weights, bounded error otherwise, and only what it says."""

from __future__ import annotations

import pytest
import torch
from helpers import tiny_gpt_neo
from test_evals_relearn import _bench
from toy_bilingual import tiny_model as _model

import unlearnbench.evals.quantization as quant
from unlearnbench.config import ConfigError
from unlearnbench.data import pipeline
from unlearnbench.evals import EvalContext, headline
from unlearnbench.registry import evals


def representable(out_dim: int, in_dim: int, bits: int, scheme: str, group: int, seed: int = 0):
    """A weight already on the scheme's grid: power-of-two scales (exact in float) times integer
    levels, each group reaching both ends of its range so the scale is the one chosen."""
    g = torch.Generator().manual_seed(seed)
    n_groups = in_dim // group
    scale = 2.0 ** -torch.randint(2, 8, (out_dim, n_groups, 1), generator=g).float()
    if scheme == "symmetric":
        qmax = 2 ** (bits - 1) - 1
        q = torch.randint(-qmax, qmax + 1, (out_dim, n_groups, group), generator=g).float()
        q[..., 0] = qmax  # the group's absmax sets the scale
    else:
        levels = 2**bits - 1
        zero = torch.randint(1, levels, (out_dim, n_groups, 1), generator=g).float()
        q = torch.randint(0, levels + 1, (out_dim, n_groups, group), generator=g).float() - zero
        q[..., 0], q[..., 1] = -zero[..., 0], levels - zero[..., 0]  # both ends of the range
    return (q * scale).reshape(out_dim, in_dim)


@pytest.mark.parametrize("scheme", quant.SCHEMES)
@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("group", [0, 8])
def test_weights_on_the_grid_are_kept_exactly(scheme, bits, group):
    w = representable(6, 16, bits, scheme, group or 16)
    assert torch.equal(quant.quantize_weight(w, bits, scheme, group), w)


@pytest.mark.parametrize("scheme", quant.SCHEMES)
@pytest.mark.parametrize("bits", [8, 4, 3])
def test_error_is_at_most_half_a_step_and_the_grid_has_2_to_the_bits_levels(scheme, bits):
    w = torch.randn(12, 32, generator=torch.Generator().manual_seed(1)) * 0.3
    w[0, :] = 0.0  # an ablated unit
    w[1, :5] = 0.0
    q = quant.quantize_weight(w, bits, scheme)
    scale, _ = quant.quantization_scale(w, bits, scheme)  # (12, 1, 1)
    step = scale.reshape(12, 1)
    assert ((w - q).abs() <= step / 2 + 1e-7).all()
    assert torch.equal(q[0], w[0]) and (q[1, :5] == 0).all()  # zeros stay zero
    for row in q:
        assert len(torch.unique(row)) <= 2**bits
    # the same weight at more bits is closer
    finer = quant.quantize_weight(w, bits + 2, scheme)
    assert (w - finer).norm() < (w - q).norm()
    # per group of inputs: each group's own step bounds its error
    qg = quant.quantize_weight(w, bits, scheme, group_size=8)
    sg, _ = quant.quantization_scale(w, bits, scheme, group_size=8)  # (12, 4, 1)
    assert ((w - qg).reshape(12, 4, 8).abs() <= sg / 2 + 1e-7).all()


def test_the_block_linears_are_quantized_and_nothing_else():
    model = tiny_gpt_neo()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    names = set(quant.quantized_weights(model, embeddings=False))
    expected = {
        f"transformer.h.{i}.{part}.weight"
        for i in range(2)
        for part in ("attn.attention.q_proj", "attn.attention.k_proj", "attn.attention.v_proj",
                     "attn.attention.out_proj", "mlp.c_fc", "mlp.c_proj")
    }  # fmt: skip
    assert names == expected  # the LM head (tied to wte) is not among them
    stats = quant.quantize_model_(model, 4, "symmetric", 0, embeddings=False)
    assert stats["n_matrices"] == 12 and 0 < stats["relative_weight_error"] < 0.5
    for n, p in model.named_parameters():
        changed = not torch.equal(p, before[n])
        assert changed == (n in expected), n
        if n in expected:
            assert all(len(torch.unique(row)) <= 15 for row in p)  # 4-bit symmetric: +-7
    # with embeddings, the tied matrix is quantized once and stays the head
    model = tiny_gpt_neo()
    quant.quantize_model_(model, 4, "symmetric", 0, embeddings=True)
    assert model.lm_head.weight is model.transformer.wte.weight
    assert all(len(torch.unique(row)) <= 15 for row in model.transformer.wte.weight)
    with pytest.raises(ConfigError, match="group_size=5"):
        quant.quantize_model_(tiny_gpt_neo(), 4, "symmetric", 5, embeddings=False)


def test_the_evaluation_measures_each_width_on_a_copy():
    bench = _bench()
    model = _model(len(bench.tokenizer))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    record = {"seed": 0, "run_id": "x", "config": {"train": {"bf16": False}}}
    ctx = EvalContext(record, bench, model, 16, pipeline.test_blocks(bench, 16, 4), store=None)
    result = quant.run(ctx, quant.QuantizationOptions(bits=(8, 4, 2)))
    s = result.summary
    assert set(s["quantized"]) == {"8", "4", "2"} and s["n_matrices"] == 12
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())  # untouched
    # fewer bits, larger weight error and a larger change of the losses
    err = {b: s["quantized"][b]["relative_weight_error"] for b in ("8", "4", "2")}
    assert err["8"] < err["4"] < err["2"]
    moved = {b: abs(s["quantized"][b]["forget_loss"] - s["before"]["forget_loss"]) for b in err}
    assert moved["8"] < 0.01 and moved["8"] < moved["2"]
    spec = evals.get("quantization")
    names = [e["name"] for e in headline(spec.metrics, s)]
    # one column per width; the toy benchmark has no fact probes: accuracy is not measured
    assert names == ["forget_loss@8", "forget_loss@4", "forget_loss@2", "forget_accuracy"]
    assert headline(spec.metrics, s)[-1]["value"] is None
    # a group size the weights cannot be cut into is refused before anything is measured
    with pytest.raises(ConfigError, match="group_size=5 does not divide"):
        quant.run(ctx, quant.QuantizationOptions(group_size=5))


def test_bad_options_are_refused():
    for bad, match in (
        ({"bits": (1,)}, "between 2 and 16"),
        ({"bits": (4, 4)}, "distinct"),
        ({"scheme": "nf4"}, "scheme must be one of"),
        ({"group_size": -1}, ">= 0"),
    ):
        with pytest.raises(ConfigError, match=match):
            quant.QuantizationOptions(**bad)


def test_the_forget_chance_level_is_recorded_and_shown_beside_the_accuracy():
    from types import SimpleNamespace

    from unlearnbench.results.leaderboard import chance_of

    probes = [SimpleNamespace(options=("a", "b", "c", "d"))] * 3 + [
        SimpleNamespace(options=("a", "b"))
    ]
    assert quant._chance(probes) == pytest.approx((3 * 0.25 + 0.5) / 4)
    assert quant._chance([]) is None  # no probes: no chance level, not zero
    summary = {"chance": 0.25, "headline": [{"name": "forget_accuracy", "value": 0.3}]}
    record = {"evals": {"robust/quantization": summary}}
    assert chance_of(record, "robust/quantization", "forget_accuracy") == 0.25
