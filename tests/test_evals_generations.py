"""Generations: greedy text of fixed prompts, the same for every run, recorded for the report."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from test_evals_relearn import _bench
from toy_bilingual import tiny_model as _model

import unlearnbench.evals.generations as gen
from unlearnbench.config import ConfigError
from unlearnbench.data import pipeline
from unlearnbench.evals import EvalContext, load_suite, parse_options


def _ctx(bench, model, context: int = 32) -> EvalContext:
    record = {"seed": 0, "run_id": "x", "config": {"train": {"bf16": False}}}
    blocks = pipeline.test_blocks(bench, 16, 4)
    return EvalContext(record, bench, model, context, blocks, store=None)


def test_greedy_continuation_is_the_argmax_path_and_stops_at_the_separator():
    model = _model(300)
    prompt = [5, 17, 42, 8, 99]
    new = gen.greedy_continuation(model, prompt, 12, stop_id=None, context=32)
    # the same tokens as transformers' own greedy decoding
    ref = model.generate(
        torch.tensor([prompt]),
        max_new_tokens=12,
        do_sample=False,
        pad_token_id=0,
        eos_token_id=None,
    )[0, len(prompt) :].tolist()
    assert new == ref and len(new) == 12
    # a stop token ends the text before it is emitted
    assert gen.greedy_continuation(model, prompt, 12, stop_id=new[0], context=32) == []
    later = [t for t in new if t != new[0]]
    assert later, "the toy model repeats one token; pick another prompt"
    cut = new.index(later[0])
    assert gen.greedy_continuation(model, prompt, 12, stop_id=later[0], context=32) == new[:cut]
    # the window: the model sees the last `context` tokens only
    first = gen.greedy_continuation(model, prompt, 1, stop_id=None, context=3)
    with torch.no_grad():
        alone = int(model(input_ids=torch.tensor([prompt[-3:]])).logits[0, -1].argmax())
    assert first == [alone]


def test_the_evaluation_records_the_fixed_prompts_and_reproducible_greedy_text():
    bench = _bench()
    vocab = len(bench.tokenizer)
    result = gen.run(_ctx(bench, _model(vocab)), gen.GenerationOptions(max_new_tokens=10))
    samples = result.summary["samples"]
    assert result.summary["decoding"] == "greedy"
    assert [s["split"] for s in samples] == ["forget", "retain"]
    ids = pipeline.token_ids(bench)
    for s in samples:
        # the opening of a test document of that split, and the document's own next tokens
        doc = next(d for d in bench.test[s["split"]] if d.id == s["document_id"])
        assert s["prompt"] == bench.tokenizer.decode(ids[doc.id][:16])
        assert s["document_continuation"] == bench.tokenizer.decode(ids[doc.id][16:26])
        assert s["continuation"] and 0 < s["new_tokens"] <= 10
    # the same model gives the same text; another model the same prompts and other text
    again = gen.run(_ctx(bench, _model(vocab)), gen.GenerationOptions(max_new_tokens=10))
    assert again.summary == result.summary
    other_model = _model(vocab)
    with torch.no_grad():
        for p in other_model.parameters():
            p.add_(torch.randn_like(p))
    other = gen.run(_ctx(bench, other_model), gen.GenerationOptions(max_new_tokens=10))
    pairs = zip(other.summary["samples"], samples, strict=True)
    assert all(a["prompt"] == b["prompt"] for a, b in pairs)
    assert [s["continuation"] for s in other.summary["samples"]] != [
        s["continuation"] for s in samples
    ]


def test_prompt_documents_do_not_depend_on_the_order_of_the_test_documents():
    bench = _bench()
    first = gen.prompt_documents(bench, "forget", 2)
    shuffled = dataclasses.replace(
        bench, test={s: list(reversed(d)) for s, d in bench.test.items()}
    )
    assert [d.id for d in gen.prompt_documents(shuffled, "forget", 2)] == [d.id for d in first]
    assert gen.prompt_documents(bench, "adjacent") == []  # a split the benchmark lacks


def test_bad_options_are_refused_and_the_suites_run_it():
    with pytest.raises(ConfigError, match="splits"):
        parse_options("generations", gen.GenerationOptions, {"splits": ["forgt"]})
    with pytest.raises(ConfigError, match=">= 1"):
        parse_options("generations", gen.GenerationOptions, {"max_new_tokens": 0})
    for suite in ("quick", "robust", "robust-lite"):
        assert "generations" in {e.eval for e in load_suite(suite)[0]}, suite
