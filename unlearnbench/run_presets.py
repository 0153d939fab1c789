"""The YAML run presets shipped in `unlearnbench/presets/` (paper hyperparameters for the
paper-size models).

A preset is a config file for `unlearnbench run METHOD --config NAME` whose name starts with the
method (`sgtm-wikipedia-254M`); it names its model (`model:`) and cites its `source:`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from unlearnbench.package_files import PRESETS_DIR, find_shipped


@dataclass(frozen=True)
class RunPreset:
    name: str
    path: Path
    model: str
    source: str


def preset_dirs() -> list[Path]:
    """`methods/` in the working directory (one's own presets), then the shipped ones."""
    dirs = [Path.cwd() / "methods", PRESETS_DIR]
    out: list[Path] = []
    for d in dirs:
        if d.is_dir() and d.resolve() not in [o.resolve() for o in out]:
            out.append(d)
    return out


def run_presets() -> list[RunPreset]:
    import yaml

    found: dict[str, RunPreset] = {}
    for d in preset_dirs():
        for path in sorted(d.glob("*.yaml")):
            if path.stem in found:
                continue
            data = yaml.safe_load(path.read_text()) or {}
            source = " ".join(str(data.get("source", "")).split())
            found[path.stem] = RunPreset(path.stem, path, str(data.get("model", "")), source)
    return sorted(found.values(), key=lambda p: p.name)


def preset_path(name: str | Path) -> Path:
    """The config file `--config` names: a YAML path, or a shipped preset by its name (or by its
    old path, `methods/NAME.yaml`); anything else unchanged, for the loader's own message."""
    return find_shipped(name, PRESETS_DIR, "methods")
