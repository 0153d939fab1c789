"""Post-hoc runs get their base from the run store: the no-filter run is trained once and reused."""

import json

import pytest

from unlearnbench import runner
from unlearnbench.config import ConfigError
from unlearnbench.registry import methods
from unlearnbench.results.store import RunStore

TINY = {"n_stories": 200, "steps": 2, "context": 32, "eval_blocks": 2, "batch_size": 4}


@pytest.fixture
def trained(monkeypatch):
    """Count the loop's runs by description; make the no-filter base a 2-step run."""
    calls = []
    real = runner.train

    def counting(objective, groups, cfg, seed, eos_id, **kw):
        calls.append(kw.get("description", ""))
        return real(objective, groups, cfg, seed, eos_id, **kw)

    monkeypatch.setattr(runner, "train", counting)
    spec = methods.get("no-filter")
    monkeypatch.setitem(spec.train_defaults, "steps", 2)
    monkeypatch.setitem(spec.train_defaults, "batch_size", 4)
    return calls


def test_posthoc_runs_train_the_no_filter_base_once_then_reuse_it(tmp_path, trained):
    store = RunStore(tmp_path)
    cfg = runner.resolve_run_config("grad-ascent", "storyworld-lang", "tiny", 0, TINY)
    first = runner.execute(cfg, store, progress=False)
    assert [c.split()[0] for c in trained] == ["no-filter", "grad-ascent"]
    base = store.load(first["base"])
    assert base["method"] == "no-filter" and base["kind"] == "training"
    # the base shares what is measured: block length and test blocks
    assert base["config"]["train"]["context"] == 32 and base["config"]["train"]["eval_blocks"] == 2
    assert base["config"]["labels"] == first["config"]["labels"]

    cfg2 = runner.resolve_run_config("npo", "storyworld-lang", "tiny", 0, TINY)
    second = runner.execute(cfg2, store, progress=False)
    assert [c.split()[0] for c in trained] == ["no-filter", "grad-ascent", "npo"]  # no retraining
    assert second["base"] == first["base"]
    assert len(store.find(method="no-filter")) == 1


def test_base_option_loads_a_checkpoint_and_skips_the_no_filter_run(tmp_path, trained):
    store = RunStore(tmp_path)
    nf = runner.resolve_run_config("no-filter", "storyworld-lang", "tiny", 0, TINY)
    path = runner.execute(nf, store, progress=False)["model_path"]
    other = RunStore(tmp_path / "other")  # a store without the no-filter record
    cfg = runner.resolve_run_config(
        "grad-ascent", "storyworld-lang", "tiny", 0, TINY | {"base": path}
    )
    record = runner.execute(cfg, other, progress=False)
    assert record["base"] == path
    assert [c.split()[0] for c in trained] == ["no-filter", "grad-ascent"]
    assert other.find(method="no-filter") == []
    bad = runner.resolve_run_config(
        "grad-ascent", "storyworld-lang", "tiny", 0, TINY | {"base": str(tmp_path / "nope")}
    )
    with pytest.raises(ConfigError, match="cannot load base model"):
        runner.execute(bad, other, progress=False)


# ---- the run-level base setting: scratch | no-filter (the default) | a saved model --------------


def test_base_scratch_starts_a_posthoc_method_from_a_fresh_model(tmp_path, trained, monkeypatch):
    store = RunStore(tmp_path)
    built = []
    real_build = runner.build_model
    monkeypatch.setattr(runner, "build_model", lambda *a: built.append(a) or real_build(*a))
    default = runner.resolve_run_config("grad-ascent", "storyworld-lang", "tiny", 0, TINY)
    cfg = runner.resolve_run_config(
        "grad-ascent", "storyworld-lang", "tiny", 0, TINY | {"base": "scratch"}
    )
    assert cfg.base == "scratch" and cfg.run_id != default.run_id
    record = runner.execute(cfg, store, progress=False)
    assert [c.split()[0] for c in trained] == ["grad-ascent"]  # no no-filter run first
    assert record["base"] is None and record["config"]["base"] == "scratch"
    assert store.find(method="no-filter") == []
    assert [a[0] for a in built] == ["tiny"]  # the model was initialized, never loaded


def test_base_no_filter_is_the_default_and_never_the_curriculum_run(tmp_path, trained):
    store = RunStore(tmp_path)
    curriculum = runner.resolve_run_config(
        "no-filter", "storyworld-lang", "tiny", 0, TINY | {"forget_after": 0.5}
    )
    runner.execute(curriculum, store, progress=False)  # in the store first, with the same setup
    explicit = runner.resolve_run_config(
        "grad-ascent", "storyworld-lang", "tiny", 0, TINY | {"base": "no-filter"}
    )
    default = runner.resolve_run_config("grad-ascent", "storyworld-lang", "tiny", 0, TINY)
    assert explicit == default and explicit.base == ""  # one run, one id
    record = runner.execute(default, store, progress=False)
    base = store.load(record["base"])
    assert base["run_id"] != curriculum.run_id and base["config"]["method_options"] == {}
    assert [c.split()[0] for c in trained] == ["no-filter", "no-filter", "grad-ascent"]


