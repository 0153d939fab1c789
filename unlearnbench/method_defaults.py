"""The table of every method's defaults and their sources, read from the code itself.

A default's source is the comment on its line, or the comment lines just above it: a method's
options dataclass (`field: type = default  # source`) and its `train_defaults` dict literal
(`"lr": 1e-3,  # source`, also through a module constant or `**` of one). An entry without a
comment of its own shares the comment block above the entries it follows (one comment for a group
of settings). A source that says "ours" marks a deviation from the reference. Nothing here imports
torch: the sources are parsed, only the values come from the registered objects.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import io
import re
import sys
import tokenize
import typing
from dataclasses import dataclass
from functools import cache
from pathlib import Path


@dataclass(frozen=True)
class DefaultRow:
    name: str  # the option's name; "train.<field>" for a training default
    default: str  # as a config file would write it
    source: str  # the comment: repository, file, line or paper section; "ours: ..." and why
    ours: bool  # the source marks it as a deviation from the reference


# --- comments in source files --------------------------------------------------------------------


@cache
def _parsed(path: str) -> tuple[ast.Module, dict[int, str], list[str]]:
    """The module's AST, its comments by line number, and its lines."""
    text = Path(path).read_text()
    comments = {}
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string.lstrip("#").strip()
    return ast.parse(text), comments, text.splitlines()


def _comment(path: str, first: int, last: int) -> tuple[str, str]:
    """(leading, trailing) comment text of a statement on lines first..last: the comment-only
    lines right above it and the comments on its own lines."""
    _, comments, lines = _parsed(path)
    trailing = " ".join(comments[n] for n in range(first, last + 1) if n in comments)
    above, n = [], first - 1
    while n >= 1 and lines[n - 1].strip().startswith("#"):
        above.insert(0, comments.get(n, ""))
        n -= 1
    return " ".join(x for x in above if x), trailing


def _sources(path: str, entries: list[tuple[str, int, int]], group: str = "") -> dict[str, str]:
    """name -> source for (name, first line, last line) entries in order. An entry without a
    comment shares the comment block above the run of uncommented entries it belongs to (the
    entry that opens the run has the block above it and no comment on its own line)."""
    out = {}
    for name, first, last in entries:
        leading, trailing = _comment(path, first, last)
        out[name] = " ".join(x for x in (leading, trailing) if x) or group
        if leading or trailing:
            group = leading if leading and not trailing else ""
    return out


def option_sources(cls: type) -> dict[str, str]:
    """Field name -> source comment of a dataclass defined at a module's top level, with the
    fields it inherits from dataclasses of the same kind (e.g. the coherence phase's options)."""
    out: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass is object or not dataclasses.is_dataclass(klass):
            continue
        path = inspect.getsourcefile(klass)
        tree, _, _ = _parsed(path)
        node = next(
            n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == klass.__name__
        )
        entries = [
            (stmt.target.id, stmt.lineno, stmt.end_lineno)
            for stmt in node.body
            if isinstance(stmt, ast.AnnAssign)
            and isinstance(stmt.target, ast.Name)
            and "ClassVar" not in ast.unparse(stmt.annotation)
        ]
        out.update(_sources(path, entries))
    return out


def _module_path(module_name: str) -> str:
    importlib.import_module(module_name)
    return inspect.getsourcefile(sys.modules[module_name])


def _dict_sources(path: str, node: ast.AST, module_name: str) -> dict[str, str]:
    """Key -> source of a dict literal (following names and `**name` to their definitions); a
    module constant's own comment block is the group comment of its first entries."""
    group = ""
    if isinstance(node, ast.Name):
        path, stmt, module_name = _definition(path, node.id, module_name)
        group, node = _comment(path, stmt.lineno, stmt.lineno)[0], stmt.value
    if not isinstance(node, ast.Dict):
        return {}
    out: dict[str, str] = {}
    entries = []
    for key, value in zip(node.keys, node.values, strict=True):
        if key is None:  # {**OTHER, ...}
            out.update(_dict_sources(path, value, module_name))
        elif isinstance(key, ast.Constant):
            entries.append((key.value, key.lineno, value.end_lineno))
    out.update(_sources(path, entries, group))
    return out


def _definition(path: str, name: str, module_name: str) -> tuple[str, ast.AST, str]:
    """Where a top-level name of a module is assigned: here, or in the module it imports it from."""
    tree, _, _ = _parsed(path)
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == name for t in stmt.targets
        ):
            return path, stmt, module_name
        if isinstance(stmt, ast.ImportFrom) and any(
            (a.asname or a.name) == name for a in stmt.names
        ):
            other = stmt.module
            return _definition(_module_path(other), name, other)
    raise LookupError(f"{name} is not defined at the top level of {module_name}")


def train_default_sources(spec) -> dict[str, str]:
    """Key -> source of a method's `train_defaults`, from its `register_method` call."""
    module_name = spec.setup.__module__
    path = _module_path(module_name)
    tree, _, _ = _parsed(path)
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for dec in node.decorator_list:
            if (
                isinstance(dec, ast.Call)
                and getattr(dec.func, "id", None) == "register_method"
                and dec.args
                and getattr(dec.args[0], "value", None) == spec.name
            ):
                for kw in dec.keywords:
                    if kw.arg == "train_defaults":
                        return _dict_sources(path, kw.value, module_name)
                return {}
    return {}


