"""Soft-prompt attack: the model's weights never move, and the prompt finds forget loss that a
no-filter model still holds."""

from __future__ import annotations

import pytest
import torch
from toy_bilingual import CONTEXT, toy_benchmark, trained_model

from unlearnbench.config import ConfigError
from unlearnbench.data import pipeline
from unlearnbench.evals import EvalContext, evals
from unlearnbench.evals import soft_prompt as sp
from unlearnbench.losses import split_losses

RECORD = {"seed": 0, "run_id": "x", "config": {"train": {"bf16": False}}}


def test_the_prompt_changes_no_weight_and_lowers_forget_loss_on_a_no_filter_model():
    bench = toy_benchmark()
    model = trained_model(bench)  # no-filter: both languages
    blocks = pipeline.test_blocks(bench, CONTEXT, 4)
    weights = {n: p.detach().clone() for n, p in model.named_parameters()}
    ctx = EvalContext(RECORD, bench, model, CONTEXT, blocks, store=None)
    opts = sp.SoftPromptOptions(n_tokens=4, steps=100, lrs=(1e-2, 1e-1), batch_size=8,
                                eval_blocks=4)  # fmt: skip
    s = sp.run(ctx, opts).summary

    # no weight moved, and the model is handed back trainable as it came
    for n, p in model.named_parameters():
        assert torch.equal(p, weights[n]), f"{n} changed under a soft-prompt attack"
        assert p.requires_grad, f"{n} left frozen"
    # the prompt lowers the forget test loss (measured on the same tokens without it)
    assert s["forget_loss"] < s["before"]["forget_loss"] - 0.02, s
    assert s["forget_loss"] == min(x["forget_loss"] for x in s["settings"])  # a prompt won
    # no prompt is a candidate too: the accuracy is never below the unprompted model's
    assert s["forget_accuracy"] >= s["before"]["forget_accuracy"]
    assert len(s["settings"]) == 2 and s["n_probes"] == 1 and s["chance"] == 0.5
    assert s["forget_accuracy"] in (0.0, 1.0)
    # without the prompt, the same tokens give the run's own loss on those blocks
    plain = split_losses(model, {"forget": blocks["forget"]}, bench.eos_id)["forget"]
    assert s["before"]["forget_loss"] == pytest.approx(plain)  # 16 tokens fit beside 4 of 32


def test_the_worst_case_counts_no_prompt_as_a_candidate(monkeypatch):
    bench = toy_benchmark()
    model = trained_model(bench, steps=5)
    ctx = EvalContext(RECORD, bench, model, CONTEXT, pipeline.test_blocks(bench, CONTEXT, 2), None)
    # measurements in call order: no prompt, then the prompt fitted at each lr
    scripted = iter([(1.0, 0.8), (0.9, 0.5), (1.2, 0.6)])
    monkeypatch.setattr(sp, "fit_prompt", lambda ctx, model, *a: model)
    monkeypatch.setattr(
        sp, "forget_measures",
        lambda *a: dict(zip(("forget_loss", "forget_accuracy"), next(scripted), strict=True)),
    )  # fmt: skip
    s = sp.run(ctx, sp.SoftPromptOptions(lrs=(1e-3, 1e-2), n_tokens=2, steps=1)).summary
    assert (s["forget_loss"], s["lr"]) == (0.9, 1e-3)  # the lowest loss: a prompt's
    assert s["forget_accuracy"] == 0.8  # the highest accuracy: without a prompt


def test_the_prompted_model_predicts_the_real_tokens_only():
    bench = toy_benchmark()
    model = trained_model(bench, steps=5)
    prompted = sp.Prompted(model, torch.randn(3, model.config.hidden_size))
    ids = pipeline.test_blocks(bench, CONTEXT, 2)["forget"][:, :-1]  # (2, 16)
    logits = prompted(input_ids=ids).logits
    assert logits.shape == (2, CONTEXT, model.config.vocab_size)
    # a zero-length prompt is the model itself
    empty = sp.Prompted(model, torch.zeros(0, model.config.hidden_size))
    assert torch.allclose(empty(input_ids=ids).logits, model(input_ids=ids).logits, atol=1e-6)


def test_soft_prompt_is_registered_with_directions_and_refuses_bad_options():
    spec = evals.get("soft-prompt")
    directions = {m.name: m.direction for m in spec.metrics}
    assert directions == {"forget_loss": "higher", "forget_accuracy": "lower"}
    with pytest.raises(ConfigError, match="n_tokens"):
        sp.SoftPromptOptions(n_tokens=0)
    with pytest.raises(ConfigError, match="lrs"):
        sp.SoftPromptOptions(lrs=(0.0,))
