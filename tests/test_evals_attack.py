"""`unlearnbench attack` and `run --suite`: results are added to the record, nothing else changes."""

from __future__ import annotations

import json

from helpers import TINY_RELEARN, TINY_RUN
from typer.testing import CliRunner

from unlearnbench.cli import app
from unlearnbench.results import references
from unlearnbench.results.store import RunStore

runner = CliRunner()
K = "tiny-suite/"  # results go under SUITE/KEY (the suite file below is tiny-suite.yaml)
SUITE = (
    "evals:\n"
    + TINY_RELEARN
    + """\
  - eval: fact-probes
    options: {max_per_split: 8}
  - eval: disjoint-facts
    options: {steps: 2, lrs: [1e-3], batch_size: 2, n_docs: 10, max_probes: 8, eval_blocks: 2}
  - eval: calibrated-loss
    options: {steps: 3, batch_size: 2, n_docs: 10}
  - eval: direction-ablation
  - eval: benign-finetune
    options: {budgets: [2, 4], eval_every: 2, eval_blocks: 2, n_docs: 20, batch_size: 2,
              max_probes: 8}
  - eval: quantization
    options: {max_probes: 8}
  - eval: hidden-probes
    options: {layers: [2]}
"""
)


def test_attack_adds_results_without_changing_earlier_metrics(tmp_path):
    out = str(tmp_path / "runs")
    suite = tmp_path / "tiny-suite.yaml"
    suite.write_text(SUITE)
    res = runner.invoke(
        app, ["run", "sgtm", "--set", "recall=0.9", "--json", "--out", out] + TINY_RUN
    )
    assert res.exit_code == 0, res.stderr
    before = json.loads(res.stdout)
    run_id = before["run_id"]
    res = runner.invoke(app, ["attack", run_id, "--suite", str(suite), "--out", out, "--quiet"])
    assert res.exit_code == 0, res.stderr
    after = RunStore(out).load(run_id)  # as read back: the model path found in the store
    for key, value in before.items():
        assert after[key] == value, f"{key} changed"
    ev = after["evals"]
    # each result under SUITE/KEY, with what ran it and the headline metrics its evaluation declared
    names = ("relearn", "fact-probes", "disjoint-facts", "calibrated-loss", "direction-ablation")
    names += ("benign-finetune", "quantization")
    names += ("hidden-probes",)
    assert set(ev) == {K + n for n in names}
    assert {(ev[K + n]["eval"], ev[K + n]["suite"]) for n in names} == {
        (n, "tiny-suite") for n in names
    }
    assert [e["name"] for e in ev[K + "relearn"]["headline"]] == ["forget_loss@2", "forget_loss@4"]
    assert ev[K + "direction-ablation"]["applicable"] is False  # sgtm records no steered layer
    assert [e["name"] for e in ev[K + "benign-finetune"]["headline"]] == [
        "forget_loss@2", "forget_loss@4", "forget_accuracy@2", "forget_accuracy@4",
    ]  # fmt: skip
    assert [e["name"] for e in ev[K + "quantization"]["headline"]] == [
        "forget_loss@8", "forget_loss@4", "forget_accuracy@8", "forget_accuracy@4",
    ]  # fmt: skip
    # an evaluation measures its own run only: no result holds another run's numbers
    assert not any(set(references.COPIED) & set(v) for v in ev.values() if isinstance(v, dict))
    benign_rows = after["curves"][K + "benign-finetune"]
    assert {r["split"] for r in benign_rows} >= {"forget", "retain"}
    assert {r["step"] for r in benign_rows if "accuracy" in r} == {0, 2, 4}  # before, budgets
    rel = ev[K + "relearn"]
    assert [e["budget"] for e in rel["worst_case"]] == [2, 4]
    assert {r["split"] for r in after["curves"][K + "relearn"]} == {"forget", "retain"}
    # the references were trained and given the suite (their own results, in their own records)
    records = RunStore(out).records()
    joined = references.join(records)[run_id]
    nf, pf = joined.no_filter, joined.perfect_filter
    assert nf["method"] == "no-filter" and pf["method"] == "filter"
    assert set(nf["evals"]) == set(pf["evals"]) == set(ev)
    # the comparisons are made at table time from those results
    cmp = references.compare(joined)
    steps = cmp["attacks"][K + "relearn"]["steps_to_recover"]
    target = nf["evals"][K + "relearn"]["before"]["forget_loss"]
    assert steps == references.steps_to(after, K + "relearn", target)
    assert (
        isinstance(steps, int)
        or steps is references.NO_VALID_ATTACK
        or (isinstance(steps, references.NotReached) and steps.limit == 4)
    )
    floor = pf["evals"][K + "hidden-probes"]["forget"]["best_accuracy"]
    mine = ev[K + "hidden-probes"]["forget"]["best_accuracy"]
    assert cmp["hidden"][K + "hidden-probes"] == mine - floor
    assert (
        set(ev[K + "fact-probes"]) >= {"forget", "retain"}
        and ev[K + "fact-probes"]["forget"]["n"] == 8
    )
    # a second attack with the same suite reuses the recorded results, the references' too
    import unlearnbench.evals.relearn as relearn_eval

    def no_new_attack(*a, **k):
        raise AssertionError("the recorded attack should have been reused")

    original = relearn_eval.attack_rows
    relearn_eval.attack_rows = no_new_attack
    try:
        res = runner.invoke(app, ["attack", run_id, "--suite", str(suite), "--out", out, "--quiet"])
        assert res.exit_code == 0, res.stderr
    finally:
        relearn_eval.attack_rows = original
    again = json.loads((tmp_path / "runs" / "records" / f"{run_id}.json").read_text())
    assert again["evals"] == ev
    assert RunStore(out).load(nf["run_id"])["evals"] == nf["evals"]


