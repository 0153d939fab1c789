#!/usr/bin/env python
"""Open an HTML report in headless Chromium and save a screenshot: proof that it renders.

    python scripts/screenshot_report.py results/report-storyworld-lang.html report.png

The page is loaded from disk with the network disabled (it must be self-contained). Exits with a
clear message and code 2 when no Chromium is installed.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def find_browser(explicit: str | None) -> str | None:
    if explicit:
        return explicit if Path(explicit).is_file() or shutil.which(explicit) else None
    return next((p for c in CANDIDATES if (p := shutil.which(c))), None)


def screenshot(browser: str, html: Path, png: Path, width: int, height: int) -> None:
    png.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:  # a throwaway profile: no user state touched
        cmd = [
            browser,
            "--headless",
            "--no-sandbox",  # needed when running as root (containers)
            "--disable-gpu",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            "--proxy-server=127.0.0.1:9",  # no network: a page that needs it renders broken
            f"--window-size={width},{height}",
            f"--screenshot={png.resolve()}",
            html.resolve().as_uri(),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0 or not png.is_file():
        sys.exit(f"error: chromium failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("html", type=Path, help="the report page")
    ap.add_argument("png", type=Path, help="where to save the screenshot")
    ap.add_argument("--width", type=int, default=1400)
    ap.add_argument("--height", type=int, default=4000, help="pixels; the page is cut below")
    ap.add_argument("--browser", help="path or name of a Chromium/Chrome executable")
    args = ap.parse_args()
    if not args.html.is_file():
        print(f"error: no such file: {args.html}", file=sys.stderr)
        sys.exit(2)
    browser = find_browser(args.browser)
    if browser is None:
        print(
            "error: Chromium not found (tried "
            + ", ".join(CANDIDATES)
            + "); install it (Debian/Ubuntu: apt-get install chromium) or pass --browser PATH",
            file=sys.stderr,
        )
        sys.exit(2)
    screenshot(browser, args.html, args.png, args.width, args.height)
    print(args.png)


if __name__ == "__main__":
    main()
