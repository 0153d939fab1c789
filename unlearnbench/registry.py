"""One small registry, used for methods, evaluations and benchmarks.

Entries register themselves with a decorator; a miss raises `UnknownName` listing close matches.
Modules in a package are imported on first lookup so adding an entry is adding a file.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import pkgutil
from collections.abc import Callable
from typing import Generic, TypeVar

from unlearnbench.config import ConfigError

T = TypeVar("T")


class UnknownName(KeyError):
    """A name that is not registered; the message lists the close matches."""

    def __str__(self) -> str:  # KeyError quotes its argument; we want the plain sentence
        return self.args[0]


class Registry(Generic[T]):
    def __init__(self, kind: str, package: str | None = None):
        self.kind = kind
        self.package = package  # imported lazily: every module in it registers its entries
        self._entries: dict[str, T] = {}
        self._discovered = False

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            assert name not in self._entries, f"{self.kind} {name!r} registered twice"
            self._entries[name] = obj
            return obj

        return decorator

    def _discover(self) -> None:
        if self._discovered or self.package is None:
            return
        self._discovered = True
        pkg = importlib.import_module(self.package)
        for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
            if not info.name.startswith("_"):
                importlib.import_module(f"{self.package}.{info.name}")

    def names(self) -> list[str]:
        self._discover()
        return sorted(self._entries)

    def get(self, name: str) -> T:
        self._discover()
        if name in self._entries:
            return self._entries[name]
        close = difflib.get_close_matches(name, self._entries, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UnknownName(
            f"unknown {self.kind} {name!r}{hint} (known: {', '.join(sorted(self._entries))})"
        )

    def __contains__(self, name: str) -> bool:
        self._discover()
        return name in self._entries


# how to install a package an entry may declare in `requires` (by import name)
INSTALL = {
    "lm_eval": 'pip install "unlearnbench[lm-eval]"',
    # a dependency of unlearnbench: missing only where it was installed before peft was one
    "peft": 'pip install "peft>=0.13" (or reinstall unlearnbench)',
}


class MissingPackage(ConfigError):
    """A package an entry needs is not installed (named up front, before anything is trained)."""


def require(packages: tuple[str, ...], needed_by: str) -> None:
    """Refuse, in one sentence, when one of `packages` (import names) cannot be imported. Looks
    them up without importing them."""
    for name in packages:
        if importlib.util.find_spec(name) is None:
            hint = INSTALL.get(name, f"pip install {name}")
            raise MissingPackage(f"{needed_by} needs the package {name!r}, not installed: {hint}")


methods: Registry = Registry("method", "unlearnbench.methods")
evals: Registry = Registry("evaluation", "unlearnbench.evals")
benchmarks: Registry = Registry("benchmark", "unlearnbench.data.benchmarks")
