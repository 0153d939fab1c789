"""The papers' datasets through Hugging Face `datasets`, with the papers' recipes.

- `tinystories-bilingual` (SGTM): TinyStories with a Spanish translation of every story
  (`ffuuugor/tinystories-spanish`, columns `text` and `text_es`). Every story becomes an English
  document (retain) and a Spanish one (forget); each is cut to `max_tokens` tokens (511: the
  context minus the end-of-text token that follows it). Train/test = the dataset's train/validation.
- `tinystories-forest` (ERA): TinyStories (`roneneldan/TinyStories`); a story matching
  `\\b(tree|trees|forest|forests|woodland|woodlands)\\b` (case-insensitive) is forget, the rest retain.
  Train/test = the dataset's train/validation.
- `wikipedia-bio` (SGTM): English Wikipedia (`wikimedia/wikipedia`, `20231101.en`) joined by page id
  with the ORES article topics of a local CSV (`enwiki_topics2020.csv`: wikidata_id, page_id, title,
  source, topic, score; no header). Each page takes its best topic (topics without `*` first, then
  the highest score); pages without a topic are dropped. forget = STEM.Biology; adjacent =
  STEM.Chemistry, STEM.Medicine_&_Health, STEM.Earth_and_environment; retain = the rest. 5000 test
  articles per category (retain: per top-level category). Articles are joined with end-of-text and
  cut into context-size blocks, which is what packing does.

Offline use (the hub is never needed at run time):
- `path=DIR` where DIR came from `DatasetDict.save_to_disk` (or a `load_dataset(...)` cache you
  copied with `save_to_disk`), or a folder of data files named by split (`train.jsonl`,
  `validation.parquet`, ...), or one data file (Wikipedia has only a train split);
- or leave `path` empty with the dataset in the Hugging Face cache and `HF_DATASETS_OFFLINE=1`.
The GPT-2 tokenizer comes from `tokenizer=DIR` (vocab.json + merges.txt) or the cache (`gpt2`).
"""

from __future__ import annotations

import csv
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from unlearnbench.config import ConfigError
from unlearnbench.data.benchmarks import Benchmark, register_benchmark
from unlearnbench.data.documents import Document
from unlearnbench.data.gpt2 import benchmark_tokenizer
from unlearnbench.data.splits import stable_uniform

DATA_FILE_BUILDERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}


def load_split(dataset: str, config: str, path: str, split: str):
    """One split of a dataset: from `path` (saved dataset, data folder or data file) if given,
    else `load_dataset(dataset, config)` (the hub, or its local cache when offline)."""
    import datasets

    try:
        if path:
            p = Path(path).expanduser()
            if (p / "dataset_dict.json").exists() or (p / "state.json").exists():
                saved = datasets.load_from_disk(str(p))
                if isinstance(saved, datasets.DatasetDict):
                    if split not in saved:
                        raise ConfigError(
                            f"{p} has no split {split!r} (splits: {', '.join(saved)})"
                        )
                    return saved[split]
                return saved
            if p.is_dir():
                return datasets.load_dataset(str(p), split=split)
            if p.is_file():
                builder = DATA_FILE_BUILDERS.get(p.suffix)
                if builder is None:
                    raise ConfigError(f"{p}: data files must be {', '.join(DATA_FILE_BUILDERS)}")
                return datasets.load_dataset(builder, data_files={split: str(p)}, split=split)
            raise ConfigError(f"dataset path not found: {p}")
        return datasets.load_dataset(dataset, config or None, split=split)
    except ConfigError:
        raise
    except (OSError, ValueError, datasets.exceptions.DatasetNotFoundError) as e:
        where = path or (f"{dataset} ({config})" if config else dataset)
        raise ConfigError(
            f"cannot load split {split!r} of {where}: {str(e).splitlines()[0] if str(e) else e!r}"
            " (offline: --set path=DIR with a save_to_disk copy or data files named by split)"
        ) from None


def _need_columns(ds, columns: tuple[str, ...], where: str) -> None:
    missing = [c for c in columns if c not in ds.column_names]
    if missing:
        raise ConfigError(
            f"{where}: no column {', '.join(missing)} (columns: {', '.join(ds.column_names)})"
        )


def _head(ds, n: int):
    return ds.select(range(min(n, len(ds)))) if n else ds


