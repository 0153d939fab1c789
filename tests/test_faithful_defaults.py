"""Each method runs as its reference does by default: the batch it states, the reference's
clipping and weight-decay grouping, the reference's single-source sampling as an option, and a
method version in the run id."""

import dataclasses
from collections import Counter
from pathlib import Path

import pytest
import torch
import yaml
from helpers import EOS, groups, tiny_gpt_neo

from unlearnbench import runner
from unlearnbench.config import ConfigError, TrainConfig
from unlearnbench.losses import lm_loss
from unlearnbench.registry import methods
from unlearnbench.results.store import RunStore
from unlearnbench.training import BlockSampler, Objective, make_optimizer, plan_counts, train

PRESETS = Path(__file__).resolve().parents[1] / "unlearnbench" / "presets"
CFG = TrainConfig(steps=2, batch_size=8, micro_batch_size=8, lr=1e-2, warmup_steps=0)


# --- item 1: a plan is a split of batch_size -----------------------------------------------------


def test_plan_counts_split_the_batch_and_refuse_what_does_not_divide():
    assert plan_counts({"forget": 0.5, "retain": 0.5}, 32) == {"forget": 16, "retain": 16}
    assert plan_counts({"forget": 1.0}, 7) == {"forget": 7}
    thirds = {s: 1 / 3 for s in ("forget", "adjacent", "retain")}
    assert plan_counts(thirds, 12) == {"forget": 4, "adjacent": 4, "retain": 4}
    with pytest.raises(ConfigError, match=r"does not split batch_size=7.*batch_size=6 or 8"):
        plan_counts({"forget": 0.5, "retain": 0.5}, 7)
    with pytest.raises(ConfigError, match="fraction in"):
        plan_counts({"forget": 4, "retain": 4}, 8)  # counts, not fractions
    with pytest.raises(ConfigError, match="fraction in"):
        plan_counts({"forget": 1.0, "retain": 0.0}, 8)


def test_a_bad_plan_is_refused_before_the_first_step():
    calls = []

    def loss(model, inputs, targets, label):
        calls.append(label)
        return lm_loss(model, inputs, targets)

    obj = Objective(model=tiny_gpt_neo(), loss=loss, batch_plan={"forget": 0.5, "retain": 0.5})
    with pytest.raises(ConfigError, match="sgtm s0: batch plan .* batch_size=5"):
        train(obj, groups(), dataclasses.replace(CFG, batch_size=5), 0, EOS, progress=False,
              description="sgtm s0")  # fmt: skip
    assert calls == []


def test_every_step_draws_batch_size_blocks_split_by_the_plan():
    obj = Objective(model=tiny_gpt_neo(), batch_plan={"forget": 0.25, "retain": 0.75})
    sampler = BlockSampler(groups(n_forget=4, n_retain=4), obj, seed=0, batch_size=8)
    for _ in range(3):
        batch = sampler.next_batch(8)
        by_label = Counter()
        for gi, blocks in batch.items():
            by_label[sampler.groups[gi].label] += len(blocks)
        assert by_label == {"forget": 2, "retain": 6}


@pytest.fixture(scope="module")
def store_with_base(tmp_path_factory):
    """The no-filter base (1 step) the post-hoc presets below start from."""
    store = RunStore(tmp_path_factory.mktemp("presets"))
    with pytest.MonkeyPatch.context() as mp:
        spec = methods.get("no-filter")
        for k, v in {"steps": 1, "batch_size": 2, "micro_batch_size": 2}.items():
            mp.setitem(spec.train_defaults, k, v)
        yield store


