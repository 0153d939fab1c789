"""THE training loop, written once, for pretraining and unlearning alike.

The loop owns forward, backward, gradient accumulation, gradient edits, clipping, the optimizer and
scheduler steps, evaluation and progress. A method supplies an `Objective`: which blocks it trains on,
how a block of a given label is run (its forward mode and loss), which parameter elements a label's
gradient may touch, and what happens at the end. A method never calls backward() or step().

Exactness with mixed labels: a global batch may hold blocks of several labels. Each label's blocks
run as their own micro-batches and their gradient is edited (masked) on its own before it is added
to the step's accumulated gradient, so a mixed batch updates exactly as the sum of its per-label
parts would. Labels whose masking a method can apply per row (`Objective.one_pass`) share one pass
instead, each row masked as its own label's pass would be: the same sum up to rounding.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from unlearnbench.checkpoint import Checkpointer, rng_state, set_rng_state
from unlearnbench.config import ConfigError, TrainConfig
from unlearnbench.data.packing import IGNORE, BlockGroup, inputs_and_targets
from unlearnbench.distributed import all_reduce_gradients, shard
from unlearnbench.distributed import world as dist_world
from unlearnbench.losses import autocast, lm_loss
from unlearnbench.models.kernels import use_fused_kernels
from unlearnbench.progress import StepProgress


def _plain_mode(label: str):
    return contextlib.nullcontext()


def _default_loss(model, inputs, targets, label):
    return lm_loss(model, inputs, targets)


def _no_update_mask(label: str):
    return None


def label_blind(objective: Objective) -> bool:
    """True when nothing the objective does depends on the label: then a step's blocks of every
    label run as one pass (fewer, fuller micro-batches), which equals the per-label sum up to
    floating-point rounding."""
    return (
        objective.mode is _plain_mode
        and objective.loss is _default_loss
        and objective.update_mask is _no_update_mask
        and objective.after_backward is None
        and not objective.strict
        and objective.reduction == "tokens"
    )


@dataclass
class Objective:
    """What a method plugs into the loop. Every field but `model` has a plain default."""

    model: nn.Module
    # which training blocks the method uses (it may read `label` and `flagged_adjacent` only)
    trains_on: Callable[[BlockGroup], bool] = lambda group: True
    # a curriculum: whether a group's blocks may be drawn at (step, total steps), on top of
    # `trains_on` (same rules on what it may read); None: every selected block from the start
    curriculum: Callable[[BlockGroup, int, int], bool] | None = None
    # each label's share of every step's `batch_size` blocks, e.g. {"forget": 0.5, "retain": 0.5}:
    # round(fraction * batch_size) blocks of each, which must add up to batch_size exactly (see
    # `plan_counts`); None: sample uniformly from every selected block
    batch_plan: dict[str, float] | None = None
    # "mixed": a step's blocks are drawn from all selected blocks (or by `batch_plan`), so one step
    # can hold several labels; "single_source": each step's whole batch is of one label, drawn per
    # step in proportion to the labels' shares of the selected blocks (the SGTM reference
    # trainer's one source per step; its shares are of examples, see `BlockSampler`)
    sampling: str = "mixed"
    # context manager for the forward pass of a label's blocks (activation masking, routing)
    mode: Callable[[str], contextlib.AbstractContextManager] = _plain_mode
    # loss of one micro-batch: (model, inputs (B, T), targets (B, T), label) -> scalar mean
    loss: Callable = _default_loss
    # elements a label's gradient may touch: {param name: bool mask}; absent names are free
    update_mask: Callable[[str], dict[str, torch.Tensor] | None] = _no_update_mask
    # further in-place gradient edits for a label, after its backward and mask
    after_backward: Callable[[nn.Module, str], None] | None = None
    # strict: elements no label of the step may touch do not move at all (no momentum, no decay)
    strict: bool = False
    # names of trainable parameters (None: all)
    trainable: list[str] | None = None
    # after training: ablation, contraction, merging; returns the final model
    finalize: Callable[[nn.Module], nn.Module] = lambda model: model
    # "tokens": the step's loss is the token mean over the whole batch (pretraining);
    # "labels": the sum over labels of each label's token mean (post-hoc objectives)
    reduction: str = "tokens"
    # labels whose single-source steps are skipped (the SGTM reference's filter): such a step's
    # blocks are drawn, with their label's share, but not trained on: no forward, backward or
    # update, while the lr scheduler advances (and the step evaluates, snapshots and checkpoints
    # as usual). Needs `sampling="single_source"`. Ours: a skipped step counts no tokens, so
    # `tokens_seen` stays the tokens trained on; the reference counts every step's, skipped ones
    # too (trainer.py:600 "tokens_processed = args.logical_batch_size * global_step *
    # args.context_size")
    skip_labels: frozenset[str] = frozenset()
    # extra per-step hook (e.g. coefficient schedules): called with (step, total_steps)
    on_step: Callable[[int, int], None] | None = None
    extra_parameters: list[nn.Parameter] = field(default_factory=list)
    # labels whose blocks of a step share one forward/backward, each row in its own label's mode
    # through `row_mode(row_labels)` (a context manager over the micro-batch). Only for labels
    # whose update masks their row modes already make exact (the gradient outside the mask is
    # exactly zero), with the default loss and "tokens" reduction: the step's gradient is the same
    # sum up to rounding, in fewer, fuller micro-batches (the masking methods' blocks of a step)
    one_pass: tuple[str, ...] = ()
    row_mode: Callable[[list[str]], contextlib.AbstractContextManager] | None = None
    # metrics a method measures itself (e.g. ERA's post-ablation losses); merged into the record
    extra_metrics: dict = field(default_factory=dict)


SAMPLING = ("mixed", "single_source")


def check_sampling(method: str, sampling: str) -> None:
    """A method's `sampling` option, checked when its run is configured (one line, no run id)."""
    if sampling not in SAMPLING:
        raise ConfigError(f"{method}: sampling must be one of {SAMPLING}, got {sampling!r}")