# ---------------------------------------------------------------------------------------- TinyStories


@dataclass(frozen=True)
class TinyStoriesBilingualOptions:
    dataset: str = (
        "ffuuugor/tinystories-spanish"  # SGTM reference, tinystories_tokenize_and_split.py
    )
    path: str = ""  # a local copy (see the module doc); empty: `dataset` via the cache
    max_train_stories: int = 0  # ours: the first N training stories (0 = all)
    max_test_stories: int = 0  # ours: the first N validation stories (0 = all)
    max_tokens: int = 511  # SGTM: tokens[: context 512 - 1], then end-of-text
    tokenizer: str = "gpt2"  # SGTM: GPT-2 (tiktoken "gpt2"); or a directory, or "bpe"
    vocab_size: int = 8192  # for tokenizer=bpe only
    compact_vocab: bool = False


@register_benchmark("tinystories-bilingual", options=TinyStoriesBilingualOptions)
def tinystories_bilingual(options: TinyStoriesBilingualOptions) -> Benchmark:
    """TinyStories in English and Spanish (SGTM): forget Spanish, retain English."""
    train, test = [], {"forget": [], "retain": []}
    for hf_split, limit in (
        ("train", options.max_train_stories),
        ("validation", options.max_test_stories),
    ):
        ds = _head(load_split(options.dataset, "", options.path, hf_split), limit)
        _need_columns(ds, ("text", "text_es"), f"{options.path or options.dataset} [{hf_split}]")
        for i, row in enumerate(ds):
            for lang, col, split in (("en", "text", "retain"), ("es", "text_es", "forget")):
                doc = Document(f"{hf_split}-{i}-{lang}", row[col], {"language": lang, "story": i})
                if hf_split == "train":
                    train.append((doc, split))
                else:
                    test[split].append(doc)
    return _finish(
        "tinystories-bilingual", train, test, options, "TinyStories en/es; forget = Spanish"
    )


@dataclass(frozen=True)
class TinyStoriesForestOptions:
    dataset: str = "roneneldan/TinyStories"  # ERA (Cloud et al. 2024) trains on TinyStories
    path: str = ""
    forget_regex: str = (
        r"\b(tree|trees|forest|forests|woodland|woodlands)\b"  # ERA, case-insensitive
    )
    max_train_stories: int = 0  # ours: the first N training stories (0 = all)
    max_test_stories: int = 0
    max_tokens: int = (
        0  # ours: whole stories, packed into 256-token blocks (ERA: stories cut to 256)
    )
    tokenizer: str = "gpt2"  # ERA: GPT-2 (the TinyStories-28M tokenizer)
    vocab_size: int = 8192
    compact_vocab: bool = False


@register_benchmark("tinystories-forest", options=TinyStoriesForestOptions)
def tinystories_forest(options: TinyStoriesForestOptions) -> Benchmark:
    """TinyStories (ERA): forget stories that mention trees, forests or woodlands; retain the rest."""
    try:
        regex = re.compile(options.forget_regex, re.IGNORECASE)
    except re.error as e:
        raise ConfigError(f"forget_regex is not a valid regex: {e}") from None
    train, test = [], {"forget": [], "retain": []}
    for hf_split, limit in (
        ("train", options.max_train_stories),
        ("validation", options.max_test_stories),
    ):
        ds = _head(load_split(options.dataset, "", options.path, hf_split), limit)
        _need_columns(ds, ("text",), f"{options.path or options.dataset} [{hf_split}]")
        for i, text in enumerate(ds["text"]):
            split = "forget" if regex.search(text) else "retain"
            doc = Document(f"{hf_split}-{i}", text, {})
            if hf_split == "train":
                train.append((doc, split))
            else:
                test[split].append(doc)
    return _finish("tinystories-forest", train, test, options, "TinyStories; forget = forest regex")


# ---------------------------------------------------------------------------------------- Wikipedia

FORGET_TOPICS = ("STEM.Biology",)  # SGTM scripts/data/prepare_wikipedia.sh
ADJACENT_TOPICS = ("STEM.Chemistry", "STEM.Medicine_&_Health", "STEM.Earth_and_environment")


