"""The papers' dataset recipes through `datasets`, on tiny local fixtures with the hub's schemas."""

from __future__ import annotations

import json

import datasets
import pytest
from gpt2_fixture import FIXTURES, gpt2_dir

from unlearnbench.config import ConfigError
from unlearnbench.data.benchmarks.hub import (
    TinyStoriesBilingualOptions,
    TinyStoriesForestOptions,
    WikipediaBioOptions,
    read_topics,
    tinystories_bilingual,
    tinystories_forest,
    wikipedia_bio,
)
from unlearnbench.data.pipeline import token_ids
from unlearnbench.registry import benchmarks

HUB = FIXTURES / "hub"


def rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def texts(bench) -> dict[str, str]:
    out = {d.text: s for d, s in bench.train}
    out.update({d.text: s for s, docs in bench.test.items() for d in docs})
    return out


def test_registered():
    for name in ("tinystories-bilingual", "tinystories-forest", "wikipedia-bio", "files"):
        assert name in benchmarks


def test_tinystories_bilingual_recipe(tmp_path):
    path = HUB / "tinystories-spanish"
    opts = TinyStoriesBilingualOptions(
        path=str(path), tokenizer=str(gpt2_dir(tmp_path)), max_tokens=6
    )
    bench = tinystories_bilingual(opts)
    train, val = rows(path / "train.jsonl"), rows(path / "validation.jsonl")
    # every story twice: English retain, Spanish forget; the dataset's validation split is the test set
    assert sorted((d.text, s) for d, s in bench.train) == sorted(
        [(r["text"], "retain") for r in train] + [(r["text_es"], "forget") for r in train]
    )
    assert [d.text for d in bench.test["forget"]] == [r["text_es"] for r in val]
    assert [d.text for d in bench.test["retain"]] == [r["text"] for r in val]
    # each story cut to max_tokens GPT-2 tokens; packing then appends end-of-text
    ids = token_ids(bench)
    assert max(len(v) for v in ids.values()) == 6
    full = bench.tokenizer(train[0]["text_es"], add_special_tokens=False)["input_ids"]
    assert ids["train-0-es"] == full[:6] and len(full) > 6
    assert bench.eos_id == 50256


def test_same_recipe_from_save_to_disk(tmp_path):
    src = HUB / "tinystories-spanish"
    saved = tmp_path / "saved"
    datasets.DatasetDict(
        {s: datasets.Dataset.from_list(rows(src / f"{s}.jsonl")) for s in ("train", "validation")}
    ).save_to_disk(str(saved))
    a = tinystories_bilingual(
        TinyStoriesBilingualOptions(path=str(src), tokenizer="bpe", vocab_size=300)
    )
    b = tinystories_bilingual(
        TinyStoriesBilingualOptions(path=str(saved), tokenizer="bpe", vocab_size=300)
    )
    assert [(d.id, d.text, s) for d, s in a.train] == [(d.id, d.text, s) for d, s in b.train]
    assert a.test.keys() == b.test.keys()


def test_tinystories_forest_regex_rule():
    path = HUB / "tinystories"
    bench = tinystories_forest(
        TinyStoriesForestOptions(path=str(path), tokenizer="bpe", vocab_size=300)
    )
    got = texts(bench)
    forget = {t for t, s in got.items() if s == "forget"}
    assert forget == {
        "A small bird built a nest in the tall tree behind the school.",
        "The fox walked through the Forest at night under a bright moon.",  # case-insensitive
        "In the woodland there was a quiet pond with a green frog.",
        "The children planted trees along the road to the farm.",
        "Deep in the forests of the north lived a shy bear.",
    }
    assert got["Treetops swayed, but nobody said the word for the big plants."] == "retain"  # \b
    assert len(got) == len(rows(path / "train.jsonl")) + len(rows(path / "validation.jsonl"))


def test_ores_best_topic():
    topics = read_topics(str(HUB / "wikipedia" / "topics.csv"))
    assert topics["101"] == "STEM.Biology"  # a '*' topic loses even with a higher score
    assert topics["102"] == "STEM.Biology"  # the higher score wins
    assert topics["118"] == "Culture.Media.Television"
    assert "117" not in topics


def test_wikipedia_bio_recipe():
    wiki = HUB / "wikipedia"
    opts = WikipediaBioOptions(
        path=str(wiki / "train.jsonl"),
        topics=str(wiki / "topics.csv"),
        test_per_category=1,
        tokenizer="bpe",
        vocab_size=300,
    )
    bench = wikipedia_bio(opts)
    split = {d.id: s for d, s in bench.train} | {
        d.id: s for s, docs in bench.test.items() for d in docs
    }
    assert "117" not in split  # no topic: dropped
    assert {i for i, s in split.items() if s == "forget"} == {"101", "102", "103", "104"}
    assert {i for i, s in split.items() if s == "adjacent"} == {"105", "106", "107", "108", "109"}
    assert {i for i, s in split.items() if s == "retain"} == {str(i) for i in range(110, 117)} | {
        "118"
    }
    # one test article per category; retain categories are the top-level ones
    assert len(bench.test["forget"]) == 1
    assert len(bench.test["adjacent"]) == 3  # Chemistry, Medicine & Health, Earth and environment
    retain_tops = {d.meta["topic"].split(".")[0] for d in bench.test["retain"]}
    assert retain_tops == {"Culture", "Geography", "History_and_Society", "STEM"}
    again = wikipedia_bio(opts)
    assert [d.id for d in again.test["retain"]] == [d.id for d in bench.test["retain"]]


def test_recipe_errors(tmp_path):
    with pytest.raises(ConfigError, match="no column text_es"):
        tinystories_bilingual(
            TinyStoriesBilingualOptions(path=str(HUB / "tinystories"), tokenizer="bpe")
        )
    with pytest.raises(ConfigError, match="needs --set topics="):
        wikipedia_bio(WikipediaBioOptions(path=str(HUB / "wikipedia" / "train.jsonl")))
    with pytest.raises(ConfigError, match="dataset path not found"):
        tinystories_forest(TinyStoriesForestOptions(path=str(tmp_path / "nope")))
    with pytest.raises(ConfigError, match="cannot load a GPT-2 tokenizer"):
        tinystories_forest(
            TinyStoriesForestOptions(path=str(HUB / "tinystories"), tokenizer=str(tmp_path))
        )
