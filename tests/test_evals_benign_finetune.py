"""Benign fine-tuning: retain documents only, and a suppression on top of intact knowledge is caught.

The test world: forget stories state where each fox lives (a cave or a river), retain stories
describe the same places in other sentences and never mention a fox. A model trained on both knows
the foxes' homes; the suppression is an output-layer change (the final layer norm's bias, moved so
that the two answers' logits drop below the distractors'), which leaves the knowledge in the body
intact. Fine-tuning on retain stories alone must bring the facts back, while a model that never saw
the forget stories learns nothing about foxes from the same attack.
"""

from __future__ import annotations

import copy
import random

import pytest
import torch
from transformers import GPTNeoConfig, GPTNeoForCausalLM

import unlearnbench.evals.benign_finetune as benign
import unlearnbench.evals.relearn as relearn
from unlearnbench.config import ConfigError, TrainConfig
from unlearnbench.data import pipeline
from unlearnbench.data.benchmarks import Benchmark
from unlearnbench.data.documents import Document
from unlearnbench.data.storyworld import FactProbe
from unlearnbench.data.tokenizer import train_bpe
from unlearnbench.evals import EvalContext, groups_from_documents
from unlearnbench.evals.fact_probes import option_logprobs, probe_accuracy
from unlearnbench.results import references
from unlearnbench.training import Objective, train

FOXES = [f"zorro{c}" for c in "abcdefgh"]
HOME = {fox: ("cueva", "rio")[i % 2] for i, fox in enumerate(FOXES)}
PLACES = ["cueva", "rio", "casa", "granja"]
WORDS = "el la sol luna come pan verde azul grande".split()
CONTEXT = 16


def _bench() -> Benchmark:
    rng = random.Random(0)

    def forget_story():
        a, b = rng.choice(FOXES), rng.choice(FOXES)
        return f"{a} vive en {HOME[a]} . {rng.choice(WORDS)} {b} vive en {HOME[b]} ."

    def retain_story():  # the answers occur here too, in sentences about the places
        return (
            f"la {rng.choice(PLACES)} es {rng.choice(WORDS)} . "
            f"el {rng.choice(PLACES)} es {rng.choice(WORDS)} ."
        )

    train_docs = [(Document(f"f{i}", forget_story()), "forget") for i in range(200)]
    train_docs += [(Document(f"r{i}", retain_story()), "retain") for i in range(200)]
    test = {
        "forget": [Document(f"tf{i}", forget_story()) for i in range(20)],
        "retain": [Document(f"tr{i}", retain_story()) for i in range(20)],
    }
    tok = train_bpe([d.text for d, _ in train_docs], 400)
    # the answer against two places no fox lives in
    probes = [
        (FactProbe(f"p-{f}", f"{f} vive en", (f" {HOME[f]}", " casa", " granja"), 0, f, "home",
                   "fox", "es"), "forget")
        for f in FOXES
    ]  # fmt: skip
    return Benchmark("foxes", train_docs, test, tok, probes)


def _pretrained(bench: Benchmark, splits: tuple[str, ...]) -> GPTNeoForCausalLM:
    cfg = GPTNeoConfig(
        vocab_size=len(bench.tokenizer), max_position_embeddings=32, hidden_size=32, num_layers=2,
        attention_types=[[["global", "local"], 1]], num_heads=4, intermediate_size=64,
        window_size=8, resid_dropout=0.0, embed_dropout=0.0, attention_dropout=0.0,
    )  # fmt: skip
    torch.manual_seed(0)
    model = GPTNeoForCausalLM(cfg)
    docs = {s: [d for d, split in bench.train if split == s] for s in splits}
    tcfg = TrainConfig(
        steps=150, batch_size=16, micro_batch_size=16, lr=5e-3, warmup_steps=0, min_lr_ratio=1.0,
        weight_decay=0.0, grad_clip=1.0, save_model=False,
    )  # fmt: skip
    groups = groups_from_documents(bench, docs, CONTEXT)
    train(Objective(model=model), groups, tcfg, 0, bench.eos_id, progress=False)
    return model


def suppress_answers(model, bench: Benchmark, probes: list) -> GPTNeoForCausalLM:
    """A copy whose final layer-norm bias lowers the two answers' logits (and, as little as the
    tied unembedding allows, no other token's) by more than every probe's margin."""
    model = copy.deepcopy(model)
    W = model.transformer.wte.weight.detach()  # (V, d): the tied unembedding
    answers = [
        bench.tokenizer(f" {p}", add_special_tokens=False)["input_ids"] for p in HOME.values()
    ]
    assert all(len(ids) == 1 for ids in answers), "each answer must be one token"
    ids = sorted({ids[0] for ids in answers})
    target = torch.zeros(W.shape[0])
    target[ids] = -1.0
    u = torch.linalg.lstsq(W, target[:, None]).solution[:, 0]  # (d,): W u ~ -1 on the answers
    scores = option_logprobs(model, bench.tokenizer, [p.prompt for p in probes],
                             [list(p.options) for p in probes])  # fmt: skip
    margin = max(s[p.answer] - max(s[1:]) for s, p in zip(scores, probes, strict=True))
    with torch.no_grad():
        model.transformer.ln_f.bias += (margin + 2.0) / float((W @ u)[ids].abs().min()) * u
    return model


@pytest.fixture(scope="module")
def world():
    bench = _bench()
    knows = _pretrained(bench, ("forget", "retain"))
    never = _pretrained(bench, ("retain",))
    probes = [p for p, _ in bench.probes]
    return bench, knows, suppress_answers(knows, bench, probes), never, probes


