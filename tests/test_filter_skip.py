"""The SGTM reference's filter (trainer.py:537-540): single-source steps drawn as forget are
skipped (no forward, backward or update, no tokens) while the lr scheduler advances; ours, the
default, fills every step with kept blocks."""

import dataclasses

import pytest
import torch
from helpers import EOS, groups, random_blocks, tiny_gpt_neo
from torch.optim.optimizer import register_optimizer_step_post_hook

from unlearnbench import runner
from unlearnbench.config import ConfigError, TrainConfig
from unlearnbench.data.packing import BlockGroup
from unlearnbench.methods import RunContext
from unlearnbench.methods.filter import FilterOptions
from unlearnbench.methods.filter import setup as filter_setup
from unlearnbench.training import BlockSampler, Objective, train

# 12 steps of 1 block over 12 selected blocks: the single-source urn is read exactly once, so
# exactly 4 steps (the forget blocks' share) are drawn as forget; warmup and cosine move the lr
CFG = TrainConfig(steps=12, batch_size=1, micro_batch_size=1, lr=1e-2, warmup_steps=3)
DATA = groups(n_forget=4, n_retain=4, n_unlabeled=4)
T = DATA[0].blocks.shape[1] - 1


def filter_objective(model, **options):
    ctx = RunContext(config=None, benchmark=None, model=model)
    return filter_setup(ctx, FilterOptions(**options))


def rows(blocks) -> set[tuple]:
    """The blocks' input rows (their first T tokens), as the forward pass sees them."""
    return {tuple(r.tolist()) for r in blocks[:, :-1]}


def run(objective, data=DATA, cfg=CFG):
    """Train `objective` on `data`; returns (result, optimizer steps, forward inputs, params per step)."""
    model = objective.model
    updates, inputs, states = [], [], []
    hook = register_optimizer_step_post_hook(lambda opt, args, kwargs: updates.append(1))
    pre = model.register_forward_pre_hook(
        lambda mod, args, kwargs: inputs.append(kwargs.get("input_ids", args[0] if args else None)),
        with_kwargs=True,
    )
    try:
        result = train(
            objective,
            data,
            cfg,
            0,
            EOS,
            progress=False,
            on_log=lambda entry: states.append([p.detach().clone() for p in model.parameters()]),
        )
    finally:
        hook.remove()
        pre.remove()
    return result, len(updates), inputs, states


def test_skipped_forget_steps_make_no_update_and_count_no_tokens_while_the_lr_advances():
    before = [p.detach().clone() for p in tiny_gpt_neo().parameters()]
    obj = filter_objective(tiny_gpt_neo(), sampling="single_source", skip_forget_steps=True)
    result, updates, inputs, states = run(obj)
    skipped = [h["step"] for h in result.history if h.get("skipped")]

    # the forget blocks' share of the draws is skipped, the rest are updates
    assert len(skipped) == 4, "4 of the 12 selected blocks are forget: 4 steps drawn as forget"
    assert updates == CFG.steps - len(skipped) == 8
    assert all(h["loss"] is None for h in result.history if h.get("skipped"))
    for step, (prev, now) in enumerate(zip([before] + states, states, strict=False), start=1):
        same = all(torch.equal(a, b) for a, b in zip(prev, now, strict=True))
        assert same == (step in skipped), f"step {step}: parameters moved iff not skipped"

    # no forget block entered a forward pass; the kept blocks did, one per update
    assert len(inputs) == updates
    forget_rows = {tuple(r.tolist()) for r in DATA[0].blocks[:, :-1]}
    seen_rows = {tuple(r.tolist()) for x in inputs for r in x}
    assert not seen_rows & forget_rows, "a forget-labeled block was trained on"

    # tokens: the updates' blocks only; the forget split never counted
    assert result.tokens_seen == updates * CFG.batch_size * T
    assert "forget" not in result.tokens_by_split

    # the scheduler stepped on skipped steps too: the same lr at every step as a run without skips
    full, full_updates, _, _ = run(filter_objective(tiny_gpt_neo(), sampling="single_source"))
    assert full_updates == CFG.steps
    assert [h["lr"] for h in result.history] == [h["lr"] for h in full.history]
    assert result.history[-1]["lr"] == full.history[-1]["lr"] < CFG.lr


