"""Training checkpoints: everything the loop needs to continue a killed run as if it never stopped.

A checkpoint holds the model, the optimizer and scheduler, the sampler's position and generator, the
torch RNG states, the history and the token counters. It is one file, written to a temporary name
and renamed into place, so a reader (or a resumed run) sees the previous checkpoint or the new one,
never a partial file. Only rank 0 writes; every rank reads.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from unlearnbench.config import ConfigError
from unlearnbench.results.store import write_atomic

FORMAT = 1


class CheckpointError(ConfigError):
    """A checkpoint that cannot be used (corrupt, or from another run)."""


@dataclass
class Checkpointer:
    path: Path  # the checkpoint file of this run
    every: int  # steps between checkpoints (0 = never write)
    resume: bool  # continue from `path` when it exists
    writer: bool = True  # rank 0 writes; other ranks only read
    run_key: str = ""  # identifies the run; a checkpoint of another run is refused
    last_saved_step: int | None = None

    def due(self, step: int, total: int) -> bool:
        """After `step` completed steps: write now? (never after the last step: the run is done)"""
        return self.every > 0 and step % self.every == 0 and step < total

    def describe_last(self) -> str:
        if self.last_saved_step is None:
            return "no checkpoint was written (set checkpoint_every to write them)"
        return f"last good checkpoint: {self.path} (step {self.last_saved_step})"

    def save(self, state: dict) -> None:
        if self.writer:
            save_atomic(self.path, {"format": FORMAT, "run": self.run_key, **state})
        self.last_saved_step = state["step"]

    def discard(self) -> None:
        """The run is complete (its record replaces the checkpoint): remove the file and its
        now empty run folder."""
        if not self.writer:
            return
        self.path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # not empty: something else is kept there
            self.path.parent.rmdir()

    def load(self) -> dict | None:
        if not self.resume or not self.path.is_file():
            return None
        state = load(self.path)
        if state.get("run") != self.run_key:
            raise CheckpointError(
                f"checkpoint {self.path} belongs to run {state.get('run')!r}, not {self.run_key!r}"
            )
        self.last_saved_step = state["step"]
        return state


def save_atomic(path: Path, state: dict) -> None:
    write_atomic(path, lambda f: torch.save(state, f), binary=True)


def load(path: Path) -> dict:
    """Read a checkpoint (tensors and plain Python data only); a damaged file is a one-line error."""
    try:
        with warnings.catch_warnings():  # torch warns about a foreign pickle before failing on it
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # several types for truncated or foreign files, none of them informative:
        # torch's own text suggests weights_only=False, which reads like a version problem
        raise CheckpointError(
            f"checkpoint {path} is corrupt or unreadable (truncated, damaged or not written by "
            "unlearnbench); delete it (or move it aside) to start over, or run without --resume"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT or "step" not in state:
        raise CheckpointError(f"checkpoint {path} is not an unlearnbench checkpoint; delete it")
    return state


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
