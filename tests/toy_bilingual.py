"""A toy bilingual benchmark (forget = Spanish sentences, retain = the same sentences in English)
and a tiny GPT-Neo trained on it in a few seconds: a model that knows both languages, for the
attacks' tests."""

from __future__ import annotations

import torch
from transformers import GPTNeoConfig, GPTNeoForCausalLM

from unlearnbench.config import TrainConfig
from unlearnbench.data.benchmarks import Benchmark
from unlearnbench.data.documents import Document
from unlearnbench.data.storyworld import FactProbe
from unlearnbench.data.tokenizer import train_bpe
from unlearnbench.evals import documents_of_split, groups_from_documents
from unlearnbench.training import Objective, train

# every sentence starts with the same names in both languages: at a block's start the language
# is not yet known, which context (or a learned prompt) can tell
SPANISH = ["pip y tom viven en la cueva", "pip y tom comen pan", "pip y tom son rojos",
           "pip y tom duermen"]  # fmt: skip
ENGLISH = ["pip and tom live in the cave", "pip and tom eat bread", "pip and tom are red",
           "pip and tom sleep"]  # fmt: skip
CONTEXT = 16  # tokens per block


def toy_benchmark() -> Benchmark:
    """Documents of 12 sentences drawn from one language's four; one Spanish fact probe."""
    g = torch.Generator().manual_seed(0)

    def text(sentences: list[str]) -> str:
        picks = torch.randint(0, len(sentences), (12,), generator=g).tolist()
        return " . ".join(sentences[j] for j in picks) + " ."

    train_docs = [(Document(f"f{i}", text(SPANISH)), "forget") for i in range(40)]
    train_docs += [(Document(f"r{i}", text(ENGLISH)), "retain") for i in range(40)]
    test = {
        "forget": [Document(f"tf{i}", text(SPANISH)) for i in range(6)],
        "retain": [Document(f"tr{i}", text(ENGLISH)) for i in range(6)],
    }
    tok = train_bpe([d.text for d, _ in train_docs], 300)
    probe = FactProbe(
        "p0", "pip y tom viven en la", (" cueva", " casa"), 0, "pip", "home", "t", "es"
    )
    return Benchmark("toy-bilingual", train_docs, test, tok, probes=[(probe, "forget")])


def tiny_model(vocab: int) -> GPTNeoForCausalLM:
    cfg = GPTNeoConfig(
        vocab_size=vocab, max_position_embeddings=32, hidden_size=32, num_layers=2,
        attention_types=[[["global", "local"], 1]], num_heads=4, intermediate_size=64,
        window_size=8, resid_dropout=0.0, embed_dropout=0.0, attention_dropout=0.0,
    )  # fmt: skip
    torch.manual_seed(0)
    return GPTNeoForCausalLM(cfg)


def trained_model(bench: Benchmark, splits=("forget", "retain"), steps: int = 300):
    """A tiny model trained on the benchmark's training documents of `splits` (both: no-filter)."""
    model = tiny_model(len(bench.tokenizer))
    docs = {s: documents_of_split(bench, s) for s in splits}
    cfg = TrainConfig(steps=steps, batch_size=8, lr=3e-3, warmup_steps=0, save_model=False)
    train(Objective(model=model), groups_from_documents(bench, docs, CONTEXT), cfg, 0, bench.eos_id,
          progress=False)  # fmt: skip
    return model
