"""EleutherAI-unlearn algorithms: orthogonal circuit breakers, sequential
unlearning, checkpoint transfer, rewritten transfer, per-token selection; on tiny GPT-Neo models
(residual routing: test_residual_routing.py)."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from helpers import EOS, VOCAB, groups, random_blocks, tiny_gpt_neo

from unlearnbench.config import TrainConfig
from unlearnbench.data.packing import IGNORE, inputs_and_targets
from unlearnbench.methods.orthogonal_circuit_breakers import (
    OrthCircuitBreakerOptions,
    orth_circuit_breaker_objective,
    orthogonality_loss,
)
from unlearnbench.methods.sequential_unlearn import (
    SequentialOptions,
    layer_objective,
    layer_order,
    logits_through,
)
from unlearnbench.methods.token_selection import (
    restrict_targets,
    select_by_ratio,
    with_token_selection,
)
from unlearnbench.models.hidden import block_outputs, frozen_copy
from unlearnbench.training import Objective, train

CFG = TrainConfig(steps=4, batch_size=8, micro_batch_size=8, lr=1e-2, warmup_steps=0, grad_clip=0.0)


def snapshot(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


# --- orthogonal circuit breakers ------------------------------------------------------------------


def test_orthogonality_loss_on_hand_made_representations():
    counted = torch.ones(3, 2, dtype=torch.bool)  # (B, T): pooled length 2
    e = torch.eye(4)
    ortho = torch.stack([e[0], e[1], e[2]])[:, None, :].expand(3, 2, 4)  # (B, T, d) orthogonal
    assert orthogonality_loss(ortho, counted).item() == 0.0
    same = e[0][None, None, :].expand(3, 2, 4)  # every sequence on one direction: cos 1
    assert torch.isclose(orthogonality_loss(same, counted), torch.tensor(2.0))  # 1 x mean length 2
    # negative cosines are not penalized (ReLU); only counted positions are pooled
    opposite = torch.stack([e[0], -e[0]])[:, None, :].expand(2, 2, 4)
    assert orthogonality_loss(opposite, torch.ones(2, 2, dtype=torch.bool)).item() == 0.0
    h = torch.stack([torch.stack([e[0], e[1]]), torch.stack([e[0], e[2]])])  # (2, 2, 4)
    only_first = torch.tensor([[True, False], [True, False]])
    assert torch.isclose(orthogonality_loss(h, only_first), torch.tensor(1.0))  # both pool to e0
    by_hand = (0.5 * torch.ones(2, 2) - 0.5 * torch.eye(2)).sum() / 2 * 2  # cos 1/2 of each pair
    assert torch.isclose(orthogonality_loss(h, torch.ones(2, 2, dtype=torch.bool)), by_hand)


def test_orth_circuit_breakers_train_only_lora_and_lower_forget_similarity():
    model = tiny_gpt_neo(layers=2)
    options = OrthCircuitBreakerOptions(lora_dropout=0.0, lora_target="all")
    obj = orth_circuit_breaker_objective(model, options)
    assert obj.trainable and all("lora_" in n for n in obj.trainable)
    data = groups(8, 8)
    inputs, targets = inputs_and_targets(data[0].blocks, EOS)

    def orth_now():
        with torch.no_grad():
            h = block_outputs(obj.model, inputs, [1])[1]
        return orthogonality_loss(h, targets != IGNORE).item()

    before = orth_now()
    train(obj, data, CFG, seed=0, eos_id=EOS, progress=False)
    assert orth_now() < before
    merged = obj.finalize(obj.model)
    assert type(merged).__name__ == "GPTNeoForCausalLM"


# --- sequential unlearning ------------------------------------------------------------------------


def test_sequential_layer_order_scales_the_reference():
    assert layer_order(4, SequentialOptions()) == [3, 2, 1]  # reference 31..11 of 32 -> 3..1 of 4
    assert layer_order(32, SequentialOptions(layer_step=4)) == [31, 27, 23, 19, 15, 11]


def test_sequential_unlearning_updates_only_the_layer_in_turn():
    model = tiny_gpt_neo(layers=4)
    frozen = frozen_copy(model)
    before = snapshot(model)
    obj = layer_objective(model, frozen, 2, SequentialOptions())
    train(obj, groups(8, 8), CFG, seed=0, eos_id=EOS, progress=False)
    for n, p in model.named_parameters():
        moved = not torch.equal(p, before[n])
        assert moved == n.startswith("transformer.h.2."), n
    assert all(torch.equal(p, before[n]) for n, p in frozen.named_parameters())


def test_forget_logits_run_through_the_frozen_later_blocks():
    model, other = tiny_gpt_neo(seed=0, layers=2), tiny_gpt_neo(seed=1, layers=2)
    inputs = torch.randint(1, VOCAB, (2, 8))
    h = block_outputs(model, inputs, [0])[0].detach().requires_grad_(True)
    frozen = frozen_copy(other)
    got = logits_through(frozen, inputs, 0, h)
    # by hand: the other model's block 1 on h, then its final norm and head
    body = frozen.transformer
    x = h
    with torch.no_grad():
        plain = frozen(input_ids=inputs, output_hidden_states=True)
    assert not torch.allclose(
        got, plain.logits
    )  # the frozen model's own block-0 output is replaced
    out = body.h[1](x)
    x = out[0] if isinstance(out, tuple) else out
    assert torch.allclose(got, frozen.lm_head(body.ln_f(x)), atol=1e-5)
    got.sum().backward()
    assert h.grad is not None and h.grad.abs().sum() > 0


# --- per-token selection --------------------------------------------------------------------------


def test_token_selection_masks_exactly_the_selected_positions():
    targets = torch.tensor([[5, 7, IGNORE, 9, 5], [1, 2, 3, 7, IGNORE]])
    kept = restrict_targets(targets, torch.tensor([5, 7]))
    expect = torch.tensor([[5, 7, IGNORE, IGNORE, 5], [IGNORE, IGNORE, IGNORE, 7, IGNORE]])
    assert torch.equal(kept, expect)
    seen = []

    def inner(m, inputs, t, label):
        seen.append((label, t.clone()))
        return t.float().sum() * 0

    obj = with_token_selection(Objective(model=None, loss=inner), torch.tensor([5, 7]), ["a", "b"])
    obj.loss(None, None, targets, "forget")
    obj.loss(None, None, targets, "retain")
    assert torch.equal(seen[0][1], expect) and torch.equal(seen[1][1], targets)  # retain untouched
    assert obj.extra_metrics["forget_tokens"] == {"count": 2, "tokens": ["a", "b"]}
    none = obj.loss(None, None, torch.tensor([[1, 2]]), "forget")  # nothing selected: zero
    assert none.item() == 0.0 and len(seen) == 2


def test_ratio_selection_picks_forget_specific_tokens():
    g = torch.Generator().manual_seed(0)
    common = torch.randint(1, 20, (40, 17), generator=g)
    forget = common.clone()
    forget[:, 3] = 42  # token 42 only in forget blocks, and often
    picked = select_by_ratio(forget, common, VOCAB, EOS)
    assert picked.tolist() == [42]


class _ListTokenizer:
    """Just what the `list` selection and its report read: vocabulary entries "t0".."t60"."""

    def get_vocab(self):
        return {f"t{i}": i for i in range(VOCAB)}

    def convert_ids_to_tokens(self, ids):
        return [f"t{i}" for i in ids]


def test_grad_ascent_forget_loss_counts_only_the_selected_positions():
    from types import SimpleNamespace

    from unlearnbench.methods.grad_ascent import GradAscentOptions
    from unlearnbench.methods.grad_ascent import setup as grad_ascent

    model = tiny_gpt_neo(layers=2)
    ctx = SimpleNamespace(model=model, benchmark=SimpleNamespace(tokenizer=_ListTokenizer()))
    opts = GradAscentOptions(forget_tokens="list", forget_token_list=("t7", "t9"))
    obj = grad_ascent(ctx, opts)
    assert obj.extra_metrics["forget_tokens"] == {
        "count": 2,
        "tokens": ["t7", "t9"],
        "mode": "list",
        "position": "target",
    }
    inputs, targets = inputs_and_targets(random_blocks(3), EOS)  # (B, T)
    targets[0, 2], targets[1, 4], targets[2, 0] = 7, 9, 7
    selected = (targets == 7) | (targets == 9)  # (B, T)
    captured = {}

    def keep(module, args, output):  # the logits: which positions the forget loss reads
        output.retain_grad()
        captured["logits"] = output
        return output

    handle = model.lm_head.register_forward_hook(keep)
    loss = obj.loss(model, inputs, targets, "forget")
    handle.remove()
    logits = captured["logits"]  # (B, T, V)
    by_hand = -F.cross_entropy(logits[selected], targets[selected])  # ascent on selected only
    assert torch.allclose(loss, by_hand)
    loss.backward()
    grad_norm = logits.grad.abs().sum(-1)  # (B, T)
    assert torch.all(grad_norm[selected] > 0) and torch.all(grad_norm[~selected] == 0)
    # default "all": every counted target contributes
    plain = grad_ascent(ctx, GradAscentOptions())
    assert "forget_tokens" not in plain.extra_metrics
    full = plain.loss(model, inputs, targets, "forget")
    counted = targets != IGNORE
    assert torch.allclose(
        full, -F.cross_entropy(model(input_ids=inputs).logits[counted], targets[counted])
    )


def test_every_posthoc_method_offers_token_selection():
    import dataclasses as dc

    from unlearnbench.registry import methods

    posthoc = [n for n in methods.names() if methods.get(n).kind == "posthoc"]
    assert len(posthoc) >= 10, posthoc
    for name in posthoc:
        fields = {f.name: f.default for f in dc.fields(methods.get(name).options)}
        assert fields.get("forget_tokens") == "all", name  # opt-in, off by default
        assert {"forget_token_list", "forget_token_threshold"} <= set(fields), name
        assert fields.get("forget_token_position") == "target", name  # ERA's convention


def _representation_objective(method: str, model, options):
    """(objective before selection, the deepest block its forget term reads) for `method`."""
    from unlearnbench.methods.circuit_breakers import (
        circuit_breaker_objective,
        default_target_layers,
    )
    from unlearnbench.methods.rmu import random_direction, rmu_objective
    from unlearnbench.methods.tuned_lens import Lenses, unlearning_objective

    if method == "rmu":
        return rmu_objective(model, 1, 5.0 * random_direction(32, 0), options), 1
    if method == "circuit-breakers":
        obj = circuit_breaker_objective(model, options)
        with torch.no_grad():  # LoRA B starts at zero: h_lora = h_orig, where cos has no gradient
            for n, p in obj.model.named_parameters():
                if "lora_B" in n:
                    p.normal_(0, 0.05)  # small: cos stays positive, inside ReLU's linear part
        return obj, max(default_target_layers(2))
    return unlearning_objective(model, Lenses(model), options), 1


@pytest.mark.parametrize("method", ["rmu", "circuit-breakers", "tuned-lens"])
def test_representation_forget_terms_read_only_the_selected_positions(method):
    from types import SimpleNamespace

    from unlearnbench.methods.circuit_breakers import CircuitBreakerOptions
    from unlearnbench.methods.rmu import RMUOptions
    from unlearnbench.methods.token_selection import apply_token_selection
    from unlearnbench.methods.tuned_lens import TunedLensOptions

    option_type = {
        "rmu": RMUOptions,
        "circuit-breakers": CircuitBreakerOptions,
        "tuned-lens": TunedLensOptions,
    }[method]
    extra = {} if method == "rmu" else {"lora_dropout": 0.0}
    selection = dict(forget_tokens="list", forget_token_list=("t7", "t9"))
    inputs, targets = inputs_and_targets(random_blocks(3), EOS)  # (B, T)
    inputs, targets = inputs.clone(), targets.clone()  # edited apart below
    targets[0, 2], targets[1, 4], targets[2, 0] = 7, 9, 7
    selected = (targets == 7) | (targets == 9)  # (B, T)

    def forget_grad(options):
        """Loss and its gradient on the deepest block output the forget term reads (B, T)."""
        model = tiny_gpt_neo(layers=2)
        ctx = SimpleNamespace(model=model, benchmark=SimpleNamespace(tokenizer=_ListTokenizer()))
        obj, layer = _representation_objective(method, model, options)
        obj = apply_token_selection(ctx, obj, options)
        captured = {}

        def keep(module, args, output):
            h = output[0] if isinstance(output, tuple) else output  # (B, T, d)
            if h.requires_grad:  # not the reference pass (no_grad, adapters off)
                h.retain_grad()
                captured["h"] = h

        handle = model.transformer.h[layer].register_forward_hook(keep)
        loss = obj.loss(obj.model, inputs, targets, "forget")
        handle.remove()
        loss.backward()
        return obj, loss, captured["h"].grad.abs().sum(-1)  # (B, T)

    obj, loss, grad = forget_grad(option_type(**extra, **selection))
    assert obj.extra_metrics["forget_tokens"]["tokens"] == ["t7", "t9"]
    assert torch.all(grad[selected] > 0), grad[selected]
    assert torch.all(grad[~selected] == 0)
    # the default reads every position (rmu, circuit breakers) or every counted one (tuned lens)
    plain, full, grad_all = forget_grad(option_type(**extra))
    assert "forget_tokens" not in plain.extra_metrics
    read = torch.ones_like(selected) if method != "tuned-lens" else targets != IGNORE
    assert torch.all(grad_all[read] > 0) and torch.all(grad_all[~read] == 0)
    assert not torch.isclose(loss, full)
    # by input: the positions that hold a selected token (and have a counted target)
    inputs[0, 5], inputs[2, 3] = 7, 9
    by_input = torch.isin(inputs, torch.tensor([7, 9])) & (targets != IGNORE)  # (B, T)
    assert by_input.any() and not torch.equal(by_input, selected)
    obj, _, grad = forget_grad(option_type(**extra, **selection, forget_token_position="input"))
    assert obj.extra_metrics["forget_tokens"]["position"] == "input"
    assert torch.all(grad[by_input] > 0) and torch.all(grad[~by_input] == 0)


def test_rmu_selected_forget_loss_is_the_mse_over_selected_positions():
    from unlearnbench.methods.rmu import forget_loss

    h = torch.randn(2, 5, 4)  # (B, T, d)
    control = torch.randn(1, 1, 4)
    mask = torch.zeros(2, 5, 1)
    mask[0, 1], mask[1, 3] = 1, 1
    by_hand = F.mse_loss(h[mask[..., 0] > 0], control[0].expand(2, 4))
    assert torch.allclose(forget_loss(h, control, mask), by_hand)
    assert torch.allclose(forget_loss(h, control), F.mse_loss(h, control.expand_as(h)))


def test_tuned_lens_refuses_a_bad_selection_before_training_lenses():
    from types import SimpleNamespace

    from unlearnbench.config import ConfigError
    from unlearnbench.methods.tuned_lens import TunedLensOptions
    from unlearnbench.methods.tuned_lens import setup as tuned_lens

    ctx = SimpleNamespace(model=tiny_gpt_neo(layers=2), config=None, benchmark=None)  # unread
    with pytest.raises(ConfigError, match="forget_tokens must be one of"):
        tuned_lens(ctx, TunedLensOptions(forget_tokens="some"))
    with pytest.raises(ConfigError, match="needs forget_token_list"):
        tuned_lens(ctx, TunedLensOptions(forget_tokens="list"))
    with pytest.raises(ConfigError, match="forget_token_position must be one of"):
        tuned_lens(ctx, TunedLensOptions(forget_tokens="ratio", forget_token_position="left"))


# --- rewritten transfer ---------------------------------------------------------------------------


GRAMMAR_WORDS = {"a", "an", "the", "al", "el", "la", "los", "las", "del", "de", "un", "una", "en"}


def _words(text):
    return [w.strip(".,!¡¿?").lower() for w in text.split()]


def test_rewritten_stories_differ_only_in_the_changed_facts():
    import difflib

    from unlearnbench.data import storyworld as sw

    world = sw.build_world(0)
    for plan in sw.plan_stories(world, 12, seed=0):
        new_plan, changed = sw.rewrite_with_changed_facts(plan, world, seed=3)
        assert changed and {(e, f) for e, f in changed} <= set(plan.facts)
        for lang in ("en", "es"):
            old, new = (
                _words(sw.render(plan, world, lang)),
                _words(sw.render(new_plan, world, lang)),
            )
            assert old != new
            new_words, old_words = set(), set()
            for (e, f), v in changed.items():
                ent = world.entity(e)
                new_words |= set(_words(sw.fact_clause(world, ent, f, v, lang)[1]))
                old_words |= set(_words(sw.fact_clause(world, ent, f, ent.facts[f], lang)[1]))
            # articles and prepositions may change with the value's gender or number (al / a la)
            new_words |= GRAMMAR_WORDS
            old_words |= GRAMMAR_WORDS
            sm = difflib.SequenceMatcher(None, old, new, autojunk=False)
            for op, a0, a1, b0, b1 in sm.get_opcodes():
                if op == "equal":
                    continue
                assert set(new[b0:b1]) <= new_words, (lang, new[b0:b1], changed)
                assert set(old[a0:a1]) <= old_words, (lang, old[a0:a1], changed)


def test_aligned_pairs_pair_only_equal_tokens_around_a_change():
    from unlearnbench.methods.rewritten_transfer import aligned_pairs

    original = [1, 2, 3, 4, 5, 6]
    rewritten = [1, 2, 9, 9, 4, 5, 6]  # token 3 replaced by two tokens
    pairs = aligned_pairs(original, rewritten)
    assert pairs == [(0, 0), (1, 1), (3, 4), (4, 5), (5, 6)]
    assert all(original[i] == rewritten[j] for i, j in pairs)


def test_rewritten_transfer_pulls_original_activations_to_the_rewrite():
    from unlearnbench.data.packing import BlockGroup
    from unlearnbench.methods.rewritten_transfer import RewrittenOptions, rewritten_objective

    doc, rew = [3, 4, 5, 6, 7, 8], [3, 4, 9, 6, 7, 8]
    block = torch.tensor([[EOS] + doc + [EOS] + doc + [EOS] + [1, 2]])  # two whole documents
    model = tiny_gpt_neo(layers=2)
    obj = rewritten_objective(model, {tuple(doc): rew}, EOS, RewrittenOptions(layers=(1,)))
    data = [BlockGroup("forget", "forget", False, block.repeat(4, 1))]
    data += groups(0, 4)[1:]

    inputs, targets = inputs_and_targets(block, EOS)

    def gap():  # the forget term: MSE to the base's activations on the rewrite, aligned positions
        with torch.no_grad():
            return obj.loss(model, inputs, targets, "forget").item()

    before = gap()
    assert before > 0
    train(obj, data, dataclasses.replace(CFG, lr=1e-3), seed=0, eos_id=EOS, progress=False)
    assert gap() < 0.5 * before


def test_rewritten_transfer_matches_documents_cut_by_the_block_end():
    from unlearnbench.methods import rewritten_transfer as rt

    k = rt.PREFIX_KEY
    doc = tuple(range(10, 50))  # longer than the tiny model's 32 positions: only ever seen cut
    twin_a, twin_b = tuple(range(100, 100 + k + 4)) + (1,), tuple(range(100, 100 + k + 4)) + (2,)
    pairs = {doc: list(doc), twin_a: list(twin_a), twin_b: list(twin_b)}
    starts = {}
    for key in pairs:
        starts.setdefault(key[:k], []).append(key)
    assert rt.document_of(doc, pairs, starts) == doc  # whole
    assert rt.document_of(doc[: k + 2], pairs, starts) == doc  # cut: identified by its opening
    assert rt.document_of(doc[: k - 1], pairs, starts) is None  # too short to identify
    assert rt.document_of(doc[3:], pairs, starts) is None  # a tail is not an opening
    assert rt.document_of(twin_a[: k + 2], pairs, starts) is None  # two documents open alike
    assert rt.document_of(twin_a, pairs, starts) == twin_a

    # a block whose only forget document is cut by the block's end still gives a forget loss,
    # and only on the positions inside the block (the target is cut to the model's context)
    rew = list(doc[:4]) + [9] + list(doc[5:])
    model = tiny_gpt_neo(layers=2)
    obj = rt.rewritten_objective(model, {doc: rew}, EOS, rt.RewrittenOptions(layers=(1,)))
    block = torch.tensor([[1, 2, EOS] + list(doc[: k + 4])])
    inputs, targets = inputs_and_targets(block, EOS)
    emb = model.transformer.wte.weight
    loss = obj.loss(model, inputs, targets, "forget")
    assert loss.item() > 0
    loss.backward()
    assert emb.grad[9].abs().sum() == 0  # the rewrite's token is a target, never an input
    assert emb.grad[doc[k + 4]].abs().sum() == 0  # past the block's end
    assert emb.grad[doc[5]].abs().sum() > 0  # after the change, inside the block

    # a block inside one document (no separator) has no opening to match
    tail = torch.tensor([list(doc[1 : k + 8])])
    inputs, targets = inputs_and_targets(tail, EOS)
    assert obj.loss(model, inputs, targets, "forget").item() == 0.0


def test_rewritten_transfer_selection_keeps_only_positions_predicting_selected_tokens():
    from types import SimpleNamespace

    from unlearnbench.methods import rewritten_transfer as rt
    from unlearnbench.methods.token_selection import apply_token_selection

    doc = tuple(range(10, 30))
    rew = list(doc[:4]) + [9] + list(doc[5:])  # doc[4] = 14 changed
    model = tiny_gpt_neo(layers=2)
    ctx = SimpleNamespace(model=model, benchmark=SimpleNamespace(tokenizer=_ListTokenizer()))
    options = rt.RewrittenOptions(
        layers=(1,), forget_tokens="list", forget_token_list=("t14", "t17")
    )
    obj = apply_token_selection(
        ctx, rt.rewritten_objective(model, {doc: rew}, EOS, options), options
    )
    inputs, targets = inputs_and_targets(torch.tensor([[1, 2, EOS] + list(doc)]), EOS)
    captured = {}

    def keep(module, args, output):
        h = output[0] if isinstance(output, tuple) else output  # (B, T, d)
        h.retain_grad()
        captured["h"] = h

    handle = model.transformer.h[1].register_forward_hook(keep)
    obj.loss(model, inputs, targets, "forget").backward()
    handle.remove()
    read = captured["h"].grad.abs().sum(-1)[0]  # (T,)
    # the document opens at position 3; position 3 + i predicts doc[i + 1]: 14 at i = 3, 17 at i = 6
    assert (read > 0).nonzero().flatten().tolist() == [6, 9]


# --- checkpoint transfer --------------------------------------------------------------------------


def test_affine_fit_recovers_a_known_linear_transform():
    from unlearnbench.methods.checkpoint_transfer import fit_affine

    g = torch.Generator().manual_seed(0)
    A, b = torch.randn(6, 6, generator=g), torch.randn(6, generator=g)
    x = torch.randn(200, 6, generator=g)
    A_hat, b_hat = fit_affine(x, x @ A.T + b, alpha=0.0)  # plain least squares
    assert torch.allclose(A_hat, A, atol=1e-4) and torch.allclose(b_hat, b, atol=1e-4)


def test_checkpoint_transfer_moves_forget_activations_toward_the_mapped_checkpoint():
    from unlearnbench.methods.checkpoint_transfer import (
        CheckpointTransferOptions,
        checkpoint_transfer_objective,
    )

    model, early = tiny_gpt_neo(seed=0, layers=2), tiny_gpt_neo(seed=1, layers=2)
    data = groups(8, 8)
    obj = checkpoint_transfer_objective(
        model, early, data[1].blocks, CheckpointTransferOptions(layers=(1,))
    )
    obj.on_step(0, 1)
    inputs, targets = inputs_and_targets(data[0].blocks, EOS)
    with torch.no_grad():
        before = obj.loss(model, inputs, targets, "forget").item()
    train(obj, data, dataclasses.replace(CFG, lr=1e-3), seed=0, eos_id=EOS, progress=False)
    obj.on_step(0, 1)
    with torch.no_grad():
        assert obj.loss(model, inputs, targets, "forget").item() < before
