"""The run store under concurrency: parallel writer processes lose nothing and corrupt nothing, and
a reader never sees a partial record."""

import json
import multiprocessing as mp
from pathlib import Path

from unlearnbench.results.store import RunStore

WRITERS = 4
PER_WRITER = 20


def _record(run_id: str, writer: int, n: int) -> dict:
    data = [writer * 1000 + n + k for k in range(2000)]  # ~15 kB: more than one write() call
    return {"run_id": run_id, "writer": writer, "n": n, "data": data, "checksum": sum(data)}


def _write_many(root: str, writer: int, start) -> None:
    store = RunStore(root)
    start.wait()
    for n in range(PER_WRITER):
        store.write(_record(f"own-w{writer}-{n}", writer, n))  # a record of its own
        store.write(_record("shared", writer, n))  # the same record rewritten by everyone


def _whole(record: dict) -> bool:
    return sum(record["data"]) == record["checksum"] and len(record["data"]) == 2000


def test_parallel_writers_lose_nothing_and_readers_see_whole_records(tmp_path):
    ctx = mp.get_context("fork")
    start = ctx.Event()
    procs = [
        ctx.Process(target=_write_many, args=(str(tmp_path), w, start)) for w in range(WRITERS)
    ]
    for p in procs:
        p.start()
    store = RunStore(tmp_path)
    start.set()
    reads = 0
    while any(p.is_alive() for p in procs):
        if store.exists("shared"):
            assert _whole(store.load("shared")), "a reader saw a partial shared record"
            reads += 1
        for record in store.records():
            assert _whole(record), f"partial record {record.get('run_id')}"
    for p in procs:
        p.join()
        assert p.exitcode == 0
    assert reads > 0, "the reader never overlapped the writers"
    own = {p.stem for p in (tmp_path / "records").glob("own-*.json")}
    assert own == {f"own-w{w}-{n}" for w in range(WRITERS) for n in range(PER_WRITER)}
    for path in (tmp_path / "records").glob("*.json"):
        assert _whole(json.loads(path.read_text())), path
    last = store.load("shared")
    assert last["n"] == PER_WRITER - 1, "the shared record is some writer's last version"
    leftovers = [p.name for p in (tmp_path / "records").iterdir() if p.name.endswith(".tmp")]
    assert not leftovers, f"temporary files left behind: {leftovers}"


# ------------------------------------------------------------------------------------------------
# A store shared by users and processes: unreadable records are named, writes keep the umask,
# killed saves leave nothing for long, identical runs train once, a full disk is one line.

TINY = {"n_stories": "300", "steps": "2", "eval_blocks": "2", "context": "32"}
TINY_ARGS = [a for k, v in TINY.items() for a in ("--set", f"{k}={v}")] + ["--quiet"]


def _cli(*args):
    from typer.testing import CliRunner

    from unlearnbench.cli import app

    return CliRunner().invoke(app, list(args))


def test_unreadable_records_are_named_in_one_warning_line(tmp_path):
    from results_fixtures import record

    store = RunStore(tmp_path)
    for seed in (0, 1, 2):
        store.write(record("no-filter", seed, forget=2.0 + seed, retain=2.0))
    truncated = store.record_path("no-filter__storyworld-topic__tiny__s2__r1.0")
    truncated.write_text(truncated.read_text()[:100])
    (tmp_path / "records" / "empty.json").write_text("")
    for command in ("leaderboard", "report"):
        result = _cli(command, "--out", str(tmp_path))
        assert result.exit_code == 0, result.output
        warnings = [x for x in result.output.splitlines() if x.startswith("warning:")]
        assert len(warnings) == 1, result.output
        assert "skipped 2 unreadable record(s)" in warnings[0]
        assert truncated.name in warnings[0] and "empty.json (empty file)" in warnings[0]
    assert len(store.records()) == 2 and len(store.unreadable) == 2


def test_records_models_and_checkpoints_get_the_umask_permissions(tmp_path):
    import os

    import torch
    from helpers import tiny_gpt_neo

    from unlearnbench.checkpoint import save_atomic
    from unlearnbench.models.build import save_model

    old = os.umask(0o022)
    try:
        RunStore(tmp_path).write({"run_id": "r"})
        save_atomic(tmp_path / "ckpt.pt", {"step": 1, "w": torch.zeros(2)})
        save_model(tiny_gpt_neo(), None, tmp_path / "models" / "r")
        os.umask(0o077)  # a private store stays private
        RunStore(tmp_path).write({"run_id": "private"})
    finally:
        os.umask(old)
    mode = lambda p: p.stat().st_mode & 0o777  # noqa: E731
    assert mode(tmp_path / "records" / "r.json") == 0o644
    assert mode(tmp_path / "ckpt.pt") == 0o644
    assert mode(tmp_path / "models" / "r") == 0o755
    assert mode(tmp_path / "models" / "r" / "model.safetensors") == 0o644
    assert mode(tmp_path / "records" / "private.json") == 0o600


