"""A curriculum in the block sampler (no-filter's `forget_after`), model snapshots during training,
and checkpoint-transfer choosing its checkpoint from the base run's snapshots."""

import pytest
import torch
from helpers import groups

from unlearnbench import runner
from unlearnbench.config import ConfigError
from unlearnbench.methods.checkpoint_transfer import choose_snapshot
from unlearnbench.methods.no_filter import forget_after_curriculum
from unlearnbench.models.build import load_model
from unlearnbench.registry import methods
from unlearnbench.results.store import RunStore
from unlearnbench.training import BlockSampler, Objective

TINY = {"n_stories": 200, "context": 32, "eval_blocks": 2, "batch_size": 4}


def _draws(sampler, steps, total, batch=4):
    out = []
    for step in steps:
        sampler.set_step(step, total)
        out.append({gi: b.clone() for gi, b in sampler.next_batch(batch).items()})
    return out


def test_forget_blocks_enter_only_after_the_set_fraction():
    data = groups(8, 8)  # group 0 forget-labeled, group 1 retain-labeled
    obj = Objective(model=None, curriculum=forget_after_curriculum(0.5))
    draws = _draws(BlockSampler(data, obj, seed=0), range(10), 10)
    assert all(set(d) == {1} for d in draws[:5])  # steps 0..4: retain only
    assert any(0 in d for d in draws[5:])  # from step 5 on the forget blocks are drawn
    seen = torch.cat([d[0] for d in draws[5:] if 0 in d])
    assert all(any(torch.equal(r, b) for b in data[0].blocks) for r in seen)


@pytest.mark.parametrize("cut", [3, 7])  # before and after the curriculum changes the pools
def test_curriculum_sampler_resumes_exactly(cut):
    data = groups(8, 8)
    obj = Objective(model=None, curriculum=forget_after_curriculum(0.5))
    whole = _draws(BlockSampler(data, obj, seed=0), range(12), 12)
    first = BlockSampler(data, obj, seed=0)
    _draws(first, range(cut), 12)
    state = first.state_dict()
    resumed = BlockSampler(data, obj, seed=0)
    resumed.load_state_dict(state)
    rest = _draws(resumed, range(cut, 12), 12)
    for a, b in zip(whole[cut:], rest, strict=True):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_new_options_leave_earlier_run_ids_alone():
    plain = runner.resolve_run_config("no-filter", "storyworld-lang", "tiny", 0, {})
    assert plain.method_options == {}  # forget_after at its default is not part of the config
    snap = runner.resolve_run_config(
        "no-filter", "storyworld-lang", "tiny", 0, {"snapshot_every": 5}
    )
    assert snap.run_id == plain.run_id  # snapshots change files, not the run
    late = runner.resolve_run_config(
        "no-filter", "storyworld-lang", "tiny", 0, {"forget_after": 0.5}
    )
    assert late.method_options == {"forget_after": 0.5} and late.run_id != plain.run_id
    with pytest.raises(ConfigError):
        runner.resolve_run_config("no-filter", "storyworld-lang", "tiny", 0, {"snapshot_every": -1})


def test_choose_snapshot_takes_the_latest_still_near_the_first():
    snaps = [
        {"step": 10, "forget_loss": 5.0},
        {"step": 30, "forget_loss": 4.2},  # learned the forget data: too low
        {"step": 20, "forget_loss": 4.6},  # within 10% of 5.0
        {"step": 40, "forget_loss": 5.5},  # higher than the first: still ignorant
    ]
    assert choose_snapshot(snaps, 0.1)["step"] == 40
    assert choose_snapshot(snaps[:3], 0.1)["step"] == 20
    assert choose_snapshot(snaps[:3], 0.0)["step"] == 10


@pytest.fixture
def short_no_filter(monkeypatch):
    spec = methods.get("no-filter")
    monkeypatch.setitem(spec.train_defaults, "steps", 4)
    monkeypatch.setitem(spec.train_defaults, "warmup_steps", 0)


def test_snapshots_are_saved_recorded_and_chosen_by_checkpoint_transfer(tmp_path, short_no_filter):
    store = RunStore(tmp_path)
    sets = TINY | {"forget_after": 0.5, "snapshot_every": 2}
    base = runner.execute(
        runner.resolve_run_config("no-filter", "storyworld-lang", "tiny", 0, sets), store, False
    )
    snaps = base["metrics"]["snapshots"]
    assert [s["step"] for s in snaps] == [2, 4]
    for s in snaps:
        assert s["path"].endswith(f"snapshots/step-{s['step']}") and s["forget_loss"] > 0
        assert {"retain_loss", "adjacent_loss"} <= set(s)
        load_model(s["path"])  # plain HF format, kept beside the final model
    load_model(base["model_path"])
    # the step-4 snapshot is the final model: its losses are the record's pre-finalize losses
    assert snaps[-1]["forget_loss"] == pytest.approx(base["metrics"]["pre_finalize"]["forget_loss"])

    cfg = runner.resolve_run_config(
        "checkpoint-transfer",
        "storyworld-lang",
        "tiny",
        0,
        TINY | {"base": base["model_path"], "steps": 1, "checkpoint_tolerance": 0.5},
    )
    record = runner.execute(cfg, store, progress=False)
    chosen = record["metrics"]["checkpoint"]
    want = choose_snapshot(snaps, 0.5)
    assert chosen["step"] == want["step"] and chosen["path"] == want["path"]
    assert chosen["snapshot_steps"] == [2, 4]


def test_checkpoint_transfer_without_snapshots_says_how_to_make_them(tmp_path, short_no_filter):
    store = RunStore(tmp_path)
    cfg = runner.resolve_run_config(
        "checkpoint-transfer", "storyworld-lang", "tiny", 0, TINY | {"steps": 1}
    )
    with pytest.raises(ConfigError, match="forget_after=0.5 --set snapshot_every"):
        runner.execute(cfg, store, progress=False)
