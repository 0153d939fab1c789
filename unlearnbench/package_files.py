"""YAML files shipped inside the package: run presets (`presets/`) and evaluation suites (`suites/`).

They are package data, so an installed wheel holds them as a source checkout does. A command names
one by its name (`--config sgtm-tinystories-64M`, `--suite robust`), or by the path it had at the
top of a checkout before it moved into the package (`methods/NAME.yaml`, `evals/NAME.yaml`), so
older commands keep working from any directory; a path to an existing YAML file is the user's own.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PRESETS_DIR = PACKAGE_DIR / "presets"
SUITES_DIR = PACKAGE_DIR / "suites"
LM_EVAL_TASKS_DIR = PACKAGE_DIR / "lm_eval_tasks"  # lm-evaluation-harness task YAMLs and their data
YAML = (".yaml", ".yml")


def find_shipped(name: str | Path, directory: Path, old_dir: str) -> Path:
    """The file `name` names: an existing YAML path as given; else the shipped file of that name in
    `directory` when `name` is a bare name or `old_dir/NAME.yaml`; else `name` unchanged (so the
    caller's "not found" names what the user typed)."""
    path = Path(name)
    if path.suffix in YAML and path.is_file():
        return path
    if path.parent in (Path("."), Path(old_dir)):
        shipped = directory / f"{path.stem if path.suffix in YAML else path.name}.yaml"
        if shipped.is_file():
            return shipped
    return path
