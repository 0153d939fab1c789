"""Presets and suites ship inside the package: found by name from any directory, from a checkout
and from an installed wheel; CI runs the README's test command."""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from unlearnbench.config import ConfigError
from unlearnbench.evals import load_suite
from unlearnbench.package_files import PRESETS_DIR, SUITES_DIR, source_digest
from unlearnbench.run_presets import preset_path, run_presets
from unlearnbench.runner import resolve_run_config

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command():
    ci = [x for x in (ROOT / ".ci" / "run").read_text().splitlines() if "pytest" in x]
    readme = [x for x in (ROOT / "README.md").read_text().splitlines() if "python -m pytest" in x]
    assert len(ci) == 1 and ci == readme
    assert "ruff check . && ruff format --check . && python -m pytest" in ci[0]


def test_presets_and_suites_by_name_or_old_path_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not the checkout: nothing is found relative to it
    assert {p.path.parent for p in run_presets()} == {PRESETS_DIR}
    shipped = PRESETS_DIR / "no-filter-curriculum.yaml"
    for name in ("no-filter-curriculum", "no-filter-curriculum.yaml", "methods/" + shipped.name):
        assert preset_path(name) == shipped
        cfg = resolve_run_config("no-filter", "storyworld-lang", None, 0, config_file=name)
        assert cfg.method_options == {"forget_after": 0.5}
    robust, _ = load_suite("robust")
    assert load_suite("evals/robust.yaml")[0] == robust and robust
    # a file of the user's, at the old path, is the user's own
    (tmp_path / "methods").mkdir()
    own = tmp_path / "methods" / "no-filter-curriculum.yaml"
    own.write_text("method:\n  forget_after: 0.25\n")
    cfg = resolve_run_config(
        "no-filter", "storyworld-lang", None, 0, config_file=own.relative_to(tmp_path)
    )
    assert cfg.method_options == {"forget_after": 0.25}
    with pytest.raises(ConfigError, match="config file not found: nope.yaml"):
        resolve_run_config("no-filter", "storyworld-lang", None, 0, config_file="nope.yaml")
    with pytest.raises(ConfigError, match="unknown suite 'evals/nope.yaml'.*robust"):
        load_suite("evals/nope.yaml")


@pytest.mark.slow
def test_an_installed_wheel_finds_its_presets_and_suites(tmp_path):
    """Build a wheel from the package alone, install it into a fresh environment (its
    dependencies borrowed from this one, nothing downloaded) and use it outside the checkout."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(
        ROOT / "unlearnbench", src / "unlearnbench", ignore=shutil.ignore_patterns("__pycache__")
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"COLUMNS": "200"}
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    wheels = tmp_path / "wheels"
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", wheels, src],
        check=True,
        env=env,
    )
    (wheel,) = wheels.glob("unlearnbench-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for d, shipped in (("presets", PRESETS_DIR), ("suites", SUITES_DIR)):
        assert {f"unlearnbench/{d}/{p.name}" for p in shipped.glob("*.yaml")} <= set(names)

    # a fresh environment that sees this one's packages (torch, ...) but not this checkout
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True, env=env)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    ).stdout.strip()
    (Path(purelib) / "borrowed.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run(
        [
            python,
            "-m",
            "pip",
            "-q",
            "install",
            "--no-deps",
            "--no-index",
            "--ignore-installed",
            wheel,
        ],
        check=True,
        env=env,
    )

    outside = tmp_path / "elsewhere"
    outside.mkdir()

    def run(*cmd) -> str:
        out = subprocess.run(cmd, cwd=outside, capture_output=True, text=True, env=env)
        assert out.returncode == 0, out.stdout + out.stderr
        return out.stdout

    listed = run(venv / "bin" / "unlearnbench", "list", "presets")
    assert all(p.name in listed for p in run_presets())
    code = (
        "import unlearnbench, unlearnbench.evals as e, unlearnbench.run_presets as p;"
        "print(unlearnbench.__file__);"
        "print(len(e.load_suite('robust')[0]), len(e.load_suite('evals/quick.yaml')[0]));"
        "print(p.preset_path('methods/sgtm-tinystories-64M.yaml').is_file());"
        "import unlearnbench.package_files as f; print(f.current_source_digest())"
    )
    where, counts, found, digest = run(python, "-c", code).split("\n")[:4]
    # the wheel ships every file the source digest covers: its records name the same code
    assert digest == source_digest(src / "unlearnbench")
    assert Path(where).is_relative_to(venv) and not Path(where).is_relative_to(ROOT)
    assert counts == f"{len(load_suite('robust')[0])} {len(load_suite('quick')[0])}"
    assert found == "True"