def test_attack_user_mistakes(tmp_path):
    res = runner.invoke(app, ["attack", "nope", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "no record for run 'nope'" in res.stderr
    res = runner.invoke(app, ["attack", "nope", "--suite", "robsut", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "unknown suite 'robsut'" in res.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("evals:\n  - eval: relearn\n    options: {budget: [3]}\n")
    res = runner.invoke(app, ["attack", "nope", "--suite", str(bad), "--out", str(tmp_path)])
    assert res.exit_code == 2 and "unknown option 'budget'" in res.stderr
    bad.write_text("evals:\n  - eval: relearn\n    options: {budgets: [3], eval_every: 2}\n")
    res = runner.invoke(
        app, ["run", "no-filter", "--suite", str(bad), "--out", str(tmp_path)] + TINY_RUN
    )
    assert res.exit_code == 2 and "multiple of eval_every" in res.stderr
    bad.write_text("references: maybe\nevals:\n  - eval: fact-probes\n")
    res = runner.invoke(
        app, ["run", "no-filter", "--suite", str(bad), "--out", str(tmp_path)] + TINY_RUN
    )
    assert res.exit_code == 2 and "`references:` must be true or false" in res.stderr
    assert not (tmp_path / "records").exists()  # rejected before training


def test_shipped_suites_load_and_validate():
    from unlearnbench.evals import load_suite

    for name in ("quick", "robust", "probes", "sgtm-paper", "gradient-routing-paper"):
        entries, description = load_suite(name)
        assert entries and description, name
    robust = {e.key: e for e in load_suite("robust")[0]}
    assert set(robust) == {
        "fact-probes",
        "calibrated-loss",
        "direction-ablation",
        "relearn",
        "soft-prompt",
        "disjoint-facts",
        "benign-finetune",
        "quantization",
        "in-context",
        "hidden-probes",
        "generations",
    }
    assert robust["hidden-probes"].options == {}
    # the defaults (budgets up to 200) on the robust schedule, which includes every budget
    schedule = robust["relearn"].options.pop("eval_steps")
    assert robust["relearn"].options == {}
    assert {10, 25, 50, 100, 200} <= set(schedule) and len(schedule) == 19
    assert robust["benign-finetune"].options["eval_steps"] == schedule
    sgtm = load_suite("sgtm-paper")[0][0]
    assert sgtm.key == "relearn-sgtm-paper" and sgtm.options["forget_fraction"] == 0.5
    assert sgtm.options["modes"] == ("full",)  # the paper's attacker only
