"""storyworld-topic-large: storyworld-topic's forget and adjacent topics inside larger retain topics.
Its forget split is at most 15% of the training tokens, its forget facts and probes are
storyworld-topic's, and storyworld-topic itself (documents, world, probes, run ids) is unchanged."""

import hashlib
from collections import Counter
from pathlib import Path

import pytest

from unlearnbench.config import ConfigError
from unlearnbench.data import storyworld as sw
from unlearnbench.data.benchmarks import load_benchmark
from unlearnbench.data.benchmarks.storyworld import (
    LARGE_RETAIN_ENTITIES,
    StoryworldTopicLargeOptions,
    StoryworldTopicOptions,
    world_and_stories,
)
from unlearnbench.data.tokenizer import encode_batch

# storyworld-topic's data before storyworld-topic-large existed (the generator at its parent
# commit): a digest of its 12,000 documents (id, topic, text), of its world's entities and facts,
# and of its English probes
TOPIC_DOCS = "ab6b28743b7fd090"
TOPIC_WORLD = "cb847dab02d4124d"
TOPIC_PROBES = "9ed73419701d61b5"
# the committed seed-0 no-filter records' ids (results/records/): the default configs' ids
RUN_IDS = (
    ("storyworld-topic", "no-filter__storyworld-topic__tiny__s0__dfc6f3b88d00"),
    ("storyworld-lang", "no-filter__storyworld-lang__tiny__s0__3f3e96e2301f"),
)
SPLIT_TOPICS = (sw.DEFAULT_FORGET_TOPIC, sw.DEFAULT_ADJACENT_TOPIC)
ROOT = Path(__file__).resolve().parents[1]


def _digest(items) -> str:
    return hashlib.sha256(repr(list(items)).encode()).hexdigest()[:16]


def _probe_key(p) -> tuple:
    return p.id, p.prompt, p.options, p.answer


def test_storyworld_topic_is_unchanged():
    options = StoryworldTopicOptions()
    world, stories = world_and_stories(options)
    docs = sw.generate_documents(
        options.n_stories, seed=0, world_seed=0, languages=("en",), stories=stories, world=world
    )
    assert _digest(f"{d.id}|{d.meta['topic']}|{d.text}" for d in docs) == TOPIC_DOCS
    facts = ((e.name, e.home_topic, sorted(e.facts.items())) for e in world.entities)
    assert _digest(facts) == TOPIC_WORLD
    assert _digest(_probe_key(p) for p in sw.fact_probes(world, "en")) == TOPIC_PROBES


@pytest.mark.parametrize("benchmark,run_id", RUN_IDS)
def test_default_run_ids_are_unchanged(benchmark, run_id):
    from unlearnbench.runner import resolve_run_config

    assert resolve_run_config("no-filter", benchmark, "tiny", 0).run_id == run_id


def test_large_world_adds_retain_entities_only():
    small, _ = world_and_stories(StoryworldTopicOptions())
    large, _ = world_and_stories(StoryworldTopicLargeOptions())
    for topic in sw.TOPICS:
        own, grown = small.entities_of(topic), large.entities_of(topic)
        if topic in SPLIT_TOPICS:  # the same entities with the same facts
            assert grown == own and [e.facts for e in grown] == [e.facts for e in own], topic
        else:  # the world's own first, then the added ones
            assert len(grown) == LARGE_RETAIN_ENTITIES, topic
            assert grown[: len(own)] == own and [e.facts for e in grown[: len(own)]] == [
                e.facts for e in own
            ], topic
    assert len({e.name for e in large.entities}) == len(large.entities), "names are unique"
    for e in large.entities:  # every friend exists and is another entity
        assert e.facts["friend"] != e.name and large.entity(e.facts["friend"])


@pytest.fixture(scope="module")
def benchmarks():
    return load_benchmark("storyworld-topic", {}), load_benchmark("storyworld-topic-large", {})


def _tokens_by_split(bench) -> Counter:
    counts = Counter()
    lengths = encode_batch(bench.tokenizer, [d.text for d, _ in bench.train])
    for ids, (_, split) in zip(lengths, bench.train, strict=True):
        counts[split] += len(ids)
    return counts


def test_large_forget_share_at_most_15_percent_with_the_same_forget_probes(benchmarks):
    topic, large = benchmarks
    small_tokens, large_tokens = _tokens_by_split(topic), _tokens_by_split(large)
    share = large_tokens["forget"] / sum(large_tokens.values())
    assert share <= 0.15, f"forget share {share:.3f}"
    assert small_tokens["forget"] / sum(small_tokens.values()) > 0.4  # storyworld-topic's ~45%
    # as many forget tokens as storyworld-topic's (each forget fact stated as often), within 5%
    assert abs(large_tokens["forget"] / small_tokens["forget"] - 1) < 0.05
    for split in ("forget", "adjacent"):  # the same probes: 120 forget, 80 adjacent
        mine = [_probe_key(p) for p, s in large.probes if s == split]
        assert mine == [_probe_key(p) for p, s in topic.probes if s == split], split
    assert Counter(s for _, s in large.probes) == {"forget": 120, "adjacent": 80, "retain": 1200}


@pytest.mark.parametrize("retain", [3, 101])
def test_bad_retain_entities_is_one_line(retain):
    with pytest.raises(ConfigError, match="retain_entities|entities per topic"):
        load_benchmark("storyworld-topic-large", {"retain_entities": retain})


def test_large_training_budget_reaches_training_runs_and_post_hoc_bases(tmp_path):
    from unlearnbench.registry import methods
    from unlearnbench.results.matching import reference_overrides
    from unlearnbench.results.store import RunStore
    from unlearnbench.runner import non_default_options, resolve_run_config
    from unlearnbench.sweep import load_spec, plan

    large = "storyworld-topic-large"
    nf = resolve_run_config("no-filter", large, "small", 0)
    assert (nf.train.steps, nf.train.warmup_steps) == (4200, 350)
    assert non_default_options(nf, methods.get("no-filter"))["train"] == {}, "the budget is default"
    # a method's own training defaults win (ERA's warmup is its reference's 100 steps)
    assert resolve_run_config("era", large, "small", 0).train.warmup_steps == 100
    # a post-hoc method keeps its own steps, and the no-filter base it trains has the budget
    rmu = resolve_run_config("rmu", large, "small", 0)
    default_rmu = resolve_run_config("rmu", "storyworld-topic", "small", 0)
    assert rmu.train.steps == default_rmu.train.steps
    method, overrides = reference_overrides(rmu.to_dict() | {"kind": "posthoc"}, [], "no-filter")
    assert resolve_run_config(method, large, "small", 0, overrides).run_id == nf.run_id
    # the shipped sweep: the four core methods x 3 seeds at small, trained at the budget
    runs = plan(load_spec(ROOT / "sweeps" / "storyworld-topic-large.yaml"), RunStore(tmp_path))
    assert sorted({r.config.method for r in runs}) == ["filter", "no-filter", "rmu", "sgtm"]
    assert len(runs) == 12 and {r.config.model for r in runs} == {"small"}
    assert {r.config.train.steps for r in runs if r.config.method != "rmu"} == {4200}
