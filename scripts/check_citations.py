"""Check every quoted citation of the method defaults and presets against the reference code.

Usage: python scripts/check_citations.py REFS_DIR
REFS_DIR holds one checkout per reference repository, named after it (selective-gradient-masking,
gradient-routing, unlearn, open-unlearning, ...). A citation is `path:line "quoted text"` (see
unlearnbench/method_defaults.py, `citations`); it holds when the quoted text occurs, up to
whitespace, within a few lines of the cited line of a file whose path ends with the cited path
(in the repository the source names, where it names one). Prints every miss, then a summary;
exit 0 when there is none, 1 when there are misses, 2 when REFS_DIR is not a folder.
"""

from __future__ import annotations

import sys
from functools import cache
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
NEAR = 3  # lines either side of the cited line (or range) where the quote may be


def _squash(text: str) -> str:
    return " ".join(text.split())


def sources() -> list[tuple[str, str]]:
    """(where, text) of every default's source and of every preset's comments and prose."""
    sys.path.insert(0, str(ROOT))
    from unlearnbench.method_defaults import method_rows, train_config_rows
    from unlearnbench.registry import methods

    out = [(f"TrainConfig.{r.name}", r.source) for r in train_config_rows()]
    for name in methods.names():
        out += [(f"{name}.{r.name}", r.source) for r in method_rows(name)]
    for preset in sorted((ROOT / "unlearnbench" / "presets").glob("*.yaml")):
        # its comments joined (a quote may run over two lines), then its prose
        text = preset.read_text()
        comments = " ".join(line.split("#", 1)[1] for line in text.splitlines() if "#" in line)
        prose = yaml.safe_load(text) or {}
        out.append((f"presets/{preset.name}", comments))
        out.append(
            (f"presets/{preset.name}", f"{prose.get('source', '')} {prose.get('notes', '')}")
        )
    return out


@cache
def _files(refs: Path) -> list[tuple[str, str, Path]]:
    """(repository, path inside it, file) of every file under REFS_DIR."""
    out = []
    for repo in sorted(p for p in refs.iterdir() if p.is_dir()):
        for f in repo.rglob("*"):
            if f.is_file() and ".git" not in f.parts:
                out.append((repo.name, f.relative_to(repo).as_posix(), f))
    return out


@cache
def _lines(path: Path) -> list[str]:
    return path.read_text(errors="replace").splitlines()


def check(refs: Path, where: str, text: str, cite) -> str | None:
    """None when the citation holds, else why not."""
    candidates = [
        (repo, f)
        for repo, rel, f in _files(refs)
        if rel == cite.path or rel.endswith("/" + cite.path)
    ]
    named = [(repo, f) for repo, f in candidates if repo in text]
    candidates = named or candidates
    if not candidates:
        return "no such file in the references"
    quote = _squash(cite.quote)
    for _, f in candidates:
        lines = _lines(f)
        window = lines[max(0, cite.first - 1 - NEAR) : cite.last + NEAR]
        if quote in _squash(" ".join(window)):
            return None
    found = [
        f"{repo}/{f.relative_to(refs / repo).as_posix()}:{i + 1}"
        for repo, f in candidates
        for i, line in enumerate(_lines(f))
        if quote.split(" ")[0] in line and quote in _squash(" ".join(_lines(f)[i : i + 3]))
    ]
    hint = f"; the text is at {', '.join(found[:3])}" if found else "; the text is not in the file"
    return f"not within {NEAR} lines of line {cite.first}{hint}"


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not Path(argv[0]).is_dir():
        print("usage: python scripts/check_citations.py REFS_DIR (a folder of reference checkouts)")
        return 2
    sys.path.insert(0, str(ROOT))
    from unlearnbench.method_defaults import citations

    refs = Path(argv[0])
    checked = misses = 0
    for where, text in sources():
        for cite in citations(text):
            checked += 1
            why = check(refs, where, text, cite)
            if why:
                misses += 1
                print(f'MISS {where}: {cite.path}:{cite.first} "{cite.quote}": {why}')
    repos = ", ".join(p.name for p in sorted(refs.iterdir()) if p.is_dir())
    print(f"{checked} quoted citations checked against {repos}: {misses} missed")
    return 1 if misses else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