@dataclass(frozen=True)
class WikipediaBioOptions:
    dataset: str = "wikimedia/wikipedia"  # SGTM prepare_wikipedia.py
    config: str = "20231101.en"
    path: str = ""  # a local copy of the articles (id, title, text)
    topics: str = ""  # the ORES topics CSV (enwiki_topics2020.csv); required
    forget: tuple[str, ...] = FORGET_TOPICS
    adjacent: tuple[str, ...] = ADJACENT_TOPICS
    test_per_category: int = 5000  # SGTM --max-test-per-category 5000
    max_articles: int = 0  # the first N articles, like the reference's --max-samples (0 = all)
    split_seed: int = 42  # SGTM --seed 42 (here it seeds the id hash that picks test articles)
    tokenizer: str = "gpt2"  # SGTM: GPT-2
    vocab_size: int = 8192
    compact_vocab: bool = False


def read_topics(path: str) -> dict[str, str]:
    """page id -> best ORES topic: topics without '*' first, then the highest score."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"topics file not found: {p} (the ORES topics CSV; --set topics=FILE)")
    best: dict[str, tuple[bool, float, str]] = {}
    with p.open(newline="", encoding="utf-8", errors="replace") as f:
        for n, row in enumerate(csv.reader(f), start=1):
            if len(row) != 6:
                continue  # the reference reads with on_bad_lines="skip"
            _, page_id, _, _, topic, score = row
            try:
                key = ("*" in topic, -float(score), topic)
            except ValueError:
                if n == 1:
                    continue  # a header line
                raise ConfigError(f"{p}:{n}: score {score!r} is not a number") from None
            if page_id not in best or key < best[page_id]:
                best[page_id] = key
    if not best:
        raise ConfigError(f"{p}: no topic rows (wikidata_id, page_id, title, source, topic, score)")
    return {page: key[2] for page, key in best.items()}


@register_benchmark("wikipedia-bio", options=WikipediaBioOptions)
def wikipedia_bio(options: WikipediaBioOptions) -> Benchmark:
    """English Wikipedia by ORES topic (SGTM): forget biology; adjacent chemistry, medicine, earth."""
    if not options.topics:
        raise ConfigError("wikipedia-bio needs --set topics=enwiki_topics2020.csv (ORES topics)")
    if options.test_per_category < 1:
        raise ConfigError("test_per_category must be >= 1")
    topic_of = read_topics(options.topics)
    ds = _head(
        load_split(options.dataset, options.config, options.path, "train"), options.max_articles
    )
    _need_columns(ds, ("id", "text"), options.path or options.dataset)

    by_category: dict[str, list[tuple[Document, str]]] = defaultdict(list)
    for row in ds:
        topic = topic_of.get(str(row["id"]))
        if topic is None:
            continue  # no ORES topic: dropped, as in the reference
        if topic in options.forget:
            split, category = "forget", topic
        elif topic in options.adjacent:
            split, category = "adjacent", topic
        else:
            split, category = "retain", topic.split(".")[0]  # retain: per top-level category
        meta = {"topic": topic, "title": row.get("title", "")}
        by_category[category].append((Document(str(row["id"]), row["text"], meta), split))

    train, test = [], {}
    for category in sorted(by_category):
        docs = sorted(
            by_category[category],
            key=lambda ds_: stable_uniform("wiki-test", options.split_seed, ds_[0].id),
        )
        for k, (doc, split) in enumerate(docs):
            if k < options.test_per_category:
                test.setdefault(split, []).append(doc)
            else:
                train.append((doc, split))
    for split in ("forget", "retain"):
        if not any(s == split for _, s in train):
            raise ConfigError(
                f"wikipedia-bio: no {split} training articles after {options.test_per_category} "
                "test articles per category; lower test_per_category or add articles"
            )
    return _finish(
        "wikipedia-bio", train, test, options, "Wikipedia by ORES topic; forget = biology"
    )


def _finish(name: str, train, test, options, description: str) -> Benchmark:
    test = {s: docs for s, docs in test.items() if docs}
    tokenizer = benchmark_tokenizer(
        options.tokenizer,
        lambda: (d.text for d, _ in train),
        lambda: (d.text for docs in ([d for d, _ in train], *test.values()) for d in docs),
        options.vocab_size,
        options.compact_vocab,
        name=name,
    )
    return Benchmark(
        name=name,
        train=train,
        test=test,
        tokenizer=tokenizer,
        description=description,
        max_doc_tokens=getattr(options, "max_tokens", 0),
    )
