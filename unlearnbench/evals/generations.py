"""`generations`: greedy continuations of a fixed forget and a fixed retain prompt.

A reader sees removal at a glance: a model that lost the forget capability continues the forget
prompt with something else (another language, the retain topic, noise) while it still continues
the retain prompt fluently. The numbers are in the other evaluations; this one records text, so
the report (a pure function of the records) can show it without loading a model.

The prompts: for each split, the test document that comes first in a fixed hashed order of the
split's test document ids (the same document for every method, model and seed of a benchmark),
cut to its first `prompt_tokens` tokens, after the document separator the model saw before every
training document. Decoding is greedy (the highest-probability token at every step, no sampling),
so the same model gives the same text; it stops at `max_new_tokens` or at the separator. The
document's own next tokens are recorded beside the continuation, as what the text really says.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from unlearnbench.config import ConfigError
from unlearnbench.data.splits import stable_uniform
from unlearnbench.evals import EvalContext, EvalResult, register_eval


@dataclass(frozen=True)
class GenerationOptions:
    splits: tuple[str, ...] = ("forget", "retain")  # one prompt per split the benchmark has
    prompt_tokens: int = 16  # ours: the opening of the document, about one sentence
    max_new_tokens: int = 32  # ours: a few dozen tokens, enough to see the language and topic
    prompts_per_split: int = 1  # the first N documents of the fixed order

    def __post_init__(self):
        if not self.splits or any(s not in ("forget", "adjacent", "retain") for s in self.splits):
            raise ConfigError(
                f"generations splits must be among forget, adjacent, retain, got {list(self.splits)}"
            )
        if self.prompt_tokens < 1 or self.max_new_tokens < 1 or self.prompts_per_split < 1:
            raise ConfigError(
                "generations prompt_tokens, max_new_tokens, prompts_per_split must be >= 1"
            )


def prompt_documents(bench, split: str, n: int = 1) -> list:
    """The split's first `n` test documents in a fixed order (a hash of the document id alone,
    so every run of the benchmark is prompted with the same documents)."""
    docs = sorted(bench.test.get(split) or [], key=lambda d: stable_uniform("generations", d.id))
    return docs[:n]


@torch.no_grad()
def greedy_continuation(
    model, prompt_ids: list[int], max_new_tokens: int, stop_id: int | None, context: int
) -> list[int]:
    """Greedy decoding: the argmax token at each step, up to `max_new_tokens` or `stop_id` (not
    included). ours: the model sees at most the last `context` tokens (the positions it was
    trained on); the KV cache is not used, so each step is one plain forward pass."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    ids = torch.tensor([prompt_ids], dtype=torch.long, device=device)  # (1, T)
    new: list[int] = []
    for _ in range(max_new_tokens):
        logits = model(input_ids=ids[:, -context:]).logits[0, -1]  # (V,) at the last position
        token = int(logits.float().argmax())
        if token == stop_id:
            break
        new.append(token)
        ids = torch.cat([ids, ids.new_tensor([[token]])], dim=1)  # (1, T + 1)
    model.train(was_training)
    return new


@register_eval("generations", options=GenerationOptions)
def run(ctx: EvalContext, options: GenerationOptions) -> EvalResult:
    """Greedy continuations of a fixed forget and a fixed retain test document's opening."""
    from unlearnbench.data.pipeline import token_ids

    bench, tok = ctx.benchmark, ctx.benchmark.tokenizer
    ids = token_ids(bench)
    samples = []
    for split in options.splits:
        for doc in prompt_documents(bench, split, options.prompts_per_split):
            doc_ids = ids[doc.id]
            prompt = doc_ids[: options.prompt_tokens]
            # the separator first: every training document followed one
            new = greedy_continuation(
                ctx.model, [ctx.eos_id, *prompt], options.max_new_tokens, ctx.eos_id, ctx.context
            )
            following = doc_ids[len(prompt) : len(prompt) + options.max_new_tokens]
            samples.append(
                {
                    "split": split,
                    "document_id": doc.id,
                    "prompt": tok.decode(prompt),
                    "continuation": tok.decode(new),
                    "document_continuation": tok.decode(following),
                    "new_tokens": len(new),
                    "stopped": len(new) < options.max_new_tokens,  # at the separator
                }
            )
    if not samples:
        return EvalResult({"applicable": False, "reason": "no test documents in these splits"})
    return EvalResult({"decoding": "greedy", "samples": samples})
