"""Experiment tracking: the training curves, final metrics and attack curves written to
TensorBoard (read back from its event files) and to W&B offline; a missing package is one red line."""

from __future__ import annotations

import importlib.util
import json
import time

import pytest
from typer.testing import CliRunner

import unlearnbench.tracking as tracking
from unlearnbench.cli import app

SMALL = [
    "--set", "n_stories=300", "--set", "vocab_size=300", "--set", "context=32",
    "--set", "steps=4", "--set", "batch_size=4", "--set", "eval_blocks=2", "--set", "warmup_steps=1",
    "--set", "eval_every=2",
]  # fmt: skip
ATTACK = (
    "evals:\n  - eval: relearn\n    options: {budgets: [2], lrs: [0.001, 0.01], seeds: [0],"
    " n_docs: 8, eval_every: 1, eval_blocks: 2}\n"
)


def _scalars(logdir) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series in a TensorBoard log directory (all its event files)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    series: dict[str, list[tuple[int, float]]] = {}
    for f in sorted(logdir.glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(f), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            series.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return series


def _same(got: list, want: list) -> None:
    """Two (step, value) series: the same steps, values equal up to float32 rounding."""
    assert [s for s, _ in got] == [s for s, _ in want]
    assert [v for _, v in got] == pytest.approx([v for _, v in want], rel=1e-6)


def test_tensorboard_gets_training_curves_metrics_and_attack_curves(tmp_path):
    pytest.importorskip("tensorboard")
    out = tmp_path / "store"
    res = CliRunner().invoke(
        app, ["run", "sgtm", "--out", str(out), "--json", "--log", "tensorboard"] + SMALL
    )
    assert res.exit_code == 0, res.output
    record = json.loads(res.stdout)
    logdir = out / "tensorboard" / record["run_id"]
    series = _scalars(logdir)
    # the per-step curve is the record's history, step for step
    _same(series["train/loss"], [(h["step"], h["loss"]) for h in record["history"]])
    assert [s for s, _ in series["train/lr"]] == [1, 2, 3, 4]
    evals = [h for h in record["history"] if "eval" in h]  # measured at step 2 (eval_every)
    assert evals
    _same(series["train/eval/forget_loss"], [(h["step"], h["eval"]["forget"]) for h in evals])
    m = record["metrics"]
    _same(series["metrics/forget_loss"], [(4, m["forget_loss"])])
    assert series["metrics/pre_finalize/forget_loss"][0][1] == pytest.approx(
        m["pre_finalize"]["forget_loss"]
    )
    # an attack suite adds its curves (one per lr setting) and headline metrics
    suite = tmp_path / "attack.yaml"
    suite.write_text(ATTACK)
    res = CliRunner().invoke(
        app,
        [
            "attack",
            record["run_id"],
            "--suite",
            str(suite),
            "--out",
            str(out),
            "--log",
            "tensorboard",
        ],
    )
    assert res.exit_code == 0, res.output
    stored = json.loads((out / "records" / f"{record['run_id']}.json").read_text())
    rows = stored["curves"]["attack/relearn"]
    series = _scalars(logdir)
    for lr in (0.001, 0.01):
        tag = f"attack/relearn/lr={lr:g},attack_seed=0,mode=full/forget_loss"
        want = [
            (r["step"], r["loss"])
            for r in rows  # the full fine-tuning attacker's (the LoRA one has series of its own)
            if r["lr"] == lr and r["split"] == "forget" and r["mode"] == "full"
        ]
        _same(sorted(series[tag]), sorted(want))
    headline = {h["name"]: h["value"] for h in stored["evals"]["attack/relearn"]["headline"]}
    logged = {
        t.split("/", 2)[2]: v
        for t, v in series.items()
        if t.count("/") == 2 and t.startswith("attack/relearn/")
    }
    for name, value in headline.items():
        if value is not None:
            _same(logged[name], [(0, value)])


def test_wandb_offline_writes_a_run_without_a_network(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    with tracking.Tracker(("wandb",), tmp_path, "r1", "train", {"seed": 0}) as t:
        for step in (1, 2, 3):
            t.log_step({"step": step, "loss": 4.0 - step, "lr": 1e-3})
        t.log_metrics({"metrics": {"forget_loss": 5.0, "pre_finalize": {"forget_loss": 4.0}}})
    runs = list((tmp_path / "wandb").glob("offline-run-*/*.wandb"))
    assert len(runs) == 1, list((tmp_path / "wandb").iterdir())
    # W&B's service process writes the file; on a loaded machine its last records can land after
    # `finish()` returns, so read until the run's closing `exit` record is there
    deadline = time.monotonic() + 60
    while True:
        kinds, history, summary = _wandb_records(runs[0])
        if "exit" in kinds or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    got = [(h["train/step"], h["train/loss"]) for h in history if "train/loss" in h]
    assert got == [(1, 3.0), (2, 2.0), (3, 1.0)], kinds
    assert summary["metrics/forget_loss"] == 5.0
    assert summary["metrics/pre_finalize/forget_loss"] == 4.0


def _wandb_records(path) -> tuple[list[str], list[dict], dict]:
    """The record types in order, the history rows and the final summary of an offline W&B run
    file (a LevelDB-style log of `Record` protobufs: 32 KiB blocks of chunks, each with a 7-byte
    header)."""
    import struct

    from wandb.proto import wandb_internal_pb2 as pb

    data, block, pos, chunk = path.read_bytes(), 32768, 7, b""  # 7: the file's own header
    kinds, history, summary = [], [], {}
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _crc, n, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if pos + 7 + n > len(data):  # a record still being written
            break
        chunk, pos = chunk + data[pos + 7 : pos + 7 + n], pos + 7 + n
        if kind not in (1, 4):  # FIRST or MIDDLE: the record goes on in the next chunk
            continue
        record = pb.Record()
        record.ParseFromString(chunk)
        chunk = b""
        which = record.WhichOneof("record_type")
        kinds.append(which)
        items = {"history": record.history.item, "summary": record.summary.update}.get(which, [])
        # a key with a "/" is stored split into its parts
        values = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in items}
        if which == "history":
            history.append(values)
        elif which == "summary":
            summary |= values
    return kinds, history, summary


def test_unknown_or_missing_tracker_is_one_red_line_before_training(tmp_path, monkeypatch):
    res = CliRunner().invoke(app, ["run", "no-filter", "--out", str(tmp_path), "--log", "mlflow"])
    assert res.exit_code == 2 and "unknown tracker 'mlflow'" in res.stderr
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "tensorboard" else real(n, *a)
    )
    res = CliRunner().invoke(
        app, ["run", "no-filter", "--out", str(tmp_path), "--log", "tensorboard"]
    )
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.exit_code == 2 and len(lines) == 1, res.output
    assert 'pip install "unlearnbench[track]"' in lines[0]
    assert not (tmp_path / "records").exists()


