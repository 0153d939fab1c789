"""The source digest a record names (`versions.source`): the package's own code and data, not the
files beside it, and not the table-time code that no run imports."""

from __future__ import annotations

import ast
import shutil

from unlearnbench import package_files
from unlearnbench.package_files import PACKAGE_DIR, TABLE_TIME, source_digest


def _copy(tmp_path):
    """A checkout's copy: the package, and records and docs beside it."""
    root = tmp_path / "checkout"
    shutil.copytree(
        PACKAGE_DIR, root / "unlearnbench", ignore=shutil.ignore_patterns("__pycache__")
    )
    (root / "results" / "records").mkdir(parents=True)
    (root / "README.md").write_text("docs\n")
    return root / "unlearnbench"


def test_the_digest_changes_with_the_package_code_and_data_only(tmp_path):
    pkg = _copy(tmp_path)
    first = source_digest(pkg)
    assert len(first) == 16 and first == source_digest(PACKAGE_DIR)  # wherever the package is

    # records and docs committed beside the package, compiled files: the same code
    (pkg.parent / "results" / "records" / "run.json").write_text("{}\n")
    (pkg.parent / "README.md").write_text("other docs\n")
    (pkg / "__pycache__").mkdir()
    (pkg / "__pycache__" / "runner.cpython-311.pyc").write_bytes(b"\0")
    assert source_digest(pkg) == first
    # table-time code: no measurement reads it
    leaderboard = pkg / "results" / "leaderboard.py"
    leaderboard.write_text(leaderboard.read_text() + "\n# a table-time change\n")
    assert source_digest(pkg) == first

    # a measurement's code, a suite, a module the runs import from results/, a moved file
    for rel in ("runner.py", "suites/robust.yaml", "results/matching.py"):
        path = pkg / rel
        before = path.read_text()
        path.write_text(before + "\n# changed\n")
        assert source_digest(pkg) != first, rel
        path.write_text(before)
        assert source_digest(pkg) == first
    (pkg / "losses.py").rename(pkg / "losses_moved.py")
    assert source_digest(pkg) != first


def test_records_name_the_digest_computed_once():
    from unlearnbench.runner import versions

    package_files.current_source_digest.cache_clear()
    assert versions()["source"] == source_digest()
    versions()
    assert package_files.current_source_digest.cache_info().misses == 1  # once per process


def _table_time_imports(path) -> set[str | None]:
    """The top-level functions of `path` that import table-time code (None: the module itself)."""
    table_time = {"unlearnbench." + rel.removesuffix(".py").replace("/", ".") for rel in TABLE_TIME}
    owners = set()
    for top in ast.parse(path.read_text()).body:
        owner = top.name if isinstance(top, ast.FunctionDef | ast.ClassDef) else None
        for node in ast.walk(top):
            names = set()
            if isinstance(node, ast.ImportFrom) and node.module:
                names = {node.module} | {f"{node.module}.{a.name}" for a in node.names}
            elif isinstance(node, ast.Import):
                names = {a.name for a in node.names}
            if names & table_time:
                owners.add(owner)
    return owners


# the functions outside the table-time modules that read them: each makes a table, a figure or a
# report from records, or prints a run's summary after its record is written
TABLE_FUNCTIONS = {
    "cli.py": {
        *("_print_evals", "_print_headline", "leaderboard", "plot", "report"),
        *("demo", "_relearn_table", "_steps_text"),  # the demo's tables of its records
    },
    "results/__init__.py": {"load_records"},  # the notebooks' frame of a store's records
}


def test_no_measurement_imports_the_table_time_code():
    """What the digest leaves out is imported by no module a run imports, except in the functions
    that make tables from records."""
    assert all((PACKAGE_DIR / rel).is_file() for rel in TABLE_TIME)  # a rename is seen
    for path in PACKAGE_DIR.rglob("*.py"):
        rel = path.relative_to(PACKAGE_DIR).as_posix()
        if rel not in TABLE_TIME:
            owners = _table_time_imports(path)
            assert owners <= TABLE_FUNCTIONS.get(rel, set()), (
                f"{rel}: {owners} import table-time code"
            )
