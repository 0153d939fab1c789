"""Knowledge used in context: the contexts built around each fact probe, and that the scores read
what a model takes from its context (a model that copies from its context gets every fact right
when told it and follows a stated wrong value)."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from transformers import GPTNeoConfig, GPTNeoForCausalLM

from unlearnbench.config import ConfigError
from unlearnbench.data.benchmarks import load_benchmark
from unlearnbench.evals import EvalContext, headline
from unlearnbench.evals.fact_probes import option_logprobs, probes_by_split
from unlearnbench.evals.in_context import (
    InContextOptions,
    build_contexts,
    clause_suffixes,
    mentions,
    sentences,
    shared_prefix_logprobs,
    stating_sentence,
)
from unlearnbench.registry import evals


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("storyworld-lang", {"n_stories": 300, "vocab_size": 300})


class Copier(nn.Module):
    """An induction oracle: at each position it predicts the token that followed the longest
    earlier match of the text so far (the latest on ties); with no match, every token is equal."""

    def __init__(self, vocab: int, n_positions: int = 256):
        super().__init__()
        self.vocab = vocab
        self.unused = nn.Parameter(torch.zeros(1))  # a device to read
        self.config = SimpleNamespace(max_position_embeddings=n_positions)

    def forward(self, input_ids, cache=None, **_):
        n_new = input_ids.shape[1]
        if cache is not None:  # continue after the cached tokens
            input_ids = torch.cat([cache.ids, input_ids], dim=1)
        B, T = input_ids.shape
        same = input_ids[:, :, None] == input_ids[:, None, :]  # (B, T, T): token t == token s
        match = torch.zeros(B, T, T)  # length of the common suffix ending at t and at s
        match[:, 0] = same[:, 0].float()
        for t in range(1, T):
            match[:, t, 1:] = same[:, t, 1:] * (1 + match[:, t - 1, :-1])
            match[:, t, 0] = same[:, t, 0].float()
        earlier = torch.ones(T, T).tril(-1).bool()  # s < t
        score = torch.where(earlier, match + torch.arange(T) * 1e-3, -1.0)  # latest wins ties
        best = score.argmax(-1)  # (B, T)
        found = score.max(-1).values >= 1
        nxt = input_ids.gather(1, (best + 1).clamp(max=T - 1))  # the token after the match
        logits = torch.zeros(B, T, self.vocab)
        logits.scatter_(2, nxt[..., None], 10.0 * found[..., None].float())
        return SimpleNamespace(logits=logits[:, T - n_new :], cache=TokenCache(input_ids))


class TokenCache:
    """The Copier's cache: the tokens seen so far."""

    def __init__(self, ids):
        self.ids = ids

    def batch_repeat_interleave(self, k: int):
        self.ids = self.ids.repeat_interleave(k, dim=0)


def test_contexts_state_the_fact_a_control_or_a_wrong_value_in_one_held_out_story(bench):
    suffixes = clause_suffixes(bench, [p for p, _ in bench.probes])
    assert suffixes[("colour", "en")] == " scarf"  # "... wears a blue scarf." as stories write it
    test_ids = {s: {d.id: d for d in ds} for s, ds in bench.test.items()}
    limit = 96  # a few story sentences around the stated one (a 300-token vocabulary)
    for split, probes in probes_by_split(bench, 6).items():
        for p in probes:
            c = build_contexts(bench, p, split, bench.probes, suffixes, limit, seed=0)
            story = test_ids[split][c.story_id]  # a test story of the probe's own split
            assert story.meta["language"] == p.language and not mentions(story.text, p.entity)
            fact = stating_sentence(p, p.answer, suffixes)
            wrong = stating_sentence(p, c.counterfactual_option, suffixes)
            assert c.counterfactual_option != p.answer
            # the three contexts are one story, cut the same way, around a different sentence
            rest = c.texts["fact"].replace(fact, "@@.")
            assert c.texts["counterfactual"] == rest.replace("@@.", wrong)
            control = [s for s in sentences(c.texts["control"]) if s not in sentences(rest)]
            (stated,) = control  # the same fact of another entity, naming none of the options
            others = {
                stating_sentence(q, q.answer, suffixes)
                for q, _ in bench.probes
                if (q.fact, q.language) == (p.fact, p.language) and q.entity != p.entity
            }
            assert stated in others and not any(o.strip() in stated for o in p.options)
            kept = [s for s in sentences(rest) if s != "@@."]
            story_sentences = sentences(story.text)
            i = story_sentences.index(kept[0]) if kept else 0
            assert story_sentences[i : i + len(kept)] == kept  # whole sentences, in order
            for text in c.texts.values():  # fits the block with the probe and its longest option
                n = len(bench.tokenizer(text + " " + p.prompt)["input_ids"])
                assert n + max(len(bench.tokenizer(o)["input_ids"]) for o in p.options) <= limit