def test_wandb_mode_follows_the_users_setting_and_login(tmp_path):
    netrc = tmp_path / "netrc"
    missing = {"NETRC": str(tmp_path / "none"), "HOME": str(tmp_path)}
    assert tracking.wandb_mode({**missing, "WANDB_MODE": "online"}) == "online"
    assert tracking.wandb_mode({**missing, "WANDB_MODE": "disabled"}) == "disabled"
    assert tracking.wandb_mode(missing) == "offline"  # not logged in: no network needed
    assert tracking.wandb_mode({**missing, "WANDB_API_KEY": "k" * 40}) == "online"
    netrc.write_text("machine api.wandb.ai\n  login user\n  password " + "k" * 40 + "\n")
    assert tracking.wandb_mode({"NETRC": str(netrc)}) == "online"  # after `wandb login`
    assert tracking.wandb_mode({"NETRC": str(netrc), "WANDB_MODE": "offline"}) == "offline"


def test_tensorboard_gets_the_runs_hyperparameters(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    config = {"method": "sgtm", "seed": 3, "train": {"lr": 0.001, "betas": [0.9, 0.95]}}
    with tracking.Tracker(("tensorboard",), tmp_path, "r1", "train", config) as tracker:
        tracker.log_metrics({"metrics": {"forget_loss": 3.0, "retain_loss": 1.0}})
    got, metrics = {}, set()
    for f in (tmp_path / "tensorboard" / "r1").glob("events.out.tfevents.*"):
        acc = EventAccumulator(str(f))
        acc.Reload()
        try:
            contents = acc.PluginTagToContent("hparams").values()
        except KeyError:  # the scalars' own event file
            continue
        for content in contents:
            data = plugin_data_pb2.HParamsPluginData.FromString(content)
            for k, v in data.session_start_info.hparams.items():
                got[k] = v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind"))
            metrics |= {m.name.tag for m in data.experiment.metric_infos}
    assert got == {"method": "sgtm", "seed": 3, "train.lr": 0.001, "train.betas": "[0.9, 0.95]"}
    assert metrics == {"hparams/forget_loss", "hparams/retain_loss"}
