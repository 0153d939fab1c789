"""Methods: one file each, registered with `@register_method` and discovered on first lookup.

A method is a function `setup(ctx, options) -> Objective` plus a frozen options dataclass whose
defaults cite their sources. `kind` is "training" (pretrain from scratch on the labeled stream) or
"posthoc" (start from a base model and unlearn). Methods share functions, not base classes.
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


def register_method(name: str, kind: str, options: type, train_defaults: dict | None = None):
    assert kind in ("training", "posthoc"), kind

    def decorator(fn):
        doc = (fn.__doc__ or "").strip().splitlines()
        spec = MethodSpec(
            name, kind, options, fn, dict(train_defaults or {}), doc[0] if doc else ""
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