def plan_counts(
    plan: dict[str, float], batch_size: int, owner: str = "the method"
) -> dict[str, int]:
    """Blocks per label of one step: round(fraction * batch_size) each. A ConfigError unless every
    fraction is positive and the counts add up to `batch_size` exactly (a plan is a split of the
    batch, never a second batch size)."""
    if any(not 0 < f <= 1 for f in plan.values()):
        raise ConfigError(
            f"{owner}: batch plan {plan} must give each label a fraction in (0, 1] of batch_size "
            '(e.g. {"forget": 0.5, "retain": 0.5})'
        )
    counts = {label: round(f * batch_size) for label, f in plan.items()}
    if sum(counts.values()) != batch_size or min(counts.values()) < 1:
        valid = [n for n in range(1, 4 * batch_size + 8) if _splits(plan, n)]
        near = sorted(valid, key=lambda n: (abs(n - batch_size), n))[:2]
        hint = f"; e.g. batch_size={' or '.join(map(str, sorted(near)))}" if near else ""
        raise ConfigError(
            f"{owner}: batch plan {plan} does not split batch_size={batch_size} into whole blocks "
            f"(it gives {counts}){hint}"
        )
    return counts


def _splits(plan: dict[str, float], n: int) -> bool:
    counts = [round(f * n) for f in plan.values()]
    return sum(counts) == n and min(counts) >= 1


