"""A result that copied a reference's numbers (the no-filter model, the perfect filter) is stale
once that reference is trained again: the grid counts it as not done, and re-running the suite
compares afresh while keeping the run's own measurement."""

from __future__ import annotations

import json

from helpers import TINY_RELEARN, TINY_RUN
from typer.testing import CliRunner

from unlearnbench.cli import app
from unlearnbench.launch import suite_recorded
from unlearnbench.results.store import RunStore
from unlearnbench.suites import stale_references, store_lookup

runner = CliRunner()
SUITE = "evals:\n" + TINY_RELEARN
KEY = "tiny-suite/relearn"


def _record(run_id: str, result: dict) -> dict:
    return {"run_id": run_id, "evals": {KEY: result}}


def test_stale_references_compares_every_copied_number():
    own_nf = {"before": {"forget_loss": 0.55}, "worst_case": [{"budget": 2, "forget_loss": 0.5}],
              "steps_to_recover": 0, "seconds": 3.0}  # fmt: skip
    held_nf = {"run_id": "nf", "before": {"forget_loss": 0.55},
               "worst_case": [{"budget": 2, "forget_loss": 0.5}], "steps_to_recover": 0}  # fmt: skip
    run = _record(
        "sgtm", {"references": {"no-filter": held_nf, "perfect-filter": {"run_id": "pf"}}}
    )
    records = {"nf": _record("nf", json.loads(json.dumps(own_nf))), "pf": _record("pf", {"x": 1})}
    assert stale_references(run, KEY, records.get) == []
    # the last digits of a number measured again on the same weights are not a new reference
    records["nf"]["evals"][KEY]["worst_case"][0]["forget_loss"] = 0.5 + 1e-12
    assert stale_references(run, KEY, records.get) == []
    # a reference trained again measures other numbers: everything derived from it is stale
    records["nf"]["evals"][KEY]["worst_case"][0]["forget_loss"] = 0.5008
    assert stale_references(run, KEY, records.get) == ["no-filter"]
    # a reference whose results were dropped (trained again, not evaluated yet), or that is gone
    records["nf"] = _record("nf", own_nf)
    records["pf"]["evals"] = {}
    assert stale_references(run, KEY, records.get) == ["perfect-filter"]
    del records["pf"]
    assert stale_references(run, KEY, records.get) == ["perfect-filter"]
    # a run that is its own reference holds its own numbers
    own = _record("nf", {"references": {"no-filter": {"run_id": "nf", "before": 1.0}}})
    assert stale_references(own, KEY, {}.get) == []


def test_a_retrained_reference_makes_the_result_stale_and_a_rerun_compares_afresh(tmp_path):
    out = str(tmp_path / "runs")
    suite = tmp_path / "tiny-suite.yaml"
    suite.write_text(SUITE)
    res = runner.invoke(app, ["run", "sgtm", "--json", "--out", out] + TINY_RUN)
    assert res.exit_code == 0, res.stderr
    run_id = json.loads(res.stdout)["run_id"]
    res = runner.invoke(app, ["attack", run_id, "--suite", str(suite), "--out", out, "--quiet"])
    assert res.exit_code == 0, res.stderr
    store = RunStore(out)
    lookup = store_lookup(store)
    first = store.load(run_id)
    assert suite_recorded(first, str(suite), lookup)
    nf_id = first["evals"][KEY]["references"]["no-filter"]["run_id"]

    # the no-filter reference as a retraining on another machine leaves it: other weights, so
    # other numbers in its own result (here its recorded attack curve and summary, shifted)
    nf = store.load(nf_id)
    shifted = json.loads(json.dumps(nf["evals"][KEY]))
    shifted["before"]["forget_loss"] += 0.01
    shifted["worst_case"][0]["forget_loss"] += 0.01
    nf["evals"][KEY] = shifted
    store.write(nf)
    assert stale_references(store.load(run_id), KEY, lookup) == ["no-filter"]
    assert not suite_recorded(store.load(run_id), str(suite), lookup)
    assert suite_recorded(store.load(run_id), str(suite))  # without a lookup: options only

    # attacking again compares afresh; the run's own attack is not run again (its curves stand)
    import unlearnbench.evals.relearn as relearn_eval

    def no_new_attack(*a, **k):
        raise AssertionError("the run's recorded attack should have been reused")

    original = relearn_eval.attack_rows
    relearn_eval.attack_rows = no_new_attack
    try:
        res = runner.invoke(app, ["attack", run_id, "--suite", str(suite), "--out", out])
    finally:
        relearn_eval.attack_rows = original
    assert res.exit_code == 0, res.stderr
    assert "comparing afresh" in res.stderr
    after = store.load(run_id)
    assert after["curves"][KEY] == first["curves"][KEY]
    held = after["evals"][KEY]["references"]["no-filter"]
    assert held["before"] == shifted["before"]
    assert held["worst_case"][0]["forget_loss"] == shifted["worst_case"][0]["forget_loss"]
    assert [e["forget_loss"] for e in after["evals"][KEY]["worst_case"]] == [
        e["forget_loss"] for e in first["evals"][KEY]["worst_case"]
    ]
    assert stale_references(after, KEY, lookup) == []
    assert suite_recorded(after, str(suite), lookup)
