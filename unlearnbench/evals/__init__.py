"""Evaluations: one file each, registered with `@register_eval` and discovered on first lookup.

An evaluation is a function `run(ctx, options) -> EvalResult` plus a frozen options dataclass whose
defaults cite their sources. It runs on a finished run's saved (finalized) model. The evaluator is
the harness, not a method: it may read the true split of every document.

Suites (`unlearnbench/suites/NAME.yaml`, named by NAME, or any YAML path) list evaluations and
their options:

    description: ...
    evals:
      - eval: relearn            # registered name
        key: relearn             # where the result goes in the record (default: the eval name)
        options: {budgets: [10, 25], lrs: [1e-3]}

Results go into the run record as `record["evals"][key]` (a summary dict) and, for evaluations
with curves, `record["curves"][key]` (long-format rows).
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from unlearnbench.config import ConfigError, parse_value
from unlearnbench.data.packing import BlockGroup, pack
from unlearnbench.package_files import SUITES_DIR, find_shipped
from unlearnbench.registry import evals


@dataclass(frozen=True)
class EvalSpec:
    name: str
    options: type
    run: Callable
    description: str = ""
    # boolean options that only add to the result (relearn: `references`): a recorded result that
    # has them on serves a request with them off, and one with them off lends its curves
    additive: tuple[str, ...] = ()


def register_eval(name: str, options: type, additive: tuple[str, ...] = ()):
    def decorator(fn):
        doc = (fn.__doc__ or "").strip().splitlines()
        evals.register(name)(EvalSpec(name, options, fn, doc[0] if doc else "", additive))
        return fn

    return decorator


@dataclass
class EvalResult:
    summary: dict
    curves: list[dict] | None = None


@dataclass
class EvalContext:
    """What an evaluation may use. `model` is the run's finalized model (a fresh copy per eval)."""

    record: dict
    benchmark: object  # Benchmark
    model: torch.nn.Module
    context: int  # tokens per block
    eval_blocks: dict[str, torch.Tensor]  # split -> test blocks (the run's own evaluation)
    store: object  # RunStore
    device: str = "cpu"
    progress: bool = False
    key: str = ""  # where this evaluation's result goes in the record
    # run the same evaluation entry on another run (by record); returns that run's summary
    evaluate_other: Callable[[dict], dict] | None = None
    # the record of a reference run ("no-filter" | "perfect-filter") of the same benchmark,
    # model, labels and seed, trained first if missing
    reference: Callable[[str], dict] | None = None
    # the curves of a recorded result that differs from this request only in additive options
    previous_curves: list[dict] | None = None

    @property
    def eos_id(self) -> int:
        return self.benchmark.eos_id

    @property
    def seed(self) -> int:
        return int(self.record["seed"])


@dataclass(frozen=True)
class SuiteEntry:
    eval: str
    key: str
    options: dict = field(default_factory=dict)  # already parsed into the options' field types


def parse_options(name: str, options_cls: type, raw: dict | None) -> dict:
    """Validate a suite's options against the evaluation's dataclass; returns typed values."""
    hints = typing.get_type_hints(options_cls)
    names = {f.name for f in dataclasses.fields(options_cls)}
    out = {}
    for k, v in (raw or {}).items():
        if k not in names:
            import difflib

            close = difflib.get_close_matches(k, names, n=3, cutoff=0.6)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise ConfigError(
                f"unknown option {k!r} for evaluation {name!r}; {hint}valid: {', '.join(sorted(names))}"
            )
        out[k] = parse_value(v, hints[k], f"{name}.{k}")
    options_cls(**out)  # defaults fill the rest; raises on nothing we did not check
    return out


def load_suite(name: str) -> tuple[list[SuiteEntry], str]:
    """Entries of a suite by name (a shipped suite; `evals/NAME.yaml` too, its old path) or by path;
    returns (entries, description)."""
    import yaml

    path = find_shipped(name, SUITES_DIR, "evals")
    if not path.is_file():
        known = sorted(p.stem for p in SUITES_DIR.glob("*.yaml")) if SUITES_DIR.is_dir() else []
        raise ConfigError(f"unknown suite {name!r} (known: {', '.join(known) or 'none'})")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"suite {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    items = data.get("evals") if isinstance(data, dict) else None
    if not isinstance(items, list) or not items:
        raise ConfigError(f"suite {path} must hold a non-empty list `evals:`")
    entries = []
    for item in items:
        if not isinstance(item, dict) or "eval" not in item:
            raise ConfigError(f"suite {path}: every entry needs `eval: NAME`, got {item!r}")
        spec: EvalSpec = evals.get(item["eval"])
        options = parse_options(spec.name, spec.options, item.get("options"))
        entries.append(SuiteEntry(spec.name, str(item.get("key") or spec.name), options))
    keys = [e.key for e in entries]
    if len(set(keys)) != len(keys):
        raise ConfigError(f"suite {path}: result keys must be unique (set `key:`), got {keys}")
    return entries, str(data.get("description", "")).strip()


# ------------------------------------------------------------------------------------------------
# Shared helpers for evaluations


def documents_of_split(bench, split: str) -> list:
    """Training documents (never test documents) of a true split, in corpus order."""
    return [d for d, s in bench.train if s == split]


def groups_from_documents(bench, docs_by_label: dict[str, list], context: int) -> list[BlockGroup]:
    """One BlockGroup per label from the given documents (the label is the true split here)."""
    from unlearnbench.data.pipeline import token_ids

    ids = token_ids(bench)
    out = []
    for label, docs in docs_by_label.items():
        blocks = pack([ids[d.id] for d in docs], context, bench.eos_id)
        assert len(blocks), f"the {label} documents fill no block of {context} tokens"
        out.append(BlockGroup(label, label, False, blocks))
    return out


def copy_model(model: torch.nn.Module) -> torch.nn.Module:
    import copy

    return copy.deepcopy(model)
