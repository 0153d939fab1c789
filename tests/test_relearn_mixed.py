"""The default relearning attack keeps a small model whole: forget documents mixed about half and
half with retain+adjacent ones (the SGTM paper's protocol), over an lr grid that reaches low, full
and LoRA attackers. A model whose retain loss breaks under forget-only fine-tuning at every
setting of the old attack (no valid attack: the old suite measured catastrophic forgetting) is
validly attacked by the default one."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from toy_bilingual import CONTEXT, toy_benchmark, trained_model

import unlearnbench.evals.relearn as relearn
from unlearnbench.config import ConfigError
from unlearnbench.data import pipeline
from unlearnbench.evals import EvalContext

RECORD = {"seed": 0, "run_id": "x", "config": {"train": {"bf16": False}}}
# the test's size: budgets, evaluations, documents and blocks (the attack itself is the default)
SIZE = dict(budgets=(50, 100), eval_every=25, eval_blocks=4, n_docs=0, batch_size=8)


_GRID = {}


def grid_summary(ctx):
    """The default attack with every lr of both attackers run (one attack seed), once per module."""
    if "summary" not in _GRID:
        o = relearn.RelearnOptions(**SIZE, seeds=(0,), lr_search="grid")
        _GRID["summary"] = relearn.run(ctx, o).summary
    return _GRID["summary"]


@pytest.fixture(scope="module")
def filtered():
    """A never-exposed model (trained on the retain language only) and its evaluation context."""
    bench = toy_benchmark()
    model = trained_model(bench, splits=("retain",))
    blocks = pipeline.test_blocks(bench, CONTEXT, 4)
    return EvalContext(RECORD, bench, model, CONTEXT, blocks, store=None)


def test_forget_only_breaks_retain_where_the_mixed_default_attacks_validly(filtered):
    # the old suite's attack: forget documents only, lrs 1e-4 .. 1e-3, full fine-tuning
    old = relearn.RelearnOptions(
        **SIZE, lrs=(1e-4, 3e-4, 1e-3), seeds=(0,), modes=("full",), forget_fraction=1.0
    )
    s_old = relearn.run(filtered, old).summary
    at_100 = s_old["worst_case"][-1]
    assert at_100["forget_loss"] is None and len(at_100["excluded"]) == 3  # no valid attack

    # the default: half forget, half retain+adjacent; the whole grid (one attack seed for time)
    new = relearn.RelearnOptions(**SIZE, seeds=(0,), lr_search="grid")
    assert new.forget_fraction == 0.5 and new.modes == ("full", "lora")
    s_new = grid_summary(filtered)
    at_100 = s_new["worst_case"][-1]
    before = s_new["before"]["forget_loss"]
    assert at_100["forget_loss"] is not None, at_100  # validly attacked
    assert at_100["forget_loss"] < before - 3.0  # and it relearned (7.9 nats before)
    assert at_100["retain_loss"] <= s_new["before"]["retain_loss"] + new.retain_tolerance
    # every setting of both attackers was tried; the exclusions name theirs
    assert len(s_new["settings"]) == len(new.lrs) + len(new.lora_lrs)
    assert {e["mode"] for e in s_new["settings"]} == {"full", "lora"}
    assert all({"lr", "attack_seed", "mode"} <= set(e) for e in at_100["excluded"])


def test_descending_search_stops_at_the_first_lr_that_keeps_the_model_whole(filtered):
    grid = grid_summary(filtered)
    o = relearn.RelearnOptions(**SIZE, seeds=(0,))
    assert o.lr_search == "descending"  # the default
    s = relearn.run(filtered, o).summary
    ran = {(e["mode"], e["lr"]) for e in s["settings"]}
    # what the grid says the search must run: per attacker, from the highest lr down to the
    # first whose retain loss never broke the tolerance
    expected = set()
    for mode, lrs in (("full", o.lrs), ("lora", o.lora_lrs)):
        for lr in sorted(lrs, reverse=True):
            expected.add((mode, lr))
            entry = next(e for e in grid["settings"] if (e["mode"], e["lr"]) == (mode, lr))
            if entry["retain_broke_at"] is None:
                break
    assert ran == expected
    assert len(ran) < len(grid["settings"])  # it saved settings on this model
    # and on this model the lower lrs it skipped would not have changed the worst case
    for a, b in zip(s["worst_case"], grid["worst_case"], strict=True):
        assert a["forget_loss"] == pytest.approx(b["forget_loss"])


def test_a_lower_lr_runs_only_where_every_higher_one_broke(monkeypatch):
    """The search order with a stand-in fine-tuning: lrs above 2e-4 break the retain tolerance
    at step 5 of 10 (the points stop there) for attack seed 0 only."""
    ran = []

    def fake_fine_tune(model, groups, *, steps, lr, seed, mode, **_):
        ran.append((mode, seed, lr))
        last = 5 if (lr > 2e-4 and seed == 0) else steps
        return [(0, 0.0, {"retain": {"loss": 1.0}})] + [(last, lr, {"retain": {"loss": 1.0}})]

    monkeypatch.setattr(relearn, "fine_tune", fake_fine_tune)
    ctx = SimpleNamespace(record=RECORD, eos_id=0, device="cpu", progress=False)
    o = relearn.RelearnOptions(budgets=(10,), eval_every=5, seeds=(0, 1), modes=("full",))
    settings = relearn.attack_settings(o)
    relearn.grid_rows(
        ctx, None, [], None, 8, o, None, "relearn", settings=settings, descending=True
    )
    assert ran == [
        ("full", 0, 1e-3), ("full", 0, 3e-4), ("full", 0, 1e-4),  # seed 0: down to the first kept whole
        ("full", 1, 1e-3),  # seed 1: the highest kept the model whole
    ]  # fmt: skip
    ran.clear()
    relearn.grid_rows(ctx, None, [], None, 8, o, None, "relearn", settings=settings)
    assert len(ran) == 8  # without the search: every lr and seed


def test_settings_of_both_attackers_are_curves_of_their_own(filtered):
    o = relearn.RelearnOptions(
        budgets=(2,), eval_every=1, eval_blocks=2, n_docs=8, batch_size=2, seeds=(0,),
        lrs=(1e-3,), lora_lrs=(1e-3,),
    )  # fmt: skip
    result = relearn.run(filtered, o)
    modes = {r["mode"] for r in result.curves}
    assert modes == {"full", "lora"}
    # one curve per (lr, attack seed, mode): both attackers at lr 1e-3 are two settings
    curves = relearn.setting_curves(result.curves)
    assert sorted(curves) == [(1e-3, 0, "full"), (1e-3, 0, "lora")]
    # the same lr: the full attacker moves the model more than LoRA in its first steps
    assert curves[(1e-3, 0, "full")]["forget"][2] != curves[(1e-3, 0, "lora")]["forget"][2]


@pytest.mark.parametrize(
    "options, message",
    [
        ({"modes": ()}, "modes"),
        ({"modes": ("full", "qlora")}, "modes"),
        ({"lora_lrs": (0.0,)}, "learning rates"),
        ({"forget_fraction": 0.0}, "forget_fraction"),
        ({"lr_search": "random"}, "lr_search"),
    ],
)
def test_bad_attack_options_are_refused(options, message):
    with pytest.raises(ConfigError, match=message):
        relearn.RelearnOptions(**options)
