"""Bad input: every user mistake is one line on stderr, a non-zero exit, and no record written;
a diverging loss stops training naming the step and the last good checkpoint."""

import dataclasses

import pytest
import torch
from helpers import EOS, groups, tiny_gpt_neo
from typer.testing import CliRunner

from unlearnbench.checkpoint import Checkpointer
from unlearnbench.cli import app
from unlearnbench.config import TrainConfig
from unlearnbench.losses import lm_loss
from unlearnbench.training import Objective, train

SMALL = ["--set", "n_stories=300", "--set", "steps=1", "--set", "eval_blocks=2"]
SMALL += ["--set", "context=32", "--set", "save_model=false", "--quiet"]


def _run(tmp_path, *args):
    result = CliRunner().invoke(app, ["run", *args, "--out", str(tmp_path / "runs")])
    return result


def _records(tmp_path):
    return list((tmp_path / "runs" / "records").glob("*.json"))


@pytest.mark.parametrize(
    "args, expected",
    [
        (["sgtn"], "did you mean sgtm"),
        (["sgtm", "--model", "tinyy"], "did you mean tiny"),
        (["sgtm", "--benchmark", "storyworld-lan"], "did you mean storyworld-lang"),
        (["sgtm", "--set", "lrr=0.1"], "did you mean lr"),
        (["sgtm", "--set", "steps=many"], "is not a valid int"),
        (["sgtm", "--set", "bf16=maybe"], "is not a valid bool"),
        (["sgtm", "--set", "recall=1.5"], "recall must be in [0, 1]"),
        (["sgtm", "--set", "lr=-1"], "lr must be > 0"),
        (["sgtm", "--set", "checkpoint_every=-2"], "checkpoint_every must be >= 0"),
        (["sgtm", "--set", "device=tpu"], "device must be cpu, cuda"),
        (["sgtm", "--set", "steps"], "expects key=value"),
    ],
)
def test_config_mistakes_are_one_line_errors(tmp_path, args, expected):
    result = _run(tmp_path, *args)
    assert result.exit_code == 2, result.output
    lines = [x for x in result.output.strip().splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert expected in " ".join(result.output.split()), result.output
    assert not _records(tmp_path)


@pytest.mark.parametrize(
    "args, expected",
    [
        # a forget dimension larger than the layer (tiny: d_mlp 512)
        (["sgtm", "--set", "forget_mlp_dim=4096", *SMALL], "forget_mlp_dim must be in [0, 512)"),
        (["sgtm", "--set", "forget_heads=64", *SMALL], "forget_heads must be in [0, 8)"),
        # an empty forget split: the benchmark refuses a world with no Spanish stories
        (["sgtm", "--set", "spanish_fraction=0", *SMALL], "spanish_fraction must be in (0, 1)"),
        (["sgtm", "--set", "n_stories=2", *SMALL[2:]], "has no"),
    ],
)
def test_data_and_model_mistakes_are_one_line_errors(tmp_path, args, expected):
    result = _run(tmp_path, *args)
    assert result.exit_code == 2, result.output
    lines = [x for x in result.output.strip().splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert expected in " ".join(result.output.split()), result.output
    assert not _records(tmp_path)


def test_missing_base_model_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    missing = tmp_path / "no-such-model"
    result = _run(tmp_path, "rmu", "--set", f"base={missing}", *SMALL)
    assert result.exit_code == 2, result.output
    assert "cannot load base model" in result.output
    assert not _records(tmp_path)


def test_recall_zero_leaves_no_forget_labels_for_a_plan_that_needs_them():
    data = [g for g in groups() if g.label == "retain"]
    obj = Objective(model=tiny_gpt_neo(), batch_plan={"forget": 0.5, "retain": 0.5})
    with pytest.raises(ValueError, match="no training blocks for 'forget'"):
        train(obj, data, TrainConfig(steps=1, batch_size=4), 0, EOS, progress=False)


def test_nan_loss_stops_naming_the_step_and_the_last_good_checkpoint(tmp_path):
    calls = {"n": 0}

    def loss(model, inputs, targets, label):
        calls["n"] += 1
        out = lm_loss(model, inputs, targets)
        return out * float("nan") if calls["n"] > 5 else out  # one micro-batch per step

    cfg = TrainConfig(steps=10, batch_size=4, micro_batch_size=4, warmup_steps=0)
    path = tmp_path / "ckpt" / "checkpoint.pt"
    ckpt = Checkpointer(path, every=2, resume=False, run_key="r")
    obj = Objective(model=tiny_gpt_neo(), loss=loss, trains_on=lambda g: g.label == "retain")
    with pytest.raises(FloatingPointError) as err:
        train(obj, groups(), cfg, 0, EOS, progress=False, checkpoint=ckpt)
    message = str(err.value)
    assert "at step 6" in message and f"{path} (step 4)" in message, message
    assert torch.load(path, weights_only=True)["step"] == 4


def test_infinite_loss_is_reported_by_the_cli_without_a_record(tmp_path, monkeypatch):
    import unlearnbench.runner as runner

    def diverge(*args, **kwargs):
        raise FloatingPointError("training diverged: loss inf at step 3; no checkpoint was written")

    monkeypatch.setattr(runner, "train", diverge)
    result = _run(tmp_path, "no-filter", *SMALL)
    assert result.exit_code != 0
    lines = [x for x in result.output.strip().splitlines() if x.strip()]
    assert len(lines) == 1 and "at step 3" in lines[0], result.output
    assert not _records(tmp_path)


def test_resume_does_not_change_an_uninterrupted_single_process_run(tmp_path):
    """A Checkpointer that writes but never resumes leaves the run bit-identical."""
    cfg = TrainConfig(steps=4, batch_size=4, micro_batch_size=2, warmup_steps=1)
    a, b = tiny_gpt_neo(), tiny_gpt_neo()
    train(Objective(model=a), groups(), cfg, 0, EOS, progress=False)
    ckpt = Checkpointer(tmp_path / "c.pt", every=1, resume=False, run_key="r")
    train(Objective(model=b), groups(), cfg, 0, EOS, progress=False, checkpoint=ckpt)
    for (name, p), q in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q), name


def test_resume_in_process_continues_exactly(tmp_path):
    """Train 3 of 6 steps, checkpoint, rebuild everything, resume: equal to 6 steps at once."""
    cfg = TrainConfig(steps=6, batch_size=4, micro_batch_size=2, warmup_steps=2)
    full = tiny_gpt_neo()
    ref = train(Objective(model=full), groups(n_unlabeled=4), cfg, 0, EOS, progress=False)

    class Stop(Exception):
        pass

    def stop_after_three(step, total):
        if step == 3:
            raise Stop

    path = tmp_path / "c.pt"
    first = Objective(model=tiny_gpt_neo(), on_step=stop_after_three)
    with pytest.raises(Stop):
        train(
            first,
            groups(n_unlabeled=4),
            cfg,
            0,
            EOS,
            progress=False,
            checkpoint=Checkpointer(path, every=3, resume=False, run_key="r"),
        )
    again = tiny_gpt_neo(seed=5)  # a different init: everything must come from the checkpoint
    res = train(
        Objective(model=again),
        groups(n_unlabeled=4),
        cfg,
        0,
        EOS,
        progress=False,
        checkpoint=Checkpointer(path, every=3, resume=True, run_key="r"),
    )
    assert res.resumed_from == 3
    assert [h["loss"] for h in res.history] == [h["loss"] for h in ref.history]
    for (name, p), q in zip(full.named_parameters(), again.parameters(), strict=True):
        assert torch.equal(p, q), name
    assert dataclasses.asdict(res)["tokens_seen"] == ref.tokens_seen
