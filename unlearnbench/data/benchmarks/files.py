"""`files`: a benchmark from the user's own local files.

Two layouts (`--set path=...`):
- a JSONL file, one JSON object per line with a text column and metadata columns; the split comes
  from a column (`split_by=language forget=es [adjacent=pt] [retain=en]`, values comma-separated;
  without `retain`, every other value is retain) and/or a regex on the text (`forget_regex=...`,
  case-insensitive by default; a match is forget whatever the column says);
- a directory with `forget.txt`, `retain.txt` and optionally `adjacent.txt`: one document per line,
  or documents separated by blank lines (`documents=auto` picks blank-line separation when a file
  has a blank line).
A YAML file (`path=bench.yaml`) may hold these options instead; a relative `path` in it is read from
the YAML file's folder, and options given on the command line win.

Train/test membership is a seeded hash of the document id (`id_column`, else a hash of the text).
Tokenizer: a BPE trained on the training split (cached by content hash) or a GPT-2 tokenizer
directory (`tokenizer=DIR`, with `compact_vocab=true` to keep only the ids the corpus needs).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from unlearnbench.config import ConfigError
from unlearnbench.data.benchmarks import Benchmark, register_benchmark
from unlearnbench.data.documents import Document
from unlearnbench.data.gpt2 import benchmark_tokenizer
from unlearnbench.data.splits import SPLITS, is_test


@dataclass(frozen=True)
class FilesOptions:
    path: str = (
        ""  # a .jsonl file, a directory of forget/adjacent/retain .txt files, or a .yaml spec
    )
    text_column: str = "text"
    split_by: str = ""  # JSONL: the metadata column that decides the split
    forget: tuple[str, ...] = ()  # values of `split_by` that are forget
    adjacent: tuple[str, ...] = ()
    retain: tuple[str, ...] = ()  # empty: every value not forget or adjacent
    forget_regex: str = ""  # documents whose text matches are forget (ERA's rule is an example)
    regex_ignore_case: bool = True  # ERA: case-insensitive
    id_column: str = ""  # empty: a hash of the text
    documents: str = "auto"  # .txt files: "lines", "blank" (blank-line separated) or "auto"
    test_fraction: float = 0.1
    split_seed: int = 0
    # "bpe" (trained on the training split), a GPT-2 tokenizer directory, or the directory of a
    # model's own tokenizer (tokenizer.json: the base model of a post-hoc run, e.g. a Pythia)
    tokenizer: str = "bpe"
    vocab_size: int = 2048  # ours, for tokenizer=bpe: a small output layer for CPU models
    compact_vocab: bool = False  # GPT-2 tokenizer: renumber to the ids the corpus uses
    max_tokens: int = 0  # keep each document's first N tokens (0 = whole documents)


def _with_yaml_spec(options: FilesOptions) -> FilesOptions:
    """Fill options still at their defaults from a YAML benchmark spec."""
    import yaml

    spec_path = Path(options.path)
    try:
        spec = yaml.safe_load(spec_path.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(
            f"cannot read benchmark spec {spec_path}: {str(e).splitlines()[0]}"
        ) from None
    if not isinstance(spec, dict) or "path" not in spec:
        raise ConfigError(f"benchmark spec {spec_path} must be a mapping with at least `path`")
    fields = {f.name: f for f in dataclasses.fields(FilesOptions)}
    unknown = sorted(set(spec) - set(fields))
    if unknown:
        raise ConfigError(f"benchmark spec {spec_path}: unknown keys {', '.join(unknown)}")
    import typing

    from unlearnbench.config import parse_value

    hints = typing.get_type_hints(FilesOptions)
    changes = {}
    for key, raw in spec.items():
        if key == "path":
            p = Path(str(raw))
            changes["path"] = str(p if p.is_absolute() else spec_path.parent / p)
        elif getattr(options, key) == fields[key].default:
            changes[key] = parse_value(raw, hints[key], f"{spec_path}: {key}")
    return dataclasses.replace(options, **changes)


def _doc_id(text: str) -> str:
    return "h" + hashlib.blake2b(text.encode("utf-8"), digest_size=8).hexdigest()


def _read_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, decoded line) for each line; a line that is not UTF-8 is named."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from None
    out = []
    for n, line in enumerate(raw.split(b"\n"), start=1):
        try:
            out.append((n, line.decode("utf-8").rstrip("\r")))
        except UnicodeDecodeError as e:
            raise ConfigError(
                f"{path}:{n}: not valid UTF-8 ({e.reason} at byte {e.start})"
            ) from None
    return out


def read_jsonl(path: Path, options: FilesOptions) -> list[tuple[Document, str]]:
    """Documents of a JSONL file with their split (forget/adjacent/retain, or "" = excluded)."""
    regex = _compile(options)
    if not options.split_by and regex is None:
        raise ConfigError(
            "a JSONL benchmark needs split_by=COLUMN (with forget=...) or forget_regex=..."
        )
    if options.split_by and not options.forget and regex is None:
        raise ConfigError(f"split_by={options.split_by} needs forget=VALUE[,VALUE]")
    rows: list[tuple[Document, str]] = []
    seen_values: set[str] = set()
    for n, line in _read_lines(path):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}:{n}: not valid JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(row, dict):
            raise ConfigError(f"{path}:{n}: expected a JSON object, got {type(row).__name__}")
        for col in (options.text_column, options.split_by, options.id_column):
            if col and col not in row:
                raise ConfigError(
                    f"{path}:{n}: no column {col!r} (columns: {', '.join(sorted(row))})"
                )
        text = row[options.text_column]
        if not isinstance(text, str):
            raise ConfigError(f"{path}:{n}: column {options.text_column!r} is not a string")
        meta = {k: v for k, v in row.items() if k != options.text_column}
        meta["line"] = n
        doc_id = str(row[options.id_column]) if options.id_column else _doc_id(text)
        value = str(row[options.split_by]) if options.split_by else ""
        seen_values.add(value)
        rows.append((Document(doc_id, text, meta), _split_of(value, text, options, regex)))
    if not rows:
        raise ConfigError(f"{path} is empty: no JSON lines (one object per line) in it")
    if options.split_by:
        for name in ("forget", "adjacent", "retain"):
            missing = [v for v in getattr(options, name) if v not in seen_values]
            if missing:
                raise ConfigError(
                    f"{name} value(s) {', '.join(missing)} never occur in column "
                    f"{options.split_by!r} of {path} (values: {', '.join(sorted(seen_values)[:20])})"
                )
    return rows


def _compile(options: FilesOptions):
    if not options.forget_regex:
        return None
    try:
        return re.compile(options.forget_regex, re.IGNORECASE if options.regex_ignore_case else 0)
    except re.error as e:
        raise ConfigError(
            f"forget_regex {options.forget_regex!r} is not a valid regex: {e}"
        ) from None


def _split_of(value: str, text: str, options: FilesOptions, regex) -> str:
    if regex is not None and regex.search(text):
        return "forget"
    if not options.split_by:
        return "retain"
    if value in options.forget:
        return "forget"
    if value in options.adjacent:
        return "adjacent"
    if not options.retain or value in options.retain:
        return "retain"
    return ""  # named splits only: this document is not part of the benchmark


def _split_documents(lines: list[tuple[int, str]], mode: str, path: Path) -> list[str]:
    if mode not in ("auto", "lines", "blank"):
        raise ConfigError(f"documents must be auto, lines or blank, got {mode!r}")
    if mode == "auto":
        content = [t for _, t in lines]
        inner_blank = any(not t.strip() for t in content[: max(0, len(content) - 1)])
        mode = "blank" if inner_blank else "lines"
    if mode == "lines":
        return [t.strip() for _, t in lines if t.strip()]
    docs, current = [], []
    for _, t in lines + [(0, "")]:
        if t.strip():
            current.append(t.strip())
        elif current:
            docs.append("\n".join(current))
            current = []
    return docs


def read_directory(path: Path, options: FilesOptions) -> list[tuple[Document, str]]:
    rows = []
    for split in SPLITS:
        f = path / f"{split}.txt"
        if not f.exists():
            if split == "adjacent":
                continue
            raise ConfigError(
                f"{path} has no {split}.txt (expected forget.txt, retain.txt, adjacent.txt)"
            )
        for text in _split_documents(_read_lines(f), options.documents, f):
            rows.append((Document(_doc_id(text), text, {"file": f.name}), split))
        if not any(s == split for _, s in rows):
            raise ConfigError(f"{f} holds no documents: the {split} split is empty")
    return rows


def _dedupe(rows: list[tuple[Document, str]]) -> list[tuple[Document, str]]:
    """Repeated ids (identical texts) get a suffix, so every document stays distinct."""
    seen: dict[str, int] = {}
    out = []
    for doc, split in rows:
        k = seen.get(doc.id, 0)
        seen[doc.id] = k + 1
        out.append((Document(f"{doc.id}#{k}", doc.text, doc.meta) if k else doc, split))
    return out


@register_benchmark("files", options=FilesOptions)
def load_files(options: FilesOptions) -> Benchmark:
    """Your own data: a JSONL file split by a column or regex, or forget/adjacent/retain .txt files."""
    if not options.path:
        raise ConfigError("the files benchmark needs --set path=DATA.jsonl (or a directory)")
    if options.path.endswith((".yaml", ".yml")):
        options = _with_yaml_spec(options)
    if not 0.0 < options.test_fraction < 1.0:
        raise ConfigError(f"test_fraction must be in (0, 1), got {options.test_fraction}")
    path = Path(options.path).expanduser()
    if path.is_dir():
        rows = read_directory(path, options)
    elif path.is_file():
        rows = read_jsonl(path, options)
    else:
        raise ConfigError(f"benchmark data not found: {path}")
    rows = _dedupe([(d, s) for d, s in rows if s])

    train, test = [], {}
    for doc, split in rows:
        if is_test(doc.id, options.test_fraction, options.split_seed):
            test.setdefault(split, []).append(doc)
        else:
            train.append((doc, split))
    counts = {s: sum(1 for _, x in rows if x == s) for s in SPLITS}
    for split in ("forget", "retain"):
        if counts[split] == 0:
            raise ConfigError(f"{path}: the {split} split is empty under this split rule")
    for split, n in counts.items():
        if n and (not test.get(split) or not any(s == split for _, s in train)):
            raise ConfigError(
                f"{path}: the {split} split has {n} documents, too few for both a training and a "
                f"test part at test_fraction={options.test_fraction}"
            )
    tokenizer = benchmark_tokenizer(
        options.tokenizer,
        lambda: (d.text for d, _ in train),
        lambda: (d.text for d, _ in rows),
        options.vocab_size,
        options.compact_vocab,
        name="files",
    )
    rule = f"{options.split_by} in {','.join(options.forget)}" if options.split_by else ""
    if options.forget_regex:
        rule = " or ".join(r for r in (rule, f"text ~ /{options.forget_regex}/") if r)
    return Benchmark(
        name="files",
        train=train,
        test=test,
        tokenizer=tokenizer,
        description=f"{path.name}: forget = {rule or 'forget.txt'}",
        max_doc_tokens=options.max_tokens,
    )