def test_shared_prefix_scoring_equals_scoring_each_option_on_its_own(bench):
    """One pass over a long prefix, its cache copied per option: fact-probes' numbers."""
    cfg = GPTNeoConfig(
        vocab_size=len(bench.tokenizer), max_position_embeddings=256, hidden_size=32, num_layers=2,
        attention_types=[[["global", "local"], 1]], num_heads=4, intermediate_size=64,
        window_size=8,  # shorter than the prefixes: the local layer's window slides over the cache
    )  # fmt: skip
    torch.manual_seed(0)
    model = GPTNeoForCausalLM(cfg)
    probes = [p for p, _ in bench.probes if p.fact in ("friend", "home")][:6]  # multi-token options
    assert any(len(bench.tokenizer(o)["input_ids"]) > 1 for p in probes for o in p.options)
    stories = bench.test["retain"][: len(probes)]
    prefixes = [d.text[:160] + " " + p.prompt for d, p in zip(stories, probes, strict=True)]
    options = [list(p.options) for p in probes]
    shared = shared_prefix_logprobs(model, bench.tokenizer, prefixes, options)
    each = option_logprobs(model, bench.tokenizer, prefixes, options)
    torch.testing.assert_close(torch.tensor(shared), torch.tensor(each), atol=1e-4, rtol=1e-5)


def test_a_stating_sentence_is_the_clause_the_stories_use(bench):
    suffixes = clause_suffixes(bench, [p for p, _ in bench.probes])
    texts = [d.text for d, _ in bench.train]
    checked = set()
    for p, _ in bench.probes:
        key = (p.fact, p.language)
        clause = p.prompt + p.options[p.answer]
        if key in checked or not any(clause in t for t in texts):
            continue
        assert any(stating_sentence(p, p.answer, suffixes) in t for t in texts), key
        checked.add(key)
    assert len(checked) == 10  # every fact type, both languages


def test_a_probe_whose_stated_sentence_does_not_fit_the_block_is_skipped(bench):
    suffixes = clause_suffixes(bench, [p for p, _ in bench.probes])
    p, split = bench.probes[0]
    assert build_contexts(bench, p, split, bench.probes, suffixes, 12, seed=0) is None
    summary, head = run_eval(bench, Copier(len(bench.tokenizer)), context=12, max_per_split=3)
    assert summary["forget"] == {"n": 0, "n_skipped": 3, "reason": summary["forget"]["reason"]}
    summary, _ = run_eval(bench, Copier(len(bench.tokenizer)), max_tokens=12, max_per_split=3)
    assert summary["forget"] == {"n": 0, "n_skipped": 3, "reason": summary["forget"]["reason"]}
    assert head["forget_in_context"]["value"] is None


def run_eval(bench, model, context=128, **options):
    spec = evals.get("in-context")
    ctx = EvalContext({"seed": 0, "run_id": "x"}, bench, model, context, {}, store=None)
    summary = spec.run(ctx, InContextOptions(**options)).summary
    return summary, {e["name"]: e for e in headline(spec.metrics, summary)}


def test_a_model_that_reads_its_context_uses_the_stated_fact(bench):
    summary, head = run_eval(bench, Copier(len(bench.tokenizer)), max_per_split=8)
    assert set(summary) == {"forget", "retain", "clause_suffixes"}
    for split in ("forget", "retain"):
        s = summary[split]
        assert s["n"] == 8 and s["n_skipped"] == 0 and s["chance"] == 0.25
        assert s["fact_in_context"] == 1.0
        assert s["control_context"] < 1.0 and s["gain_over_control"] > 0
        assert s["gain_over_no_context"] == s["fact_in_context"] - s["no_context"]
        assert s["counterfactual"] == {"follows_context": 1.0, "keeps_answer": 0.0}
    assert head["forget_in_context"]["value"] == 1.0
    assert head["forget_in_context"]["direction"] == "lower"
    assert head["retain_in_context"]["direction"] == "higher"
    assert head["forget_gain_over_control"]["value"] == summary["forget"]["gain_over_control"]
    # without the counterfactual variant, no counterfactual numbers
    summary, _ = run_eval(
        bench, Copier(len(bench.tokenizer)), max_per_split=2, counterfactual=False
    )
    assert "counterfactual" not in summary["forget"]


def test_no_fact_probes_is_not_applicable_and_bad_options_are_refused(bench):
    summary, head = run_eval(replace(bench, probes=[]), Copier(len(bench.tokenizer)))
    assert summary["applicable"] is False and all(e["value"] is None for e in head.values())
    for bad in ({"max_per_split": -1}, {"batch_size": 0}, {"max_tokens": 0}):
        with pytest.raises(ConfigError):
            InContextOptions(**bad)