def test_a_killed_save_leaves_nothing_after_the_next_save(tmp_path):
    from helpers import tiny_gpt_neo

    from unlearnbench.models.build import save_model

    models = tmp_path / "models"
    killed = [models / ".r.ab3_k9zq", models / ".r.saving-x1y2z3w4"]  # both temp name styles
    kept = [models / ".r.snapshots", models / ".other.ab3_k9zq", models / "r2"]
    for d in killed + kept:
        (d / "partial").mkdir(parents=True)
    save_model(tiny_gpt_neo(), None, models / "r")
    assert (models / "r" / "config.json").is_file()
    assert not any(d.exists() for d in killed)
    assert all(d.exists() for d in kept), "only this model's temporary folders are removed"


def test_a_completed_run_leaves_no_checkpoint_folder_and_no_lock(tmp_path):
    result = _cli(
        "run", "no-filter", *TINY_ARGS, "--set", "checkpoint_every=1", "--out", str(tmp_path)
    )
    assert result.exit_code == 0, result.output
    # it held the run's checkpoints while training (step 1 of 2); no empty folder is left
    assert not (tmp_path / "checkpoints").exists()
    assert not (tmp_path / ".locks").exists()
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".")], "temporary files left"


def test_merging_an_evaluation_leaves_no_lock_file(tmp_path):
    from unlearnbench.suites import merge_eval

    store = RunStore(tmp_path)
    store.write({"run_id": "r"})
    (tmp_path / "records" / ".r.lock").write_text("")  # what attack left before
    merge_eval(store, "r", "probe", {"accuracy": 0.5}, None)
    assert store.load("r")["evals"] == {"probe": {"accuracy": 0.5}}
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == [
        "records",
        "records/r.json",
    ]


def test_a_second_identical_run_waits_for_the_first_and_reports_its_record(tmp_path):
    """The parent holds the run's lock (the first run, still training); the second run, another
    process, must wait (it says so) and then return the first's record without training."""
    import json
    import os
    import subprocess
    import sys

    from unlearnbench.runner import resolve_run_config

    cfg = resolve_run_config("no-filter", "storyworld-lang", "tiny", 0, TINY)
    store = RunStore(tmp_path)
    script = (
        "import json, sys\n"
        "from unlearnbench.results.store import RunStore\n"
        "from unlearnbench.runner import execute, resolve_run_config\n"
        f"cfg = resolve_run_config('no-filter', 'storyworld-lang', 'tiny', 0, {TINY!r})\n"
        f"record = execute(cfg, RunStore({str(tmp_path)!r}), progress=False)\n"
        "print(json.dumps(record.get('marker')))\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    with store.lock(cfg.run_id):
        second = subprocess.Popen(
            [sys.executable, "-c", script],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:
            said = second.stderr.readline()  # blocks until the second run waits (or exits)
            assert f"waiting for another process running {cfg.run_id}" in said, said
            store.write({"run_id": cfg.run_id, "marker": "the first run's record"})
        finally:
            if second.poll() is None and not said:
                second.kill()
    out, err = second.communicate(timeout=300)
    assert second.returncode == 0, err
    assert json.loads(out.strip().splitlines()[-1]) == "the first run's record"
    assert not (tmp_path / "models").exists() and not (tmp_path / ".locks").exists()


def test_a_full_disk_at_the_end_is_one_line_and_keeps_the_trained_model(tmp_path, monkeypatch):
    import errno
    import os

    import unlearnbench.results.store as store_module

    real_fsync = os.fsync

    def fsync(fd):  # the record (a .json temporary file) cannot be written; the model could
        if ".json." in os.readlink(f"/proc/self/fd/{fd}").rsplit("/", 1)[-1]:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(store_module.os, "fsync", fsync)
    result = _cli("run", "no-filter", *TINY_ARGS, "--out", str(tmp_path))
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    lines = [x for x in result.output.strip().splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    message = " ".join(result.output.split())
    assert "No space left on device" in message and "the trained model is kept in" in message
    (model,) = (tmp_path / "models").iterdir()
    assert (model / "model.safetensors").is_file() and str(model) in message
    assert not list((tmp_path / "records").glob("*.json*")), "no record, no temporary file"


def test_a_failed_model_save_is_one_line_and_leaves_no_partial_model(tmp_path, monkeypatch):
    import errno

    from transformers import GPTNeoForCausalLM

    def save_pretrained(self, path, **kwargs):
        (Path(path) / "model.safetensors").write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(GPTNeoForCausalLM, "save_pretrained", save_pretrained)
    result = _cli("run", "no-filter", *TINY_ARGS, "--out", str(tmp_path))
    assert result.exit_code == 1, result.output
    lines = [x for x in result.output.strip().splitlines() if x.strip()]
    assert len(lines) == 1 and "cannot save the model to" in lines[0], result.output
    assert "No space left on device" in " ".join(result.output.split())
    assert not list((tmp_path / "models").iterdir()) and not (tmp_path / "records").exists()
