import difflib
import re

import pytest

from unlearnbench.data import storyworld as sw


@pytest.fixture(scope="module")
def world():
    return sw.build_world(0)


@pytest.fixture(scope="module")
def plans(world):
    return sw.plan_stories(world, 400, seed=0)


def test_world_size_and_facts(world):
    assert len(world.topics) >= 12
    assert len(world.entities) >= 300
    names = [e.name for e in world.entities]
    assert len(set(names)) == len(names)
    assert len({e.first_name for e in world.entities}) == len(names)
    for e in world.entities:
        assert len(e.facts) >= 4
        assert e.home_topic in world.topics
        assert world.entity(e.name) is e
        for f, v in e.facts.items():
            opts = world.fact_options(e, f)
            assert len(opts) >= 4 and v in opts
        assert e.facts["home"] in sw.TOPIC_VOCAB[e.home_topic].places
        assert e.facts["friend"] != e.name
    for t in world.topics:
        assert len(world.entities_of(t)) >= 20
    assert sw.DEFAULT_FORGET_TOPIC == "forest"
    assert sw.ADJACENT_TOPIC[sw.DEFAULT_FORGET_TOPIC] == sw.DEFAULT_ADJACENT_TOPIC
    assert all(sw.ADJACENT_TOPIC[b] == a for a, b in sw.ADJACENT_TOPIC.items())


def test_world_determinism():
    assert sw.build_world.__wrapped__(0) == sw.build_world.__wrapped__(0)
    assert sw.build_world.__wrapped__(0) != sw.build_world.__wrapped__(1)


def test_documents_determinism():
    a = sw.generate_documents(50, seed=3, languages=("en", "es"), spanish_fraction=0.5)
    b = sw.generate_documents(50, seed=3, languages=("en", "es"), spanish_fraction=0.5)
    c = sw.generate_documents(50, seed=4, languages=("en", "es"), spanish_fraction=0.5)
    assert [(d.id, d.text, d.meta) for d in a] == [(d.id, d.text, d.meta) for d in b]
    assert [d.text for d in a] != [d.text for d in c]
    assert len({d.id for d in a}) == 50
    langs = [d.meta["language"] for d in a]
    assert 10 < langs.count("es") < 40
    for d in a:
        assert d.id == f"sw-3-{d.meta['plan']}-{d.meta['language']}"
        assert set(d.meta) >= {"language", "topic", "entities", "plan"}


def test_language_selection_and_topic_filter():
    en = sw.generate_documents(30, seed=0, languages=("en", "es"), spanish_fraction=0.0)
    assert {d.meta["language"] for d in en} == {"en"}
    es = sw.generate_documents(30, seed=0, languages=("es",))
    assert {d.meta["language"] for d in es} == {"es"}
    full = sw.generate_documents(200, seed=0)
    forest = sw.generate_documents(10, seed=0, topics=["forest"])
    assert {d.meta["topic"] for d in forest} == {"forest"}
    # ids are stable: the filtered stream is a subsequence of the unfiltered one
    by_id = {d.id: d.text for d in full}
    hits = [d for d in forest if d.id in by_id]
    assert hits and all(by_id[d.id] == d.text for d in hits)


