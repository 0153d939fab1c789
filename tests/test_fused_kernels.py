"""The fused kernels compute GPT-Neo's functions: same logits and gradients, up to rounding."""

import copy

import pytest
import torch
from helpers import EOS, VOCAB, groups, tiny_gpt_neo
from transformers.activations import NewGELUActivation

from unlearnbench.config import RunConfig, TrainConfig
from unlearnbench.models.kernels import TanhGELU, use_fused_kernels
from unlearnbench.training import Objective, train


def test_fused_matches_eager_logits_and_gradients_with_a_local_window():
    eager = tiny_gpt_neo(layers=2)  # one global and one local layer, window 8 < 31 positions
    types = {m.attention_type for m in eager.modules() if hasattr(m, "attention_type")}
    assert types == {"global", "local"}
    fused = use_fused_kernels(copy.deepcopy(eager))
    assert all(isinstance(b.mlp.act, TanhGELU) for b in fused.transformer.h)
    x = torch.randint(1, VOCAB, (3, 31), generator=torch.Generator().manual_seed(0))
    a, b = eager(input_ids=x).logits, fused(input_ids=x).logits  # (B, T, V)
    assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()
    a.logsumexp(-1).sum().backward()
    b.logsumexp(-1).sum().backward()
    for (n, p), q in zip(eager.named_parameters(), fused.parameters(), strict=True):
        assert torch.allclose(p.grad, q.grad, atol=1e-5), n
    # switching off restores HF's eager code exactly; state dicts never change
    use_fused_kernels(fused, False)
    assert all(isinstance(b.mlp.act, NewGELUActivation) for b in fused.transformer.h)
    assert torch.equal(fused(input_ids=x).logits, eager(input_ids=x).logits)
    assert fused.state_dict().keys() == eager.state_dict().keys()


def test_fused_attention_honours_padding_on_real_positions():
    model = tiny_gpt_neo(layers=2)
    x = torch.randint(1, VOCAB, (2, 20), generator=torch.Generator().manual_seed(1))
    mask = torch.ones(2, 20, dtype=torch.long)
    mask[1, :5] = 0  # left padding
    a = model(input_ids=x, attention_mask=mask).logits
    b = use_fused_kernels(copy.deepcopy(model))(input_ids=x, attention_mask=mask).logits
    assert torch.allclose(a[0], b[0], atol=1e-5)
    assert torch.allclose(a[1, 5:], b[1, 5:], atol=1e-5)  # pad positions' own outputs are unused


def test_training_with_fused_kernels_follows_eager_and_their_runs_have_their_own_ids():
    cfg = TrainConfig(steps=3, batch_size=8, micro_batch_size=4, lr=1e-2, warmup_steps=0)
    runs = {}
    for fused in (False, True):
        model = tiny_gpt_neo()
        t = TrainConfig(**{**cfg.__dict__, "fused_kernels": fused})
        res = train(Objective(model=model), groups(), t, 0, EOS, progress=False)
        runs[fused] = (model, [h["loss"] for h in res.history])
    assert runs[False][1] == pytest.approx(runs[True][1], abs=1e-4)
    pairs = zip(runs[False][0].named_parameters(), runs[True][0].parameters(), strict=True)
    for (n, p), q in pairs:
        assert torch.allclose(p, q, atol=1e-4), n

    fused = RunConfig("no-filter", "storyworld-lang", "tiny", 0)  # the default: fused
    eager = RunConfig(
        "no-filter", "storyworld-lang", "tiny", 0, train=TrainConfig(fused_kernels=False)
    )
    assert fused.config_hash != eager.config_hash
    # the setting is hashed either way: a run recorded when eager was the default (no key in its
    # hash) keeps an id that neither kind of run today takes
    import hashlib
    import json

    d = eager.to_dict()
    d.pop("seed"), d.pop("method_version"), d.pop("base")
    d["train"] = {
        k: v
        for k, v in d["train"].items()
        if k not in ("fused_kernels", "weight_decay_groups", "checkpoint_every", "snapshot_every")
    }
    old = hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:12]
    assert old not in (fused.config_hash, eager.config_hash)


@pytest.fixture(scope="module")
def contract_store(tmp_path_factory):
    """The method contract test's tiny settings and its 2-step no-filter base for post-hoc methods
    (trained here, so no test counts its optimizer steps)."""
    from test_method_contract import TINY

    from unlearnbench import runner
    from unlearnbench.registry import methods
    from unlearnbench.results.store import RunStore

    store = RunStore(tmp_path_factory.mktemp("fused"))
    with pytest.MonkeyPatch.context() as mp:
        spec = methods.get("no-filter")
        for k in ("steps", "warmup_steps", "batch_size", "micro_batch_size"):
            mp.setitem(spec.train_defaults, k, TINY[k])
        cfg = runner.resolve_run_config("no-filter", "storyworld-lang", "tiny", 0, TINY)
        base = runner.execute(cfg, store, progress=False)
        yield store, TINY, base


def _method_names():
    from unlearnbench.registry import methods

    return methods.names()


@pytest.mark.parametrize("name", _method_names())
def test_every_method_trains_the_same_with_fused_and_eager_kernels(
    name, contract_store, monkeypatch
):
    """The default kernels (fused) and HF's eager ones give every method the same gradients up to
    rounding (its first optimizer step, every hook and mask applied) and the same losses after its
    phases (2 steps each, the contract's size). Later phases' first steps agree more loosely and
    weights are not compared: Adam's first steps move every element by about lr whatever its
    gradient's size, so a rounding difference in a near-zero gradient flips a whole update."""
    from test_method_contract import EXTRA

    from unlearnbench import runner

    store, tiny, base = contract_store
    assert TrainConfig().fused_kernels, "the fused kernels are the default"
    first_steps: list[list[torch.Tensor]] = []  # per optimizer: its first step's gradients
    real_step, stepped = torch.optim.AdamW.step, set()

    def recording_step(self, *args, **kwargs):
        if id(self) not in stepped:
            stepped.add(id(self))
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
