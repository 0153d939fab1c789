"""A run store can be moved or shared: records name their models relative to the store, and older
records (relative to the directory their run started in, or absolute) still find their models."""

from __future__ import annotations

import json
import shutil

from typer.testing import CliRunner

from unlearnbench.cli import app
from unlearnbench.results.store import RunStore

SMALL = [
    "--set", "n_stories=300", "--set", "vocab_size=300", "--set", "context=32",
    "--set", "steps=2", "--set", "batch_size=4", "--set", "eval_blocks=2", "--set", "warmup_steps=1",
]  # fmt: skip
PROBES = "evals:\n  - eval: fact-probes\n    options: {max_per_split: 8}\n"


def _train(tmp_path, monkeypatch) -> str:
    """A no-filter run trained from tmp/a with the relative store `runs`; its run id."""
    (tmp_path / "a").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    res = CliRunner().invoke(app, ["run", "no-filter", "--out", "runs", "--json"] + SMALL)
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)["run_id"]


def test_attack_a_run_after_its_store_moved(tmp_path, monkeypatch):
    run_id = _train(tmp_path, monkeypatch)
    on_disk = json.loads((tmp_path / "a/runs/records" / f"{run_id}.json").read_text())
    assert on_disk["model_path"] == f"models/{run_id}"  # relative to the store, not to a/
    shutil.move(tmp_path / "a" / "runs", tmp_path / "moved")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    suite = tmp_path / "probes.yaml"
    suite.write_text(PROBES)
    store = str(tmp_path / "moved")
    res = CliRunner().invoke(app, ["attack", run_id, "--suite", str(suite), "--out", store])
    assert res.exit_code == 0, res.output
    record = json.loads((tmp_path / "moved/records" / f"{run_id}.json").read_text())
    assert "probes/fact-probes" in record["evals"]
    assert record["model_path"] == f"models/{run_id}"  # rewriting the record keeps it relative


def test_older_records_find_their_model_in_a_moved_store(tmp_path):
    run_id = "no-filter__storyworld-lang__tiny__s0__0123456789ab"
    store = RunStore(tmp_path / "new-home")
    (store.models_dir / run_id / "snapshots" / "step-5").mkdir(parents=True)
    for old in (f"runs/models/{run_id}", f"/gone/cluster/runs/models/{run_id}"):
        record = {
            "run_id": run_id,
            "model_path": old,
            "metrics": {"snapshots": [{"step": 5, "path": f"{old}/snapshots/step-5"}]},
        }
        store.records_dir.mkdir(parents=True, exist_ok=True)
        store.record_path(run_id).write_text(json.dumps(record))
        loaded = store.load(run_id)
        assert loaded["model_path"] == str(store.models_dir / run_id)
        snap = loaded["metrics"]["snapshots"][0]["path"]
        assert snap == str(store.models_dir / run_id / "snapshots" / "step-5")
        assert [r["model_path"] for r in store.records()] == [str(store.models_dir / run_id)]
        store.write(loaded)  # written back: relative to the store from then on
        again = json.loads(store.record_path(run_id).read_text())
        assert again["model_path"] == f"models/{run_id}"
        assert again["metrics"]["snapshots"][0]["path"] == f"models/{run_id}/snapshots/step-5"


def test_a_model_outside_the_store_keeps_its_path(tmp_path):
    store = RunStore(tmp_path / "store")
    outside = tmp_path / "elsewhere" / "model"
    outside.mkdir(parents=True)
    store.write({"run_id": "r", "model_path": str(outside)})
    assert json.loads(store.record_path("r").read_text())["model_path"] == str(outside)
    assert store.load("r")["model_path"] == str(outside)
    store.write({"run_id": "q", "model_path": None})  # a run that kept no model
    assert store.load("q")["model_path"] is None
