"""Write docs/method-defaults.md: every method's options and training defaults with their sources.

Usage: python scripts/method_defaults.py          # (re)write docs/method-defaults.md
       python scripts/method_defaults.py --check  # exit 1 if the committed file is stale
The table is read from the code (`unlearnbench.method_defaults`); edit the comments next to the
defaults, not the file.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "method-defaults.md"


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(ROOT))
    from unlearnbench.method_defaults import markdown

    text = markdown()
    if "--check" in argv:
        if not OUT.is_file() or OUT.read_text() != text:
            print(f"{OUT.relative_to(ROOT)} is stale: run python scripts/method_defaults.py")
            return 1
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
