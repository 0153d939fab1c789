"""Methods: one file each, registered with `@register_method` and discovered on first lookup.

A method is a function `setup(ctx, options) -> Plan` (its training phases and finalize stages;
a single `Objective` is one phase) plus a frozen options dataclass whose
defaults cite their sources. `kind` is "training" (pretrain from scratch on the labeled stream) or
"posthoc" (start from a base model and unlearn). Methods share functions, not base classes.

Defaults: every option's default cites its source in the comment on (or just above) its line, and
says "ours:" where it deviates from the reference, and why; `train_defaults` (TrainConfig values of
the method) are commented the same way. `scripts/method_defaults.py` turns these comments into the
table of `docs/method-defaults.md` (and `unlearnbench list methods --defaults`); a test keeps it current.

Versions: `register_method(..., version=N)`. The version is part of the resolved run config and of
its hash (from 2 on), so of the run id. Bump it in the same change as anything that alters the
numbers a method produces with its defaults (a default, the loss, the sampling, the optimizer
grouping, a bug fix); then a record made before is not served as the current method's. A change
that cannot alter numbers (a message, a refactor that is bit-identical) keeps the version.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from unlearnbench.registry import methods


@dataclass(frozen=True)
class MethodSpec:
    name: str
    kind: str  # "training" | "posthoc"
    options: type
    setup: Callable
    train_defaults: dict = field(default_factory=dict)  # TrainConfig overrides, with sources
    description: str = ""
    version: int = 1  # bumped by every change that alters the method's numbers (module docstring)
    requires: tuple[str, ...] = ()  # packages (import names) it imports, checked before training
    # post-hoc: `--set` settings of its default base, the matching no-filter run, when that must
    # be a variant (e.g. {"method.forget_after": 0.5, "train.snapshot_every": 25})
    base_settings: dict = field(default_factory=dict)
    # points of test losses the runner records over the last training phase (every 1/N of its
    # steps, and its end: `record["training_curve"]`); they change no training number. 0 = none
    training_curve: int = 0


def register_method(
    name: str,
    kind: str,
    options: type,
    train_defaults: dict | None = None,
    version: int = 1,
    requires: tuple[str, ...] = (),
    base_settings: dict | None = None,
    training_curve: int = 0,
):
    assert kind in ("training", "posthoc"), kind
    assert isinstance(version, int) and version >= 1, version

    def decorator(fn):
        doc = (fn.__doc__ or "").strip().splitlines()
        spec = MethodSpec(
            name,
            kind,
            options,
            fn,
            dict(train_defaults or {}),
            doc[0] if doc else "",
            version,
            tuple(requires),
            dict(base_settings or {}),
            training_curve,
        )
        methods.register(name)(spec)
        return fn

    return decorator


@dataclass
class Phase:
    """One training phase, trained by the runner with THE loop (checkpointed, resumable, counted).

    `objective` is an Objective, or a function of the current model (the one the previous phase or
    stage left) that builds it, for a phase that changes the model (adds adapters) or starts from a
    finalized one (a coherence fine-tune). On resume, completed phases are rebuilt, not retrained:
    a builder may change the model's structure, but what it measures of the weights at build time
    (a copy of them, a norm) must not depend on earlier phases' training."""

    name: str
    objective: object  # Objective | Callable[[model], Objective]
    # TrainConfig overrides for this phase (steps, lr, batch_size, ...); the run's config otherwise
    train: dict = field(default_factory=dict)
    # label -> row indices into `ctx.labeled_blocks(label)`: the phase trains on those blocks
    # only (e.g. a fixed coherence batch); None: on the run's training blocks
    blocks: dict | None = None
    # held-out blocks (N, T + 1) to select the best step by their loss, step 0 included; the model
    # leaves the phase at that step, and the record holds the step and its loss under `name`
    select_blocks: object = None


@dataclass
class Stage:
    """A named finalize stage (ablate, contract, merge): model -> model, no training. `evaluate`:
    the record key under which the runner measures the test losses after it (e.g. post_ablation)."""

    name: str
    apply: Callable
    evaluate: str | None = None


@dataclass
class Plan:
    """What a method's setup returns: its training phases, then its finalize stages (a Stage, or a
    Phase such as a coherence fine-tune), and the metrics it measured itself. The runner measures
    `pre_finalize` after the phases and the final losses after the stages."""

    phases: list
    finalize: list = field(default_factory=list)
    metrics: dict = field(default_factory=dict)
    # how `pre_finalize` runs the model on a test split: split -> context manager (e.g. which
    # expert is active); None: as it is
    pre_finalize_mode: Callable | None = None


def as_plan(setup_result) -> Plan:
    """A setup's Plan; a single Objective is one phase with its `finalize` as one stage."""
    if isinstance(setup_result, Plan):
        return setup_result
    objective = setup_result
    return Plan(
        phases=[Phase("train", objective)],
        finalize=[Stage("finalize", objective.finalize)],
        metrics=objective.extra_metrics,  # the same dict: a stage may still add to it
    )


@dataclass(frozen=True)
class LabeledBlocks:
    """The training blocks of one label as a method sees them: never their true split."""

    label: str
    blocks: object  # (N, T + 1) tensor, in the runner's order
    flagged_adjacent: object  # (N,) bool tensor: a strict classifier's flag per block


@dataclass
class RunContext:
    """What a method's setup may use. `model` is fresh (training) or the base (post-hoc).
    `training_blocks` are the blocks the runner trains on, without their true split."""

    config: object  # RunConfig
    benchmark: object  # Benchmark
    model: object
    base_model_path: str | None = None
    # the record of the post-hoc base's run when the base is a run of the store (its snapshots)
    base_record: dict | None = None
    training_blocks: list[LabeledBlocks] | None = None

    def labeled_blocks(self, label: str):
        """(N, T + 1): every training block whose document carries `label`, in the runner's order
        (the rows a Phase's `blocks` index)."""
        import torch

        picked = [g.blocks for g in self.labeled_groups() if g.label == label]
        if not picked:
            return torch.empty(0, self._context() + 1, dtype=torch.long)
        return torch.cat(picked)

    def labeled_groups(self) -> list[LabeledBlocks]:
        """The training blocks by label; packed from the config when the runner gave none
        (a method's setup called on its own), exactly as the runner packs them."""
        if self.training_blocks is None:
            from unlearnbench.data.pipeline import training_groups

            cfg = self.config
            groups, _ = training_groups(self.benchmark, cfg.labels, cfg.seed, self._context())
            self.training_blocks = labeled_view(groups)
        return self.training_blocks

    def _context(self) -> int:
        from unlearnbench.models.presets import MODEL_PRESETS

        cfg = self.config
        return cfg.train.context or MODEL_PRESETS[cfg.model].context


def labeled_view(groups) -> list[LabeledBlocks]:
    """The runner's block groups without their split: one entry per label, its groups' blocks
    joined in the runner's order (the rows a Phase's `blocks` index), so not even the number of
    groups tells a method the split."""
    import torch

    joined: dict[str, list] = {}
    for g in groups:
        joined.setdefault(g.label, []).append(g)
    return [
        LabeledBlocks(
            label,
            torch.cat([g.blocks for g in gs]),
            torch.cat([torch.full((len(g.blocks),), g.flagged_adjacent) for g in gs]),
        )
        for label, gs in joined.items()
    ]