class BlockSampler:
    """Deterministic, epoch-wise shuffled sampling of block indices, per label or pooled.

    Pools: one per label of `batch_plan` or, with `sampling="single_source"`, per label present;
    else one pool of every selected block. Each pool is read in epochs, each epoch a fresh
    permutation from the sampler's seeded generator. Single-source sampling draws each step's label
    from an urn holding one entry per selected block, refilled when empty. Ours: the SGTM reference
    shuffles one entry per training example (a document) and reads one per step
    (trainer.py:251-259); our documents are packed into blocks that carry no document count, so
    a label's chance is its share of the selected blocks (tokens), not of documents."""

    def __init__(
        self,
        groups: list[BlockGroup],
        objective: Objective,
        seed: int,
        batch_size: int | None = None,
        owner: str = "the method",
    ):
        self.groups = [g for g in groups if objective.trains_on(g) and len(g.blocks)]
        if not self.groups:
            raise ConfigError("the method selects no training blocks")
        self.gen = torch.Generator().manual_seed(seed)
        self.plan = objective.batch_plan
        self.owner = owner
        self.single_source = getattr(objective, "sampling", "mixed") == "single_source"
        if getattr(objective, "sampling", "mixed") not in SAMPLING:
            raise ConfigError(f"sampling must be one of {SAMPLING}, got {objective.sampling!r}")
        if self.single_source and self.plan:
            raise ConfigError(f"{owner}: single-source sampling cannot follow a batch plan")
        if self.plan and batch_size is not None:
            plan_counts(self.plan, batch_size, owner)  # refused before the first step
        self.skip_labels = frozenset(getattr(objective, "skip_labels", ()))
        if self.skip_labels and not self.single_source:
            raise ConfigError(f"{owner}: skipping steps needs sampling='single_source'")
        if self.skip_labels and all(g.label in self.skip_labels for g in self.groups):
            raise ConfigError(f"{owner}: every selected block is of a skipped label")
        self.curriculum = objective.curriculum
        self.active: tuple[int, ...] | None = None  # curriculum: the groups drawn from now
        self._build_pools(range(len(self.groups)))

    def _build_pools(self, group_indices) -> None:
        # pools: label (or "*": all) -> list of (group index, block index)
        group_indices = list(group_indices)
        if self.plan:
            keys = list(self.plan)
        elif self.single_source:
            keys = sorted({self.groups[gi].label for gi in group_indices})
        else:
            keys = ["*"]
        self.pools: dict[str, list[tuple[int, int]]] = {k: [] for k in keys}
        for gi in group_indices:
            g = self.groups[gi]
            key = "*" if keys == ["*"] else g.label
            if key in self.pools:
                self.pools[key].extend((gi, bi) for bi in range(len(g.blocks)))
        for k, pool in self.pools.items():
            if not pool:
                raise ConfigError(f"no training blocks for {k!r} (check the labels and recall)")
        self.order = {k: [] for k in self.pools}
        self.urn = {k: 0 for k in self.pools} if self.single_source else {}

    def set_step(self, step: int, total: int) -> None:
        """Curriculum: draw from the groups it admits at `step`; when that set changes, every pool
        starts a fresh epoch over its new blocks. Without a curriculum: nothing (bit-identical)."""
        if self.curriculum is None:
            return
        active = tuple(gi for gi, g in enumerate(self.groups) if self.curriculum(g, step, total))
        if active != self.active:
            self.active = active
            self._build_pools(active)

    def _take(self, key: str, n: int) -> list[tuple[int, int]]:
        out = []
        while len(out) < n:
            if not self.order[key]:
                perm = torch.randperm(len(self.pools[key]), generator=self.gen).tolist()
                self.order[key] = [self.pools[key][i] for i in perm]
            need = n - len(out)
            out += self.order[key][:need]
            self.order[key] = self.order[key][need:]
        return out

    def _draw_label(self) -> str:
        """Single-source: the next step's label, without replacement from the urn (one entry per
        selected block of each label), which is refilled when it runs empty."""
        if not any(self.urn.values()):
            self.urn = {k: len(pool) for k, pool in self.pools.items()}
        r = int(torch.randint(sum(self.urn.values()), (1,), generator=self.gen))
        for key, left in self.urn.items():  # pools' fixed (sorted) order
            if r < left:
                self.urn[key] -= 1
                return key
            r -= left
        raise AssertionError("unreachable: r < the urn's total")

    def state_dict(self) -> dict:
        """The position in every pool's current epoch and the generator: enough to continue."""
        state = {
            "gen": self.gen.get_state(),
            "order": {
                k: torch.tensor(v, dtype=torch.long).reshape(-1, 2) for k, v in self.order.items()
            },
        }
        if self.active is not None:  # the curriculum's current groups
            state["active"] = torch.tensor(self.active, dtype=torch.long)
        if self.single_source:  # what is left in the label urn, in the pools' order
            state["urn"] = torch.tensor([self.urn[k] for k in self.pools], dtype=torch.long)
        return state

    def load_state_dict(self, state: dict) -> None:
        if "active" in state:  # rebuild the curriculum's pools; the order below continues them
            self.active = tuple(state["active"].tolist())
            self._build_pools(self.active)
        assert set(state["order"]) == set(self.order), (
            "checkpoint sampler pools differ from this run"
        )
        assert ("urn" in state) == self.single_source, "checkpoint sampling differs from this run"
        self.gen.set_state(state["gen"])
        self.order = {k: [tuple(x) for x in v.tolist()] for k, v in state["order"].items()}
        if self.single_source:
            self.urn = dict(zip(self.pools, state["urn"].tolist(), strict=True))

    def skips(self, batch: dict[int, torch.Tensor]) -> bool:
        """Whether the step of `batch` is skipped: every block's label is in `skip_labels`."""
        return bool(self.skip_labels) and all(
            self.groups[gi].label in self.skip_labels for gi in batch
        )

    def next_batch(self, batch_size: int) -> dict[int, torch.Tensor]:
        """group index -> (n, T + 1) blocks, in group order; `batch_size` blocks in all."""
        picks = []
        if self.plan:
            for key, n in plan_counts(self.plan, batch_size, self.owner).items():
                picks += self._take(key, n)
        elif self.single_source:
            picks = self._take(self._draw_label(), batch_size)
        else:
            picks = self._take("*", batch_size)
        by_group: dict[int, list[int]] = {}
        for gi, bi in picks:
            by_group.setdefault(gi, []).append(bi)
        return {gi: self.groups[gi].blocks[bis] for gi, bis in sorted(by_group.items())}


