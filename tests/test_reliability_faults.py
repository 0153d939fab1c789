"""Faults beyond a mistyped input: records that are JSON but not run records, names that would
reach outside the store, damaged saved models, destinations that cannot be written, a full disk
under a checkpoint, leftovers of killed processes, and the hub asked nothing unless asked."""

import json
import os
import subprocess
import sys

import pytest
import torch
from results_fixtures import record
from typer.testing import CliRunner

from unlearnbench.cli import app
from unlearnbench.config import ConfigError
from unlearnbench.results.store import CorruptRecord, RunStore, StoreWriteError, safe_component

SMALL = ["--set", "n_stories=300", "--set", "steps=1", "--set", "eval_blocks=2"]
SMALL += ["--set", "context=32", "--quiet"]


def _cli(*args, env=None):
    return CliRunner().invoke(app, [str(a) for a in args], env=env)


def _one_line(result) -> str:
    """The single line of a refused command (no traceback), joined as rich wrapped it."""
    assert isinstance(result.exception, SystemExit), result.exception
    lines = [x for x in result.output.strip().splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    return " ".join(result.output.split())


# ------------------------------------------------------------------------------------------------
# Records: a schema on load; names that become file names are checked


BAD_RECORDS = {
    "config-list": {"config": []},
    "method-int": {"method": 5},
    "benchmark-null": {"benchmark": None},
    "seed-text": {"seed": "0"},
    "seed-bool": {"seed": True},
    "metrics-list": {"metrics": [1.0]},
    "evals-entry": {"evals": {"quick/relearn": 3}},
    "train-list": {"config": {"train": [1]}},
    "benchmark-dotdot": {"benchmark": "../../outside"},
    "model-slash": {"model": "a/b"},
}


def test_records_of_wrong_types_or_unsafe_names_are_named_and_left_out(tmp_path):
    store = RunStore(tmp_path)
    good = record("no-filter", 0, forget=2.0, retain=2.0)
    store.write(good)
    for name, change in BAD_RECORDS.items():
        bad = good | change | {"run_id": name}
        (tmp_path / "records" / f"{name}.json").write_text(json.dumps(bad))
    other = good | {"run_id": "someone-else"}  # a copy under another run's name
    (tmp_path / "records" / "renamed.json").write_text(json.dumps(other))
    assert [r["run_id"] for r in store.records()] == [good["run_id"]]
    skipped = " ".join(store.unreadable)
    for name in [*BAD_RECORDS, "renamed"]:
        assert f"{name}.json (" in skipped, skipped
    assert "its run_id 'someone-else' is not its file name" in skipped
    for command in ("leaderboard", "report", "plot all"):
        result = _cli(*command.split(), "--out", tmp_path)
        assert result.exit_code == 0, result.output
        warnings = [x for x in result.output.splitlines() if x.startswith("warning:")]
        assert len(warnings) == 1 and "skipped 11 unreadable record(s)" in warnings[0]


def test_an_attack_never_writes_into_another_record(tmp_path):
    store = RunStore(tmp_path)
    theirs = record("no-filter", 0, forget=2.0, retain=2.0)
    store.write(theirs)
    copied = store.record_path(theirs["run_id"]).read_text()
    (tmp_path / "records" / "mine.json").write_text(copied)  # a record under another's name
    before = {p: p.read_bytes() for p in (tmp_path / "records").iterdir()}
    with pytest.raises(CorruptRecord, match="is not its file name"):
        store.merge_results("mine", {"evals": {"s/x": {"summary": 1}}}, replace=True)
    with pytest.raises(ConfigError, match="not a safe file name"):
        store.merge_results("../records/x", {"evals": {}}, replace=True)
    assert {p: p.read_bytes() for p in (tmp_path / "records").iterdir()} == before


@pytest.mark.parametrize("name", ["no-filter", "storyworld-topic", "wiki-34M", "a__b__s0__1f3e"])
def test_safe_component_keeps_names(name):
    assert safe_component(name) == name


@pytest.mark.parametrize("name", ["", ".", "..", "../x", "a/b", "a\\b", ".hidden", "a\x00b", 5])
def test_safe_component_refuses_what_would_leave_its_folder(name):
    with pytest.raises(ConfigError, match="is not a safe file name"):
        safe_component(name, "benchmark")


# ------------------------------------------------------------------------------------------------
# A damaged saved model, a destination that cannot be written, a full disk


@pytest.fixture(scope="module")
def trained_store(tmp_path_factory):
    """A store holding one tiny no-filter run with its saved model."""
    root = tmp_path_factory.mktemp("trained") / "runs"
    result = _cli("run", "no-filter", *SMALL, "--out", root)
    assert result.exit_code == 0, result.output
    (run_id,) = [p.stem for p in (root / "records").glob("*.json")]
    return root, run_id


def test_an_attack_on_a_damaged_saved_model_is_one_line_naming_the_file(trained_store, tmp_path):
    import shutil

    root = tmp_path / "runs"
    shutil.copytree(trained_store[0], root)
    run_id = trained_store[1]
    weights = root / "models" / run_id / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    result = _cli("attack", run_id, "--suite", "quick", "--out", root)
    assert result.exit_code == 2
    assert "model.safetensors is damaged" in _one_line(result)
    (root / "models" / run_id / "config.json").write_text("{")
    result = _cli("attack", run_id, "--suite", "quick", "--out", root)
    assert result.exit_code == 2
    assert "config.json is not valid JSON" in _one_line(result)


@pytest.mark.parametrize("command", ["leaderboard", "report", "plot tradeoff"])
def test_a_destination_under_a_file_is_one_line(trained_store, tmp_path, command):
    (tmp_path / "a-file").write_text("not a folder\n")
    dest = tmp_path / "a-file" / "sub"
    result = _cli(*command.split(), "--out", trained_store[0], "--dest", dest)
    assert result.exit_code == 1
    assert "a-file" in _one_line(result)
    assert (tmp_path / "a-file").read_text() == "not a folder\n"


def test_a_failed_record_write_says_a_model_is_kept_only_when_one_was_trained(tmp_path):
    store = RunStore(tmp_path)
    model = tmp_path / "models" / "r"
    model.mkdir(parents=True)
    (tmp_path / "records").write_text("a file where the records folder goes\n")
    rec = {"run_id": "r", "model_path": str(model)}
    with pytest.raises(StoreWriteError) as err:
        store.write(rec)  # as an attack adds its results: it trained no model
    assert "kept" not in str(err.value)
    with pytest.raises(StoreWriteError, match="the trained model is kept in"):
        store.write(rec, trained=True)


def test_a_full_disk_while_writing_a_checkpoint_is_a_store_write_error(tmp_path):
    import resource
    import signal

    from unlearnbench.checkpoint import load, save_atomic

    path = tmp_path / "checkpoint.pt"
    save_atomic(path, {"format": 1, "step": 1, "w": torch.zeros(4)})
    before = path.read_bytes()
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a kill
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, hard))  # as a full disk, for files
    try:
        with pytest.raises(StoreWriteError, match="cannot write .*checkpoint.pt: the write failed"):
            save_atomic(path, {"format": 1, "step": 2, "w": torch.zeros(100_000)})
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)
    assert path.read_bytes() == before and load(path)["step"] == 1  # the last good one is kept
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temporary file left