# --- the table -----------------------------------------------------------------------------------


def format_default(value) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, tuple):
        return "[" + ", ".join(format_default(v) for v in value) + "]"
    return repr(value)


def _is_ours(source: str) -> bool:
    return re.search(r"\bours\b", source, re.IGNORECASE) is not None


# --- citations -----------------------------------------------------------------------------------

# A citation: a file of a reference repository, a line (or range) and the reference's own text
# for the value, quoted: `trainer.py:361 "betas=(0.9, 0.95)"` (single quotes where the text holds
# double ones). A citation without a path (`:510 "..."`) is in the file cited just before it.
CITATION = re.compile(
    r"(?:(?P<path>[\w][\w.+/-]*\.(?:py|sh|yaml|yml|toml|json|md|cfg|txt))|(?<=[\s(,;]))"
    r":(?P<line>\d+)(?:-(?P<end>\d+))?\s+(?:\"(?P<dq>[^\"]+)\"|'(?P<sq>[^']+)')"
)
# a paper's section, table or appendix, or the paper itself by author and year
PAPER = re.compile(r"\bet al\.|arXiv|\b[Ss]ection\b|§|\bTable \d|\bAppendix\b")


@dataclass(frozen=True)
class Citation:
    path: str  # as cited: a path inside a reference repository, or its tail
    first: int  # the cited line (1-based)
    last: int  # the end of a cited range (= first for one line)
    quote: str  # the reference's own text, which must occur at (or near) those lines


# any `path:line` mention, quoted or not: a bare ":N" citation is in the file mentioned last
_MENTION = re.compile(r"(?P<path>[\w][\w.+/-]*\.(?:py|sh|yaml|yml|toml|json|md|cfg|txt)):\d+")


def citations(text: str) -> list[Citation]:
    """The quoted citations in a source text, in order."""
    out = []
    for m in CITATION.finditer(text):
        before = [x.group("path") for x in _MENTION.finditer(text, 0, m.start() + 1)]
        path = m.group("path") or (before[-1] if before else "")
        if not path:
            continue  # a bare ":N" with no file cited before it: not a citation
        first = int(m.group("line"))
        last = int(m.group("end") or first)
        out.append(Citation(path, first, last, m.group("dq") or m.group("sq")))
    return out


def sourced(text: str) -> bool:
    """A default's source is checkable: a quoted citation, "ours" (a deviation and why), or a
    paper section."""
    return bool(citations(text)) or _is_ours(text) or PAPER.search(text) is not None


def _dataclass_rows(cls: type, prefix: str = "") -> list[DefaultRow]:
    sources = option_sources(cls)
    rows = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if typing.get_origin(hints.get(f.name)) is typing.ClassVar:
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        src = sources.get(f.name, "")
        rows.append(DefaultRow(prefix + f.name, format_default(default), src, _is_ours(src)))
    return rows


def train_config_rows() -> list[DefaultRow]:
    """The training defaults every method starts from (TrainConfig)."""
    from unlearnbench.config import TrainConfig

    return _dataclass_rows(TrainConfig)


def method_rows(name: str) -> list[DefaultRow]:
    """Every option of a method, then every training default it sets (as train.<field>)."""
    from unlearnbench.registry import methods

    spec = methods.get(name)
    rows = _dataclass_rows(spec.options)
    sources = train_default_sources(spec)
    for key, value in spec.train_defaults.items():
        src = sources.get(key, "")
        rows.append(DefaultRow(f"train.{key}", format_default(value), src, _is_ours(src)))
    return rows


def _md_table(rows: list[DefaultRow]) -> list[str]:
    def cell(s: str) -> str:
        return s.replace("|", "\\|") or "-"

    out = ["| option | default | source | deviates |", "|---|---|---|---|"]
    for r in rows:
        ours = "ours" if r.ours else ""
        out.append(f"| `{r.name}` | `{cell(r.default)}` | {cell(r.source)} | {ours} |")
    return out


def markdown() -> str:
    """docs/method-defaults.md: the training defaults, then one table per registered method."""
    from unlearnbench.registry import methods

    lines = [
        "# Method defaults",
        "",
        "Generated from the code by `python scripts/method_defaults.py` (also shown by",
        "`unlearnbench list methods --defaults`); do not edit by hand, a test checks it is current.",
        "Each default's source is the comment next to it in the method's file: the reference",
        "(repository, file, line or paper section), or `ours:` and why where we deviate. A method's",
        "`train.*` rows override the training defaults below; its version enters the run id.",
        "",
        "## Training defaults (`TrainConfig`, every method)",
        "",
        *_md_table(train_config_rows()),
    ]
    for name in methods.names():
        spec = methods.get(name)
        lines += ["", f"## `{name}`", ""]
        lines += [f"{spec.kind}, version {spec.version}. {spec.description}", ""]
        lines += _md_table(method_rows(name))
    return "\n".join(lines) + "\n"
