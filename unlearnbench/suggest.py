"""The one message for a name the harness does not know, with the closest known names."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def unknown_name(
    what: str, name: str, known: Iterable[str], cutoff: float = 0.5, closest_to: str | None = None
) -> str:
    """`unknown WHAT 'NAME'; did you mean A, B? (known: ...)`. `closest_to` is what is compared
    with the known names when it is not the name itself (a qualified key's last part)."""
    known = list(known)
    close = difflib.get_close_matches(closest_to or name, known, n=3, cutoff=cutoff)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return f"unknown {what} {name!r}{hint} (known: {', '.join(known) or 'none'})"