@pytest.mark.parametrize("base", ["no-filter", "/some/saved/model"])
def test_a_training_time_method_refuses_a_base(base):
    with pytest.raises(ConfigError, match="training-time method"):
        runner.resolve_run_config("sgtm", "storyworld-lang", "tiny", 0, TINY | {"base": base})
    scratch = runner.resolve_run_config("sgtm", "storyworld-lang", "tiny", 0, {"base": "scratch"})
    assert scratch == runner.resolve_run_config("sgtm", "storyworld-lang", "tiny", 0)


def test_a_training_time_base_is_a_one_line_error_on_the_command_line(tmp_path):
    from typer.testing import CliRunner

    from unlearnbench.cli import app

    out = tmp_path / "runs"
    result = CliRunner().invoke(app, ["run", "filter", "--set", "base=x", "--out", str(out)])
    assert result.exit_code == 2, result.output
    lines = [x for x in result.output.strip().splitlines() if x.strip()]
    assert len(lines) == 1 and "training-time method" in result.output, result.output
    assert not (out / "records").exists()


@pytest.mark.parametrize("layout", ["base: scratch\n", "method:\n  base: scratch\n"])
def test_a_preset_sets_the_base(tmp_path, layout):
    preset = tmp_path / "rmu-scratch.yaml"
    preset.write_text(layout)
    cfg = runner.resolve_run_config("rmu", "storyworld-lang", None, 0, config_file=preset)
    assert cfg.base == "scratch" and "base" not in cfg.method_options
    over = runner.resolve_run_config(
        "rmu", "storyworld-lang", None, 0, {"base": "no-filter"}, config_file=preset
    )
    assert over.base == ""  # --set wins over the file


def test_a_record_with_the_old_layout_still_loads(tmp_path):
    """Records written when `base` was a method option read as the run-level setting."""
    from unlearnbench.config import RunConfig
    from unlearnbench.results.leaderboard import setting_of

    store = RunStore(tmp_path)
    saved = "/any/store/models/no-filter__storyworld-lang__tiny__s0__abc123"
    for run_id, old in (("rmu__old__path", saved), ("rmu__old__default", "")):
        cfg = runner.resolve_run_config("rmu", "storyworld-lang", "tiny", 0, TINY).to_dict()
        cfg.pop("base")
        cfg["method_options"]["base"] = old
        store.write({"run_id": run_id, "method": "rmu", "kind": "posthoc", "config": cfg})
    by_path, by_default = store.load("rmu__old__path"), store.load("rmu__old__default")
    assert by_path["config"]["base"] == saved and "base" not in by_path["config"]["method_options"]
    assert RunConfig.from_dict(by_path["config"]).base == saved
    assert "base=no-filter__storyworld-lang__tiny__s0__abc123" in setting_of(by_path)
    today = runner.resolve_run_config("rmu", "storyworld-lang", "tiny", 0, TINY)
    as_stored = json.loads(json.dumps(today.to_dict()))  # tuples as the JSON record holds them
    assert RunConfig.from_dict(by_default["config"]).to_dict() == as_stored
    assert "base" not in setting_of(by_default)
    assert {r["run_id"]: r["config"]["base"] for r in store.records()} == {
        "rmu__old__path": saved,
        "rmu__old__default": "",
    }


def test_a_base_recorded_without_its_model_is_trained_again_to_the_same_weights(tmp_path, trained):
    """A committed record carries no weights: a post-hoc run on it retrains the base from the
    record's own config (same seed and settings: the same weights) and keeps its evaluations."""
    import shutil

    import torch

    from unlearnbench.models.build import load_model

    store = RunStore(tmp_path)
    nf = runner.resolve_run_config("no-filter", "storyworld-lang", "tiny", 0, TINY)
    base = runner.execute(nf, store, progress=False)
    weights = {n: t.clone() for n, t in load_model(base["model_path"]).state_dict().items()}
    # as a committed record arrives: no model, an evaluation recorded
    shutil.rmtree(base["model_path"])
    base = dict(base, model_path=None, evals={"robust/x": {"seconds": 1.0}})
    store.write(base)

    cfg = runner.resolve_run_config("grad-ascent", "storyworld-lang", "tiny", 0, TINY)
    record = runner.execute(cfg, store, progress=False)
    assert [c.split()[0] for c in trained] == ["no-filter", "no-filter", "grad-ascent"]
    assert record["base"] == nf.run_id
    again = store.load(nf.run_id)
    assert again["evals"] == {"robust/x": {"seconds": 1.0}}  # its results kept: the same model
    assert again["metrics"] == base["metrics"]
    retrained = load_model(again["model_path"]).state_dict()
    assert retrained.keys() == weights.keys()
    assert all(torch.equal(retrained[n], weights[n]) for n in weights)


