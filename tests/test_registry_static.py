"""The registries read their entries from the sources, so `list` and a `--set` typo need no torch;
what they read must be what importing the modules registers."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from unlearnbench.config import ConfigError
from unlearnbench.early_checks import check_run_request
from unlearnbench.registry import Registry, UnknownName, benchmarks, evals, methods, scan_module

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("registry", [methods, evals, benchmarks], ids=lambda r: r.kind)
def test_what_the_sources_say_is_what_the_imports_register(registry):
    registry._discover()  # import every module: the real entries
    assert set(registry._entries) == set(registry._scan()), "a registration the reader missed"
    for name, spec in registry._entries.items():
        entry = registry.static_entry(name)
        hints = typing.get_type_hints(spec.options)
        assert entry.options is not None, f"{name}: options class not read"
        assert list(entry.options) == [f.name for f in dataclasses.fields(spec.options)], name
        for field, typ in entry.options.items():  # a type read is the real one, or left unread
            assert typ is object or typ == hints[field], (name, field, typ)
        description = getattr(spec, "description", "").strip().splitlines()
        static = entry.keywords.get("description") or entry.description
        assert static == (description[0] if description else ""), name
        for key in ("kind", "version", "requires"):
            if key in entry.keywords:
                assert (
                    tuple(entry.keywords[key]) == spec.requires
                    if key == "requires"
                    else (entry.keywords[key] == getattr(spec, key))
                ), (name, key)


def test_list_and_a_set_typo_import_no_torch():
    """In a fresh interpreter: `list methods` and a rejected `--set` never import torch."""
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from unlearnbench.cli import app\n"
        "r = CliRunner()\n"
        "a = r.invoke(app, ['list', 'methods'])\n"
        "b = r.invoke(app, ['run', 'sgtm', '--set', 'stepz=5', '--out', sys.argv[1]])\n"
        "c = r.invoke(app, ['run', 'rmu', '--set', 'alpha=lots', '--out', sys.argv[1]])\n"
        "print(a.exit_code, 'circuit-breakers' in a.stdout, b.exit_code, c.exit_code)\n"
        "print(b.stderr.strip())\n"
        "print(c.stderr.strip())\n"
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(ROOT / "no-store")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "COLUMNS": "300", "PATH": "/usr/bin:/bin"},
    )
    codes, typo, bad_value, imported = out.stdout.strip().splitlines()[-4:]
    assert codes == "0 True 2 2", out.stdout + out.stderr
    assert "unknown key 'stepz'; did you mean steps?" in typo
    assert "bad value for alpha: 'lots' is not a valid float" in bad_value
    assert imported == "[]"
    assert not (ROOT / "no-store").exists()


def test_the_early_check_says_what_the_full_resolution_says():
    from unlearnbench.runner import resolve_run_config

    cases = [
        ("sgtm", "storyworld-lang", None, {"forget_mlp": "3"}),
        ("sgtm", "storyworld-lang", None, {"steps": "1.5"}),
        ("era", "storyworld-topic", None, {"benchmark.spanish_fraction": "0.5"}),
        ("sgtm", "storyworld-lnag", None, {}),
        ("sgtn", "storyworld-lang", None, {}),
        ("sgtm", "storyworld-lang", "tiyn", {}),
    ]
    for method, benchmark, model, overrides in cases:
        with pytest.raises((ConfigError, UnknownName)) as early:
            check_run_request(method, benchmark, model, overrides)
        with pytest.raises((ConfigError, UnknownName)) as full:
            resolve_run_config(method, benchmark, model, 0, overrides)
        assert str(early.value) == str(full.value)
    # what the full resolution accepts, the early check accepts (qualified keys, lists, base)
    ok = {
        "train.lr": "1e-3",
        "params": "mlp.c_fc.weight,mlp.c_proj.weight",
        "recall": "0.5",
        "base": "scratch",
    }
    check_run_request("rmu", "storyworld-lang", "tiny", ok)
    resolve_run_config("rmu", "storyworld-lang", "tiny", 0, ok)


def test_a_module_the_reader_cannot_follow_is_imported(tmp_path, monkeypatch):
    pkg = tmp_path / "plugins_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "plain.py").write_text(
        "from dataclasses import dataclass\n"
        "from plugins_reg import register\n"
        "@dataclass(frozen=True)\n"
        "class Opts:\n"
        "    x: int = 1\n"
        "@register('plain', options=Opts, kind='a')\n"
        "def plain():\n    '''Plain entry.'''\n"
    )
    (pkg / "computed.py").write_text(
        "from plugins_reg import register\n"
        "for n in ('one', 'two'):\n    register(n, options=None, kind='b')(lambda: None)\n"
    )
    (tmp_path / "plugins_reg.py").write_text(
        "from unlearnbench.registry import Registry\n"
        "reg = Registry('plugin', 'plugins_pkg', 'register')\n"
        "def register(name, options, kind):\n"
        "    def deco(fn):\n        reg.register(name)(fn)\n        return fn\n    return deco\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import plugins_reg

    reg: Registry = plugins_reg.reg
    assert reg.names() == ["one", "plain", "two"]
    assert "plugins_pkg.plain" not in sys.modules  # read, not imported
    assert "plugins_pkg.computed" in sys.modules  # a computed name: imported to be known
    entry = reg.static_entry("plain")
    assert entry.description == "Plain entry." and entry.keywords == {"kind": "a"}
    assert entry.options == {"x": int}
    reg.get("plain")
    assert "plugins_pkg.plain" in sys.modules
    with pytest.raises(UnknownName, match="unknown plugin 'plian'; did you mean plain"):
        reg.static_entry("plian")
    entries, complete = scan_module(pkg / "computed.py", "plugins_pkg.computed", "register")
    assert entries == [] and not complete


def test_a_name_registered_twice_is_an_error_even_under_python_O():
    out = subprocess.run(
        [
            sys.executable,
            "-O",
            "-c",
            "from unlearnbench.registry import Registry\n"
            "reg = Registry('plugin')\n"
            "reg.register('a')(1)\n"
            "reg.register('a')(2)\n",
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode != 0 and "ValueError: plugin 'a' registered twice" in out.stderr