def test_story_length(world, plans):
    lens = sorted(len(sw.render(p, world, "en").split()) for p in plans)
    assert lens[len(lens) // 20] >= 70 and lens[-len(lens) // 20] <= 210
    assert 100 <= lens[len(lens) // 2] <= 170


def _stated_clauses(world, ent, fact, lang):
    """{value: full sentence body} for every possible value of (ent, fact)."""
    out = {}
    for v in world.fact_options(ent, fact):
        p, o, s = sw.fact_clause(world, ent, fact, v, lang)
        out[v] = p + o + s
    return out


@pytest.mark.parametrize("lang", ["en", "es"])
def test_facts_consistent(world, plans, lang):
    n_checked = 0
    for p in plans[:200]:
        text = sw.render(p, world, lang)
        stated = set(p.facts)
        for name in p.entities:
            ent = world.entity(name)
            for f in sw.FACTS:
                for v, clause in _stated_clauses(world, ent, f, lang).items():
                    found = clause + "." in text
                    if v == ent.facts[f]:
                        assert found == ((name, f) in stated), (clause, text)
                        n_checked += found
                    else:
                        assert not found, (clause, text)
    assert n_checked > 500


def test_eat_and_home_events_use_facts(world, plans):
    checked = {"eat": 0, "home": 0}
    for p in plans[:200]:
        text = sw.render(p, world, "en")
        for ev in p.events:
            ent = world.entity(p.entities[ev[2]]) if ev[0] in ("eat", "home") else None
            if ev[0] == "eat":
                assert f"some {ent.facts['food']}" in text
            if ev[0] == "home":
                assert f"the {ent.facts['home']}" in text
            if ev[0] in checked:
                checked[ev[0]] += 1
    assert min(checked.values()) >= 20, checked  # the plans have such events to check


def test_same_plan_both_languages_same_entities(world, plans):
    for p in plans[:100]:
        en, es = sw.render(p, world, "en"), sw.render(p, world, "es")
        assert en != es
        for name in p.entities:
            e = world.entity(name)
            assert e.name in en and e.es_name() in es
        for e in world.entities:
            if e.name not in p.entities:
                # a non-participant can only appear as somebody's friend
                assert (e.name in en) == (e.es_name() in es)


def _by_gender(attr):
    fem = {getattr(n, attr).split()[0] for n in sw.NOUNS.values() if n.g == "f"}
    masc = {getattr(n, attr).split()[0] for n in sw.NOUNS.values() if n.g == "m"}
    fem, masc = fem - {"gran", "grandes"}, masc - {"gran", "grandes"}  # "el gran salón"
    return fem - masc, masc - fem  # nouns with one form for both genders are skipped


_FEM_NOUNS, _MASC_NOUNS = _by_gender("es")
_FEM_PL, _MASC_PL = _by_gender("es_pl")


def test_spanish_agreement(world, plans):
    bad = re.compile(r"\b([Dd]e el|[Aa] el)\b")
    for p in plans:
        text = sw.render(p, world, "es")
        assert not bad.search(text), text
        words = re.findall(r"[\wáéíóúñü]+", text)
        for art, noun in zip(words, words[1:], strict=False):
            a = art.lower()
            if a in ("el", "un", "al", "del"):
                assert noun not in _FEM_NOUNS, (art, noun, text)
            elif a in ("la", "una"):
                assert noun not in _MASC_NOUNS, (art, noun, text)
            elif a in ("los", "unos"):
                assert noun not in _FEM_PL, (art, noun, text)
            elif a in ("las", "unas"):
                assert noun not in _MASC_PL, (art, noun, text)
        # adjective agreement for colour facts: "bufanda" is feminine
        for adj in re.findall(r"bufanda (\w+)", text):
            assert adj in {"roja", "azul", "verde", "amarilla", "morada", "rosa", "marrón",
                           "blanca", "negra", "gris"}  # fmt: skip


def test_spanish_hand_checked():
    """A fixed plan, rendered by hand."""
    world = sw.build_world(0)
    fox = next(e for e in world.entities if e.species == "fox")
    cow = next(e for e in world.entities if e.species == "cow")
    plan = sw.StoryPlan(
        id=0,
        topic="forest",
        entities=(fox.name, cow.name),
        events=(
            ("intro", 0, 0, "pond", "morning", "cold"),
            ("describe", 0, "cave", "dark", "fern"),
            ("meet", 0, 0, 1, "barn"),
            ("go", 1, 1, "barn", "noisy"),
            ("go", 0, 0, "cave", "dark"),
            ("find", 0, 0, "acorn", "old", "shed"),
            ("see", 1, 0, "pebble", "small"),
            ("see", 0, 0, "flower", "small"),
            ("help", 0, 1, 0, "map", "barn"),
            ("feel", 0, 0, "tired"),
            ("feel", 0, 1, "tired"),
            ("activity", 4, (0, 1), "forest:0"),
            ("end", 2, 0, 1),
        ),
        facts=(),
        overrides=((fox.name, "home", "den"),),
    )
    f, c = fox.first_name, cow.first_name
    expected = [
        f"Una mañana fría, {f} el zorro fue al estanque.",
        "La cueva era oscura y estaba llena de helechos.",
        f"Allí, el zorro conoció a {c} la vaca.",
        f"Luego, {c} se acercó al granero.",
        "El zorro caminó hacia la cueva oscura.",
        "Cerca del cobertizo, el zorro encontró una bellota vieja.",
        f"Había muchos guijarros alrededor, y {f} los contó uno a uno.",
        "El zorro vio unas flores pequeñas y sonrió.",
        "La vaca ayudó al zorro a buscar el mapa, y pronto lo encontraron.",
        "El zorro se sintió muy cansado.",
        "La vaca se sintió muy cansada.",
        f"Juntos, {f} y {c} intentaron recoger bellotas.",
        f"Desde aquel día, {f} y la vaca fueron los mejores amigos.",
    ]
    assert sw.render(plan, world, "es") == " ".join(expected)
    en = sw.render(plan, world, "en")
    assert en.startswith(
        f"One cold morning, {f} the fox went to the pond. The cave was dark and full of ferns. There, the fox met {c} the cow."
    )
    assert "the fox found an old acorn." in en
    home = sw.StoryPlan(
        1, "forest", (fox.name,), (("home", 0, 0),), (), ((fox.name, "home", "den"),)
    )
    assert (
        sw.render(home, world, "es") == f"Cuando se puso el sol, {f} el zorro volvió a la guarida."
    )
    home2 = sw.StoryPlan(1, "forest", (fox.name,), (("home", 0, 0),), ())
    assert sw.render(home2, world, "es", fact_overrides={(fox.name, "home"): "barn"}).endswith(
        "volvió al granero."
    )


def test_fact_probes(world, plans):
    for lang in ("en", "es"):
        probes = sw.fact_probes(world, lang)
        assert len(probes) == len(world.entities) * len(sw.FACTS)
        assert len({p.id for p in probes}) == len(probes)
        answers = [p.answer for p in probes]
        assert len(set(answers)) == 4  # the correct option is not always first
        by_key = {(p.entity, p.fact): p for p in probes}
        for p in probes[:50]:
            assert len(p.options) == 4 and len(set(p.options)) == 4
            assert all(o.startswith(" ") for o in p.options)
            assert p.topic == world.entity(p.entity).home_topic
        if lang == "es":
            assert any(o.startswith((" la ", " el ")) for p in probes for o in p.options)
        n = 0
        for plan in plans[:150]:
            text = sw.render(plan, world, lang)
            for name, f in plan.facts:
                pr = by_key[(name, f)]
                assert pr.prompt + pr.options[pr.answer] in text
                for i, o in enumerate(pr.options):
                    if i != pr.answer:
                        assert pr.prompt + o + "." not in text
                n += 1
        assert n > 300
    assert sw.fact_probes(world, "en", seed=1) == sw.fact_probes(world, "en", seed=1)


_ARTICLES = {"el", "la", "los", "las", "al", "a", "del", "de", "un", "una", "an"}


def _words(s):
    return re.findall(r"[\wáéíóúñü'-]+", s)


@pytest.mark.parametrize("lang", ["en", "es"])
def test_rewrite_with_changed_facts(world, plans, lang):
    n_changed = 0
    for k, p in enumerate(plans[:150]):
        new, changed = sw.rewrite_with_changed_facts(p, world, seed=k)
        if not p.facts:
            continue
        assert 1 <= len(changed) <= 2
        for (name, f), v in changed.items():
            assert v != world.entity(name).facts[f]
            assert v in world.fact_options(world.entity(name), f)
        a, b = sw.render(p, world, lang), sw.render(new, world, lang)
        assert a != b
        old_words, new_words = set(_ARTICLES), set(_ARTICLES)
        for (name, f), v in changed.items():
            e = world.entity(name)
            old_words |= set(_words(sw.fact_clause(world, e, f, e.facts[f], lang)[1]))
            new_words |= set(_words(sw.fact_clause(world, e, f, v, lang)[1]))
            # the new fact is stated exactly
            pr, o, s = sw.fact_clause(world, e, f, v, lang)
            assert pr + o + s + "." in b
        wa, wb = _words(a), _words(b)
        sm = difflib.SequenceMatcher(a=wa, b=wb, autojunk=False)
        for tag, i1, i2, j1, j2 in sm.get_opcodes():
            if tag != "equal":
                assert set(wa[i1:i2]) <= old_words, (wa[i1:i2], changed)
                assert set(wb[j1:j2]) <= new_words, (wb[j1:j2], changed)
        # structure unchanged outside fact words: same number of sentences
        assert a.count(".") == b.count(".")
        n_changed += 1
    assert n_changed > 100
    # deterministic
    assert sw.rewrite_with_changed_facts(plans[0], world, 5) == sw.rewrite_with_changed_facts(
        plans[0], world, 5
    )


def test_topic_vocabulary_distinct_and_adjacent_overlap():
    """Topics are detectable from words; the adjacent pair shares entities and vocabulary."""
    docs = sw.generate_documents(1500, seed=0)
    words: dict[str, dict[str, int]] = {}
    for d in docs:
        c = words.setdefault(d.meta["topic"], {})
        for w in set(d.text.lower().split()):
            c[w] = c.get(w, 0) + 1
    world = sw.build_world(0)
    forest_names = {e.name for e in world.entities_of("forest")}
    garden = [d for d in docs if d.meta["topic"] == "garden"]
    frac = sum(any(n in forest_names for n in d.meta["entities"]) for d in garden) / len(garden)
    assert frac > 0.3
    sea = [d for d in docs if d.meta["topic"] == "sea"]
    frac_sea = sum(any(n in forest_names for n in d.meta["entities"]) for d in sea) / len(sea)
    assert frac_sea < frac / 3

    def share(a, b):
        top = lambda t: {w for w, c in words[t].items() if c > 0.1 * len(docs) / 12}  # noqa: E731
        return len(top(a) & top(b)) / len(top(a) | top(b))

    assert share("forest", "garden") > share("forest", "sea")
    assert share("forest", "garden") > share("forest", "town")
    assert "cave" in words["forest"] and words["forest"].get("cave", 0) > words["sea"].get(
        "cave", 0
    )
