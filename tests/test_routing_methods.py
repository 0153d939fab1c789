"""gradient-routing and activation-masking on a real GPT-Neo: exactly which parameter slices get
gradient per label, per-position token routing, and their ablation."""

from types import SimpleNamespace

import pytest
import torch
from helpers import EOS, random_blocks, tiny_gpt_neo

from unlearnbench.config import ConfigError
from unlearnbench.data.packing import inputs_and_targets
from unlearnbench.methods import RunContext
from unlearnbench.methods.activation_masking import ActivationMaskingOptions
from unlearnbench.methods.activation_masking import setup as am_setup
from unlearnbench.methods.gradient_routing import GradientRoutingOptions
from unlearnbench.methods.gradient_routing import setup as gr_setup
from unlearnbench.methods.routing import (
    ablate_inputs,
    input_ablation_names,
    resolve_route_tokens,
    routed_positions,
)
from unlearnbench.models.partition import Partition, ablate, forget_masks


class FakeTokenizer:
    """Single-character tokens 'a'..'z' (ids 1..26) and ' a'..' z' (ids 27..52)."""

    def get_vocab(self):
        letters = "abcdefghijklmnopqrstuvwxyz"
        vocab = {c: i + 1 for i, c in enumerate(letters)}
        vocab |= {"Ġ" + c: i + 27 for i, c in enumerate(letters)}
        return vocab

    def __call__(self, text, add_special_tokens=False):
        vocab = self.get_vocab()
        ids, i = [], 0
        while i < len(text):
            if text[i] == " " and i + 1 < len(text):
                ids.append(vocab["Ġ" + text[i + 1]])
                i += 2
            else:
                ids.append(vocab[text[i]])
                i += 1
        return {"input_ids": ids}


def ctx_for(model, **kw):
    bench = SimpleNamespace(tokenizer=FakeTokenizer(), eos_id=EOS)
    config = SimpleNamespace(seed=0)
    return RunContext(config=config, benchmark=bench, model=model, **kw)


def grads(objective, label, blocks=None):
    model = objective.model
    inputs, targets = inputs_and_targets(random_blocks(3) if blocks is None else blocks, EOS)
    model.zero_grad(set_to_none=True)
    with objective.mode(label):
        objective.loss(model, inputs, targets, label).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}


OPTS = dict(forget_mlp_dim=16, forget_heads=1)


def _slices(model, part):
    """name -> (forget-slice mask, kind) with kind 'in' (rows: c_fc, q/k/v) or 'out' (columns)."""
    out = {}
    for name, m in forget_masks(model, part).items():
        kind = "out" if name.endswith(("c_proj.weight", "out_proj.weight")) else "in"
        out[name] = (m, kind)
    return out


@pytest.mark.parametrize("method", ["gradient-routing", "activation-masking"])
def test_forget_label_keeps_gradient_out_of_the_retain_inputs(method):
    model = tiny_gpt_neo()
    setup, opts = {
        "gradient-routing": (gr_setup, GradientRoutingOptions(**OPTS)),
        "activation-masking": (am_setup, ActivationMaskingOptions(**OPTS)),
    }[method]
    g = grads(setup(ctx_for(model), opts), "forget")
    part = Partition.for_model(model, 16, 1)
    for name, (fmask, kind) in _slices(model, part).items():
        assert g[name][fmask].abs().sum() > 0, f"{name}: forget slice got no gradient"
        retain_grad = g[name][~fmask].abs().sum()
        if kind == "in":  # c_fc and q/k/v retain rows: the activation edit blocks their gradient
            assert retain_grad == 0, f"{name}: retain rows got gradient from forget data"
        elif method == "gradient-routing":
            # detached activations still multiply c_proj/out_proj: full forget gradient there
            assert retain_grad > 0, f"{name}: gradient routing masks activations, not weights"
        else:  # zeroed activations: the retain columns of c_proj/out_proj see zero input
            assert retain_grad == 0, f"{name}: retain columns got gradient under zeroing"
    # outside the split everything still learns from forget data (no parameter mask)
    for name in (
        "transformer.wte.weight",
        "transformer.h.0.ln_1.weight",
        "transformer.h.0.mlp.c_proj.bias",
    ):
        assert g[name].abs().sum() > 0, name


@pytest.mark.parametrize(
    "setup, opts",
    [(gr_setup, GradientRoutingOptions(**OPTS)), (am_setup, ActivationMaskingOptions(**OPTS))],
)
def test_retain_label_gives_theta_forget_zero_and_unlabeled_is_plain(setup, opts):
    model = tiny_gpt_neo()
    obj = setup(ctx_for(model), opts)
    part = Partition.for_model(model, 16, 1)
    g = grads(obj, "retain")
    for name, (fmask, _) in _slices(model, part).items():
        assert (g[name][fmask] == 0).all(), f"{name}: theta_forget learned from retain data"
        assert g[name][~fmask].abs().sum() > 0, name
    g = grads(obj, "unlabeled")
    for name, (fmask, _) in _slices(model, part).items():
        assert g[name][fmask].abs().sum() > 0 and g[name][~fmask].abs().sum() > 0, name


