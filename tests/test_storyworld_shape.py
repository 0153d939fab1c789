"""The world's size and the stories' fact density are options; each option does what it says."""

from collections import Counter

import pytest

from unlearnbench.config import ConfigError
from unlearnbench.data import storyworld as sw
from unlearnbench.data.benchmarks import load_benchmark
from unlearnbench.data.benchmarks.storyworld import (
    ADJACENT_ENTITIES,
    StoryworldLangOptions,
    StoryworldTopicOptions,
    world_and_stories,
)


def test_entities_per_topic_and_topic_sizes():
    small = sw.build_world(0, 4)
    assert all(len(small.entities_of(t)) == 4 for t in small.topics)
    sized = sw.build_world(0, 4, (("forest", 12), ("garden", 9)))
    assert len(sized.entities_of("forest")) == 12 and len(sized.entities_of("garden")) == 9
    assert len(sized.entities_of("farm")) == 4
    for bad in ((0, 2, ()), (0, 4, (("nowhere", 5),)), (0, 4, (("forest", 101),))):
        with pytest.raises(ValueError):
            sw.build_world(*bad)


def test_stories_drawn_in_proportion_to_entities():
    world = sw.build_world(0, 4, (("forest", 16),))  # forest: 16 of 60 entities
    topics = Counter(p.topic for p in sw.plan_stories(world, 3000, seed=0))
    share = topics["forest"] / 3000
    assert abs(share - 16 / 60) < 0.03, share
    assert abs(topics["farm"] / 3000 - 4 / 60) < 0.02


def test_fact_density_options():
    world = sw.build_world(0, 4)
    sparse = sw.plan_stories(world, 300, 0, stories=sw.StoryOptions(main_facts=(0, 0),
                                                                    other_facts=(0, 0)))  # fmt: skip
    dense = sw.plan_stories(world, 300, 0, stories=sw.StoryOptions(main_facts=(5, 5)))
    assert sum(len(p.facts) for p in sparse) == 0
    for p in dense:  # the main character's five facts, at least
        assert sum(1 for e, _ in p.facts if e == p.entities[0]) == 5
    with pytest.raises(ValueError):
        sw.StoryOptions(main_facts=(3, 2))
    with pytest.raises(ValueError):
        sw.StoryOptions(adjacent_visitors=0.8, other_visitors=0.3)


def test_visitor_facts_zero_keeps_facts_at_home():
    world = sw.build_world(0, 4)
    opts = sw.StoryOptions(visitor_facts=0.0)
    plans = sw.plan_stories(world, 500, 0, stories=opts)
    visitors = 0
    for p in plans:
        for name in p.entities:
            home = world.entity(name).home_topic
            visitors += home != p.topic
            if home != p.topic:  # a visitor is in the story but none of its facts is stated
                assert all(e != name for e, _ in p.facts)
    assert visitors > 100  # topics still share characters


def test_profiles_state_every_fact_of_one_home_entity():
    world = sw.build_world(0, 4)
    opts = sw.StoryOptions(profiles=0.5)
    docs = sw.generate_documents(400, 0, ("en", "es"), 0.3, world=world, stories=opts)
    profiles = [d for d in docs if len(d.meta["entities"]) == 1]
    assert 150 < len(profiles) < 250
    for d in profiles[:50]:
        e = world.entity(d.meta["entities"][0])
        assert e.home_topic == d.meta["topic"]
        for f in sw.FACTS:
            p, o, s = sw.fact_clause(world, e, f, e.facts[f], d.meta["language"])
            assert p + o + s + "." in d.text


