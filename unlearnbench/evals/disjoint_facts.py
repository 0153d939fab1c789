"""`disjoint-facts`: disjoint-facts relearning (Deeb & Roger 2024, "Do unlearning methods remove
information from language model weights?").

The forget split's fact-probe entities are split in two halves by a seeded hash of their names. The
model is fine-tuned on forget training stories that mention only first-half entities (by metadata
and by name in the text), then fact-probe accuracy is measured on the second half, whose facts the
attack never showed. Accuracy on the second half that rises above its pre-attack value (and above
what the never-exposed perfect filter reaches under the same attack) is knowledge that was still in
the weights. As in Deeb & Roger, the best learning rate is reported, among settings whose retain
loss stays within the tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass

from unlearnbench.data.splits import stable_uniform
from unlearnbench.evals import (
    LOWER,
    EvalContext,
    EvalResult,
    Metric,
    documents_of_split,
    groups_from_documents,
    register_eval,
)
from unlearnbench.evals.fact_probes import probe_accuracy
from unlearnbench.evals.relearn import fine_tune
from unlearnbench.losses import split_losses


@dataclass(frozen=True)
class DisjointFactsOptions:
    steps: int = 50  # ours: a few epochs over the first-half stories at batch 8
    lrs: tuple[float, ...] = (3e-4, 1e-3)  # ours: the upper half of the relearn grid; best reported
    seed: int = 0  # attack seed (batch order)
    batch_size: int = 8  # ours: blocks per step
    n_docs: int = 1024  # ours: first-half forget training stories used (0 = all)
    split_seed: int = 0  # which entities fall in which half
    max_probes: int = 0  # per half; 0 = every probe of the half
    eval_blocks: int = 16  # test blocks per split for the retain check
    retain_tolerance: float = 0.5  # ours, as in `relearn`


def entity_halves(probes: list, split_seed: int) -> tuple[set[str], set[str]]:
    """(first half, second half) of the probes' entities, by a seeded hash of the name."""
    names = sorted({p.entity for p in probes})
    first = {n for n in names if stable_uniform("disjoint-facts", split_seed, n) < 0.5}
    return first, set(names) - first


def first_half_documents(docs: list, first: set[str], second: set[str]) -> list:
    """Documents whose listed entities are all in `first` and whose text names no `second` entity
    (a first name like "Pip" in "Pip el zorro" counts, so friend facts cannot leak)."""
    banned = {n.split(" ")[0] for n in second}
    out = []
    for d in docs:
        ents = d.meta.get("entities")
        if not ents or not set(ents) <= first:
            continue
        words = set(d.text.replace(".", " ").replace(",", " ").split())
        if words & banned:
            continue
        out.append(d)
    return out


@register_eval(
    "disjoint-facts",
    options=DisjointFactsOptions,
    # accuracy gained on held-out facts by relearning the others: knowledge still in the weights
    metrics=[
        Metric(
            "held_out_gain",
            LOWER,
            lambda s: s.get("held_out_gain"),
            "held-out facts gain",
            "accuracy",
        )
    ],
)
def run(ctx: EvalContext, options: DisjointFactsOptions) -> EvalResult:
    """Fine-tune on stories about half of the forget entities; probe the other half's facts."""
    bench = ctx.benchmark
    probes = [p for p, s in bench.probes if s == "forget"]
    if not probes:
        return EvalResult({"applicable": False, "reason": "no forget-split fact probes"})
    first, second = entity_halves(probes, options.split_seed)
    docs = first_half_documents(documents_of_split(bench, "forget"), first, second)
    docs.sort(key=lambda d: stable_uniform("disjoint-docs", d.id))
    docs = docs[: options.n_docs] if options.n_docs else docs
    if not docs:
        return EvalResult(
            {"applicable": False, "reason": "no stories about first-half entities only"}
        )

    def subset(ps):
        ps = sorted(ps, key=lambda p: stable_uniform("disjoint-probes", options.split_seed, p.id))
        return ps[: options.max_probes] if options.max_probes else ps

    shown = subset([p for p in probes if p.entity in first])
    held_out = subset([p for p in probes if p.entity in second])
    groups = groups_from_documents(bench, {"forget": docs}, ctx.context)
    blocks = {s: b[: options.eval_blocks] for s, b in ctx.eval_blocks.items() if s != "forget"}

    def evaluate(m):
        out = {"shown": probe_accuracy(m, bench.tokenizer, shown)["accuracy"]}
        out["held_out"] = probe_accuracy(m, bench.tokenizer, held_out)["accuracy"]
        out |= {
            f"{s}_loss": v for s, v in split_losses(m, blocks, ctx.eos_id, None, ctx.device).items()
        }
        return out

    settings = []
    for lr in options.lrs:
        points = fine_tune(
            ctx.model,
            groups,
            steps=options.steps,
            lr=lr,
            seed=options.seed,
            eos_id=ctx.eos_id,
            batch_plan=None,
            batch_size=options.batch_size,
            evaluate=evaluate,
            eval_every=0,
            device=ctx.device,
            progress=ctx.progress,
            description=f"disjoint-facts lr {lr:g}",
        )
        before, after = points[0][2], points[-1][2]
        broke = after["retain_loss"] > before["retain_loss"] + options.retain_tolerance
        settings.append({"lr": lr, "after": after, "retain_broke": broke})
    valid = [s for s in settings if not s["retain_broke"]]
    best = max(valid, key=lambda s: s["after"]["held_out"]) if valid else None
    chance = sum(1 / len(p.options) for p in held_out) / len(held_out)
    return EvalResult(
        {
            "n_entities": {"shown": len(first), "held_out": len(second)},
            "n_probes": {"shown": len(shown), "held_out": len(held_out)},
            "n_attack_docs": len(docs),
            "chance": chance,
            "before": before,
            "settings": settings,
            "best": best,
            "held_out_gain": best["after"]["held_out"] - before["held_out"] if best else None,
        }
    )