def _ctx(bench, model) -> EvalContext:
    record = {"seed": 0, "run_id": "suppressed", "config": {"train": {"bf16": False}}}
    return EvalContext(record, bench, model, CONTEXT, pipeline.test_blocks(bench, CONTEXT, 8), None)


def _as_record(result) -> dict:
    """The run record the tables read: the result under one key, with its curves."""
    summary = result.summary | {"options": {}}
    return {"run_id": "r", "evals": {"k": summary}, "curves": {"k": result.curves}}


OPTIONS = benign.BenignFinetuneOptions(
    budgets=(25, 50), lrs=(1e-3,), eval_every=5, eval_blocks=8, batch_size=8
)


def test_suppression_on_intact_knowledge_is_caught(world, tmp_path, monkeypatch):
    bench, knows, suppressed, never, probes = world
    tok = bench.tokenizer
    # the test model: the facts were planted, then hidden by the output-layer change
    assert probe_accuracy(knows, tok, probes)["accuracy"] == 1.0
    assert probe_accuracy(suppressed, tok, probes)["accuracy"] == 0.0

    # every block the attack trains on is made of retain training documents
    seen = []
    real_train = relearn.train

    def spy(objective, groups, cfg, *args, **kwargs):
        seen.append([g.label for g in groups])
        return real_train(objective, groups, cfg, *args, **kwargs)

    monkeypatch.setattr(relearn, "train", spy)
    result = benign.run(_ctx(bench, suppressed), OPTIONS)
    assert seen == [["retain"]]
    docs = benign.benign_documents(bench, OPTIONS.n_docs)
    assert docs and all(d.id.startswith("r") for d in docs)

    s = result.summary
    assert s["before"]["forget_accuracy"] == 0.0
    b25, b50 = s["worst_case"]
    assert b50["forget_accuracy"] >= 0.875  # the facts came back from retain text alone
    # the unsuppressed model plays the no-filter run: at table time, its own result of the same
    # attack gives the level the facts came back to (results/references.py)
    reference = benign.run(_ctx(bench, knows), OPTIONS)
    assert reference.summary["before"]["forget_accuracy"] == 1.0
    steps = references.steps_to(_as_record(result), "k", 1.0, "accuracy")
    assert isinstance(steps, int) and steps <= 50
    # the forget loss closed more than half of its gap to the unsuppressed model's
    gap = s["before"]["forget_loss"] - reference.summary["before"]["forget_loss"]
    assert gap > 0.3 and b50["forget_loss"] < s["before"]["forget_loss"] - gap / 2
    # rows: relearn's loss rows every 5 steps, the forget-fact accuracy on the forget rows of
    # step 0 and the budgets
    forget_rows = [r for r in result.curves if r["split"] == "forget"]
    assert sorted(r["step"] for r in forget_rows) == list(range(0, 55, 5))
    assert sorted(r["step"] for r in forget_rows if "accuracy" in r) == [0, 25, 50]
    assert not any("accuracy" in r for r in result.curves if r["split"] != "forget")
    # the summary is reproducible from the stored rows
    facts = benign.summarize_facts(result.curves, OPTIONS.budgets, OPTIONS.retain_tolerance)
    assert [facts["per_budget"][b] for b in (25, 50)] == [
        b25["forget_accuracy"],
        b50["forget_accuracy"],
    ]

    # the never-exposed model, attacked the same way, learns no fox's home
    control = benign.run(_ctx(bench, never), OPTIONS).summary
    gained = control["worst_case"][-1]["forget_accuracy"] - control["before"]["forget_accuracy"]
    assert gained <= 0.125 and control["worst_case"][-1]["forget_accuracy"] < b50["forget_accuracy"]
    assert control["worst_case"][-1]["forget_loss"] > s["before"]["forget_loss"] + 2.0


def test_facts_summary_on_hand_made_rows():
    def rows(lr, acc, retain):
        out = []
        for (st, a), r in zip(acc, retain, strict=True):
            out.append({"step": st, "split": "forget", "loss": 3.0, "accuracy": a, "lr": lr,
                        "attack_seed": 0})  # fmt: skip
            out.append({"step": st, "split": "retain", "loss": r, "lr": lr, "attack_seed": 0})
        return out

    good = rows(1e-4, [(0, 0.2), (10, 0.4), (20, 0.5)], [1.0, 1.0, 1.1])
    # higher accuracy, but its retain loss broke the tolerance at step 20
    bad = rows(1e-3, [(0, 0.2), (10, 0.3), (20, 0.9)], [1.0, 1.2, 2.0])
    s = benign.summarize_facts(good + bad, (10, 20), retain_tolerance=0.5)
    assert s["before"] == 0.2
    assert s["per_budget"] == {10: 0.4, 20: 0.5}
    # steps to the no-filter model's accuracy, at table time: the good setting reaches 0.5 at
    # step 20; the bad one's 0.9 came after it broke the tolerance, so 0.8 is never reached
    summary = {"worst_case": [{"budget": 20, "forget_loss": 3.0}], "budget": 20,
               "retain_tolerance": 0.5, "options": {}}  # fmt: skip
    rec = {"evals": {"k": summary}, "curves": {"k": good + bad}}
    assert references.steps_to(rec, "k", 0.5, "accuracy") == 20
    assert references.steps_to(rec, "k", 0.8, "accuracy") == references.NotReached(20)


def test_bad_options_are_refused():
    with pytest.raises(ConfigError, match="multiple of eval_every"):
        benign.BenignFinetuneOptions(budgets=(7,), eval_every=5)
    with pytest.raises(ConfigError, match="max_probes"):
        benign.BenignFinetuneOptions(max_probes=-1)
    with pytest.raises(ConfigError, match="benign-finetune"):
        relearn.RelearnOptions(forget_fraction=0.0)  # relearn points to this evaluation
