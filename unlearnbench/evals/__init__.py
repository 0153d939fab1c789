"""Evaluations: one file each, registered with `@register_eval` and discovered on first lookup.

An evaluation is a function `run(ctx, options) -> EvalResult` plus a frozen options dataclass whose
defaults cite their sources. It runs on a finished run's saved (finalized) model. The evaluator is
the harness, not a method: it may read the true split of every document.

Each evaluation declares its headline metrics when it registers (`metrics=[Metric(...)]`: a name,
whether higher or lower is better, how to read it from the summary, a title and a unit). The runner
reads them off the summary and stores them with it (`summary["headline"]`), so the leaderboard, the
CLI, the plots and the report show any evaluation's numbers from the record alone.

Suites (`unlearnbench/suites/NAME.yaml`, named by NAME, or any YAML path) list evaluations and
their options:

    description: ...
    evals:
      - eval: relearn            # registered name
        key: relearn             # the result's name within the suite (default: the eval name)
        options: {budgets: [10, 25], lrs: [1e-3]}

Results go into the run record as `record["evals"]["SUITE/KEY"]` (a summary dict) and, for
evaluations with curves, `record["curves"]["SUITE/KEY"]` (long-format rows): two suites that run
the same evaluation with different options keep both results.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from unlearnbench.config import ConfigError, parse_value, read_yaml
from unlearnbench.data.packing import BlockGroup, pack
from unlearnbench.package_files import SUITES_DIR, find_shipped
from unlearnbench.registry import evals, require
from unlearnbench.suggest import unknown_name

HIGHER, LOWER = "higher", "lower"  # which way a metric is better
UNITS = ("nats", "accuracy", "steps")  # how a value is shown (losses and accuracies: 3 decimals)


class NotReached(typing.NamedTuple):
    """A measured count that did not happen within `limit` (steps to recover: not within budget)."""

    limit: int | None


@dataclass(frozen=True)
class Metric:
    """A headline number of an evaluation. `read(summary)` gives a number, None (not measured),
    `NotReached(limit)`, or a dict {part: value} for one metric per part (relearn: per budget),
    whose title then holds `{}` for the part."""

    name: str
    direction: str  # HIGHER or LOWER is better
    read: Callable[[dict], object]
    title: str = ""  # the table's column title (default: the name)
    unit: str = "nats"

    def __post_init__(self):
        assert self.direction in (HIGHER, LOWER), f"{self.name}: direction {self.direction!r}"
        assert self.unit in UNITS, f"{self.name}: unit {self.unit!r} (one of {UNITS})"


def headline(metrics: tuple[Metric, ...], summary: dict) -> list[dict]:
    """The declared metrics read off a summary, as the record stores them: one entry per metric
    (per part for a dict-valued metric) with its value; `limit` when it was not reached."""
    out = []
    for m in metrics:
        value = m.read(summary) if summary.get("applicable") is not False else None
        parts = value.items() if isinstance(value, dict) else [(None, value)]
        for part, v in parts:
            title = m.title or m.name
            if part is not None:  # one column per part: its title names the part
                title = title.format(part) if "{}" in title else f"{title} ({part})"
            entry = {
                "name": m.name if part is None else f"{m.name}@{part}",
                "metric": m.name,
                "title": title,
                "direction": m.direction,
                "unit": m.unit,
                "value": None,
            }
            if isinstance(v, NotReached):
                entry["limit"] = v.limit
            elif isinstance(v, int | float) and not isinstance(v, bool):
                entry["value"] = v
            out.append(entry)
    return out


@dataclass(frozen=True)
class EvalSpec:
    name: str
    options: type
    run: Callable
    description: str = ""
    metrics: tuple[Metric, ...] = ()  # its headline numbers (tables, CLI, report)
    requires: tuple[str, ...] = ()  # optional packages (import names), checked when a suite loads


def register_eval(
    name: str,
    options: type,
    metrics: list[Metric] | None = None,
    requires: tuple[str, ...] = (),
):
    def decorator(fn):
        doc = (fn.__doc__ or "").strip().splitlines()
        spec = EvalSpec(name, options, fn, doc[0] if doc else "", tuple(metrics or ()), requires)
        evals.register(name)(spec)
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
    suite: str = ""  # the suite's name: results of two suites never overwrite each other

    @property
    def record_key(self) -> str:
        """Where the result goes in the record: `SUITE/KEY`."""
        return f"{self.suite}/{self.key}" if self.suite else self.key


def parse_options(name: str, options_cls: type, raw: dict | None) -> dict:
    """Validate a suite's options against the evaluation's dataclass; returns typed values."""
    hints = typing.get_type_hints(options_cls)
    names = {f.name for f in dataclasses.fields(options_cls)}
    out = {}
    for k, v in (raw or {}).items():
        if k not in names:
            raise ConfigError(f"{name}: " + unknown_name("option", k, sorted(names), 0.6))
        out[k] = parse_value(v, hints[k], f"{name}.{k}")
    options_cls(**out)  # defaults fill the rest; raises on nothing we did not check
    return out


def load_suite(name: str) -> tuple[list[SuiteEntry], str]:
    """Entries of a suite by name (a shipped suite; `evals/NAME.yaml` too, its old path) or by path;
    returns (entries, description)."""
    path = find_shipped(name, SUITES_DIR, "evals")
    if not path.is_file():
        known = sorted(p.stem for p in SUITES_DIR.glob("*.yaml")) if SUITES_DIR.is_dir() else []
        raise ConfigError(unknown_name("suite", name, known))
    data = read_yaml(path, "suite") or {}
    items = data.get("evals") if isinstance(data, dict) else None
    if not isinstance(items, list) or not items:
        raise ConfigError(f"suite {path} must hold a non-empty list `evals:`")
    if not isinstance(data.get("references", True), bool):  # read by suites.suite_compares
        raise ConfigError(f"suite {path}: `references:` must be true or false")
    entries = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("eval"), str):
            raise ConfigError(f"suite {path}: every entry needs `eval: NAME`, got {item!r}")
        if not isinstance(item.get("options") or {}, dict):
            raise ConfigError(f"suite {path}: `options:` of {item['eval']} must be a mapping")
        if not isinstance(item.get("key", ""), str):
            raise ConfigError(f"suite {path}: `key:` of {item['eval']} must be a name")
        spec: EvalSpec = evals.get(item["eval"])
        require(spec.requires, f"evaluation {spec.name!r} (suite {path.stem})")
        options = parse_options(spec.name, spec.options, item.get("options"))
        key = str(item.get("key") or spec.name)
        if "/" in key:
            raise ConfigError(f"suite {path}: a result key may not hold '/', got {key!r}")
        entries.append(SuiteEntry(spec.name, key, options, suite=path.stem))
    keys = [e.key for e in entries]
    if len(set(keys)) != len(keys):
        raise ConfigError(f"suite {path}: result keys must be unique (set `key:`), got {keys}")
    return entries, str(data.get("description", "")).strip()


def suite_field(name: str, field: str, default=None):
    """A suite file's top-level `field` (e.g. `references`), or `default`."""
    data = read_yaml(find_shipped(name, SUITES_DIR, "evals"), "suite") or {}
    return data.get(field, default) if isinstance(data, dict) else default


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
