"""`fact-probes`: multiple-choice accuracy per split, scored by log-likelihood of each option.

Each split's summary holds the accuracy, the chance level, the number of probes and, compactly,
each probe's right/wrong outcome (`outcomes`: one bit per probe in probe-id order and a digest of
the ids), which the tables pair with the matching no-filter run's in an exact McNemar test.

Each probe is a prompt ("Pip the fox lives in the") and options (" cave", " barn", ...; Spanish
options carry their article: " la cueva"). An option's score is the total log-likelihood of its
tokens given the prompt; the prediction is the highest-scoring option. Prompt and option are
tokenized separately and concatenated (as lm-evaluation-harness does for context and
continuation), so every option is scored on the same prompt tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from unlearnbench.data.splits import stable_uniform
from unlearnbench.evals import HIGHER, LOWER, EvalContext, EvalResult, Metric, register_eval
from unlearnbench.results.stats import encode_outcomes, mcnemar_p  # noqa: F401 (mcnemar_p: API)


@dataclass(frozen=True)
class FactProbeOptions:
    max_per_split: int = 0  # ours: 0 = every probe; a quick suite samples a fixed subset
    batch_size: int = 256  # sequences per forward pass (prompt + option, a few dozen tokens)


@torch.no_grad()
def option_logprobs(
    model, tokenizer, prompts: list[str], options: list[list[str]], batch_size: int = 256
) -> list[list[float]]:
    """Total log-likelihood of each option's tokens given its prompt, per probe."""
    seqs: list[tuple[list[int], int]] = []  # (token ids, number of option tokens)
    for prompt, opts in zip(prompts, options, strict=True):
        p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        assert p_ids, f"empty prompt {prompt!r}"
        for opt in opts:
            o_ids = tokenizer(opt, add_special_tokens=False)["input_ids"]
            assert o_ids, f"empty option {opt!r}"
            seqs.append((p_ids + o_ids, len(o_ids)))
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    scores: list[float] = []
    for i in range(0, len(seqs), batch_size):
        chunk = seqs[i : i + batch_size]
        T = max(len(s) for s, _ in chunk)
        ids = torch.zeros(len(chunk), T, dtype=torch.long)  # right-padded; pads come after
        for j, (s, _) in enumerate(chunk):
            ids[j, : len(s)] = torch.tensor(s)
        logp = F.log_softmax(model(input_ids=ids.to(device)).logits.float(), dim=-1)  # (B, T, V)
        # log p(token t | tokens < t) for t = 1..T-1
        tok_logp = logp[:, :-1].gather(-1, ids[:, 1:, None].to(device))[..., 0]  # (B, T - 1)
        for j, (s, n_opt) in enumerate(chunk):
            # option tokens sit at positions len(s) - n_opt .. len(s) - 1, predicted one earlier
            scores.append(float(tok_logp[j, len(s) - n_opt - 1 : len(s) - 1].sum()))
    model.train(was_training)
    out, k = [], 0
    for opts in options:
        out.append(scores[k : k + len(opts)])
        k += len(opts)
    return out


def probe_correct(model, tokenizer, probes: list, batch_size: int = 256) -> list[bool]:
    """Whether the model's highest-scoring option is the answer, per probe."""
    scores = option_logprobs(
        model, tokenizer, [p.prompt for p in probes], [list(p.options) for p in probes], batch_size
    )
    return [
        max(range(len(s)), key=s.__getitem__) == p.answer
        for s, p in zip(scores, probes, strict=True)
    ]


def probe_accuracy(
    model, tokenizer, probes: list, batch_size: int = 256, outcomes: bool = False
) -> dict:
    """{"accuracy", "chance", "n"} over a list of FactProbes; with `outcomes`, also each probe's
    right/wrong (`results.stats.encode_outcomes`: one bit per probe in probe-id order and the
    digest of the ids), so the tables can pair the probes of two runs in a McNemar test."""
    if not probes:
        return {"accuracy": None, "chance": None, "n": 0}
    correct = probe_correct(model, tokenizer, probes, batch_size)
    chance = sum(1 / len(p.options) for p in probes) / len(probes)
    out = {"accuracy": sum(correct) / len(probes), "chance": chance, "n": len(probes)}
    if outcomes:
        out["outcomes"] = encode_outcomes([p.id for p in probes], correct)
    return out


def probes_by_split(bench, max_per_split: int = 0, seed: int = 0) -> dict[str, list]:
    """Probes grouped by split; with `max_per_split`, a fixed seeded subset of each."""
    out: dict[str, list] = {}
    for probe, split in bench.probes:
        out.setdefault(split, []).append(probe)
    if max_per_split:
        for split, ps in out.items():
            ps.sort(key=lambda p: stable_uniform("probe-subset", seed, p.id))
            out[split] = ps[:max_per_split]
    return out


def _accuracy(split: str):
    return lambda summary: (summary.get(split) or {}).get("accuracy")


# removed facts should be forgotten (lower), the others kept (higher)
PROBE_METRICS = [
    Metric(f"{split}_accuracy", d, _accuracy(split), f"{split} facts acc", "accuracy")
    for split, d in (("forget", LOWER), ("adjacent", HIGHER), ("retain", HIGHER))
]


@register_eval("fact-probes", options=FactProbeOptions, metrics=PROBE_METRICS)
def run(ctx: EvalContext, options: FactProbeOptions) -> EvalResult:
    """Multiple-choice fact accuracy per split (forget, adjacent, retain) with chance level.

    Each split also records every probe's outcome, so the tables can pair two runs' probes."""
    groups = probes_by_split(ctx.benchmark, options.max_per_split)
    if not groups:
        return EvalResult({"applicable": False, "reason": "the benchmark has no fact probes"})
    summary = {
        split: probe_accuracy(
            ctx.model, ctx.benchmark.tokenizer, ps, options.batch_size, outcomes=True
        )
        for split, ps in sorted(groups.items())
    }
    return EvalResult(summary)