def lr_lambda(cfg: TrainConfig, total: int) -> Callable[[int], float]:
    """Linear warmup from `warmup_start_factor` to 1, then `lr_decay` to `min_lr_ratio`: cosine
    (SGTM reference), linear (HF Trainer's default) or constant."""

    def f(step: int) -> float:
        if step < cfg.warmup_steps:
            frac = step / max(1, cfg.warmup_steps)
            return cfg.warmup_start_factor + (1 - cfg.warmup_start_factor) * frac
        progress = min(1.0, (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps))
        if cfg.lr_decay == "constant":
            return 1.0
        left = (
            1 - progress if cfg.lr_decay == "linear" else 0.5 * (1 + math.cos(math.pi * progress))
        )
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * left

    return f


def make_optimizer(named_params: list[tuple[str, nn.Parameter]], cfg: TrainConfig):
    """One AdamW. `weight_decay_groups`: "all" decays every parameter (the SGTM and gradient-routing
    TinyStories references); "matrices" decays matrices and embeddings but not biases and layer
    norms (nanoGPT's grouping; for GPT-Neo the same split as HF Trainer's)."""
    if cfg.weight_decay_groups == "all":
        groups = [{"params": [p for _, p in named_params], "weight_decay": cfg.weight_decay}]
    else:
        decay = [p for n, p in named_params if p.dim() >= 2]
        no_decay = [p for n, p in named_params if p.dim() < 2]
        groups = [
            {"params": decay, "weight_decay": cfg.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
    return torch.optim.AdamW(
        [g for g in groups if g["params"]], lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=1e-8
    )


@dataclass
class TrainResult:
    steps: int
    tokens_seen: int
    tokens_by_split: dict[str, int]
    history: list[dict]
    seconds: float  # training time of the phase, summed over the processes that resumed it
    resumed_from: int = 0  # the checkpoint step training continued from (0: a fresh start)
    selection: dict | None = None  # with `select`: {"best_step", "selection_loss"}


def select_trainable(model: nn.Module, objective: Objective) -> list[tuple[str, nn.Parameter]]:
    """The (name, parameter) pairs `objective` trains. With `trainable` given, requires_grad is set to
    match (and stays so after the phase: a later phase without `trainable` inherits it)."""
    named = list(model.named_parameters())
    if objective.trainable is None:
        return named
    keep = set(objective.trainable)
    missing = keep - {n for n, _ in named}
    assert not missing, f"trainable names not in the model: {sorted(missing)[:5]}"
    for n, p in named:
        p.requires_grad_(n in keep)
    return [(n, p) for n, p in named if n in keep]


@dataclass
class _Counters:
    """What a phase has counted so far; saved in its checkpoints."""

    history: list[dict] = field(default_factory=list)
    tokens_seen: int = 0
    tokens_by_split: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    best: dict | None = None  # best-step selection: {"step", "loss", "model", "extra"}


def train(
    objective: Objective,
    groups: list[BlockGroup],
    cfg: TrainConfig,
    seed: int,
    eos_id: int,
    evaluate: Callable[[nn.Module], dict] | None = None,
    progress: bool = True,
    description: str = "training",
    checkpoint: Checkpointer | None = None,
    snapshot: Callable[[nn.Module, int], dict] | None = None,
    select: Callable[[nn.Module], float] | None = None,
    on_log: Callable[[dict], None] | None = None,
    stop: Callable[[dict], bool] | None = None,
) -> TrainResult:
    """Train `objective.model` for `cfg.steps` steps. `evaluate` runs every `cfg.eval_every` steps and
    `snapshot(model, step)` (e.g. save the model, measure losses) every `cfg.snapshot_every` steps;
    their results go into the step's history entry, so they survive a resume. `select(model)` (a
    held-out loss) runs before the first step and after every step; the model ends at the step
    where it was lowest. `on_log(entry)` gets each step's history entry as it is made (tracking).
    `stop(measured)` sees each result of `evaluate`; True ends training after that step (an attack
    setting that broke the retain tolerance: nothing after it is read). The result's `steps` are
    the steps taken."""
    rank, world_size = dist_world()
    assert stop is None or world_size == 1, "stop= reads rank 0's evaluation: one process only"
    model = _prepare_model(objective, cfg)
    torch.manual_seed(seed)
    named = select_trainable(model, objective)
    params = dict(named)  # the model's trainable parameters, by name
    extra = [(f"extra.{i}", p) for i, p in enumerate(objective.extra_parameters)]
    all_named = named + extra
    all_params = [p for _, p in all_named]
    optimizer = make_optimizer(all_named, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg, cfg.steps))
    sampler = BlockSampler(groups, objective, seed, cfg.batch_size, owner=description)
    float_masks: dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor]] = {}
    blind = label_blind(objective)

    if objective.one_pass:  # what makes one pass the per-label passes' sum (see Objective)
        assert objective.row_mode is not None, "one_pass needs row_mode"
        assert objective.loss is _default_loss and objective.reduction == "tokens", (
            "one_pass needs the default loss and 'tokens' reduction"
        )
        assert objective.after_backward is None, "one_pass: no per-label gradient edits"
    merged = "+".join(objective.one_pass)  # the pass those labels' blocks share

    def pass_label(gi: int) -> str:  # the pass a group's blocks run in ("*": all as one)
        label = sampler.groups[gi].label
        return "*" if blind else merged if label in objective.one_pass else label

    # resume: everything the loop needs to continue as if it never stopped
    resumed = checkpoint.load() if checkpoint is not None else None
    if resumed is not None:
        first_step, counts = _restore_checkpoint(resumed, objective, optimizer, scheduler, sampler)
    else:
        first_step, counts = 0, _Counters()
        if select is not None:  # step 0, the input model, is a candidate
            counts.best = _candidate(0, select(model), objective)
            model.train()
    start = time.perf_counter()

    tokens_at_start = counts.tokens_seen
    steps_taken = cfg.steps
    bar = StepProgress(description, cfg.steps, first_step, enabled=progress and rank == 0)
    with bar:
        for step in range(first_step, cfg.steps):
            # the step's hooks; the lr is the scheduler's (warmup, cosine), stepped below
            if objective.on_step:
                objective.on_step(step, cfg.steps)
            sampler.set_step(step, cfg.steps)

            # the global batch (the same on every rank) and its counted target tokens
            batch = sampler.next_batch(cfg.batch_size)  # group index -> (n, T + 1)
            skipped = sampler.skips(batch)
            if skipped:
                # `Objective.skip_labels`: no forward, backward or update and no tokens counted,
                # but the lr schedule advances as if the step had trained
                scheduler.step()
                step_loss = None
            else:
                label_tokens = _count_tokens(batch, sampler.groups, eos_id, counts)
                # this rank's rows (all of them in one process)
                local = shard(batch, rank, world_size)

                # forward/backward per label, each label's gradient masked on its own before it is
                # added to the step's gradient; the labels are those of the global batch, so every
                # rank agrees on what strict mode freezes
                step_loss = torch.zeros((), dtype=torch.float64, device=cfg.device)
                accumulated: dict[str, torch.Tensor] = {}
                touched: dict[str, torch.Tensor | None | bool] = {}
                total = sum(label_tokens.values())
                step_labels = set(label_tokens)  # the labels of the global batch
                for label in dict.fromkeys(pass_label(gi) for gi in batch):
                    gis = [gi for gi in local if pass_label(gi) == label]
                    if not gis and not objective.strict:
                        continue  # this rank holds no blocks of the label: its gradient part is zero
                    shared = label == merged and bool(merged)  # several labels' rows in one pass
                    if gis:
                        blocks = torch.cat([local[gi] for gi in gis])  # (n, T + 1)
                        denom = total if objective.reduction == "tokens" else label_tokens[label]
                        rows = None
                        if shared:  # each row's own label, for the method's per-row mode
                            rows = [sampler.groups[gi].label for gi in gis for _ in local[gi]]
                        for p in all_params:
                            p.grad = None
                        step_loss = _forward_backward(
                            objective, model, blocks, label, denom, cfg, eos_id, step_loss, rows
                        )
                        # a shared pass's labels have masks their modes already make exact
                        masks = {} if shared else objective.update_mask(label) or {}
                        _mask_gradients(params, masks, label, float_masks)
                        if objective.after_backward:
                            objective.after_backward(model, label)
                        _accumulate(accumulated, all_named)
                    if objective.strict:  # what the step's labels may touch, each by its own mask
                        if shared:  # the shared pass's labels that this step holds
                            members = [m for m in objective.one_pass if m in step_labels]
                        else:
                            members = [label]
                        for member in members:
                            _record_touched(touched, params, objective.update_mask(member) or {})
                for n, p in all_named:
                    p.grad = accumulated.get(n)
                step_loss = all_reduce_gradients(all_params, step_loss).item()  # one sync per step
                if not math.isfinite(step_loss):
                    where = checkpoint.describe_last() if checkpoint else "no checkpoints were kept"
                    raise FloatingPointError(
                        f"training diverged: loss {step_loss} at step {step + 1}; {where}"
                    )

                # clip and step (strict: elements no label of the step could touch are restored)
                if cfg.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(all_params, cfg.grad_clip)
                frozen = _snapshot_untouched(optimizer, params, touched) if objective.strict else []
                optimizer.step()
                scheduler.step()
                _restore(frozen)

            # log, evaluate, snapshot, select, checkpoint
            counts.history.append(
                {"step": step + 1, "loss": step_loss, "lr": scheduler.get_last_lr()[0]}
            )
            if skipped:
                counts.history[-1]["skipped"] = True
            last = step + 1 == cfg.steps
            if evaluate and cfg.eval_every and (step + 1) % cfg.eval_every == 0 and not last:
                if rank == 0:  # only rank 0 reports; the models are identical on every rank
                    counts.history[-1]["eval"] = evaluate(model)
                model.train()
            if snapshot and cfg.snapshot_every and (step + 1) % cfg.snapshot_every == 0:
                if rank == 0:
                    counts.history[-1]["snapshot"] = snapshot(model, step + 1)
                model.train()
            if select is not None:  # every rank: the same model, the same choice
                loss = select(model)
                counts.history[-1]["selection_loss"] = loss
                if loss < counts.best["loss"]:
                    counts.best = _candidate(step + 1, loss, objective)
                model.train()
            if checkpoint is not None and checkpoint.due(step + 1, cfg.steps):
                elapsed = counts.seconds + time.perf_counter() - start
                state = _checkpoint_state(step + 1, objective, optimizer, scheduler, sampler)
                checkpoint.save(state | _counters_state(counts, elapsed))
            if on_log is not None and rank == 0:  # experiment tracking: the step's entry
                on_log(counts.history[-1])
            bar.update(step + 1, step_loss, counts.tokens_seen - tokens_at_start)
            if (
                stop is not None
                and "eval" in counts.history[-1]
                and stop(counts.history[-1]["eval"])
            ):
                steps_taken = step + 1
                break
    for p in all_params:
        p.grad = None
    selection = None
    if counts.best is not None:  # leave at the best step
        _load_weights(objective, counts.best["model"], counts.best["extra"])
        selection = {"best_step": counts.best["step"], "selection_loss": counts.best["loss"]}
    return TrainResult(
        steps=steps_taken,
        tokens_seen=counts.tokens_seen,
        tokens_by_split=counts.tokens_by_split,
        history=counts.history,
        seconds=counts.seconds + time.perf_counter() - start,
        resumed_from=first_step,
        selection=selection,
    )


