"""A run killed with SIGKILL mid-training and resumed with `--resume` ends with the same metrics
as the same run never interrupted; a corrupt checkpoint is a one-line error."""

import os
import signal
import subprocess
import sys
import time

import torch
from typer.testing import CliRunner

from unlearnbench.cli import app
from unlearnbench.results.store import RunStore
from unlearnbench.runner import execute, resolve_run_config

SETS = {
    "steps": "40",
    "n_stories": "300",
    "eval_blocks": "4",
    "batch_size": "4",
    "micro_batch_size": "2",
    "context": "32",
    "warmup_steps": "5",
    "save_model": "false",
    "checkpoint_every": "4",
    "recall": "0.7",  # forget, retain and unlabeled blocks in the same batches
}


def _cli_args(store):
    args = ["-m", "unlearnbench", "run", "sgtm", "--model", "tiny", "--out", str(store), "--quiet"]
    for k, v in SETS.items():
        args += ["--set", f"{k}={v}"]
    return args


def test_sigkilled_run_resumes_to_the_uninterrupted_result(tmp_path):
    cfg = resolve_run_config("sgtm", "storyworld-lang", "tiny", 0, SETS)
    killed = RunStore(tmp_path / "killed")
    ckpt = killed.checkpoint_path(cfg.run_id)
    # one thread in both processes: the same kernels, so the results can be compared exactly
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, *_cli_args(killed.root)], env=env)
    try:
        deadline = time.monotonic() + 240
        while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ckpt.exists(), "the run never wrote a checkpoint"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert not killed.exists(cfg.run_id), "the run finished before it was killed"
    step = torch.load(ckpt, weights_only=True)["step"]
    assert 0 < step < int(SETS["steps"])

    try:
        resumed = execute(cfg, killed, progress=False, resume=True)
        reference = execute(cfg, RunStore(tmp_path / "whole"), progress=False)
    finally:
        torch.set_num_threads(threads)
    assert resumed["resumed_from_step"] >= step
    assert not ckpt.exists(), "a finished run removes its checkpoint"
    assert reference["resumed_from_step"] == 0
    assert resumed["metrics"] == reference["metrics"]
    assert [h["loss"] for h in resumed["history"]] == [h["loss"] for h in reference["history"]]
    assert resumed["tokens_by_split"] == reference["tokens_by_split"]


def test_corrupt_checkpoint_is_a_one_line_error(tmp_path):
    cfg = resolve_run_config("sgtm", "storyworld-lang", "tiny", 0, SETS)
    store = RunStore(tmp_path / "runs")
    path = store.checkpoint_path(cfg.run_id)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"PK\x03\x04 not a checkpoint at all")
    args = [a for a in _cli_args(store.root)[2:]] + ["--resume"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = [x for x in result.output.strip().splitlines() if x.strip()]
    assert len(lines) == 1 and "corrupt or unreadable" in lines[0], result.output
    assert not store.exists(cfg.run_id)
