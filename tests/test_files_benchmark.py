"""The `files` benchmark: JSONL and text-file layouts, split rules, errors, GPT-2 compact vocabulary."""

from __future__ import annotations

import json

import pytest
from gpt2_fixture import FIXTURES, gpt2_dir
from typer.testing import CliRunner

from unlearnbench.cli import app
from unlearnbench.config import ConfigError, LabelConfig
from unlearnbench.data import pipeline
from unlearnbench.data.benchmarks.files import FilesOptions, load_files
from unlearnbench.data.gpt2 import load_gpt2_tokenizer, to_source_ids
from unlearnbench.data.pipeline import token_ids, training_groups

JSONL = FIXTURES / "files" / "stories.jsonl"
TEXTDIR = FIXTURES / "files" / "textdir"
ROWS = [json.loads(line) for line in JSONL.read_text().splitlines()]


def load(**kw):
    kw.setdefault("test_fraction", 0.3)
    kw.setdefault("vocab_size", 300)
    return load_files(FilesOptions(**kw))


def splits_of(bench) -> dict[str, str]:
    """text -> split, over train and test."""
    out = {d.text: s for d, s in bench.train}
    out.update({d.text: s for s, docs in bench.test.items() for d in docs})
    return out


def test_jsonl_split_by_column():
    bench = load(path=str(JSONL), split_by="language", forget=("es",), adjacent=("pt",))
    want = {"es": "forget", "pt": "adjacent", "en": "retain"}
    assert splits_of(bench) == {r["text"]: want[r["language"]] for r in ROWS}
    # the partition is a property of the ids: the same documents are test documents every time
    again = load(path=str(JSONL), split_by="language", forget=("es",), adjacent=("pt",))
    assert [d.id for d in bench.test["forget"]] == [d.id for d in again.test["forget"]]
    assert bench.test["forget"][0].meta["language"] == "es"


def test_named_retain_values_exclude_the_rest():
    bench = load(path=str(JSONL), split_by="language", forget=("es",), retain=("en",))
    got = splits_of(bench)
    assert len(got) == sum(r["language"] != "pt" for r in ROWS)
    assert "adjacent" not in set(got.values())


def test_forget_regex_is_case_insensitive_and_wins_over_column():
    regex = r"\b(tree|trees|forest|forests|woodland|woodlands)\b"
    bench = load(path=str(JSONL), forget_regex=regex, test_fraction=0.4)
    got = splits_of(bench)
    for r in ROWS:
        hit = any(
            w in r["text"].lower().replace(".", " ").split() for w in ("tree", "forest", "woodland")
        )
        assert got[r["text"]] == ("forget" if hit else "retain"), r["text"]
    # "In the woodland ..." starts with a capital I; the match is on the lower-case word
    assert (
        got[
            "In the woodland there was a quiet pond. A frog sat on a leaf and waited for a fly to come near."
        ]
        == "forget"
    )


def test_text_directory_blank_line_and_line_documents():
    bench = load(path=str(TEXTDIR), test_fraction=0.4)
    got = splits_of(bench)
    forget = [t for t, s in got.items() if s == "forget"]
    assert len(forget) == 8  # blank-line separated, some documents span two lines
    assert (
        "Había una vez un gato que vivía en una casa azul.\nTodos los días miraba los pájaros desde la ventana."
        in forget
    )
    assert sum(s == "retain" for s in got.values()) == 12  # one document per line
    assert sum(s == "adjacent" for s in got.values()) == 6


def test_yaml_spec_and_command_line_wins(tmp_path):
    spec = tmp_path / "bench.yaml"
    rel = JSONL.relative_to(JSONL.parents[1])
    (tmp_path / rel.parent).mkdir(parents=True)
    (tmp_path / rel).write_text(JSONL.read_text())
    spec.write_text(
        f"path: {rel}\nsplit_by: language\nforget: [es]\ntest_fraction: 0.3\nvocab_size: 280\n"
    )
    bench = load_files(FilesOptions(path=str(spec), vocab_size=300))
    assert {s for s in splits_of(bench).values()} == {"forget", "retain"}
    assert len(bench.tokenizer) == 300  # the command line's value, not the spec's


def write(tmp_path, lines: list[str] | bytes, name="data.jsonl"):
    p = tmp_path / name
    if isinstance(lines, bytes):
        p.write_bytes(lines)
    else:
        p.write_text("\n".join(lines) + "\n")
    return str(p)


def good_lines(n=12):
    return [
        json.dumps({"text": f"story number {i} about the sea", "lang": "es" if i % 2 else "en"})
        for i in range(n)
    ]


