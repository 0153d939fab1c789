"""One small registry, used for methods, evaluations and benchmarks.

Entries register themselves with a decorator; a miss raises `UnknownName` listing close matches.
Adding an entry is adding a file: the modules of a registry's package are found on first lookup.

They are found by reading their source, not by importing it (importing a method means importing
torch, seconds before anything is printed): each module's `@register_...("name", ...)` calls give
the names, their literal keywords (`kind=...`), the registered function's docstring and the fields
of the options dataclass the call names (`static_entry`). `names()` and `static_entry` import
nothing; `get(name)` imports the one module that registers `name`. So `unlearnbench list methods`
and a `--set` typo are answered without torch. A module whose registration the reader cannot
follow (a computed name) is imported as before.
"""

from __future__ import annotations

import ast
import builtins
import importlib
import importlib.util
import pkgutil
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from unlearnbench.config import ConfigError
from unlearnbench.suggest import unknown_name

T = TypeVar("T")


class UnknownName(KeyError):
    """A name that is not registered; the message lists the close matches."""

    def __str__(self) -> str:  # KeyError quotes its argument; we want the plain sentence
        return self.args[0]


@dataclass(frozen=True)
class StaticEntry:
    """What a module's source says about one registration, read without importing it."""

    name: str
    module: str  # the module that registers it
    keywords: dict  # the registration call's literal keyword arguments (kind="posthoc", ...)
    description: str  # the first line of the registered function's docstring
    # the options dataclass's fields: name -> its type (object where the annotation is not
    # plain builtins and typing); None when the class is not a plain dataclass of that module
    options: dict[str, object] | None


# annotations are evaluated in these names only (what options classes use: int, float, str,
# bool, tuple[...], X | None, Literal, ...); anything else reads as `object` (not checked early)
_ANNOTATION_NAMES = {**vars(builtins), **{n: getattr(typing, n) for n in typing.__all__}}


def _annotation_type(node: ast.expr) -> object:
    try:
        return eval(compile(ast.Expression(node), "<annotation>", "eval"), dict(_ANNOTATION_NAMES))
    except Exception:
        return object


def _options_fields(
    tree: ast.Module, class_name: str, path: Path | None = None, depth: int = 0
) -> dict[str, object] | None:
    """The fields of the top-level dataclass `class_name` (ClassVars are not fields), its bases'
    first when each is a dataclass of this module or imported by name from a sibling module
    (`from unlearnbench.methods._coherence import CoherenceOptions`); None when a base cannot be
    read that way (only an import can tell)."""
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            if not any("dataclass" in ast.unparse(d) for d in node.decorator_list) or depth > 4:
                return None
            fields: dict[str, object] = {}
            for base in node.bases:  # dataclass fields: the bases' first, in order
                inherited = _base_fields(tree, base, path, depth)
                if inherited is None:
                    return None
                fields |= inherited
            for stmt in node.body:
                if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                    if "ClassVar" not in ast.unparse(stmt.annotation):
                        fields[stmt.target.id] = _annotation_type(stmt.annotation)
            return fields
    return None


def _base_fields(tree: ast.Module, base: ast.expr, path: Path | None, depth: int):
    """The fields of a base class named in `tree`: defined there, or imported from a module of
    this package beside `path`."""
    if not isinstance(base, ast.Name):
        return None
    if any(isinstance(n, ast.ClassDef) and n.name == base.id for n in tree.body):
        return _options_fields(tree, base.id, path, depth + 1)
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and path is not None:
            if any(a.name == base.id and a.asname is None for a in node.names):
                parts = node.module.split(".")
                source = _package_file(path, parts)
                if source is None:
                    return None
                other = ast.parse(source.read_text(encoding="utf-8"), str(source))
                return _options_fields(other, base.id, source, depth + 1)
    return None


def _package_file(path: Path, parts: list[str]) -> Path | None:
    """The source file of module `parts` (e.g. unlearnbench.methods._coherence), found by walking up
    from `path` to the folder that holds the package `parts[0]`."""
    for folder in path.parents:
        if folder.name == parts[0]:
            candidate = folder.parent.joinpath(*parts).with_suffix(".py")
            return candidate if candidate.is_file() else None
    return None


