"""What the package needs is what it declares: a method or evaluation that imports a package says
so, the package is a dependency (or an extra with an install hint), and a missing one is refused in
one line before anything is trained."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from unlearnbench.cli import app
from unlearnbench.config import ConfigError
from unlearnbench.evals import load_suite
from unlearnbench.registry import INSTALL, evals, methods

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--set", "n_stories=300", "--set", "steps=2", "--set", "context=32", "--quiet"]


def pyproject() -> tuple[set[str], set[str]]:
    """The names of pyproject.toml's dependencies and of its extras."""
    text = (ROOT / "pyproject.toml").read_text()
    block = re.search(r"^dependencies = \[(.*?)^\]", text, re.S | re.M).group(1)
    core = {re.match(r"[A-Za-z0-9_.-]+", d).group(0) for d in re.findall(r'"([^"]+)"', block)}
    optional = text.split("[project.optional-dependencies]")[1].split("\n[")[0]
    return core, set(re.findall(r"^([a-z0-9-]+) = \[", optional, re.M))


def test_peft_is_a_core_dependency_and_every_declared_package_is_installable():
    core, extras = pyproject()
    assert (
        "peft" in core and "lm-eval" in extras
    )  # circuit breakers, tuned-lens and LoRA attacks need it
    needed = {p for n in methods.names() for p in methods.get(n).requires}
    needed |= {p for n in evals.names() for p in evals.get(n).requires}
    assert {"peft", "lm_eval"} <= needed
    for package in needed:  # each is a dependency or an extra, and the refusal says how to get it
        assert package in INSTALL and package.replace("_", "-") in core | extras
    for name in ("circuit-breakers", "orthogonal-circuit-breakers", "tuned-lens"):
        assert methods.get(name).requires == ("peft",)


@pytest.fixture
def hide(monkeypatch):
    """Make packages look uninstalled to the up-front check."""

    def hide(*names):
        real = importlib.util.find_spec
        monkeypatch.setattr(
            importlib.util, "find_spec", lambda n, *a: None if n in names else real(n, *a)
        )

    return hide


def test_a_method_whose_package_is_missing_is_refused_before_anything_is_trained(tmp_path, hide):
    hide("peft")
    result = CliRunner().invoke(app, ["run", "circuit-breakers", *SMALL, "--out", str(tmp_path)])
    assert result.exit_code == 2, result.output
    lines = [x for x in result.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and "method 'circuit-breakers' needs the package 'peft'" in lines[0]
    assert "pip install" in lines[0] and "Traceback" not in result.output
    assert not (tmp_path / "records").exists() and not (tmp_path / "models").exists()


def test_a_suite_whose_evaluation_needs_a_missing_extra_is_refused_when_it_loads(tmp_path, hide):
    hide("lm_eval")
    with pytest.raises(ConfigError, match=r"'lm-eval'.*needs the package 'lm_eval'.*\[lm-eval\]"):
        load_suite("lm-eval")
    result = CliRunner().invoke(
        app, ["run", "no-filter", *SMALL, "--suite", "lm-eval", "--out", str(tmp_path)]
    )
    assert result.exit_code == 2 and 'pip install "unlearnbench[lm-eval]"' in result.stderr
    assert not (tmp_path / "records").exists()  # refused before the run trained


def test_the_cli_framework_has_an_upper_bound():
    """typer is 0.x (minor releases change option parsing): a new minor must not break the CLI
    of an installed release unseen."""
    text = (ROOT / "pyproject.toml").read_text()
    (spec,) = re.findall(r'"(typer[^"]*)"', text)
    assert re.search(r"<\s*[0-9]", spec), spec