def test_gradient_routing_forward_is_unchanged_and_masking_is_not():
    model = tiny_gpt_neo()
    inputs, targets = inputs_and_targets(random_blocks(2), EOS)
    gr = gr_setup(ctx_for(model), GradientRoutingOptions(**OPTS))
    am = am_setup(ctx_for(model), ActivationMaskingOptions(**OPTS))
    with torch.no_grad():
        base = model(input_ids=inputs).logits
        with gr.mode("forget"):
            detached = model(input_ids=inputs).logits
        with am.mode("forget"):
            zeroed = model(input_ids=inputs).logits
    torch.testing.assert_close(detached, base)
    assert not torch.allclose(zeroed, base)


def test_ablation_zeroes_exactly_the_forget_input_rows_and_equals_full_ablation():
    model = tiny_gpt_neo()
    part = Partition.for_model(model, 16, 1)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    ablate_inputs(model, part)
    names = input_ablation_names(model, part)
    assert len(names) == 2 * 5  # per block: c_fc w, c_fc b, q, k, v
    for n, p in model.named_parameters():
        if n in names:
            idx = names[n]
            assert (p[idx] == 0).all(), n
            rest = torch.ones_like(p, dtype=torch.bool)
            rest[idx] = False
            assert torch.equal(p[rest], before[n][rest]), f"{n}: retain rows changed"
        else:
            assert torch.equal(p, before[n]), f"{n} must not change"
    full = ablate(tiny_gpt_neo(), part)
    inputs, _ = inputs_and_targets(random_blocks(2), EOS)
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=inputs).logits, full(input_ids=inputs).logits)


# --- token routing ---------------------------------------------------------------------------------


def test_resolve_route_tokens_forms_and_errors(tmp_path):
    tok = FakeTokenizer()
    ids = resolve_route_tokens(tok, ("Ġb", "_c", "d"))
    assert ids.tolist() == [4, 28, 29]
    f = tmp_path / "tokens.txt"
    f.write_text("_e\n\n a\n")
    assert resolve_route_tokens(tok, (), str(f)).tolist() == [27, 31]
    assert resolve_route_tokens(tok, ()) is None
    with pytest.raises(ConfigError, match="not one token"):
        resolve_route_tokens(tok, ("ab",))
    with pytest.raises(ConfigError, match="not found"):
        resolve_route_tokens(tok, (), str(tmp_path / "missing.txt"))


def test_routed_positions_follow_the_target_token_only():
    targets = torch.tensor([[3, 5, -100, 5], [7, 3, 3, 9]])
    got = routed_positions(targets, torch.tensor([3, 9]))
    assert got.tolist() == [[True, False, False, False], [False, True, True, True]]


@pytest.mark.parametrize(
    "setup, opts_cls, label",
    [(gr_setup, GradientRoutingOptions, "retain"), (am_setup, ActivationMaskingOptions, "forget")],
)
def test_token_routing_masks_routed_positions_and_only_those(setup, opts_cls, label):
    """Whatever the document label, positions whose target is routed get no gradient through their
    retain MLP units (and, when zeroing, those units are 0); all other positions are plain."""
    model = tiny_gpt_neo()
    inputs, targets = inputs_and_targets(random_blocks(2), EOS)
    routed_ids = torch.unique(targets[0, :4])
    tok = SimpleNamespace(get_vocab=lambda: {f"t{i}": i for i in range(61)})
    ctx = RunContext(config=None, benchmark=SimpleNamespace(tokenizer=tok), model=model)
    obj = setup(ctx, opts_cls(**OPTS, route_tokens=tuple(f"t{int(i)}" for i in routed_ids)))
    raw, edited = [], []
    handles = []
    for b in model.transformer.h:  # registered first: sees c_fc's output before the routing edit
        handles.append(
            b.mlp.c_fc.register_forward_hook(lambda m, a, out: raw.append(out) or out.retain_grad())
        )
        handles.append(b.mlp.act.register_forward_pre_hook(lambda m, a: edited.append(a[0])))
    with obj.mode(label):
        obj.loss(model, inputs, targets, label).backward()
    for h in handles:
        h.remove()
    routed = routed_positions(targets, routed_ids)  # (B, T)
    counted = targets != -100
    assert routed.any() and (~routed & counted).any()
    with torch.no_grad():
        plain_logits = model(input_ids=inputs)
    for x, e in zip(raw, edited, strict=True):  # per layer: (B, T, 64), retain units [:48]
        assert (x.grad[routed][:, :48] == 0).all(), (
            "routed positions: no gradient into retain units"
        )
        assert (x.grad[~routed & counted][:, :48].abs().sum(-1) > 0).all(), "others: plain gradient"
        assert (x.grad[routed][:, 48:].abs().sum(-1) > 0).all(), "forget units still learn"
        if opts_cls is ActivationMaskingOptions:
            assert (e[routed][:, :48] == 0).all(), "routed positions: retain units zeroed"
        torch.testing.assert_close(e[~routed], x[~routed])  # other positions: values unchanged
    del plain_logits
