"""The built-in benchmarks on storyworld, the project's own generated story world (offline).

- `storyworld-lang`: each story plan rendered in English or Spanish; forget = Spanish, retain =
  English (the SGTM bilingual TinyStories setting).
- `storyworld-topic`: English only; forget = one topic, adjacent = a topic sharing its vocabulary and
  entities, retain = the rest (the SGTM Wikipedia-biology and ERA forest-stories settings).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from unlearnbench.data import storyworld as sw
from unlearnbench.data.benchmarks import Benchmark, register_benchmark
from unlearnbench.data.splits import is_test
from unlearnbench.data.tokenizer import cached_bpe


@dataclass(frozen=True)
class StoryworldLangOptions:
    n_stories: int = 12000  # ours: ~2M tokens, more than a tiny CPU run sees in one epoch
    world_seed: int = 0
    spanish_fraction: float = 0.3  # ours: the forget language is the minority, as in SGTM
    test_fraction: float = 0.1
    split_seed: int = 0
    vocab_size: int = 2048  # ours: a small byte-level BPE keeps the CPU head cheap


@dataclass(frozen=True)
class StoryworldTopicOptions:
    n_stories: int = 12000
    world_seed: int = 0
    forget_topic: str = sw.DEFAULT_FORGET_TOPIC
    adjacent_topic: str = sw.DEFAULT_ADJACENT_TOPIC
    test_fraction: float = 0.1
    split_seed: int = 0
    vocab_size: int = 2048


def _tokenizer(name: str, options, docs):
    key = hashlib.sha256(f"{name}{options}{sw.__name__}".encode()).hexdigest()[:12]
    return cached_bpe(lambda: (d.text for d in docs), options.vocab_size, key=f"{name}-{key}")


def _assemble(name, options, docs, split_of, probes, description) -> Benchmark:
    train, test = [], {}
    for d in docs:
        split = split_of(d)
        if is_test(d.id, options.test_fraction, options.split_seed):
            test.setdefault(split, []).append(d)
        else:
            train.append((d, split))
    train_docs = [d for d, _ in train]
    return Benchmark(
        name=name,
        train=train,
        test=test,
        tokenizer=_tokenizer(name, options, train_docs),
        probes=probes,
        description=description,
    )


def _check_fraction(name: str, v: float) -> None:
    if not 0.0 < v < 1.0:
        raise ValueError(f"{name} must be in (0, 1), got {v}")


@register_benchmark("storyworld-lang", options=StoryworldLangOptions)
def storyworld_lang(options: StoryworldLangOptions) -> Benchmark:
    """storyworld in two languages: forget Spanish, retain English."""
    _check_fraction("spanish_fraction", options.spanish_fraction)
    _check_fraction("test_fraction", options.test_fraction)
    docs = sw.generate_documents(
        options.n_stories,
        seed=options.world_seed,
        world_seed=options.world_seed,
        languages=("en", "es"),
        spanish_fraction=options.spanish_fraction,
    )
    world = sw.build_world(options.world_seed)
    probes = [(p, "retain") for p in sw.fact_probes(world, "en")]
    probes += [(p, "forget") for p in sw.fact_probes(world, "es")]
    return _assemble(
        "storyworld-lang",
        options,
        docs,
        lambda d: "forget" if d.meta["language"] == "es" else "retain",
        probes,
        "storyworld, English and Spanish; forget = Spanish",
    )


@register_benchmark("storyworld-topic", options=StoryworldTopicOptions)
def storyworld_topic(options: StoryworldTopicOptions) -> Benchmark:
    """storyworld in English: forget one topic, adjacent a related topic, retain the rest."""
    _check_fraction("test_fraction", options.test_fraction)
    world = sw.build_world(options.world_seed)
    for t in (options.forget_topic, options.adjacent_topic):
        if t not in world.topics:
            raise ValueError(f"unknown topic {t!r}; topics: {', '.join(world.topics)}")
    if options.forget_topic == options.adjacent_topic:
        raise ValueError("forget_topic and adjacent_topic must differ")
    docs = sw.generate_documents(
        options.n_stories, seed=options.world_seed, world_seed=options.world_seed, languages=("en",)
    )

    def split_of_topic(topic: str) -> str:
        if topic == options.forget_topic:
            return "forget"
        return "adjacent" if topic == options.adjacent_topic else "retain"

    probes = [(p, split_of_topic(p.topic)) for p in sw.fact_probes(world, "en")]
    return _assemble(
        "storyworld-topic",
        options,
        docs,
        lambda d: split_of_topic(d.meta["topic"]),
        probes,
        f"storyworld, English; forget = {options.forget_topic}, adjacent = {options.adjacent_topic}",
    )
