"""The contract every registered method keeps, checked for each one through the runner (two steps
on the tiny model): a record is written, some trainable parameter moves, every parameter the
objective does not train stays bit-identical, and the finalized model is a plain GPT-Neo of the
preset's shape. Post-hoc methods start from the matching no-filter run (trained once, 2 steps).
And every method trains the same with the default fused kernels as with HF's eager code."""

import pytest
import torch
from transformers import GPTNeoForCausalLM

from unlearnbench import runner
from unlearnbench.models.build import build_model, load_model
from unlearnbench.registry import methods
from unlearnbench.results.store import RunStore

TINY = {
    "n_stories": 100,
    "steps": 2,
    "warmup_steps": 0,
    "context": 16,
    "eval_blocks": 1,
    "batch_size": 2,
    "micro_batch_size": 2,
}
# per method: what keeps its extra phases at test size (the contract is the same)
EXTRA = {
    "era": {"coherence_steps": 1, "coherence_blocks": 2, "coherence_eval_blocks": 2},
    "tuned-lens": {"lens_steps": 1},
    "sequential-unlearn": {"layer_step": 1},
}
SHAPE_KEYS = ("hidden_size", "num_layers", "num_heads", "intermediate_size", "vocab_size")


@pytest.fixture(scope="module")
def base_store(tmp_path_factory):
    """A store holding the no-filter base (2 steps), shared by the post-hoc methods."""
    store = RunStore(tmp_path_factory.mktemp("contract"))
    with pytest.MonkeyPatch.context() as mp:
        spec = methods.get("no-filter")
        for k in ("steps", "warmup_steps", "batch_size", "micro_batch_size"):
            mp.setitem(spec.train_defaults, k, TINY[k])
        cfg = runner.resolve_run_config("no-filter", "storyworld-lang", "tiny", 0, TINY)
        base = runner.execute(cfg, store, progress=False)
        yield store, base, mp


@pytest.mark.parametrize("name", methods.names())
def test_method_contract(name, base_store, monkeypatch):
    store, base, _ = base_store
    phases = []  # (objective, parameters before, parameters after) per loop the runner starts
    real = runner.train

    def values(objective) -> dict:  # the model's parameters and the phase's own (e.g. lenses)
        named = dict(objective.model.named_parameters())
        named |= {f"extra.{i}": p for i, p in enumerate(objective.extra_parameters)}
        return {n: p.detach().clone() for n, p in named.items()}

    def recording(objective, groups, cfg, seed, eos_id, **kw):
        before = values(objective)
        result = real(objective, groups, cfg, seed, eos_id, **kw)
        phases.append((objective, before, values(objective)))
        return result

    monkeypatch.setattr(runner, "train", recording)
    extra = dict(EXTRA.get(name, {}))
    if name == "checkpoint-transfer":  # its ignorant checkpoint: the base's own saved model
        extra["checkpoint"] = base["model_path"]
    cfg = runner.resolve_run_config(name, "storyworld-lang", "tiny", 0, TINY | extra)
    record = runner.execute(cfg, store, force=True, progress=False)  # no-filter: not the base's

    assert store.exists(cfg.run_id) and record["run_id"] == cfg.run_id
    assert record["method"] == name and record["tokens_seen"] > 0
    assert phases, f"{name} never reached the training loop"
    for objective, before, after in phases:
        trainable = set(objective.trainable) if objective.trainable is not None else set(before)
        trainable |= {n for n in before if n.startswith("extra.")}
        moved = [n for n in trainable if not torch.equal(before[n], after[n])]
        assert moved, f"{name}: no trainable parameter changed in two steps"
        still = [n for n in before if n not in trainable and not torch.equal(before[n], after[n])]
        assert not still, f"{name}: parameters it does not train moved: {still[:5]}"

    final = load_model(record["model_path"])
    assert type(final) is GPTNeoForCausalLM
    fresh = build_model("tiny", final.config.vocab_size, final.config.eos_token_id, 0)
    for key in SHAPE_KEYS:
        assert getattr(final.config, key) == getattr(fresh.config, key), key
    shapes = {n: tuple(t.shape) for n, t in final.state_dict().items()}
    assert shapes == {n: tuple(t.shape) for n, t in fresh.state_dict().items()}


@pytest.mark.parametrize("name", methods.names())
def test_every_method_trains_the_same_with_fused_and_eager_kernels(name, base_store, monkeypatch):
    """The default kernels (fused) and HF's eager ones give every method the same gradients up to
    rounding (its first optimizer step, every hook and mask applied) and the same losses after its
    phases (2 steps each, the contract's size). Later phases' first steps agree more loosely and
    weights are not compared: Adam's first steps move every element by about lr whatever its
    gradient's size, so a rounding difference in a near-zero gradient flips a whole update."""
    from unlearnbench.config import TrainConfig

    store, base, _ = base_store
    tiny = TINY
    assert TrainConfig().fused_kernels, "the fused kernels are the default"
    first_steps: list[list[torch.Tensor]] = []  # per optimizer: its first step's gradients
    # the optimizers seen, kept alive: a freed one's id() can be the next phase's
    real_step, stepped = torch.optim.AdamW.step, []

    def recording_step(self, *args, **kwargs):
        if not any(o is self for o in stepped):
            stepped.append(self)
            params = [p for g in self.param_groups for p in g["params"]]
            first_steps.append([None if p.grad is None else p.grad.clone() for p in params])
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", recording_step)
    out = {}
    for fused in (False, True):
        first_steps.clear()
        extra = dict(EXTRA.get(name, {}), fused_kernels=fused)
        if name == "checkpoint-transfer":  # its ignorant checkpoint: the base's own saved model
            extra["checkpoint"] = base["model_path"]
        cfg = runner.resolve_run_config(name, "storyworld-lang", "tiny", 0, tiny | extra)
        record = runner.execute(cfg, store, force=True, progress=False)
        out[fused] = (record, list(first_steps))
    (eager, grads_eager), (fused, grads_fused) = out[False], out[True]
    assert eager["run_id"] != fused["run_id"]
    assert grads_eager and len(grads_eager) == len(grads_fused), "one first step per phase"
    for phase, (a, b) in enumerate(zip(grads_eager, grads_fused, strict=True)):
        assert len(a) == len(b)
        # the first phase starts from the same weights; later ones from weights Adam moved apart
        rtol, atol = (1e-3, 1e-6) if phase == 0 else (5e-2, 1e-4)
        for i, (ga, gb) in enumerate(zip(a, b, strict=True)):
            assert (ga is None) == (gb is None), f"{name} phase {phase}: parameter {i}"
            if ga is not None:
                err = (ga - gb).abs().max()
                assert torch.allclose(ga, gb, rtol=rtol, atol=atol), (
                    f"{name} phase {phase}: gradient {i} differs by {err}"
                )
    for split in ("forget", "retain"):
        key = f"{split}_loss"
        assert fused["metrics"][key] == pytest.approx(eager["metrics"][key], abs=2e-2), key