def scan_module(path: Path, module: str, decorator: str) -> tuple[list[StaticEntry], bool]:
    """The registrations `@decorator("name", ...)` in a module's source, and whether every call to
    `decorator` in it was one the reader could follow."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    entries, calls = [], 0
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == decorator:
            calls += 1
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for d in node.decorator_list:
            if not (isinstance(d, ast.Call) and getattr(d.func, "id", None) == decorator):
                continue
            if not (
                d.args and isinstance(d.args[0], ast.Constant) and isinstance(d.args[0].value, str)
            ):
                continue
            keywords, options = {}, None
            for kw in d.keywords:
                if kw.arg == "options" and isinstance(kw.value, ast.Name):
                    options = _options_fields(tree, kw.value.id, path)
                else:
                    try:
                        keywords[kw.arg] = ast.literal_eval(kw.value)
                    except ValueError:
                        pass  # not a literal (train_defaults=SGTM_TRAINER): only get() has it
            doc = (ast.get_docstring(node) or "").strip().splitlines()
            entries.append(
                StaticEntry(d.args[0].value, module, keywords, doc[0] if doc else "", options)
            )
    return entries, len(entries) == calls


class Registry(Generic[T]):
    def __init__(self, kind: str, package: str | None = None, decorator: str | None = None):
        self.kind = kind
        self.package = package  # its modules register their entries
        self.decorator = decorator  # the registration function's name, read in their source
        self._entries: dict[str, T] = {}
        self._discovered = False
        self._static: dict[str, StaticEntry] | None = None

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._entries:  # a plugin reusing a name: an error even under python -O
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._entries[name] = obj
            return obj

        return decorator

    def _modules(self) -> list[tuple[str, Path]]:
        """(module name, source path) of the package's public modules, without importing it."""
        spec = importlib.util.find_spec(self.package)
        paths = list(spec.submodule_search_locations or [])
        found = sorted(pkgutil.iter_modules(paths), key=lambda m: m.name)
        return [
            (f"{self.package}.{m.name}", Path(m.module_finder.path) / f"{m.name}.py")
            for m in found
            if not m.name.startswith("_") and not m.ispkg
        ]

    def _scan(self) -> dict[str, StaticEntry]:
        """The registrations read from the package's sources; modules the reader cannot follow
        are imported."""
        if self._static is None:
            self._static = {}
            if self.package is None or self.decorator is None:
                return self._static
            for module, path in self._modules():
                try:
                    entries, complete = scan_module(path, module, self.decorator)
                except (OSError, SyntaxError, UnicodeDecodeError):
                    entries, complete = [], False  # the import will say what is wrong
                self._static.update({e.name: e for e in entries})
                if not complete:
                    importlib.import_module(module)
        return self._static

    def _discover(self) -> None:
        """Import every module of the package (each registers its entries)."""
        if self._discovered or self.package is None:
            return
        self._discovered = True
        pkg = importlib.import_module(self.package)
        for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
            if not info.name.startswith("_"):
                importlib.import_module(f"{self.package}.{info.name}")

    def names(self) -> list[str]:
        if self.decorator is None:
            self._discover()
        return sorted(set(self._scan()) | set(self._entries))

    def static_entry(self, name: str) -> StaticEntry | None:
        """What the source says about `name`, with nothing imported; None if it is registered
        another way. An unknown name raises `UnknownName`, as `get` does."""
        if name in self._scan():
            return self._static[name]
        if name not in self._entries:
            self._unknown(name, self.names())
        return None

    def get(self, name: str) -> T:
        if name not in self._entries and name in self._scan():
            importlib.import_module(self._static[name].module)  # the one module that has it
        if name not in self._entries:
            self._discover()
        if name in self._entries:
            return self._entries[name]
        self._unknown(name, self._entries)

    def _unknown(self, name: str, known) -> typing.NoReturn:
        raise UnknownName(unknown_name(self.kind, name, sorted(known)))

    def __contains__(self, name: str) -> bool:
        return name in self.names()


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


methods: Registry = Registry("method", "unlearnbench.methods", "register_method")
evals: Registry = Registry("evaluation", "unlearnbench.evals", "register_eval")
benchmarks: Registry = Registry("benchmark", "unlearnbench.data.benchmarks", "register_benchmark")
