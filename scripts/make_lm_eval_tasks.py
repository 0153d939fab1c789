"""Write the shipped lm-eval tasks' items (unlearnbench/lm_eval_tasks/story_cloze_{en,es}.jsonl).

Each item is the opening of a story up to a word, that word and two distractors: words of about
the same frequency in the same language that never follow the context's last word. The stories come from a storyworld with its own seed
(WORLD_SEED, not the benchmarks' 0), so the tasks measure the language, not the benchmark's facts.
400 items a task: the 95% interval of an accuracy near 0.7 is about +-0.045, so two models 0.1
apart are told apart (16 hand-written items gave +-0.2).

    python scripts/make_lm_eval_tasks.py
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter

from unlearnbench.data import storyworld as sw
from unlearnbench.package_files import LM_EVAL_TASKS_DIR

WORLD_SEED = 20250  # ours: any seed other than the benchmarks' world_seed (0)
N_ITEMS = 400
WORD = re.compile(r"[a-záéíóúñü]+")  # a lowercase word without punctuation (no names)


def items(language: str, n: int = N_ITEMS, seed: int = 0) -> list[dict]:
    world = sw.build_world(WORLD_SEED)
    texts = [sw.render(p, world, language) for p in sw.plan_stories(world, 4 * n, seed=seed)]
    counts = Counter(w for t in texts for w in t.split() if WORD.fullmatch(w))
    # answers and distractors: words of 3+ letters seen 5+ times, ranked by frequency; distractors
    # are the answer's neighbours in that ranking, so a choice's frequency (and so its number of
    # BPE tokens, which a summed log-likelihood penalizes) does not give the answer away
    ranked = [w for w, c in counts.most_common() if len(w) > 2 and c >= 5]
    rank = {w: i for i, w in enumerate(ranked)}
    follows: dict[str, set[str]] = {}  # word -> the words that follow it anywhere in the corpus
    for t in texts:
        ws = t.split()
        for a, b in zip(ws, ws[1:], strict=False):
            follows.setdefault(a, set()).add(b)
    r = random.Random(seed)
    out = []
    for text in texts:
        words = text.split()
        # a target word after at least 6 words: lowercase, no punctuation attached
        spots = [i for i in range(6, len(words)) if words[i] in rank]
        if not spots:
            continue
        i = r.choice(spots)
        # the context: the previous sentence and the current one up to the target (short prompts)
        starts = [0] + [j + 1 for j in range(i) if words[j][-1] in ".!?"]
        answer, context = words[i], " ".join(words[starts[-2] if len(starts) > 1 else 0 : i])
        # distractors: frequent words that never follow the context's last word in the corpus
        near = ranked[max(0, rank[answer] - 8) : rank[answer] + 9]
        pool = [w for w in near if w != answer and w not in follows[words[i - 1]]]
        if len(pool) < 2:
            continue
        choices = [answer, *r.sample(pool, 2)]
        r.shuffle(choices)
        out.append({"context": context, "choices": choices, "answer": choices.index(answer)})
        if len(out) == n:
            return out
    raise AssertionError(f"only {len(out)} items for {language}")


def main() -> None:
    for language in ("en", "es"):
        path = LM_EVAL_TASKS_DIR / f"story_cloze_{language}.jsonl"
        rows = items(language)
        path.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in rows))
        print(f"{path.name}: {len(rows)} items")


if __name__ == "__main__":
    main()