def _prepare_model(objective: Objective, cfg: TrainConfig) -> nn.Module:
    model = objective.model
    model.to(cfg.device).train()
    use_fused_kernels(model, cfg.fused_kernels)
    if cfg.compile:
        # Masking modes and hidden-state losses add and remove forward hooks between passes, and
        # dynamo does not guard on submodule hooks: a graph traced under one label was silently
        # reused under another (measured: sgtm's retain-pass masking vanished under compile).
        if objective.mode is not _plain_mode or objective.loss is not _default_loss:
            raise ConfigError(
                "compile=true works only for methods with a plain forward and the LM loss "
                "(e.g. no-filter, filter): torch.compile ignores the hooks this method adds per pass"
            )
        model.compile()  # in place: parameter names and state dicts are unchanged
    return model


def _count_tokens(batch, groups, eos_id: int, counts: _Counters) -> dict[str, int]:
    """Counted target tokens per label of the batch; adds the batch to the phase's counters."""
    label_tokens: dict[str, int] = {}
    for gi, blocks in batch.items():
        c = int((blocks[:, 1:] != eos_id).sum())
        group = groups[gi]
        label_tokens[group.label] = label_tokens.get(group.label, 0) + c
        counts.tokens_by_split[group.split] = counts.tokens_by_split.get(group.split, 0) + c
        counts.tokens_seen += int(blocks[:, 1:].numel())
    return label_tokens


