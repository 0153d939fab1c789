"""Methods: one file each, registered with `@register_method` and discovered on first lookup.

A method is a function `setup(ctx, options) -> Objective` plus a frozen options dataclass whose
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


def register_method(
    name: str, kind: str, options: type, train_defaults: dict | None = None, version: int = 1
):
    assert kind in ("training", "posthoc"), kind
    assert isinstance(version, int) and version >= 1, version

    def decorator(fn):
        doc = (fn.__doc__ or "").strip().splitlines()
        spec = MethodSpec(
            name, kind, options, fn, dict(train_defaults or {}), doc[0] if doc else "", version
        )
        methods.register(name)(spec)
        return fn

    return decorator


@dataclass
class RunContext:
    """What a method's setup may use. `model` is fresh (training) or the base (post-hoc)."""

    config: object  # RunConfig
    benchmark: object  # Benchmark
    model: object
    base_model_path: str | None = None
    # the run's loss evaluation (model -> {split: loss}), for methods that record intermediate losses
    evaluate: Callable | None = None
    # the record of the post-hoc base's run when the base is a run of the store (its snapshots)
    base_record: dict | None = None
