"""The fused attention path computes GPT-Neo's attention: same logits, same gradients, up to rounding."""

import copy

import pytest
import torch
from helpers import EOS, VOCAB, groups, tiny_gpt_neo

from unlearnbench.config import ConfigError, TrainConfig
from unlearnbench.models.attention import set_attention
from unlearnbench.training import Objective, train


def test_sdpa_matches_eager_logits_and_gradients_with_a_local_window():
    eager = tiny_gpt_neo(layers=2)  # one global and one local layer, window 8 < 31 positions
    assert {m.attention_type for m in eager.modules() if hasattr(m, "attention_type")} == {
        "global",
        "local",
    }
    fused = set_attention(copy.deepcopy(eager), "sdpa")
    x = torch.randint(1, VOCAB, (3, 31), generator=torch.Generator().manual_seed(0))
    a, b = eager(input_ids=x).logits, fused(input_ids=x).logits  # (B, T, V)
    assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()
    a.logsumexp(-1).sum().backward()
    b.logsumexp(-1).sum().backward()
    for (n, p), q in zip(eager.named_parameters(), fused.parameters(), strict=True):
        assert torch.allclose(p.grad, q.grad, atol=1e-5), n
    # switching back restores HF's eager path exactly
    set_attention(fused, "eager")
    assert torch.equal(fused(input_ids=x).logits, eager(input_ids=x).logits)


def test_sdpa_honours_padding_on_real_positions():
    model = tiny_gpt_neo(layers=2)
    x = torch.randint(1, VOCAB, (2, 20), generator=torch.Generator().manual_seed(1))
    mask = torch.ones(2, 20, dtype=torch.long)
    mask[1, :5] = 0  # left padding
    a = model(input_ids=x, attention_mask=mask).logits
    b = set_attention(copy.deepcopy(model), "sdpa")(input_ids=x, attention_mask=mask).logits
    assert torch.allclose(a[0], b[0], atol=1e-5)
    assert torch.allclose(a[1, 5:], b[1, 5:], atol=1e-5)  # pad positions' own outputs are unused


def test_training_with_sdpa_follows_eager_and_bad_names_are_rejected():
    cfg = TrainConfig(steps=3, batch_size=8, micro_batch_size=4, lr=1e-2, warmup_steps=0)
    runs = {}
    for impl in ("eager", "sdpa"):
        model = tiny_gpt_neo()
        res = train(
            Objective(model=model),
            groups(),
            TrainConfig(**{**cfg.__dict__, "attention": impl}),
            0,
            EOS,
            progress=False,
        )
        runs[impl] = (model, [h["loss"] for h in res.history])
    assert runs["eager"][1] == pytest.approx(runs["sdpa"][1], abs=1e-4)
    for (n, p), q in zip(
        runs["eager"][0].named_parameters(), runs["sdpa"][0].parameters(), strict=True
    ):
        assert torch.allclose(p, q, atol=1e-4), n

    from unlearnbench.config import RunConfig, validate

    with pytest.raises(ConfigError, match="attention"):
        validate(
            RunConfig(
                "no-filter", "storyworld-lang", "tiny", 0, train=TrainConfig(attention="flash")
            )
        )
