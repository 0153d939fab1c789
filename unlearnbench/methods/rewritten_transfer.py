"""`rewritten-transfer`: teach the model counterfactual facts through its own activations
(EleutherAI/unlearn's "rewritten" corrupt data set, used as an activation target).

storyworld only. Each forget-labeled training story is rewritten with 1-2 of its stated facts
changed (`storyworld.rewrite_with_changed_facts`: another home, food, colour, ...). The frozen base
model's activations on the rewritten story are the target for the model's activations on the
original story, at the positions the two token sequences share (aligned by `difflib`; the changed
spans themselves have no counterpart). So the positions that predict a fact value, and everything
after it, are pulled toward the state of a model that read the wrong fact.

- forget-labeled blocks: mean over `layers` of the MSE between h_l(original) and h_l^base(rewritten)
  at aligned positions. Packed blocks mix documents; every document that starts inside a block
  (after a separator) is matched, whole or cut by the block's end (then on its first positions,
  identified by its opening tokens; a cut prefix that several documents share is skipped). A
  document's tail continued from the previous block is not: its context is gone. The target is
  computed on the rewritten document alone, after one separator (the original's context inside
  the block may be longer: the local attention window makes the difference small). Matching
  whole documents only would use about one in five forget documents on storyworld's 256-token
  blocks (stories average 205 tokens);
- retain-labeled blocks: alpha * MSE(h_l, h_l^base) (RMU's retain term).
Per-token unlearning (`forget_tokens`, token_selection.py) keeps, of the aligned positions, only
the selected ones.
Labels only: which stories are rewritten is decided by their labels, never by the true split.

The reference script (EleutherAI/unlearn, unlearn/algorithm/transfer_rewritten/
transfer_from_rewritten.py) and how ours differs:
- target: there, the activations of the model being trained on the rewritten text, from the same
  forward and detached (lines 272-273, `F.mse_loss(source_act, aligned_target_act.detach())`);
  here the frozen base's, so the target does not drift as the model moves;
- loss mix: there lambda_mse * MSE + (1 - lambda_mse) * the rewritten text's CE with lambda_mse 0.5
  (lines 292-294, 655), but that CE is taken as a Python float (`.item()`, lines 223-232), so its
  gradient is 0 and the update is 0.5 * MSE's; here the MSE alone (the same direction; Adam does
  not see the factor);
- retain: there, separate retain phases of next-token CE on retain data alternate with the
  transfer phases (50 phases of 2 steps each, lines 305-314, 650-651); here every step mixes
  forget blocks (MSE) and retain blocks (MSE to the frozen base's activations, RMU's term);
- alignment: there a token-alignment strategy on the paired texts (token_alignment.py); here
  difflib's matching blocks over the token ids.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from unlearnbench.data import storyworld as sw
from unlearnbench.data.benchmarks.storyworld import world_and_stories
from unlearnbench.data.labels import label_document
from unlearnbench.data.packing import IGNORE
from unlearnbench.data.pipeline import token_ids
from unlearnbench.methods import RunContext, register_method
from unlearnbench.methods._posthoc import all_parameter_names
from unlearnbench.methods.token_selection import apply_token_selection
from unlearnbench.models.arch import num_blocks
from unlearnbench.models.hidden import block_outputs, frozen_copy
from unlearnbench.training import Objective


@dataclass(frozen=True)
class RewrittenOptions:
    layers: tuple[int, ...] = ()  # blocks whose outputs are matched; empty = every block (ours)
    # ours: retain MSE weight (the forget and retain terms are both MSEs); the reference trains
    # retain by CE in phases of its own (transfer_from_rewritten.py:314 "ce_loss = outputs.loss")
    alpha: float = 1.0
    forget_tokens: str = "all"  # per-token unlearning: "all" | "ratio" | "list" (ours)
    forget_token_list: tuple[str, ...] = ()  # "list": vocabulary entries or one-token texts (ours)
    forget_token_threshold: float = 0.5  # "ratio": ERA weight below this (ours: w = 1/2)
    # which positions (ours): "target" (those predicting a selected token, as ERA routes) | "input"
    forget_token_position: str = "target"


def aligned_pairs(original: list[int], rewritten: list[int]) -> list[tuple[int, int]]:
    """(i, j) with original[i] == rewritten[j] in the matching blocks of the two sequences."""
    sm = difflib.SequenceMatcher(None, original, rewritten, autojunk=False)
    return [(a + k, b + k) for a, b, size in sm.get_matching_blocks() for k in range(size)]


def rewritten_pairs(ctx) -> dict[tuple[int, ...], list[int]]:
    """{original token ids: rewritten token ids} for every forget-labeled storyworld document."""
    bench, cfg = ctx.benchmark, ctx.config
    if not bench.name.startswith("storyworld"):
        raise ValueError("rewritten-transfer needs a storyworld benchmark (stories with plans)")
    world_seed = int(cfg.benchmark_options.get("world_seed", 0))
    world, stories = world_and_stories(cfg.benchmark_options)
    ids = token_ids(bench)
    out = {}
    for doc, split in bench.train:
        if label_document(doc.id, split, cfg.labels, cfg.seed).label != "forget":
            continue
        plan = next(sw.iter_plans(world, world_seed, start=int(doc.meta["plan"]), stories=stories))
        new_plan, _ = sw.rewrite_with_changed_facts(plan, world, cfg.seed)
        text = sw.render(new_plan, world, doc.meta["language"])
        rew = bench.tokenizer(text, add_special_tokens=False)["input_ids"]
        original = ids[doc.id]
        out[tuple(original)] = rew[: len(original) + 16]  # the original may be cut (max_doc_tokens)
    if not out:
        raise ValueError("rewritten-transfer found no forget-labeled documents")
    return out


PREFIX_KEY = 16  # opening tokens that identify a document cut by the block's end (ours)


def document_of(fragment: tuple[int, ...], pairs: dict, starts: dict) -> tuple[int, ...] | None:
    """The forget document a block fragment (a document's opening, whole or cut) belongs to, or
    None when it is no forget document's opening or several documents open the same way."""
    if fragment in pairs:
        return fragment
    if len(fragment) < PREFIX_KEY:
        return None
    found = [k for k in starts.get(fragment[:PREFIX_KEY], ()) if k[: len(fragment)] == fragment]
    return found[0] if len(found) == 1 else None


def rewritten_objective(model, pairs, eos_id: int, options: RewrittenOptions) -> Objective:
    n = num_blocks(model)
    layers = tuple(options.layers) or tuple(range(n))
    if not all(0 <= li < n for li in layers):
        raise ValueError(f"layers {layers} outside 0..{n - 1}")
    frozen = frozen_copy(model)
    device = next(model.parameters()).device
    max_positions = model.config.max_position_embeddings
    cache: dict[tuple[int, ...], tuple[list, dict]] = {}
    starts: dict[tuple[int, ...], list[tuple[int, ...]]] = {}
    for key in pairs:
        starts.setdefault(key[:PREFIX_KEY], []).append(key)
    selective = options.forget_tokens != "all"  # the selection masks targets: keep those only

    def target_of(key):
        """Aligned pairs and the base's activations on [eos] + rewritten (cached)."""
        if key not in cache:
            rew = pairs[key][: max_positions - 1]  # a long story is only ever seen cut
            x = torch.tensor([[eos_id] + rew], device=device)  # (1, 1 + n)
            with torch.no_grad():
                hs = block_outputs(frozen, x, layers)
            cache[key] = (aligned_pairs(list(key), rew), {li: hs[li][0] for li in layers})
        return cache[key]

    def forget_loss(m, inputs, targets):
        hs = block_outputs(m, inputs, layers)  # {l: (B, T, d)}
        preds, goals = [], []
        for b in range(inputs.shape[0]):
            seps = (inputs[b] == eos_id).nonzero().flatten().tolist()
            for s, e in zip(seps, seps[1:] + [inputs.shape[1]], strict=False):  # [] if none
                fragment = tuple(inputs[b, s + 1 : e].tolist())
                key = document_of(fragment, pairs, starts)
                if key is None:
                    continue
                matched, target = target_of(key)
                matched = [(i, j) for i, j in matched if i < len(fragment)]
                if selective:
                    matched = [(i, j) for i, j in matched if targets[b, s + 1 + i] != IGNORE]
                if not matched:
                    continue
                pos = torch.tensor([s + 1 + i for i, _ in matched], device=device)
                tpos = torch.tensor([1 + j for _, j in matched], device=device)
                for li in layers:
                    preds.append(hs[li][b, pos])  # (k, d)
                    goals.append(target[li][tpos])  # (k, d)
        if not preds:  # no forget document opens in these blocks
            return sum(h.sum() for h in hs.values()) * 0.0
        return F.mse_loss(torch.cat(preds).float(), torch.cat(goals).float())

    def loss(m, inputs, targets, label):
        if label == "forget":
            return forget_loss(m, inputs, targets)
        hs = block_outputs(m, inputs, layers)
        with torch.no_grad():
            ref = block_outputs(frozen, inputs, layers)
        mse = [F.mse_loss(hs[li].float(), ref[li].float()) for li in layers]
        return options.alpha * torch.stack(mse).mean()

    return Objective(
        model=model,
        batch_plan={"forget": 0.5, "retain": 0.5},  # ours: as RMU
        loss=loss,
        trainable=all_parameter_names(model),
        reduction="labels",
    )


# version 2: its default base, the no-filter run, now trains as the SGTM reference does
@register_method(
    "rewritten-transfer",
    kind="posthoc",
    options=RewrittenOptions,
    train_defaults={
        # ours: as the loss-based baselines (100 steps, lr 1e-4, AdamW wd 0.01, 10 warmup steps,
        # then constant, HF Trainer's betas, clipping and decay grouping); 4 + 4 blocks as RMU.
        # The reference: transfer_from_rewritten.py:654 "learning_rate: float = 5e-5", 50 phases
        # of 2 steps of 16 pairs (:650-652)
        "steps": 100,
        "lr": 1e-4,
        "batch_size": 8,
        "warmup_steps": 10,
        "weight_decay": 0.01,
        "beta2": 0.999,
        "min_lr_ratio": 1.0,
        "grad_clip": 1.0,
        "weight_decay_groups": "matrices",
    },
    version=2,
)
def setup(ctx: RunContext, options: RewrittenOptions) -> Objective:
    """Rewritten transfer: original-story activations -> the base's on fact-changed rewrites."""
    pairs = rewritten_pairs(ctx)
    objective = rewritten_objective(ctx.model, pairs, ctx.benchmark.eos_id, options)
    return apply_token_selection(ctx, objective, options)
