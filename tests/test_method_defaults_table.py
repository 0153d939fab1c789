"""The per-method defaults table: read from the code, complete, and committed up to date."""

import ast
import dataclasses
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from unlearnbench import method_defaults as md
from unlearnbench.cli import app
from unlearnbench.registry import methods

ROOT = Path(__file__).resolve().parents[1]


def test_the_committed_methods_readme_is_current():
    text = (ROOT / "docs" / "method-defaults.md").read_text()
    assert text == md.markdown(), "run: python scripts/method_defaults.py"
    check = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "method_defaults.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout


def test_every_option_and_training_default_of_every_method_has_a_source():
    missing = [f"TrainConfig.{r.name}" for r in md.train_config_rows() if not r.source]
    for name in methods.names():
        rows = md.method_rows(name)
        spec = methods.get(name)
        assert len(rows) == len(dataclasses.fields(spec.options)) + len(spec.train_defaults)
        missing += [f"{name}.{r.name}" for r in rows if not r.source]
    assert not missing, f"defaults without a source comment: {missing}"


def test_comments_are_read_on_the_line_above_and_shared_by_a_group():
    sys.path.insert(0, str(ROOT / "tests" / "fixtures"))
    import defaults_sample as sample

    src = md.option_sources(sample.SampleOptions)
    assert src == {
        "alpha": "Paper A, section 3: alpha 1",
        "beta": "ours: a wrapped, long explanation that spans two comment lines",
        "route": "Paper B: the routed set",
        "bare": "",  # no comment: the test above would refuse it
    }
    path = sample.__file__
    tree, _, _ = md._parsed(path)
    shared_name = next(n.targets[0] for n in tree.body if isinstance(n, ast.Assign))
    got = md._dict_sources(path, shared_name, "defaults_sample")
    shared = "Shared by two methods. ours: a budget for the tiny model"
    assert got == {
        "steps": shared,
        "lr": shared,
        "beta2": "HF Trainer AdamW default",
        "weight_decay": "",
    }


def test_rows_mark_deviations_and_follow_imported_training_defaults():
    rows = {r.name: r for r in md.method_rows("sgtm")}
    assert rows["sampling"].default == '"mixed"' and rows["sampling"].ours
    assert (
        rows["train.grad_clip"].default == "0.0" and "trainer.py" in rows["train.grad_clip"].source
    )
    assert not rows["train.grad_clip"].ours
    npo = {r.name: r for r in md.method_rows("npo")}  # LOSS_BASED_TRAIN_DEFAULTS, imported
    assert "open-unlearning" in npo["train.steps"].source and npo["train.steps"].ours


def test_cli_lists_the_defaults_and_refuses_them_for_other_lists():
    result = CliRunner().invoke(app, ["list", "methods", "--defaults"])
    assert (
        result.exit_code == 0 and "sampling" in result.output and "single_source" in result.output
    )
    bad = CliRunner().invoke(app, ["list", "models", "--defaults"])
    assert bad.exit_code == 2