def test_a_sweep_reports_a_failure_it_cannot_record_in_its_store(tmp_path, monkeypatch):
    import unlearnbench.runner as runner
    from unlearnbench.launch import run_one

    def fails(*args, **kwargs):
        raise RuntimeError("the run broke")

    monkeypatch.setattr(runner, "execute", fails)
    tmp_path.joinpath("failures").write_text("a file where the failures folder goes\n")
    cfg = runner.resolve_run_config("no-filter", "storyworld-lang", "tiny", 0, {"steps": "1"})
    outcome = run_one(cfg, "no-filter s0", RunStore(tmp_path))
    assert outcome["status"] == "failed" and "the run broke" in outcome["error"]
    assert "its traceback was not kept" in outcome["error"] and "traceback" not in outcome


# ------------------------------------------------------------------------------------------------
# Leftovers


def test_a_run_that_waited_for_an_identical_one_says_it_found_its_record(trained_store, tmp_path):
    import fcntl
    import shutil

    run_id, root = trained_store[1], tmp_path / "runs"
    lock = root / ".locks" / f"{run_id}.lock"
    lock.parent.mkdir(parents=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # an identical run, still training
    args = [sys.executable, "-m", "unlearnbench", "run", "no-filter", *SMALL, "--out", str(root)]
    second = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        said = ""
        while "waiting for another process" not in said:  # it has seen no record, and waits
            said = second.stderr.readline()
            assert said, "the second run ended without waiting"
        for part in ("records", "models"):  # the first run finishes: its record and model
            shutil.copytree(trained_store[0] / part, root / part)
    finally:
        lock.unlink()
        os.close(fd)
    out, err = second.communicate(timeout=600)
    assert second.returncode == 0, err
    assert "(existing record)" in " ".join(out.split()), out


def test_lock_files_left_by_killed_processes_are_removed(tmp_path):
    import fcntl

    store = RunStore(tmp_path)
    locks = tmp_path / ".locks"
    locks.mkdir()
    (locks / "killed.lock").write_text("")  # its process was killed holding it: nobody holds it
    held = locks / "running.lock"
    fd = os.open(held, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # another process's, still running
    try:
        with store.lock("mine", wait_message=False):
            assert not (locks / "killed.lock").exists()
        assert held.exists()
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------------------------
# The post-hoc check before a base trains; the hub


def test_the_check_before_a_base_trains_accepts_valid_post_hoc_runs():
    """The stand-in setup refuses only mistakes: valid rmu and checkpoint-transfer runs (the latter
    reads its base's snapshots) pass it."""
    from unlearnbench.data.benchmarks import load_benchmark
    from unlearnbench.data.pipeline import training_groups
    from unlearnbench.runner import check_setup, resolve_run_config

    sets = {"n_stories": "300", "steps": "1", "eval_blocks": "2", "context": "32"}
    base = resolve_run_config(
        "no-filter", "storyworld-lang", "tiny", 0, sets | {"snapshot_every": "1"}
    )
    state = torch.get_rng_state()
    for method in ("rmu", "checkpoint-transfer"):
        cfg = resolve_run_config(method, "storyworld-lang", "tiny", 0, sets)
        bench = load_benchmark(cfg.benchmark, cfg.benchmark_options)
        groups, _ = training_groups(bench, cfg.labels, cfg.seed, 32)
        check_setup(cfg, bench, groups, base)
    assert torch.equal(torch.get_rng_state(), state)  # the run that follows draws the same numbers


def test_a_run_needing_snapshots_its_default_base_will_not_record_trains_nothing(
    tmp_path, monkeypatch
):
    """checkpoint-transfer reads its base's snapshots: a base too short to record one is refused
    before it is trained, not after."""
    import unlearnbench.runner as runner
    from unlearnbench.registry import methods

    monkeypatch.setitem(methods.get("no-filter").train_defaults, "steps", 4)  # < snapshot_every

    def no_training(*args, **kwargs):
        raise AssertionError("trained")

    monkeypatch.setattr(runner, "train", no_training)
    sets = {"n_stories": "300", "steps": "1", "eval_blocks": "2", "context": "32"}
    cfg = runner.resolve_run_config("checkpoint-transfer", "storyworld-lang", "tiny", 0, sets)
    with pytest.raises(ConfigError, match="recorded no snapshots with a forget loss"):
        runner.execute(cfg, RunStore(tmp_path), progress=False)
    assert not list(tmp_path.iterdir())


def test_importing_gpt_neo_asks_the_hub_nothing_unless_asked():
    pytest.importorskip("kernels")
    code = "import unlearnbench.models.build"
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    env.pop("USE_HUB_KERNELS", None)
    quiet = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert quiet.returncode == 0, quiet.stderr
    assert "publisher trust" not in quiet.stderr and "kernels-community" not in quiet.stderr
    code = (
        "import unlearnbench.models.build, transformers.utils.import_utils as u;"
        "print(u.is_flash_attn_kernel_fallback_available.__module__)"
    )
    asked = subprocess.run(
        [sys.executable, "-c", code],
        env=env | {"USE_HUB_KERNELS": "1"},
        capture_output=True,
        text=True,
    )
    assert asked.stdout.strip() == "transformers.utils.import_utils", asked.stderr  # its own
