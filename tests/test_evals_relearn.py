"""Relearning attack: summaries from stored rows, steps to recover, exclusion, training documents only."""

from __future__ import annotations

import pytest
import torch
from toy_bilingual import tiny_model

import unlearnbench.evals.relearn as relearn
from unlearnbench.data import pipeline
from unlearnbench.data.benchmarks import Benchmark
from unlearnbench.data.documents import Document
from unlearnbench.data.tokenizer import train_bpe
from unlearnbench.evals import EvalContext
from unlearnbench.results import references


def rows_of(curves: dict, lr=1e-3, seed=0) -> list[dict]:
    """curves: {split: [(step, loss), ...]} -> long-format rows."""
    return [
        {
            "step": st,
            "split": split,
            "loss": v,
            "lr": lr,
            "attack_seed": seed,
            "mode": "full",
            "budget": 20,
        }
        for split, pts in curves.items()
        for st, v in pts
    ]


def as_record(rows: list[dict], budgets=(10, 20), tolerance: float = 0.5) -> dict:
    """A run record holding one attack result summarized from `rows` (what the tables read)."""
    summary = relearn.summarize(rows, budgets, tolerance) | {"options": {}}
    return {"run_id": "r", "evals": {"k": summary}, "curves": {"k": rows}}


def test_steps_to_recover_and_gap_on_hand_made_curves():
    # before 5.0, no-filter 2.0: the gap target at 90% is 5 - 0.9 * 3 = 2.3
    rows = rows_of(
        {
            "forget": [(0, 5.0), (5, 4.0), (10, 2.5), (15, 2.2), (20, 1.9)],
            "retain": [(0, 1.0), (5, 1.0), (10, 1.1), (15, 1.1), (20, 1.2)],
        }
    )
    rec = as_record(rows)
    assert references.steps_to(rec, "k", 2.3) == 15
    assert references.steps_to(rec, "k", 2.0) == 20
    s = rec["evals"]["k"]
    assert [e["forget_loss"] for e in s["worst_case"]] == [2.5, 1.9]
    assert s["before"]["forget_loss"] == 5.0
    assert "steps_to_recover" not in s  # a comparison with another run: computed at table time
    # not within the budget of a valid attack: not reached, with the budget
    assert references.steps_to(rec, "k", 1.0) == references.NotReached(20)


def test_worst_case_is_the_lowest_over_settings_and_steps():
    a = rows_of(
        {"forget": [(0, 5.0), (10, 3.0), (20, 2.8)], "retain": [(0, 1.0), (10, 1.0), (20, 1.0)]},
        1e-4,
    )
    b = rows_of(
        {"forget": [(0, 5.0), (10, 3.5), (20, 2.0)], "retain": [(0, 1.0), (10, 1.0), (20, 1.0)]},
        1e-3,
    )
    s = relearn.summarize(a + b, (10, 20), 0.5)
    (b10, b20) = s["worst_case"]
    assert (b10["forget_loss"], b10["lr"]) == (3.0, 1e-4)
    assert (b20["forget_loss"], b20["lr"]) == (2.0, 1e-3)


def test_retain_destroying_setting_is_excluded_and_reported():
    good = rows_of(
        {"forget": [(0, 5.0), (10, 4.0), (20, 3.0)], "retain": [(0, 1.0), (10, 1.1), (20, 1.2)]},
        1e-4,
    )
    # lower forget loss, but its retain loss breaks the tolerance at step 20
    bad = rows_of(
        {"forget": [(0, 5.0), (10, 3.9), (20, 0.5)], "retain": [(0, 1.0), (10, 1.2), (20, 3.0)]},
        1e-3,
    )
    rec = as_record(good + bad)
    b10, b20 = rec["evals"]["k"]["worst_case"]
    assert b10["forget_loss"] == 3.9 and b10["excluded"] == []  # still fine within 10 steps
    assert b20["forget_loss"] == 3.0 and b20["lr"] == 1e-4
    assert b20["excluded"] == [
        {"lr": 1e-3, "attack_seed": 0, "mode": "full", "retain_broke_at": 20}
    ]
    # the bad setting's recovery at step 20 does not count; the good one stayed valid
    assert references.steps_to(rec, "k", 1.0) == references.NotReached(20)
    # with only the bad setting there was no valid attack at 20: named, never "> 20"
    only_bad = as_record(bad)
    assert only_bad["evals"]["k"]["worst_case"][1]["forget_loss"] is None
    assert references.steps_to(only_bad, "k", 1.0) is references.NO_VALID_ATTACK
    # ... but a recovery reached while the setting was still valid counts
    assert references.steps_to(only_bad, "k", 3.95) == 10


def _bench() -> Benchmark:
    words = "el la zorro gato vive en cueva casa come pan rojo azul".split()
    eng = "the fox cat lives in cave house eats bread red blue".split()
    g = torch.Generator().manual_seed(0)

    def text(ws, i):
        idx = torch.randint(0, len(ws), (40,), generator=g).tolist()
        return " ".join(ws[j] for j in idx) + f" {i}."

    train = [(Document(f"f{i}", text(words, i)), "forget") for i in range(30)]
    train += [(Document(f"r{i}", text(eng, i)), "retain") for i in range(30)]
    test = {
        "forget": [Document(f"tf{i}", text(words, i)) for i in range(6)],
        "retain": [Document(f"tr{i}", text(eng, i)) for i in range(6)],
    }
    tok = train_bpe([d.text for d, _ in train], 300)
    return Benchmark("toy", train, test, tok)