def _forward_backward(
    objective, model, blocks, label: str, denom: int, cfg, eos_id: int, total, rows=None
):
    """Backward of one pass's blocks in micro-batches, each weighted by its share of `denom`
    counted tokens; returns the running step loss `total` (float64, on the device) plus theirs.
    `rows`: each block's label when several labels share the pass (`Objective.one_pass`)."""
    device = cfg.device
    part = total
    with objective.mode(label) if rows is None else contextlib.nullcontext():
        for i in range(0, len(blocks), cfg.micro_batch_size):
            inputs, targets = inputs_and_targets(blocks[i : i + cfg.micro_batch_size], eos_id)
            n_mb = int((targets != IGNORE).sum())  # on the host: no device sync
            if n_mb == 0:
                continue
            inputs = inputs.to(device, non_blocking=True)
            targets = targets.to(device, non_blocking=True)
            per_row = (
                contextlib.nullcontext()
                if rows is None
                else objective.row_mode(rows[i : i + cfg.micro_batch_size])
            )
            with per_row, autocast(device, cfg.bf16):
                loss = objective.loss(model, inputs, targets, label)
            (loss * (n_mb / denom)).backward()
            # float64 on the device, read once per step (no per-micro-batch sync)
            part = part + loss.detach().double() * n_mb / denom
    return part