def test_a_reference_recorded_without_its_model_is_trained_again_only_when_its_model_is_needed(
    tmp_path, trained
):
    """A committed reference whose result is recorded serves it as it is (retraining it on another
    machine would round to other weights and drop its results); one whose model an evaluation
    needs is trained again then."""
    import shutil

    from unlearnbench.evals import load_suite
    from unlearnbench.suites import evaluate_entry, reference_record

    store = RunStore(tmp_path)
    nf = runner.resolve_run_config("no-filter", "storyworld-lang", "tiny", 0, TINY)
    base = runner.execute(nf, store, progress=False)
    shutil.rmtree(base["model_path"])
    (entry,), _ = load_suite("probes")  # fact probes
    store.write(dict(base, model_path=None))
    cfg = runner.resolve_run_config("filter", "storyworld-lang", "tiny", 0, TINY)
    run = runner.execute(cfg, store, progress=False)
    ref = reference_record(run, "no-filter", store, progress=False)
    assert ref["run_id"] == nf.run_id and ref["model_path"] is None
    assert [c.split()[0] for c in trained] == ["no-filter", "filter"]  # nothing trained again

    # its fact probes are not recorded: the evaluation trains it again, then measures
    summary = evaluate_entry(ref, entry, store, progress=False)
    assert [c.split()[0] for c in trained] == ["no-filter", "filter", "no-filter"]
    assert store.load(nf.run_id)["model_path"] and "forget" in summary
    # recorded now: asked again, nothing is trained or loaded
    shutil.rmtree(store.load(nf.run_id)["model_path"])
    assert evaluate_entry(store.load(nf.run_id), entry, store, progress=False) == summary
    assert len(trained) == 3


def test_a_method_can_name_a_variant_of_the_no_filter_run_as_its_default_base(
    tmp_path, trained, monkeypatch
):
    """checkpoint-transfer's default base is the curriculum no-filter run (forget documents enter
    halfway, snapshots saved): it is trained with those settings and its snapshot is used."""
    spec = methods.get("checkpoint-transfer")
    assert spec.base_settings["method.forget_after"] == 0.5
    assert spec.base_settings["train.snapshot_every"] > 0
    monkeypatch.setitem(spec.base_settings, "train.snapshot_every", 1)  # the base runs 2 steps
    store = RunStore(tmp_path)
    cfg = runner.resolve_run_config("checkpoint-transfer", "storyworld-lang", "tiny", 0, TINY)
    record = runner.execute(cfg, store, progress=False)
    assert [c.split()[0] for c in trained] == ["no-filter", "checkpoint-transfer"]
    base = store.load(record["base"])
    assert base["config"]["method_options"].get("forget_after") == 0.5
    assert [s["step"] for s in base["metrics"]["snapshots"]] == [1, 2]
    assert record["metrics"]["checkpoint"]["step"] in (1, 2)
    # a plain no-filter run is not its base
    plain = runner.resolve_run_config("no-filter", "storyworld-lang", "tiny", 0, TINY)
    assert record["base"] != plain.run_id


def test_a_record_is_trained_again_with_its_recorded_thread_count_and_only_once(
    tmp_path, monkeypatch
):
    """Another thread count rounds differently (other weights, the record's evaluations dropped):
    the retraining uses the count the record names, then restores this process's. A second call
    on the same stale record (a process that waited for the first) finds the model: no retrain."""
    import shutil

    import torch

    store = RunStore(tmp_path)
    cfg = runner.resolve_run_config("no-filter", "storyworld-lang", "tiny", 0, TINY)
    record = runner.execute(cfg, store, progress=False)
    shutil.rmtree(record["model_path"])
    assert record["torch_threads"] == torch.get_num_threads()
    stale = dict(record, model_path=None, torch_threads=3)
    store.write(stale)
    real, seen = runner.execute, []

    def counting(cfg, store, force=False, progress=True, **kw):
        seen.append(torch.get_num_threads())
        return real(cfg, store, force=force, progress=progress, **kw)

    monkeypatch.setattr(runner, "execute", counting)
    before = torch.get_num_threads()
    again = runner.with_model(stale, store, progress=False)
    assert seen == [3] and torch.get_num_threads() == before
    assert again["model_path"] and again["run_id"] == record["run_id"]
    assert runner.with_model(stale, store, progress=False)["model_path"] == again["model_path"]
    assert seen == [3]  # not trained a second time


def test_recorded_threads_reads_the_field_and_falls_back_to_the_device_of_older_records():
    assert runner.recorded_threads({"torch_threads": 4, "device": "cpu (x86_64, 2 threads)"}) == 4
    assert runner.recorded_threads({"device": "cpu (x86_64, 2 threads)"}) == 2  # older record
    assert runner.recorded_threads({"torch_threads": None, "device": "NVIDIA H100"}) is None
    assert runner.recorded_threads({"device": "NVIDIA H100"}) is None
    assert runner.recorded_threads({}) is None