@pytest.mark.parametrize(
    "method, preset, extra",
    [
        ("tuned-lens", "tuned-lens-eleuther", {"lens_steps": 1}),
        ("sequential-unlearn", "sequential-unlearn-eleuther", {}),
        ("orthogonal-circuit-breakers", "orthogonal-circuit-breakers-eleuther", {}),
        ("rmu", "rmu-wikipedia-254M", None),  # its model is not built here: resolution only
    ],
)
def test_a_preset_runs_the_batch_it_states(method, preset, extra, store_with_base, monkeypatch):
    path = PRESETS / f"{preset}.yaml"
    stated = int(yaml.safe_load(path.read_text())["train"]["batch_size"])
    cfg = runner.resolve_run_config(method, "storyworld-lang", None, 0, {}, config_file=path)
    assert cfg.train.batch_size == stated
    if extra is None:
        return
    drawn = []
    real = BlockSampler.next_batch

    def counting(self, batch_size):
        out = real(self, batch_size)
        drawn.append((self.owner, sum(len(b) for b in out.values())))
        return out

    monkeypatch.setattr(BlockSampler, "next_batch", counting)
    small = {"steps": 1, "context": 16, "eval_blocks": 1, "n_stories": 100} | extra
    cfg = runner.resolve_run_config(method, "storyworld-lang", None, 0, small, config_file=path)
    runner.execute(cfg, store_with_base, progress=False)
    # the unlearning phases (tuned-lens's lens phase has the lens trainer's own batch of 8)
    own = [n for owner, n in drawn if owner.startswith(method) and "lenses" not in owner]
    assert own and all(n == stated for n in own), own
    # each block of the batch is one half of a (retain, forget) pair: 32 pairs per step
    assert stated == 64


# --- item 2 and 3: clipping and weight-decay grouping per reference ------------------------------

SGTM_FAMILY = ("sgtm", "gradient-routing", "activation-masking", "no-filter", "filter")
HF_TRAINER = (
    "circuit-breakers",
    "orthogonal-circuit-breakers",
    "tuned-lens",
    "sequential-unlearn",
    "checkpoint-transfer",
    "grad-ascent",
    "grad-diff",
    "npo",
)


def resolved(method: str, **over):
    return runner.resolve_run_config(method, "storyworld-lang", "tiny", 0, over).train


@pytest.mark.parametrize("method", SGTM_FAMILY + ("era", "demix"))
def test_training_time_references_neither_clip_nor_exempt_biases_from_decay(method):
    t = resolved(method)
    assert t.grad_clip == 0.0 and t.weight_decay_groups == "all" and t.weight_decay == 0.1


@pytest.mark.parametrize("method", HF_TRAINER + ("residual-routing",))
def test_hf_trainer_and_nanogpt_references_clip_at_one(method):
    t = resolved(method)
    assert t.grad_clip == 1.0 and t.weight_decay_groups == "matrices"


def test_rmu_as_its_reference_neither_clips_nor_groups():
    t = resolved("rmu")
    assert t.grad_clip == 0.0 and t.weight_decay_groups == "all"


@pytest.mark.parametrize("preset", sorted(p.stem for p in PRESETS.glob("sgtm-*.yaml")))
def test_sgtm_presets_train_as_the_reference_trainer(preset):
    path = PRESETS / f"{preset}.yaml"
    cfg = runner.resolve_run_config("sgtm", "storyworld-lang", None, 0, {}, config_file=path)
    t = cfg.train
    assert (t.grad_clip, t.weight_decay_groups, t.weight_decay) == (0.0, "all", 0.1)
    # one source per step (trainer.py:259, 510); TinyStories' tradeoff.sh labels 99% of forget
    assert cfg.method_options["sampling"] == "single_source"
    assert cfg.labels.recall == (0.99 if "tinystories" in preset else 1.0)


@pytest.mark.parametrize("method, clips", [("sgtm", False), ("era", False), ("npo", True)])
def test_the_loop_clips_only_where_the_reference_does(method, clips, monkeypatch):
    """The resolved config of each method through the loop: the old uniform clipping at 1.0
    would clip for sgtm and era too."""
    import unlearnbench.training as training

    norms = []
    real = torch.nn.utils.clip_grad_norm_
    monkeypatch.setattr(
        training.torch.nn.utils, "clip_grad_norm_", lambda p, c: norms.append(c) or real(p, c)
    )
    cfg = dataclasses.replace(resolved(method), steps=2, batch_size=4, micro_batch_size=4)
    train(Objective(model=tiny_gpt_neo()), groups(), cfg, 0, EOS, progress=False)
    assert norms == ([1.0, 1.0] if clips else [])