def test_benchmark_options_reach_the_world_and_probes():
    opts = dict(n_stories=600, entities_per_topic=4, forget_entities=10, profiles=0.3)
    bench = load_benchmark("storyworld-topic", opts)
    world, stories = world_and_stories(
        opts
        | {"forget_topic": "forest", "adjacent_topic": "garden"}
        | {"adjacent_entities": ADJACENT_ENTITIES}
    )
    assert stories.profiles == 0.3 and len(world.entities_of("forest")) == 10
    by_split = Counter(s for _, s in bench.probes)
    assert by_split["forget"] == 10 * len(sw.FACTS)
    assert by_split["adjacent"] == ADJACENT_ENTITIES * len(sw.FACTS)  # the default
    names = {e.name for e in world.entities}
    assert {p.entity for p, _ in bench.probes} == names
    with pytest.raises(ConfigError, match="main_facts"):
        load_benchmark("storyworld-lang", dict(n_stories=100, main_facts=(4, 2)))
    with pytest.raises(ConfigError, match="two numbers MIN,MAX"):
        load_benchmark("storyworld-lang", dict(n_stories=100, main_facts=(1, 2, 3)))
    with pytest.raises(ConfigError, match="entities"):
        load_benchmark("storyworld-lang", dict(n_stories=100, entities_per_topic=1))


def test_rewritten_stories_follow_the_benchmark_world():
    """rewritten-transfer replans a document from its plan id: with a resized world and denser
    stories the replanned text must be the document's own text."""
    opts = dict(n_stories=200, entities_per_topic=5, main_facts=(4, 5), profiles=0.2)
    bench = load_benchmark("storyworld-lang", opts)
    world, stories = world_and_stories(StoryworldLangOptions(**opts))
    for doc, _ in bench.train[:40]:
        plan = next(sw.iter_plans(world, 0, start=int(doc.meta["plan"]), stories=stories))
        assert sw.render(plan, world, doc.meta["language"]) == doc.text


def test_moved_profiles_state_adjacent_facts_in_forget_documents():
    """A moved profile keeps its entity (and so its probes' split) but is a forget-topic document;
    every other plan is the one the stream makes without the option."""
    world = sw.build_world(0, 4, (("forest", 8), ("garden", 8)))
    plain = sw.StoryOptions(profiles=1.0)
    moved = sw.StoryOptions(profiles=1.0, moved_profiles=(("garden", "forest", 0.5),))
    a, b = (
        sw.plan_stories(world, 2000, 0, stories=plain),
        sw.plan_stories(world, 2000, 0, stories=moved),
    )
    garden = [(p, q) for p, q in zip(a, b, strict=True) if p.topic == "garden"]
    for p, q in zip(a, b, strict=True):
        assert p.entities == q.entities and p.events == q.events  # the same profile
        if p.topic != "garden":
            assert q.topic == p.topic  # others are untouched
    share = sum(q.topic == "forest" for _, q in garden) / len(garden)
    assert 0.4 < share < 0.6, share
    # a topic-restricted stream follows the document's topic, not the entity's
    forest = sw.plan_stories(world, 300, 0, topics=["forest"], stories=moved)
    homes = Counter(world.entity(p.entities[0]).home_topic for p in forest)
    assert set(homes) == {"forest", "garden"} and all(p.topic == "forest" for p in forest)
    assert all(
        p.topic == "garden" for p in sw.plan_stories(world, 100, 0, ["garden"], stories=moved)
    )
    with pytest.raises(ValueError, match="distinct topics"):
        sw.StoryOptions(moved_profiles=(("garden", "garden", 0.5),))
    with pytest.raises(ValueError, match="chance"):
        sw.StoryOptions(moved_profiles=(("garden", "forest", 1.5),))


def test_adjacent_in_forget_moves_adjacent_profiles_into_the_forget_split():
    opts = dict(n_stories=1500, forget_entities=8, adjacent_entities=8)
    keep = load_benchmark("storyworld-topic", opts | {"adjacent_in_forget": 0.0})
    move = load_benchmark("storyworld-topic", opts | {"adjacent_in_forget": 0.5})
    world, _ = world_and_stories(StoryworldTopicOptions(**opts))

    def homes(bench, split):
        docs = [d for d, s in bench.train if s == split]
        return Counter(world.entity(d.meta["entities"][0]).home_topic for d in docs)

    assert set(homes(keep, "forget")) == {"forest"}
    moved, stayed = homes(move, "forget")["garden"], homes(move, "adjacent")["garden"]
    assert 0.35 < moved / (moved + stayed) < 0.65, (moved, stayed)
    assert homes(keep, "adjacent")["garden"] == moved + stayed  # the same documents, relabeled
    assert move.probes == keep.probes  # probes and their splits follow the entities' homes
