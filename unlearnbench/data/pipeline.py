"""From a benchmark to tensors: tokenize (memoized), label, and pack into blocks."""

from __future__ import annotations

import torch

from unlearnbench.config import ConfigError, LabelConfig
from unlearnbench.data.benchmarks import Benchmark
from unlearnbench.data.labels import label_document
from unlearnbench.data.packing import BlockGroup, pack


def token_ids(bench: Benchmark) -> dict[str, list[int]]:
    """Document id -> token ids (no separator), computed once per benchmark object."""
    cache = getattr(bench, "_token_ids", None)
    if cache is None:
        docs = [d for d, _ in bench.train] + [d for ds in bench.test.values() for d in ds]
        encoded = bench.tokenizer(
            [d.text for d in docs], add_special_tokens=False, return_attention_mask=False
        )["input_ids"]
        limit = bench.max_doc_tokens or None  # a recipe that cuts each document (0 = whole)
        cache = {d.id: ids[:limit] for d, ids in zip(docs, encoded, strict=True)}
        bench._token_ids = cache
    return cache


def training_groups(
    bench: Benchmark, labels: LabelConfig, seed: int, context: int
) -> tuple[list[BlockGroup], dict[str, int]]:
    """Blocks of the training documents, one group per (true split, label, strict flag), and the
    document counts per (split/label) for the record."""
    ids = token_ids(bench)
    _check_one_block(bench.name, "training", [(ids[d.id], s) for d, s in bench.train], context)
    buckets: dict[tuple[str, str, bool], list[list[int]]] = {}
    counts: dict[str, int] = {}
    for doc, split in bench.train:
        lab = label_document(doc.id, split, labels, seed)
        key = (split, lab.label, lab.flagged_adjacent)
        buckets.setdefault(key, []).append(ids[doc.id])
        counts[f"{split}/{lab.label}"] = counts.get(f"{split}/{lab.label}", 0) + 1
    groups = [
        BlockGroup(
            split, label, flagged, pack(buckets[(split, label, flagged)], context, bench.eos_id)
        )
        for split, label, flagged in sorted(buckets)
    ]
    return [g for g in groups if len(g.blocks)], dict(sorted(counts.items()))


def test_blocks(bench: Benchmark, context: int, max_blocks: int) -> dict[str, torch.Tensor]:
    """The first `max_blocks` blocks of each split's test documents (same for every method)."""
    ids = token_ids(bench)
    out = {}
    for split in ("forget", "adjacent", "retain"):
        docs = bench.test.get(split)
        if docs:
            blocks = pack([ids[d.id] for d in docs], context, bench.eos_id)[:max_blocks]
            if len(blocks) == 0:
                _check_one_block(bench.name, "test", [(ids[d.id], split) for d in docs], context)
            out[split] = blocks
    return out


def _check_one_block(name: str, part: str, docs: list[tuple[list[int], str]], context: int) -> None:
    """A split whose documents (each plus its separator) fill less than one block of `context + 1`
    tokens cannot be trained or evaluated on: the user's data is too small for the context."""
    tokens: dict[str, int] = {}
    for ids, split in docs:
        tokens[split] = tokens.get(split, 0) + len(ids) + 1
    for split, n in sorted(tokens.items()):
        if n < context + 1:
            raise ConfigError(
                f"benchmark {name!r}: the {split} {part} split has {n} tokens, fewer than one block "
                f"of {context + 1} (context {context}); add documents or lower train.context"
            )
