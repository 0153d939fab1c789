"""Is a saved model one this benchmark can use? Same tokenizer, enough embeddings and positions.

A model loaded from a path (a post-hoc base, checkpoint-transfer's checkpoint, an attack's reference
model) reads token ids through the benchmark's tokenizer. A model trained with another tokenizer
(another benchmark, other benchmark options) gives numbers that mean nothing, and nothing crashes:
the ids are merely other tokens. So it is refused, in one line saying what differs.
"""

from __future__ import annotations

from pathlib import Path

from unlearnbench.config import ConfigError

TOKENIZER_FILES = ("tokenizer.json", "vocab.json")


def saved_vocabulary(path: str | Path) -> dict[str, int] | None:
    """The vocabulary of the tokenizer saved beside a model (None: the directory holds none)."""
    p = Path(str(path)).expanduser()
    if not any((p / f).is_file() for f in TOKENIZER_FILES):
        return None
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(p), local_files_only=True).get_vocab()
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot read the tokenizer saved in {p}: {e}") from None


def check_compatible(model, path, benchmark, what: str, context: int = 0):
    """Refuse `model` (loaded from `path`, a `what`: "base model", "checkpoint", ...) when its saved
    tokenizer's vocabulary differs from the `benchmark`'s tokenizer, when it has fewer token
    embeddings than the tokenizer has ids, or (without a saved tokenizer) a different number of
    them; and when `context` exceeds its positions. Returns `model`, so it can wrap a load."""
    tokenizer, name = benchmark.tokenizer, benchmark.name
    ours = tokenizer.get_vocab()
    rows = model.get_input_embeddings().num_embeddings
    saved = saved_vocabulary(path) if path else None
    if saved is not None and saved != ours:
        agree = sum(1 for tok, i in saved.items() if ours.get(tok) == i)
        raise ConfigError(
            f"{what} {path} was trained with another tokenizer: its vocabulary ({len(saved)} ids) "
            f"agrees with {name}'s ({len(ours)} ids) on {agree} ids; use a model trained on "
            "this benchmark with the same benchmark options"
        )
    if rows < len(tokenizer) or (saved is None and rows != len(tokenizer)):
        raise ConfigError(
            f"{what} {path} has {rows} token embeddings but {name}'s tokenizer has "
            f"{len(tokenizer)} ids" + ("" if saved else " (and no tokenizer is saved with it)")
        )
    positions = getattr(model.config, "max_position_embeddings", None)
    if context and positions and context > positions:
        raise ConfigError(f"context={context} is longer than {what} {path}'s {positions} positions")
    return model


def check_run_model(model, path, benchmark, cfg, what: str):
    """`check_compatible` at the context of the run `cfg` (a `RunConfig`) on `benchmark`."""
    from unlearnbench.models.presets import MODEL_PRESETS

    context = cfg.train.context or MODEL_PRESETS[cfg.model].context
    return check_compatible(model, path, benchmark, what, context)


def check_base_model(model, path, cfg):
    """`check_run_model` for a post-hoc run's base given as a path or hub name."""
    from unlearnbench.data.benchmarks import load_benchmark

    bench = load_benchmark(cfg.benchmark, cfg.benchmark_options)  # memoized: the run's own
    return check_run_model(model, path, bench, cfg, "base model")
