"""Shared test fixtures: a tiny GPT-Neo built from a config, and labeled block groups."""

from __future__ import annotations

import torch
from transformers import GPTNeoConfig, GPTNeoForCausalLM

from unlearnbench.data.packing import BlockGroup

VOCAB = 61
EOS = 0


def tiny_gpt_neo(seed: int = 0, layers: int = 2, d: int = 32, heads: int = 4, d_mlp: int = 64):
    cfg = GPTNeoConfig(
        vocab_size=VOCAB,
        max_position_embeddings=32,
        hidden_size=d,
        num_layers=layers,
        attention_types=[[["global", "local"], layers // 2]],
        num_heads=heads,
        intermediate_size=d_mlp,
        window_size=8,
        resid_dropout=0.0,
        embed_dropout=0.0,
        attention_dropout=0.0,
        bos_token_id=EOS,
        eos_token_id=EOS,
    )
    torch.manual_seed(seed)
    model = GPTNeoForCausalLM(cfg)
    model.config.use_cache = False
    return model


def random_blocks(n: int, context: int = 16, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    blocks = torch.randint(1, VOCAB, (n, context + 1), generator=g)
    blocks[:, 5] = EOS  # a separator inside each block: its target must not count
    return blocks


def groups(n_forget=4, n_retain=4, n_unlabeled=0, context=16) -> list[BlockGroup]:
    out = [BlockGroup("forget", "forget", False, random_blocks(n_forget, context, 1))]
    out.append(BlockGroup("retain", "retain", False, random_blocks(n_retain, context, 2)))
    if n_unlabeled:
        out.append(BlockGroup("retain", "unlabeled", False, random_blocks(n_unlabeled, context, 3)))
    return out


# `run` settings of a benchmark run small enough for a test (a tiny storyworld, 3 steps)
TINY_RUN = [
    "--set", "n_stories=300", "--set", "vocab_size=300", "--set", "context=32",
    "--set", "steps=3", "--set", "batch_size=4", "--set", "eval_blocks=2", "--set", "warmup_steps=1",
]  # fmt: skip

# a suite entry: one relearning attack, as small as a test allows
TINY_RELEARN = """\
  - eval: relearn
    options: {budgets: [2, 4], lrs: [1e-3], seeds: [0], eval_every: 2, eval_blocks: 2,
              n_docs: 20, batch_size: 2}
"""