@pytest.mark.parametrize("mode", ["full", "lora"])
def test_attack_trains_only_on_forget_training_documents(monkeypatch, mode):
    bench = _bench()
    test_ids = {d.id for ds in bench.test.values() for d in ds}
    docs = relearn.attack_documents(bench, n_docs=10, forget_fraction=1.0)
    assert len(docs["forget"]) == 10
    assert all(d.id.startswith("f") and d.id not in test_ids for d in docs["forget"])

    seen = []
    real_train = relearn.train

    def spy(objective, groups, cfg, *args, **kwargs):
        seen.append(torch.cat([g.blocks for g in groups]))
        return real_train(objective, groups, cfg, *args, **kwargs)

    monkeypatch.setattr(relearn, "train", spy)
    model = tiny_model(len(bench.tokenizer))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    record = {"seed": 0, "run_id": "x", "config": {"train": {"bf16": False}}}
    ctx = EvalContext(record, bench, model, 16, pipeline.test_blocks(bench, 16, 4), store=None)
    opts = relearn.RelearnOptions(
        budgets=(2, 4), lrs=(1e-3,), seeds=(0,), eval_every=2, eval_blocks=2, n_docs=10,
        batch_size=2, modes=(mode,), forget_fraction=1.0,
    )  # fmt: skip
    result = relearn.run(ctx, opts)
    # every trained block is made of the attack's forget training documents' tokens
    from unlearnbench.evals import groups_from_documents

    expected = groups_from_documents(bench, docs, 16)[0].blocks
    assert torch.equal(seen[0], expected)
    # the run's own model is untouched (the attack works on a copy)
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
    # rows: step 0, 2, 4 for forget and retain; the summary is reproducible from them
    assert sorted({r["step"] for r in result.curves}) == [0, 2, 4]
    assert {r["mode"] for r in result.curves} == {mode}
    again = relearn.summarize(result.curves, opts.budgets, 0.5)
    assert again["worst_case"] == result.summary["worst_case"]
    losses = {r["step"]: r["loss"] for r in result.curves if r["split"] == "forget"}
    assert losses[4] < losses[0]  # the attack learns the forget documents


def test_a_setting_that_breaks_retain_stops_there_and_the_summary_is_unchanged(monkeypatch):
    bench = _bench()
    steps_trained = []
    real_train = relearn.train

    def counting(*args, **kwargs):
        result = real_train(*args, **kwargs)
        steps_trained.append(result.steps)
        return result

    monkeypatch.setattr(relearn, "train", counting)
    record = {"seed": 0, "run_id": "x", "config": {"train": {"bf16": False}}}
    results = {}
    for stop_broken in (False, True):
        model = tiny_model(len(bench.tokenizer))
        ctx = EvalContext(record, bench, model, 16, pipeline.test_blocks(bench, 16, 4), store=None)
        # lr 0.3 wrecks the model within a few steps, 1e-3 does not; a tight tolerance
        opts = relearn.RelearnOptions(
            budgets=(2, 8, 16), lrs=(1e-3, 0.3), seeds=(0,), eval_every=2, eval_blocks=2,
            n_docs=10, batch_size=2, retain_tolerance=0.05, stop_broken=stop_broken,
            modes=("full",), forget_fraction=1.0,
        )  # fmt: skip
        results[stop_broken] = relearn.run(ctx, opts)
    full, stopped = results[False], results[True]
    assert steps_trained[:2] == [16, 16]  # run to the end: both settings
    broke = [e["retain_broke_at"] for b in full.summary["worst_case"] for e in b["excluded"]]
    assert broke and min(broke) < 16, "lr 0.3 should break the 0.05-nat tolerance"
    # the search runs the highest lr first: lr 0.3 stopped where it broke, then 1e-3 ran in full
    assert steps_trained[2] == min(broke) and steps_trained[3] == 16
    for key in ("worst_case", "before", "budget"):
        assert stopped.summary[key] == full.summary[key]
    # the stopped setting's rows end at the step that broke it; the other's are all there
    kept = [r for r in full.curves if r["lr"] == 1e-3 or r["step"] <= min(broke)]
    assert stopped.curves == kept


def test_an_evaluation_schedule_measures_at_its_steps_only():
    bench = _bench()
    record = {"seed": 0, "run_id": "x", "config": {"train": {"bf16": False}}}
    runs = {}
    for steps in ((), (1, 2, 4, 8, 12)):
        model = tiny_model(len(bench.tokenizer))
        ctx = EvalContext(record, bench, model, 16, pipeline.test_blocks(bench, 16, 4), store=None)
        opts = relearn.RelearnOptions(
            budgets=(4, 12), lrs=(1e-3,), seeds=(0,), eval_every=2, eval_steps=steps,
            eval_blocks=2, n_docs=10, batch_size=2, modes=("full",),
        )  # fmt: skip
        runs[steps] = relearn.run(ctx, opts)
    every, scheduled = runs[()], runs[(1, 2, 4, 8, 12)]
    assert sorted({r["step"] for r in every.curves}) == [0, 2, 4, 6, 8, 10, 12]
    assert sorted({r["step"] for r in scheduled.curves}) == [0, 1, 2, 4, 8, 12]
    # the same fine-tuning: the steps both measured have the same losses
    at = {(r["step"], r["split"]): r["loss"] for r in every.curves}
    for r in scheduled.curves:
        if (r["step"], r["split"]) in at:
            assert r["loss"] == pytest.approx(at[r["step"], r["split"]], abs=1e-6)
    assert scheduled.summary["worst_case"] == every.summary["worst_case"]


@pytest.mark.parametrize(
    "steps, message",
    [((5, 3, 10), "increasing"), ((5, 10, 30), "increasing"), ((5, 20), "missing \\[10\\]")],
)
def test_a_bad_evaluation_schedule_is_refused(steps, message):
    from unlearnbench.config import ConfigError

    with pytest.raises(ConfigError, match=message):
        relearn.RelearnOptions(budgets=(10, 20), eval_steps=steps)
