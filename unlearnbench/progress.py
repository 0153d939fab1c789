"""Progress of long loops: a live bar on a terminal, plain lines in a batch log.

A bar redraws itself in place, which a SLURM `.out` file, a pipe or a pool's worker cannot show
(rich prints such a bar only when it ends). So where stderr is not a terminal the loop prints one
plain line every N steps and at its last step instead:

    sgtm s0: step 50/200 (25%) loss 3.214 | 8,123 tokens/s | elapsed 1:02 | ETA 3:05

`UNLEARNBENCH_PROGRESS` chooses: `bar`, `lines` or `off` (default: `bar` on a terminal, else
`lines`); `UNLEARNBENCH_LOG_EVERY=N` prints a line every N steps (default: 20 lines per loop).
"""

from __future__ import annotations

import math
import os
import sys
import time

MODES = ("bar", "lines", "off")
LINES_PER_LOOP = 20  # ours: a line every 5% of the loop (a 26-minute run: one every ~78 s)


def mode() -> str:
    """`bar`, `lines` or `off`, from UNLEARNBENCH_PROGRESS or whether stderr is a terminal."""
    chosen = os.environ.get("UNLEARNBENCH_PROGRESS", "").strip().lower()
    if chosen in MODES:
        return chosen
    from rich.console import Console

    return "bar" if Console(stderr=True).is_terminal else "lines"


def log_every(total: int) -> int:
    """Steps between two plain lines: UNLEARNBENCH_LOG_EVERY, else 1/LINES_PER_LOOP of `total`."""
    raw = os.environ.get("UNLEARNBENCH_LOG_EVERY", "").strip()
    if raw.isdigit() and int(raw) > 0:
        return int(raw)
    return max(1, math.ceil(total / LINES_PER_LOOP))


def clock(seconds: float) -> str:
    """h:mm:ss or m:ss."""
    s = int(round(max(0.0, seconds)))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def say(message: str) -> None:
    """One plain line on stderr, flushed (batch logs show it at once)."""
    print(message, file=sys.stderr, flush=True)


class StepProgress:
    """Progress of a loop of `total` steps that starts after `first` (a resumed loop).

    `update(step, loss, tokens)`: `step` steps are done, `tokens` seen since this process entered
    the loop (tokens/s and the ETA count from there, not from a resumed run's start). Disabled (`enabled=False` or mode `off`): every call does nothing."""

    def __init__(self, description: str, total: int, first: int = 0, enabled: bool = True):
        self.description, self.total, self.first = description, total, first
        self.mode = mode() if enabled else "off"
        self.every = log_every(total)
        self._bar = self._task = None
        self._start = None

    def __enter__(self) -> StepProgress:
        self._start = time.perf_counter()
        if self.mode == "bar":
            self._bar = _rich_bar()
            self._bar.__enter__()
            self._task = self._bar.add_task(
                self.description, total=self.total, completed=self.first, loss=float("nan")
            )
        return self

    def __exit__(self, *exc) -> bool:
        if self._bar is not None:
            self._bar.__exit__(*exc)
        return False

    def update(self, step: int, loss: float | None = None, tokens: int | None = None) -> None:
        if self.mode == "bar":
            self._bar.update(self._task, completed=step, loss=loss if loss is not None else 0.0)
        elif self.mode == "lines" and (step % self.every == 0 or step == self.total):
            say(self.line(step, loss, tokens))

    def line(self, step: int, loss: float | None, tokens: int | None) -> str:
        """The plain line after `step` steps."""
        elapsed = time.perf_counter() - self._start
        done = step - self.first
        parts = [f"{self.description}: step {step}/{self.total} ({100 * step / self.total:.0f}%)"]
        if loss is not None:
            parts[0] += f" loss {loss:.3f}"
        if tokens is not None and elapsed > 0:
            parts.append(f"{tokens / elapsed:,.0f} tokens/s")
        parts.append(f"elapsed {clock(elapsed)}")
        if 0 < done and step < self.total:
            parts.append(f"ETA {clock(elapsed / done * (self.total - step))}")
        return " | ".join(parts)


def _rich_bar():
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.3f}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),  # stdout stays clean for --json
        transient=False,
    )
