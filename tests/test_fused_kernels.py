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
