"""Training checkpoints: everything the loop needs to continue a killed run as if it never stopped.

A checkpoint holds the model, the optimizer and scheduler, the sampler's position and generator, the
torch RNG states, the history and the token counters of the phase being trained (`phase`, its index
among the method's training phases), and the run-level `header` the runner keeps with it (what the
completed phases counted and left, the evaluations already measured). It is one file, written to a temporary name
and renamed into place, so a reader (or a resumed run) sees the previous checkpoint or the new one,
never a partial file. Only rank 0 writes; every rank reads.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass, field
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
    phase: int = 0  # the phase being trained; a checkpoint of another phase is not its to resume
    header: dict = field(default_factory=dict)  # run-level progress, saved with every checkpoint
    # also write after a phase's last step (more phases follow, so the run is not done)
    at_phase_end: bool = False
    _read: dict | None = None
    _looked: bool = False

    def due(self, step: int, total: int) -> bool:
        """After `step` completed steps: write now? (after the last step only when more follows)"""
        if self.every <= 0:
            return False
        return (step % self.every == 0 and step < total) or (step == total and self.at_phase_end)

    def describe_last(self) -> str:
        if self.last_saved_step is None:
            return "no checkpoint was written (set checkpoint_every to write them)"
        return f"last good checkpoint: {self.path} (step {self.last_saved_step})"

    def save(self, state: dict) -> None:
        if self.writer:
            saved = {"format": FORMAT, "run": self.run_key, "phase": self.phase, **self.header}
            save_atomic(self.path, saved | state)
        self.last_saved_step = state["step"]

    def discard(self) -> None:
        """The run is complete (its record replaces the checkpoint): remove the file and its
        now empty run folder."""
        if not self.writer:
            return
        self.path.unlink(missing_ok=True)
        for folder in (self.path.parent, self.path.parent.parent):  # the run's, `checkpoints/`
            with contextlib.suppress(OSError):  # not empty: something else is kept there
                folder.rmdir()

    def read(self) -> dict | None:
        """The run's checkpoint as found when the run started, whatever its phase (None: none, or
        not resuming). Read once."""
        if not self._looked and self.resume and self.path.is_file():
            state = load(self.path)
            if state.get("run") != self.run_key:
                raise CheckpointError(
                    f"checkpoint {self.path} belongs to run {state.get('run')!r}, "
                    f"not {self.run_key!r}"
                )
            self._read = state
        self._looked = True
        return self._read

    def load(self) -> dict | None:
        """The checkpoint to continue the current `phase` from, if it is that phase's."""
        state = self.read()
        if state is None or state.get("phase", 0) != self.phase:
            return None
        self.last_saved_step = state["step"]
        return state


def save_atomic(path: Path, state: dict) -> None:
    """Write a checkpoint atomically; a failed write (a full disk, a file size limit) is a
    `StoreWriteError` naming the file, and leaves the previous checkpoint in place."""

    def write(f):
        try:
            torch.save(state, f)
        except RuntimeError as e:  # torch's zip writer reports a failed write as this
            first = (str(e).strip().splitlines() or ["RuntimeError"])[0]
            raise OSError(f"the write failed (is the disk full?): {first}") from None

    write_atomic(path, write, binary=True)


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
