"""The built-in benchmarks on storyworld, the project's own generated story world (offline).

- `storyworld-lang`: each story plan rendered in English or Spanish; forget = Spanish, retain =
  English (the SGTM bilingual TinyStories setting).
- `storyworld-topic`: English only; forget = one topic, adjacent = a topic sharing its vocabulary and
  entities, retain = the rest (the SGTM Wikipedia-biology and ERA forest-stories settings).
- `storyworld-topic-large`: storyworld-topic's world with larger retain topics, so the forget split
  is ~13% of the training tokens instead of ~45% (SGTM's biology is 3.7% of its Wikipedia); the
  forget and adjacent topics, their facts and probes are storyworld-topic's.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from unlearnbench.data import storyworld as sw
from unlearnbench.data.benchmarks import Benchmark, register_benchmark
from unlearnbench.data.splits import is_test
from unlearnbench.data.tokenizer import cached_bpe

# storyworld-topic's forget and adjacent topics have more entities than the others' 4: 120 forget
# and 80 adjacent probes, 60 forget facts on each half of the disjoint-facts attack; ours, chosen
# by scripts/calibrate_storyworld.py (docs/storyworld-calibration.md)
FORGET_ENTITIES = 24
ADJACENT_ENTITIES = 16
# three quarters of the adjacent topic's profiles are forget-topic documents: at a half the perfect
# filter kept every adjacent fact (0.94, as no-filter); at 0.75 it loses 0.16 of them and 0.12
# nats of adjacent loss, at 0.9 0.35 and ~0.40 (seed 0; docs/storyworld-calibration.md)
ADJACENT_IN_FORGET = 0.75
# storyworld-topic-large: each retain topic as large as the forget topic (24 entities, 20 of them
# added to the world's own 4), so documents drawn in proportion to entities put 24 + 0.75 * 16 = 36
# of 280 entities' documents in the forget split (12.9%, against 36 of 80, 45%); 3.5 times the
# stories keeps the forget documents (and each forget fact's statements) at storyworld-topic's
# count. Ours: the issue asked for a forget share at or below 15% (docs/storyworld-calibration.md)
LARGE_RETAIN_ENTITIES = 24
LARGE_N_STORIES = 42000
# its training budget: 3.5 times the calibrated 1,200 steps of 4 blocks (config.TrainConfig), so a
# run passes over the 3.5 times larger corpus as often and states each forget fact as often as a
# storyworld-topic run does; the warmup ~8% of the steps, as there (100 of 1,200). Ours
LARGE_TRAIN = {"steps": 4200, "warmup_steps": 350}


@dataclass(frozen=True)
class StoryworldLangOptions:
    # ours: documents; as profiles, ~0.62M training tokens, so a default run (1.23M tokens) sees
    # each about twice
    n_stories: int = 12000
    world_seed: int = 0
    spanish_fraction: float = 0.3  # ours: the forget language is the minority, as in SGTM
    test_fraction: float = 0.1
    split_seed: int = 0
    # ours: a small byte-level BPE keeps the CPU head cheap. An upper bound: the calibrated
    # world's text has fewer merges to learn (1,266 tokens here, 993 on storyworld-topic)
    vocab_size: int = 2048
    # the world's size and how densely documents state facts (`storyworld.StoryOptions`); ours,
    # chosen by scripts/calibrate_storyworld.py (docs/storyworld-calibration.md). The original
    # generator's values: entities_per_topic=26, main_facts=2,4, other_facts=1,3, profiles=0
    entities_per_topic: int = sw.CALIBRATED_ENTITIES_PER_TOPIC
    main_facts: tuple[int, ...] = sw.CALIBRATED_STORIES.main_facts
    other_facts: tuple[int, ...] = sw.CALIBRATED_STORIES.other_facts
    adjacent_visitors: float = sw.CALIBRATED_STORIES.adjacent_visitors
    other_visitors: float = sw.CALIBRATED_STORIES.other_visitors
    visitor_facts: float = sw.CALIBRATED_STORIES.visitor_facts
    profiles: float = sw.CALIBRATED_STORIES.profiles


@dataclass(frozen=True)
class StoryworldTopicOptions:
    n_stories: int = 12000
    world_seed: int = 0
    forget_topic: str = sw.DEFAULT_FORGET_TOPIC
    adjacent_topic: str = sw.DEFAULT_ADJACENT_TOPIC
    # entities of the forget and adjacent topics (0 = entities_per_topic); stories are drawn in
    # proportion to entities, so more of them means more forget facts at the same exposure each
    forget_entities: int = FORGET_ENTITIES
    adjacent_entities: int = ADJACENT_ENTITIES
    # chance that a profile of an adjacent entity is a forget-topic document: the adjacent topic's
    # knowledge is partly stated in forget documents, as general biology is in hazardous papers, so
    # that removing the forget documents costs adjacent facts (ours: ADJACENT_IN_FORGET above)
    adjacent_in_forget: float = ADJACENT_IN_FORGET
    test_fraction: float = 0.1
    split_seed: int = 0
    vocab_size: int = 2048  # ours: as storyworld-lang's (an upper bound)
    # the world's size and how densely documents state facts (`storyworld.StoryOptions`); ours,
    # chosen by scripts/calibrate_storyworld.py (docs/storyworld-calibration.md). The original
    # generator's values: entities_per_topic=26, main_facts=2,4, other_facts=1,3, profiles=0
    entities_per_topic: int = sw.CALIBRATED_ENTITIES_PER_TOPIC
    main_facts: tuple[int, ...] = sw.CALIBRATED_STORIES.main_facts
    other_facts: tuple[int, ...] = sw.CALIBRATED_STORIES.other_facts
    adjacent_visitors: float = sw.CALIBRATED_STORIES.adjacent_visitors
    other_visitors: float = sw.CALIBRATED_STORIES.other_visitors
    visitor_facts: float = sw.CALIBRATED_STORIES.visitor_facts
    profiles: float = sw.CALIBRATED_STORIES.profiles


@dataclass(frozen=True)
class StoryworldTopicLargeOptions(StoryworldTopicOptions):
    # ours: LARGE_N_STORIES above (the forget split's documents as in storyworld-topic)
    n_stories: int = LARGE_N_STORIES
    # entities of each retain topic (neither forget nor adjacent): the world's own
    # `entities_per_topic` and the rest added after them (`storyworld.build_world(added=)`), so
    # the forget and adjacent entities, facts and probes are storyworld-topic's
    retain_entities: int = LARGE_RETAIN_ENTITIES


def world_and_stories(options) -> tuple[sw.World, sw.StoryOptions]:
    """The world and story options a storyworld benchmark's `options` describe (an options object
    or the dict a run config stores)."""
    get = options.get if isinstance(options, dict) else lambda k, d: getattr(options, k, d)
    d = sw.DEFAULT_STORIES
    share = float(get("adjacent_in_forget", 0.0))  # storyworld-topic only
    moved = ((get("adjacent_topic", None), get("forget_topic", None), share),) if share else ()
    for name in ("main_facts", "other_facts"):  # before StoryOptions unpacks them
        if len(tuple(get(name, getattr(d, name)))) != 2:
            raise ValueError(f"{name} must be two numbers MIN,MAX")
    stories = sw.StoryOptions(
        main_facts=tuple(get("main_facts", d.main_facts)),
        other_facts=tuple(get("other_facts", d.other_facts)),
        main_from_adjacent=d.main_from_adjacent,
        adjacent_visitors=float(get("adjacent_visitors", d.adjacent_visitors)),
        other_visitors=float(get("other_visitors", d.other_visitors)),
        visitor_facts=float(get("visitor_facts", d.visitor_facts)),
        profiles=float(get("profiles", d.profiles)),
        moved_profiles=moved,
    )
    sizes = []
    for topic_key, size_key in (
        ("forget_topic", "forget_entities"),
        ("adjacent_topic", "adjacent_entities"),
    ):
        if int(get(size_key, 0)):
            sizes.append((get(topic_key, None), int(get(size_key, 0))))
    own = int(get("entities_per_topic", sw.ENTITIES_PER_TOPIC))
    retain = int(get("retain_entities", 0))  # storyworld-topic-large only; 0 = as the world's own
    if retain and retain < own:
        raise ValueError(
            f"retain_entities must be at least entities_per_topic ({own}), got {retain}"
        )
    split_topics = (get("forget_topic", None), get("adjacent_topic", None))
    added = tuple((t, retain - own) for t in sw.TOPICS if retain > own and t not in split_topics)
    world = sw.build_world(int(get("world_seed", 0)), own, tuple(sizes), added)
    return world, stories


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
    world, stories = world_and_stories(options)
    docs = sw.generate_documents(
        options.n_stories,
        seed=options.world_seed,
        world_seed=options.world_seed,
        languages=("en", "es"),
        spanish_fraction=options.spanish_fraction,
        stories=stories,
        world=world,
    )
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
    return _topic_benchmark("storyworld-topic", options)


@register_benchmark(
    "storyworld-topic-large", options=StoryworldTopicLargeOptions, train_defaults=LARGE_TRAIN
)
def storyworld_topic_large(options: StoryworldTopicLargeOptions) -> Benchmark:
    """storyworld-topic with larger retain topics: forget ~13% of the tokens, not ~45%."""
    return _topic_benchmark("storyworld-topic-large", options)


def _topic_benchmark(name: str, options: StoryworldTopicOptions) -> Benchmark:
    _check_fraction("test_fraction", options.test_fraction)
    for t in (options.forget_topic, options.adjacent_topic):
        if t not in sw.TOPICS:
            raise ValueError(f"unknown topic {t!r}; topics: {', '.join(sw.TOPICS)}")
    if options.forget_topic == options.adjacent_topic:
        raise ValueError("forget_topic and adjacent_topic must differ")
    world, stories = world_and_stories(options)
    docs = sw.generate_documents(
        options.n_stories,
        seed=options.world_seed,
        world_seed=options.world_seed,
        languages=("en",),
        stories=stories,
        world=world,
    )

    def split_of_topic(topic: str) -> str:
        if topic == options.forget_topic:
            return "forget"
        return "adjacent" if topic == options.adjacent_topic else "retain"

    probes = [(p, split_of_topic(p.topic)) for p in sw.fact_probes(world, "en")]
    return _assemble(
        name,
        options,
        docs,
        lambda d: split_of_topic(d.meta["topic"]),
        probes,
        f"storyworld, English; forget = {options.forget_topic}, adjacent = {options.adjacent_topic}",
    )