def _mask_gradients(params: dict, masks: dict, label: str, cache: dict) -> None:
    for name, mask in masks.items():
        p = params.get(name)
        if p is not None and p.grad is not None:
            p.grad.mul_(_as_float(cache, label, name, mask, p.grad))


def _accumulate(accumulated: dict[str, torch.Tensor], named) -> None:
    """Add the current label's gradients (in .grad) to the step's sum."""
    for n, p in named:
        if p.grad is None:
            continue
        if n in accumulated:
            accumulated[n] += p.grad  # in place: the first label's own tensor
        else:
            accumulated[n] = p.grad


def _record_touched(touched: dict, params: dict, masks: dict) -> None:
    """Strict mode: the union over the step's labels of the elements they may touch."""
    for name in params:
        prev = touched.get(name, False)
        if name not in masks:
            touched[name] = None  # free for this label
        elif prev is not None:
            touched[name] = masks[name] if prev is False else (prev | masks[name])


def _candidate(step: int, loss: float, objective: Objective) -> dict:
    """A copy of the weights at `step` with its selection loss."""
    return {
        "step": step,
        "loss": loss,
        "model": {k: v.detach().clone() for k, v in objective.model.state_dict().items()},
        "extra": [p.detach().clone() for p in objective.extra_parameters],
    }