def test_filter_by_default_fills_every_step_with_kept_blocks():
    obj = filter_objective(tiny_gpt_neo())
    assert obj.sampling == "mixed" and not obj.skip_labels
    result, updates, inputs, _ = run(obj)
    assert updates == CFG.steps and not any(h.get("skipped") for h in result.history)
    assert result.tokens_seen == CFG.steps * CFG.batch_size * T
    forget_rows = {tuple(r.tolist()) for r in DATA[0].blocks[:, :-1]}
    assert not {tuple(r.tolist()) for x in inputs for r in x} & forget_rows
    # a default run's id is unchanged: the new options are left out of its config at default
    cfg = runner.resolve_run_config("filter", "storyworld-lang", "tiny", 0, {})
    assert "skip_forget_steps" not in cfg.method_options and "sampling" not in cfg.method_options


def test_skip_forget_steps_without_single_source_is_refused_in_one_line():
    with pytest.raises(ConfigError) as e:
        runner.resolve_run_config(
            "filter", "storyworld-lang", "tiny", 0, {"skip_forget_steps": "true"}
        )
    assert str(e.value) == "filter: skip_forget_steps needs sampling: single_source"
    cfg = runner.resolve_run_config(
        "filter",
        "storyworld-lang",
        "tiny",
        0,
        {"skip_forget_steps": "true", "sampling": "single_source"},
    )
    assert cfg.method_options["skip_forget_steps"] is True
    # the loop's own rule: skipping is for single-source steps only
    obj = Objective(model=None, skip_labels=frozenset({"forget"}))
    with pytest.raises(ConfigError, match="skipping steps needs sampling='single_source'"):
        BlockSampler(DATA, obj, seed=0)
    only_skipped = dataclasses.replace(obj, sampling="single_source")
    with pytest.raises(ConfigError, match="every selected block is of a skipped label"):
        BlockSampler(DATA[:1], only_skipped, seed=0)


def test_undiscovered_forget_documents_are_trained_only_forget_labeled_steps_skipped():
    """Recall < 1: forget documents the classifier missed are labeled unlabeled. The reference
    trains them (trainer.py:514-515 'batch_applied_label = "default"'; only an applied "forget" is
    skipped, :537), so the skip follows the label, never the true split."""
    undiscovered = BlockGroup("forget", "unlabeled", False, random_blocks(4, T, 4))
    data = DATA + [undiscovered]
    # 16 steps of 1 block over 16 selected blocks: the urn and every pool read exactly once
    cfg = dataclasses.replace(CFG, steps=16)
    obj = filter_objective(tiny_gpt_neo(), sampling="single_source", skip_forget_steps=True)
    result, updates, inputs, _ = run(obj, data, cfg)
    skipped = [h for h in result.history if h.get("skipped")]

    # only the 4 forget-labeled blocks' steps are skipped; the undiscovered ones are updates
    assert len(skipped) == 4 and updates == 12
    seen = {tuple(r.tolist()) for x in inputs for r in x}
    assert rows(undiscovered.blocks) <= seen, "an undiscovered forget document was not trained on"
    assert not seen & rows(DATA[0].blocks), "a forget-labeled block was trained on"
    # counted as the forget split they are: the 4 undiscovered blocks' targets (one EOS each)
    assert result.tokens_by_split["forget"] == 4 * (T - 1)
    assert result.tokens_seen == updates * cfg.batch_size * T


@pytest.mark.parametrize("method", ["sgtm", "gradient-routing", "activation-masking"])
def test_every_method_with_a_sampling_option_refuses_an_unknown_one_when_configured(method):
    with pytest.raises(ConfigError) as e:
        runner.resolve_run_config(method, "storyworld-lang", "tiny", 0, {"sampling": "bogus"})
    assert str(e.value) == (
        f"{method}: sampling must be one of ('mixed', 'single_source'), got 'bogus'"
    )


def test_an_unknown_sampling_is_refused_when_the_run_is_configured(tmp_path):
    with pytest.raises(ConfigError) as e:
        runner.resolve_run_config("filter", "storyworld-lang", "tiny", 0, {"sampling": "bogus"})
    assert str(e.value) == (
        "filter: sampling must be one of ('mixed', 'single_source'), got 'bogus'"
    )
    # on the command line: one line, exit 2, no record
    from typer.testing import CliRunner

    from unlearnbench.cli import app

    res = CliRunner().invoke(
        app, ["run", "filter", "--set", "sampling=bogus", "--out", str(tmp_path)]
    )
    assert res.exit_code == 2, res.output
    lines = [x for x in res.output.strip().splitlines() if x.strip()]
    assert len(lines) == 1 and "sampling must be one of" in lines[0], res.output
    assert not (tmp_path / "records").exists()
