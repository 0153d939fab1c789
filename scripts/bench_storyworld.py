"""Generation speed of StoryWorld: words/s and BPE tokens/s until 5M BPE tokens are generated.

Usage: python scripts/bench_storyworld.py [--tokens 5000000] [--spanish 0.5]
"""

from __future__ import annotations

import argparse
import time

from unlearnbench.data import storyworld as sw
from unlearnbench.data.tokenizer import encode_batch, train_bpe


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=5_000_000)
    ap.add_argument("--spanish", type=float, default=0.5)
    ap.add_argument("--vocab", type=int, default=4096)
    args = ap.parse_args()

    t0 = time.perf_counter()
    sample = sw.generate_documents(
        20_000, seed=1, languages=("en", "es"), spanish_fraction=args.spanish
    )
    tok = train_bpe((d.text for d in sample), args.vocab)
    print(f"tokenizer: vocab {len(tok)} trained on 20k stories in {time.perf_counter() - t0:.1f}s")

    it = sw.iter_documents(seed=0, languages=("en", "es"), spanish_fraction=args.spanish)
    n_docs = n_words = n_tok = 0
    t_gen = t_tok = 0.0
    while n_tok < args.tokens:
        t = time.perf_counter()
        texts = [next(it).text for _ in range(2000)]
        t_gen += time.perf_counter() - t
        t = time.perf_counter()
        n_tok += sum(len(x) for x in encode_batch(tok, texts))
        t_tok += time.perf_counter() - t
        n_docs += len(texts)
        n_words += sum(len(x.split()) for x in texts)
    print(f"{n_docs} stories, {n_words} words, {n_tok} BPE tokens ({n_tok / n_words:.2f} tok/word)")
    print(
        f"generation: {t_gen:.1f}s -> {n_words / t_gen:,.0f} words/s, {n_tok / t_gen:,.0f} BPE tok/s"
    )
    print(
        f"tokenization: {t_tok:.1f}s; generation + tokenization {n_tok / (t_gen + t_tok):,.0f} tok/s"
    )


if __name__ == "__main__":
    main()
