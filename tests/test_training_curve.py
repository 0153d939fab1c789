"""The no-filter run records its test losses during training (the compute penalty's curve), and
recording them changes no training number."""

from __future__ import annotations

import dataclasses

from unlearnbench import runner
from unlearnbench.registry import methods
from unlearnbench.results.compute_penalty import run_penalties
from unlearnbench.results.store import RunStore

TINY = {"n_stories": 200, "steps": 8, "context": 32, "eval_blocks": 2, "batch_size": 4}


def _run(tmp_path, name: str, method: str = "no-filter") -> dict:
    cfg = runner.resolve_run_config(method, "storyworld-lang", "tiny", 0, TINY)
    return runner.execute(cfg, RunStore(tmp_path / name), progress=False)


def test_no_filter_records_a_training_curve_that_changes_nothing(tmp_path, monkeypatch):
    spec = methods.get("no-filter")
    assert spec.training_curve == 16
    # 8 steps at 16 points: every step measured, the last one by the pre-finalize measurement
    with_curve = _run(tmp_path, "curve")
    rows = with_curve["training_curve"]
    steps = sorted({r["step"] for r in rows})
    assert steps == list(range(1, 9))
    assert {r["split"] for r in rows} == {"forget", "retain"}  # storyworld-lang has no adjacent
    end = {r["split"]: r["loss"] for r in rows if r["step"] == 8}
    assert end == {s: with_curve["metrics"]["pre_finalize"][f"{s}_loss"] for s in end}
    assert with_curve["phases"][0]["curve_seconds"] > 0  # timed apart from training

    # the same run without the curve: the same training, step for step, and the same losses
    monkeypatch.setitem(methods._entries, "no-filter", dataclasses.replace(spec, training_curve=0))
    plain = _run(tmp_path, "plain")
    assert "training_curve" not in plain and "curve_seconds" not in plain["phases"][0]
    assert [h["loss"] for h in plain["history"]] == [h["loss"] for h in with_curve["history"]]
    for key in ("forget_loss", "retain_loss"):
        assert plain["metrics"][key] == with_curve["metrics"][key]

    # the no-filter run against its own curve pays nothing
    final = {s: with_curve["metrics"][f"{s}_loss"] for s in ("forget", "retain")}
    penalties = run_penalties(rows, with_curve["phases"][0]["steps"], final)
    assert {s: p.penalty for s, p in penalties.items()} == {"forget": 0.0, "retain": 0.0}


def test_other_methods_record_no_curve(tmp_path):
    record = _run(tmp_path, "filter", method="filter")
    assert "training_curve" not in record
    assert methods.get("filter").training_curve == 0
