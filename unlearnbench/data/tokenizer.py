"""A small byte-level BPE tokenizer trained on a corpus (HF `tokenizers`), cached on disk.

The result is a `transformers.PreTrainedTokenizerFast`, saved by `save_tokenizer` so that
`AutoTokenizer.from_pretrained(dir)` loads it under every transformers the package admits. `EOS`
(id 0) separates documents and doubles as the pad token; no special tokens are added when encoding.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

EOS = "<|endoftext|>"

# what `tok(x)` returns, so `model(**tok(x))` is `model(input_ids=..., attention_mask=...)`: in
# transformers 4 a PreTrainedTokenizerFast also returns `token_type_ids` (all zeros), and GPT-Neo
# adds its token-type embedding (the position-0 row of wte) at every position when given them
MODEL_INPUT_NAMES = ["input_ids", "attention_mask"]


def _wrap(tok: Tokenizer) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=EOS,
        pad_token=EOS,
        clean_up_tokenization_spaces=False,
        model_input_names=MODEL_INPUT_NAMES,
    )


# transformers 5 saves a tokenizer built from a `tokenizers` object under its own class name,
# "TokenizersBackend", which transformers 4 cannot resolve; both read "PreTrainedTokenizerFast"
# (an alias in 5) from the same tokenizer.json
PORTABLE_CLASSES = {"TokenizersBackend": "PreTrainedTokenizerFast"}


def save_tokenizer(tokenizer, path: str | Path, model_max_length: int | None = None) -> None:
    """`tokenizer.save_pretrained(path)`, loadable by every admitted transformers (4.46 on), with
    `model_max_length` set to the model's context when given (otherwise transformers writes 1e30,
    so nothing would warn about, or truncate at, the positions the model has) and
    `model_input_names` written out (transformers 4 would otherwise add `token_type_ids`)."""
    tokenizer.save_pretrained(str(path))
    config_path = Path(path) / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    cls = config.get("tokenizer_class")
    config["tokenizer_class"] = PORTABLE_CLASSES.get(cls, cls)
    config["model_input_names"] = MODEL_INPUT_NAMES
    if model_max_length is not None:
        config["model_max_length"] = int(model_max_length)
    config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")


def train_bpe(texts: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE with `vocab_size` entries (EOS included, id 0) on `texts`."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    assert tok.token_to_id(EOS) == 0
    return _wrap(tok)


def default_cache_dir() -> Path:
    env = os.environ.get("UNLEARNBENCH_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "unlearnbench"


def cached_bpe(
    texts_fn: Callable[[], Iterable[str]],
    vocab_size: int,
    key: str,
    cache_dir: Path | None = None,
) -> PreTrainedTokenizerFast:
    """`train_bpe(texts_fn(), vocab_size)`, stored under ``cache_dir/tokenizers/<key>-<vocab>/``.

    On a hit `texts_fn` is not called. The directory is written atomically (temp dir + rename);
    if another process wins the race, its copy is used.
    """
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    parent = root / "tokenizers"
    path = parent / f"{key}-{vocab_size}"
    if (path / "tokenizer.json").exists():
        try:
            return PreTrainedTokenizerFast.from_pretrained(str(path))
        except Exception as e:  # a damaged cache is rebuilt, and said so with its file
            from unlearnbench.progress import say

            why = str(e).splitlines()[0] if str(e) else type(e).__name__
            say(f"warning: the tokenizer cache {path / 'tokenizer.json'} is damaged ({why}); "
                "training it again")  # fmt: skip
            shutil.rmtree(path, ignore_errors=True)
    tokenizer = train_bpe(texts_fn(), vocab_size)
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}-{vocab_size}-", dir=parent))
    try:
        save_tokenizer(tokenizer, tmp)
        try:
            os.replace(tmp, path)
        except OSError:  # someone else created it meanwhile
            if not (path / "tokenizer.json").exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return PreTrainedTokenizerFast.from_pretrained(str(path))


def encode_batch(tokenizer, texts: list[str]) -> list[list[int]]:
    """Token ids of each text (no special tokens), via the Rust batch encoder."""
    backend = tokenizer.backend_tokenizer
    return [e.ids for e in backend.encode_batch(list(texts), add_special_tokens=False)]