@pytest.mark.parametrize(
    "bad_line, message",
    [
        ('{"text": "no language here"}', r"data.jsonl:4: no column 'lang' \(columns: text\)"),
        ('{"lang": "es"}', r"data.jsonl:4: no column 'text'"),
        ('{"text": "cut off', r"data.jsonl:4: not valid JSON"),
        ('["a", "list"]', r"data.jsonl:4: expected a JSON object"),
        ('{"text": 3, "lang": "es"}', r"data.jsonl:4: column 'text' is not a string"),
    ],
)
def test_bad_lines_name_their_line(tmp_path, bad_line, message):
    lines = good_lines()
    lines.insert(3, bad_line)
    with pytest.raises(ConfigError, match=message):
        load(path=write(tmp_path, lines), split_by="lang", forget=("es",))


def test_undecodable_line_is_named(tmp_path):
    raw = ("\n".join(good_lines(3)) + "\n").encode() + b'{"text": "caf\xe9", "lang": "es"}\n'
    with pytest.raises(ConfigError, match=r"data.jsonl:4: not valid UTF-8"):
        load(path=write(tmp_path, raw), split_by="lang", forget=("es",))


def test_empty_splits(tmp_path):
    with pytest.raises(ConfigError, match=r"forget value\(s\) xx never occur in column 'lang'"):
        load(path=write(tmp_path, good_lines()), split_by="lang", forget=("xx",))
    only_en = [json.dumps({"text": f"story {i}", "lang": "en"}) for i in range(10)]
    with pytest.raises(ConfigError, match="the forget split is empty"):
        load(path=write(tmp_path, only_en), forget_regex="dragon")
    d = tmp_path / "dir"
    d.mkdir()
    (d / "forget.txt").write_text("\n\n")
    (d / "retain.txt").write_text("a\nb\n")
    with pytest.raises(ConfigError, match="forget.txt holds no documents"):
        load(path=str(d))
    with pytest.raises(ConfigError, match="needs split_by=COLUMN"):
        load(path=write(tmp_path, good_lines()))


def test_split_with_too_few_tokens_for_one_block():
    bench = load(path=str(JSONL), split_by="language", forget=("es",), adjacent=("pt",))
    training_groups(bench, LabelConfig(), 0, context=16)  # fine at a small context
    with pytest.raises(
        ConfigError,
        match=r"the adjacent training split has \d+ tokens, fewer than one block of 513",
    ):
        training_groups(bench, LabelConfig(), 0, context=512)
    with pytest.raises(
        ConfigError, match=r"the \w+ test split has \d+ tokens, fewer than one block"
    ):
        pipeline.test_blocks(bench, context=400, max_blocks=4)


def test_cli_reports_one_line_error_exit_2(tmp_path):
    lines = good_lines()
    lines.insert(6, "{oops")
    path = write(tmp_path, lines)
    result = CliRunner().invoke(
        app,
        [
            "run",
            "sgtm",
            "--benchmark",
            "files",
            "--set",
            f"path={path}",
            "--set",
            "split_by=lang",
            "--set",
            "forget=es",
            "--out",
            str(tmp_path / "runs"),
        ],
        env={"COLUMNS": "400"},
    )
    assert result.exit_code == 2, result.output
    assert "data.jsonl:7: not valid JSON" in result.output
    assert "Traceback" not in result.output


def test_max_tokens_truncates_each_document():
    bench = load(path=str(JSONL), split_by="language", forget=("es",), max_tokens=5)
    assert max(len(ids) for ids in token_ids(bench).values()) == 5


def test_gpt2_compact_vocabulary_round_trip(tmp_path):
    gdir = gpt2_dir(tmp_path)
    full = load(path=str(JSONL), split_by="language", forget=("es",), tokenizer=str(gdir))
    compact = load(
        path=str(JSONL),
        split_by="language",
        forget=("es",),
        tokenizer=str(gdir),
        compact_vocab=True,
    )
    gpt2 = load_gpt2_tokenizer(str(gdir))
    assert len(full.tokenizer) == 50257 and full.eos_id == 50256
    assert 256 < len(compact.tokenizer) < 2000
    assert compact.eos_id == len(compact.tokenizer) - 1
    full_ids, compact_ids = token_ids(full), token_ids(compact)
    assert full_ids.keys() == compact_ids.keys()
    for doc_id, ids in compact_ids.items():
        assert to_source_ids(compact.tokenizer, gpt2, ids) == full_ids[doc_id]  # same tokenization
    for r in ROWS:
        ids = compact.tokenizer(r["text"], add_special_tokens=False)["input_ids"]
        assert compact.tokenizer.decode(ids) == r["text"]
    # text the corpus never saw still encodes, within the compact range, and decodes back
    other = "Quantum chromodynamics, 42 ☃"
    ids = compact.tokenizer(other, add_special_tokens=False)["input_ids"]
    assert max(ids) < len(compact.tokenizer) and compact.tokenizer.decode(ids) == other