def test_weight_decay_groups_all_decays_biases_and_norms_too():
    model = tiny_gpt_neo()
    named = list(model.named_parameters())
    cfg = dataclasses.replace(CFG, lr=0.1, weight_decay=0.5)
    for groups_, bias_decays in (("all", True), ("matrices", False)):
        opt = make_optimizer(named, dataclasses.replace(cfg, weight_decay_groups=groups_))
        decay = {id(p) for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
        biases = [p for n, p in named if p.dim() < 2]
        assert biases and all((id(p) in decay) == bias_decays for p in biases)
        assert all(id(p) in decay for n, p in named if p.dim() >= 2)
    with pytest.raises(ConfigError, match="weight_decay_groups"):
        resolved("sgtm", weight_decay_groups="some")


# --- item 11: single-source sampling -------------------------------------------------------------


def test_single_source_steps_hold_one_label_in_the_blocks_proportions():
    data = groups(n_forget=2, n_retain=6, n_unlabeled=4)  # one group per label
    obj = Objective(model=tiny_gpt_neo(), sampling="single_source")
    sampler = BlockSampler(data, obj, seed=0, batch_size=3)
    labels = []
    for _ in range(12):  # one urn: one entry per selected block
        batch = sampler.next_batch(3)
        step = {sampler.groups[gi].label for gi in batch}
        assert len(step) == 1 and sum(len(b) for b in batch.values()) == 3
        labels += step
    assert Counter(labels) == {"forget": 2, "retain": 6, "unlabeled": 4}
    mixed = BlockSampler(data, Objective(model=tiny_gpt_neo()), seed=0, batch_size=6)
    assert any(len(mixed.next_batch(6)) > 1 for _ in range(4)), "mixed steps hold several labels"


def test_single_source_sampling_resumes_exactly():
    data = groups(n_forget=3, n_retain=5, n_unlabeled=2)
    obj = Objective(model=tiny_gpt_neo(), sampling="single_source")

    def draws(sampler, n):
        return [{gi: b.clone() for gi, b in sampler.next_batch(2).items()} for _ in range(n)]

    whole = draws(BlockSampler(data, obj, seed=1), 9)
    first = BlockSampler(data, obj, seed=1)
    head = draws(first, 4)
    resumed = BlockSampler(data, obj, seed=1)
    resumed.load_state_dict(first.state_dict())
    tail = draws(resumed, 5)
    for a, b in zip(whole, head + tail, strict=True):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_sgtm_offers_the_reference_sampling_and_keeps_mixed_by_default():
    assert (
        "sampling"
        not in runner.resolve_run_config("sgtm", "storyworld-lang", "tiny", 0, {}).method_options
    )  # left out at its default: earlier runs keep their ids
    cfg = runner.resolve_run_config(
        "sgtm", "storyworld-lang", "tiny", 0, {"sampling": "single_source"}
    )
    assert cfg.method_options["sampling"] == "single_source"
    with pytest.raises(ConfigError, match="single-source sampling cannot follow a batch plan"):
        BlockSampler(groups(), Objective(model=None, sampling="single_source",
                                         batch_plan={"forget": 1.0}), seed=0)  # fmt: skip


# --- method version ------------------------------------------------------------------------------


def test_a_method_version_bump_changes_the_run_id(monkeypatch):
    spec = methods.get("residual-routing")
    before = runner.resolve_run_config("residual-routing", "storyworld-lang", "tiny", 0, {})
    assert spec.version == 2 and before.method_version == 2  # 2: the reference's routing rule
    monkeypatch.setitem(methods._entries, spec.name, dataclasses.replace(spec, version=3))
    after = runner.resolve_run_config("residual-routing", "storyworld-lang", "tiny", 0, {})
    assert after.method_version == 3 and after.run_id != before.run_id
    # methods whose numbers changed with the reference trainers' defaults (theirs or their base's)
    assert all(methods.get(m).version >= 2 for m in SGTM_FAMILY + HF_TRAINER + ("era", "rmu"))


def test_records_without_a_version_read_as_version_one():
    from unlearnbench.config import RunConfig

    cfg = runner.resolve_run_config("residual-routing", "storyworld-lang", "tiny", 0, {})
    cfg = dataclasses.replace(cfg, method_version=1)  # every method is at 2 or more by now
    d = cfg.to_dict()
    d.pop("method_version")
    assert RunConfig.from_dict(d).run_id == cfg.run_id
