"""The GPT-2 tokenizer from a local directory (or the Hugging Face cache), and a compact vocabulary.

The paper settings tokenize with GPT-2's BPE (50,257 ids). A small model on CPU spends most of its
time in a 50,257-row output layer, so `compact_tokenizer` keeps GPT-2's tokenization of a corpus
exactly but renumbers the ids to those the corpus needs:

    kept = the 256 byte symbols + every token the corpus produces + the tokens those are merged from
           (recursively) + end-of-text
    merges = GPT-2's merges whose result is kept, in GPT-2's order

Every merge GPT-2 applies while tokenizing a corpus word produces a kept token, so it is kept, and
the merges dropped were never the lowest-ranked applicable one: the corpus tokenizes to the same
token strings. Text outside the corpus still tokenizes (down to bytes at worst) into ids below the
compact size. Ids keep GPT-2's order (the bytes first), and end-of-text is last.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from pathlib import Path

from tokenizers import Tokenizer, pre_tokenizers
from transformers import AutoTokenizer, GPT2TokenizerFast, PreTrainedTokenizerFast

from unlearnbench.config import ConfigError
from unlearnbench.data.tokenizer import EOS, cached_bpe, encode_batch


def load_gpt2_tokenizer(name_or_dir: str) -> PreTrainedTokenizerFast:
    """GPT-2's tokenizer from a directory (`vocab.json` + `merges.txt`), a model's own tokenizer
    saved as `tokenizer.json` (Pythia's, Llama's: loaded as saved, with its own pre-tokenizer and
    normalizer), or a hub name already in the local cache. End-of-text doubles as the pad token."""
    local = Path(name_or_dir).expanduser()
    try:
        if local.is_dir():
            files = {f.name for f in local.iterdir()}
            if "tokenizer.json" not in files and not {"vocab.json", "merges.txt"} <= files:
                raise OSError("no tokenizer.json, nor vocab.json with merges.txt")
            if "tokenizer.json" in files:
                # as saved: GPT2TokenizerFast would rebuild GPT-2's byte-level pipeline around its
                # vocabulary, and a SentencePiece-style tokenizer (Llama 2, Mistral) would then
                # give other ids for the same vocabulary, silently
                tok = AutoTokenizer.from_pretrained(str(local), local_files_only=True)
            else:
                # from_pretrained(dir), not the vocab_file/merges_file constructor: in
                # transformers 5 the constructor silently built an empty tokenizer.
                tok = GPT2TokenizerFast.from_pretrained(str(local))
        else:
            tok = AutoTokenizer.from_pretrained(name_or_dir, local_files_only=True)
    except (OSError, ValueError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(
            f"cannot load a GPT-2 tokenizer from {name_or_dir!r} (a directory with vocab.json and "
            f"merges.txt, or a hub name in the local cache): {first}"
        ) from None
    if not getattr(tok, "is_fast", False):
        raise ConfigError(f"{name_or_dir!r}: need a fast (tokenizers) tokenizer")
    if len(tok) <= 256:  # an empty or byte-only vocabulary means the files were not read
        raise ConfigError(f"{name_or_dir!r}: the tokenizer has only {len(tok)} entries")
    if tok.eos_token is None or tok.eos_token_id is None:
        raise ConfigError(f"{name_or_dir!r}: the tokenizer has no end-of-text token")
    tok.pad_token = tok.eos_token
    return tok


def _merge_pairs(model: dict) -> list[tuple[str, str]]:
    # tokenizers writes merges as "a b" strings (older) or [a, b] pairs (newer)
    return [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model["merges"]]


def compact_tokenizer(tokenizer, texts: Iterable[str]) -> PreTrainedTokenizerFast:
    """GPT-2's tokenization of `texts` with ids renumbered to the tokens they need (see module doc)."""
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    model = spec["model"]
    assert model["type"] == "BPE", f"compact vocabulary needs a BPE tokenizer, got {model['type']}"
    vocab: dict[str, int] = model["vocab"]
    merges = _merge_pairs(model)
    parts_of = {a + b: (a, b) for a, b in merges}
    eos_id = tokenizer.eos_token_id

    used: set[int] = set()
    batch: list[str] = []
    for text in texts:
        batch.append(text)
        if len(batch) == 2048:
            used.update(i for ids in encode_batch(tokenizer, batch) for i in ids)
            batch = []
    used.update(i for ids in encode_batch(tokenizer, batch) for i in ids)

    id_to_token = {i: t for t, i in vocab.items()}
    keep: set[str] = set(pre_tokenizers.ByteLevel.alphabet()) & set(vocab)  # the 256 byte symbols
    stack = [id_to_token[i] for i in used if i in id_to_token]
    while stack:  # the closure under "is merged from"
        tok = stack.pop()
        if tok in keep:
            continue
        keep.add(tok)
        stack.extend(parts_of.get(tok, ()))
    added = {t["content"]: t for t in spec.get("added_tokens", [])}
    order = sorted((vocab[t] for t in keep if t in vocab and t not in added), key=int)
    new_vocab = {id_to_token[old]: new for new, old in enumerate(order)}
    model["vocab"] = new_vocab
    model["merges"] = [[a, b] for a, b in merges if a + b in new_vocab]
    # special tokens (end-of-text) after the ordinary ones, in their original order
    specials = sorted(added.values(), key=lambda t: t["id"])
    for n, t in enumerate(specials):
        t["id"] = len(new_vocab) + n
    spec["added_tokens"] = specials
    if spec.get("post_processor"):
        spec["post_processor"] = (
            None  # GPT-2 adds no special tokens; ours must not point at old ids
        )
    compact = Tokenizer.from_str(json.dumps(spec))
    eos = tokenizer.convert_ids_to_tokens(eos_id)
    out = PreTrainedTokenizerFast(
        tokenizer_object=compact, eos_token=eos, pad_token=eos, clean_up_tokenization_spaces=False
    )
    assert out.eos_token_id == len(out) - 1, "end-of-text must be the last compact id"
    return out


def to_source_ids(compact, source, ids: list[int]) -> list[int]:
    """Compact ids -> the source tokenizer's ids (through the token strings)."""
    return source.convert_tokens_to_ids(compact.convert_ids_to_tokens(ids))


def content_key(texts: Iterable[str]) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
    return h.hexdigest()[:16]


def benchmark_tokenizer(
    tokenizer: str,
    train_texts: Callable[[], Iterable[str]],
    all_texts: Callable[[], Iterable[str]],
    vocab_size: int,
    compact: bool,
    name: str,
):
    """The tokenizer a loaded benchmark asks for.

    - `tokenizer="bpe"`: a byte-level BPE of `vocab_size` trained on the training split, cached on
      disk by a hash of its texts;
    - otherwise a GPT-2 tokenizer directory or cached hub name (`load_gpt2_tokenizer`); with
      `compact`, renumbered to the ids the benchmark's documents need (`compact_tokenizer`).
    """
    if tokenizer == "bpe":
        if compact:
            raise ConfigError("compact_vocab applies to a GPT-2 tokenizer, not to tokenizer=bpe")
        key = content_key(train_texts())
        return cached_bpe(train_texts, vocab_size, key=f"{name}-{key}")
    tok = load_gpt2_tokenizer(tokenizer)
    return compact_tokenizer(tok, all_texts()) if compact else tok


__all__ = [
    "EOS",
    "benchmark_tokenizer",
    "compact_tokenizer",
    "content_key",
    "load_gpt2_tokenizer",
    "to_source_ids",
]
