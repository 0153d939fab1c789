"""Benchmarks: a document source, a split rule, a train/test partition and a tokenizer.

Each module in this package registers its benchmarks with `@register_benchmark(name, options=...)`
on a function `load(options) -> Benchmark`. `load_benchmark` memoizes per process, so a sequence of
runs (the demo, a sweep) builds each benchmark once.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field

from unlearnbench.config import ConfigError
from unlearnbench.data.documents import Document
from unlearnbench.registry import benchmarks


@dataclass
class Benchmark:
    name: str
    train: list[tuple[Document, str]]  # (document, true split)
    # split -> test documents; a split the benchmark lacks is absent
    test: dict[str, list[Document]]
    tokenizer: object  # a transformers PreTrainedTokenizerFast
    probes: list = field(default_factory=list)  # (FactProbe, split) pairs, where the world has them
    description: str = ""
    max_doc_tokens: int = 0  # keep each document's first N tokens (a recipe's truncation); 0 = all

    @property
    def eos_id(self) -> int:
        return self.tokenizer.eos_token_id


@dataclass(frozen=True)
class BenchmarkSpec:
    name: str
    options: type  # dataclass of options with defaults
    load: Callable[..., Benchmark]
    description: str
    # the training budget its world needs (e.g. {"steps": 4200}) for runs that train from scratch,
    # under the method's own train defaults; empty: TrainConfig's, calibrated for the built-in worlds
    train_defaults: dict = field(default_factory=dict)


def register_benchmark(
    name: str, options: type, description: str = "", train_defaults: dict | None = None
):
    def decorator(fn):
        text = description or fn.__doc__ or ""
        spec = BenchmarkSpec(name, options, fn, text, dict(train_defaults or {}))
        benchmarks.register(name)(spec)
        return fn

    return decorator


_CACHE: dict[str, Benchmark] = {}


def load_benchmark(name: str, options: dict) -> Benchmark:
    spec: BenchmarkSpec = benchmarks.get(name)
    key = name + json.dumps(options, sort_keys=True, default=str)
    if key not in _CACHE:
        try:
            bench = spec.load(spec.options(**options))
        except (TypeError, ValueError) as e:  # bad options are the user's mistake
            raise ConfigError(f"benchmark {name!r}: {e}") from None
        for split in ("forget", "retain"):
            if not bench.test.get(split):
                raise ConfigError(f"benchmark {name!r} has no {split} test documents")
        if not any(s == "forget" for _, s in bench.train):
            raise ConfigError(f"benchmark {name!r} has no forget training documents")
        _CACHE[key] = bench
    return _CACHE[key]


def option_defaults(name: str) -> dict:
    spec: BenchmarkSpec = benchmarks.get(name)
    return {f.name: f.default for f in dataclasses.fields(spec.options)}