@torch.no_grad()
def _load_weights(objective: Objective, model_state: dict, extra: list) -> None:
    objective.model.load_state_dict(model_state)
    for p, value in zip(objective.extra_parameters, extra, strict=True):
        p.copy_(value)


def _checkpoint_state(step: int, objective, optimizer, scheduler, sampler) -> dict:
    """What a checkpoint holds of the training state after `step` steps (with `_counters_state`)."""
    return {
        "step": step,
        "model": objective.model.state_dict(),
        "extra": [p.detach() for p in objective.extra_parameters],
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "sampler": sampler.state_dict(),
        "rng": rng_state(),
    }


def _counters_state(counts: _Counters, seconds: float) -> dict:
    return {
        "history": counts.history,
        "tokens_seen": counts.tokens_seen,
        "tokens_by_split": counts.tokens_by_split,
        "seconds": seconds,
        **({"best": counts.best} if counts.best is not None else {}),
    }


def _restore_checkpoint(state: dict, objective, optimizer, scheduler, sampler):
    """The inverse of `_checkpoint_state` and `_counters_state`: returns (step, counters)."""
    _load_weights(objective, state["model"], state["extra"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    sampler.load_state_dict(state["sampler"])
    set_rng_state(state["rng"])
    counts = _Counters(
        history=list(state["history"]),
        tokens_seen=int(state["tokens_seen"]),
        tokens_by_split=dict(state["tokens_by_split"]),
        seconds=float(state.get("seconds", 0.0)),
        best=state.get("best"),
    )
    return int(state["step"]), counts


def _as_float(cache: dict, label: str, name: str, mask: torch.Tensor, like: torch.Tensor):
    """The bool `mask` as a 0/1 tensor of the gradient's dtype, converted once per (label, name)
    (the product is bit-identical to multiplying by the bool mask)."""
    hit = cache.get((label, name))
    if hit is None or hit[0] is not mask or hit[1].dtype != like.dtype:
        hit = (mask, mask.to(device=like.device, dtype=like.dtype))
        cache[(label, name)] = hit
    return hit[1]


def _snapshot_untouched(optimizer, params, touched) -> list:
    """Copies of parameter values and Adam moments at elements no label of the step could touch."""
    saved = []
    for name, mask in touched.items():
        if mask is None:
            continue
        p = params[name]
        frozen = ~mask if mask is not False else torch.ones_like(p, dtype=torch.bool)
        if not frozen.any():
            continue
        state = optimizer.state.get(p, {})
        moments = {
            k: v.detach().clone() for k, v in state.items() if k in ("exp_avg", "exp_avg_sq")
        }
        saved.append((p, frozen, p.detach().clone(), moments, optimizer))
    return saved


@torch.no_grad()
def _restore(saved: list) -> None:
    for p, frozen, value, moments, optimizer in saved:
        p.copy_(torch.where(frozen, value, p))
        state = optimizer.state[p]
        for k in ("exp_avg", "exp_avg_sq"):
            if k in moments:
                state[k].copy_(torch.where(frozen, moments[k], state[k]))
            elif k in state:  # first step: the moments did not exist before it
                state[k].masked_fill_(frozen, 0.0)
