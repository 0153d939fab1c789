"""The README is the user's guide: short, with the quick start, links that resolve and a license
that matches the package's; the rest of the documentation is in docs/, one page per topic."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_the_readme_is_a_guide_of_at_most_250_lines_with_contents():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    assert "**Contents:**" in text
    for topic in ("Your own data", "Your own model", "Reading results", "Adding a method"):
        assert f"## {topic}" in text
    # the two quick-start commands: the demo, and CI's own test command (test_packaging)
    assert "pip install -e . && unlearnbench demo" in text
    assert "--out results" in text and "export-benchmark" in text and "lm_eval --model hf" in text


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_local_link_resolves(page):
    text = page.read_text()
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if target.startswith(("http://", "https://", "#", "mailto:")):
            continue
        path = (page.parent / target.split("#", 1)[0]).resolve()
        assert path.exists(), f"{page.name}: {target}"


def test_the_license_file_matches_pyproject():
    (license_name,) = re.findall(
        r'^license = \{ text = "([^"]+)" \}', (ROOT / "pyproject.toml").read_text(), re.M
    )
    assert (ROOT / "LICENSE").read_text().startswith(f"{license_name} License")
