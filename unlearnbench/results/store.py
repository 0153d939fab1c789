"""The run store: one JSON record per run, written atomically, and the saved models.

Layout under the store root (default `runs/`): `records/<run_id>.json`, `models/<run_id>/`,
`checkpoints/<run_id>/` while a run trains, `.locks/<run_id>.lock` while a run is held.
A record names its model (and the model's snapshots) relative to the store root, so a store can be
moved or shared; records read from the store name them as paths under the store's root as given.
A record is written to a temporary file in the same directory and renamed into place, so a reader
sees a whole record or none, and concurrent writers never interleave. Files get the permissions
the umask gives (a shared store stays readable by its group), not the temporary file's 0600.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import threading
from pathlib import Path

from unlearnbench.config import ConfigError

DEFAULT_ROOT = Path("runs")


class CorruptRecord(ConfigError):
    """A record file that is not a whole JSON run record (truncated, edited, foreign)."""


class StoreWriteError(OSError):
    """The store could not be written (no space, no permission): the message says what was kept."""


class RunStore:
    def __init__(self, root: str | Path = DEFAULT_ROOT):
        self.root = Path(root)
        self.records_dir = self.root / "records"
        self.models_dir = self.root / "models"
        self.unreadable: list[str] = []  # what the last records() call skipped, with the reason
        self._warned: set[str] = set()

    def record_path(self, run_id: str) -> Path:
        return self.records_dir / f"{run_id}.json"

    def model_path(self, run_id: str) -> Path:
        return self.models_dir / run_id

    def checkpoint_path(self, run_id: str) -> Path:
        return self.root / "checkpoints" / run_id / "checkpoint.pt"

    def exists(self, run_id: str) -> bool:
        return self.record_path(run_id).is_file()

    def load(self, run_id: str) -> dict:
        path = self.record_path(run_id)
        if not path.is_file():
            raise FileNotFoundError(f"no record for run {run_id!r} in {self.records_dir}")
        record, problem = _read_record(path)
        if problem:
            raise CorruptRecord(
                f"record {path} is unreadable ({problem}); move it aside "
                f"(mv {path} {path}.bad) and run that run again (`unlearnbench run`) to recreate it"
            )
        return self._located(upgrade_record(record))

    def write(self, record: dict) -> Path:
        path = self.record_path(record["run_id"])
        try:
            write_json_atomic(path, self._relative(record))
        except StoreWriteError as e:
            kept = record.get("model_path")
            if kept and Path(kept).is_dir():  # the trained model was saved before its record
                raise StoreWriteError(f"{e}; the trained model is kept in {kept}") from None
            raise
        return path

    def merge_results(self, run_id: str, results: dict, replace: bool) -> dict:
        """Re-read the record and add `results`' evaluations and curves to it under the run's
        lock: an entry the record already holds is replaced when `replace`, kept otherwise."""
        with self.lock(run_id, wait_message=False):
            record = self.load(run_id)
            for key in ("evals", "curves"):
                mine, theirs = record.get(key) or {}, results.get(key) or {}
                if theirs:
                    record[key] = {**mine, **theirs} if replace else {**theirs, **mine}
            self.write(record)
        return record

    def records(self) -> list[dict]:
        """Every readable record; the unreadable ones are named in one warning line on stderr."""
        self.unreadable = []
        if not self.records_dir.is_dir():
            return []
        out = []
        for p in sorted(self.records_dir.glob("*.json")):
            record, problem = _read_record(p)
            if problem:
                self.unreadable.append(f"{p.name} ({problem})")
            else:
                out.append(self._located(upgrade_record(record)))
        message = (
            f"warning: skipped {len(self.unreadable)} unreadable record(s) in {self.records_dir}: "
            f"{'; '.join(self.unreadable)}; move them aside and rerun those runs to recreate them"
        )
        if self.unreadable and message not in self._warned:  # once per store object, not per call
            self._warned.add(message)
            print(message, file=sys.stderr)
        return out

    def _relative(self, record: dict) -> dict:
        """The record as it is written: paths inside the store relative to its root (a copy)."""
        root = self.root.resolve()

        def rel(path):
            if not path:
                return path
            p = Path(path).resolve()
            return p.relative_to(root).as_posix() if p.is_relative_to(root) else str(path)

        return _with_paths(record, rel)

    def _located(self, record: dict) -> dict:
        """The record as it is read: its paths usable from here. Today's records are relative to
        the store root; older ones were relative to the directory their run started in (or
        absolute): found in this store by their `models/<run_id>/...` part (wherever the store
        moved), else read as given."""
        run_id = str(record.get("run_id"))

        def locate(path):
            if not path:
                return path
            p = Path(path)
            if not p.is_absolute() and (self.root / p).exists():
                return str(self.root / p)
            parts = p.parts
            for i in range(len(parts) - 1):  # an older record: its part from models/<run_id> on
                if parts[i : i + 2] == ("models", run_id):
                    here = self.models_dir.joinpath(run_id, *parts[i + 2 :])
                    if here.exists():
                        return str(here)
            if p.exists():  # a model outside the store
                return str(p)
            return str(p if p.is_absolute() else self.root / p)  # missing: where it would be

        return _with_paths(record, locate)

    def find(self, **fields) -> list[dict]:
        """Records whose top-level fields equal the given values (e.g. method, benchmark, seed)."""
        return [r for r in self.records() if all(r.get(k) == v for k, v in fields.items())]

    def check_writable(self) -> None:
        """Refuse, before anything is trained, a store that cannot be written: its path (or a
        parent) is a file, or a directory without write permission. Creates nothing."""
        p = self.root.absolute()
        while not p.exists() and p != p.parent:
            p = p.parent
        if not p.is_dir():
            raise ConfigError(f"cannot write the run store {self.root}: {p} is not a directory")
        if not os.access(p, os.W_OK | os.X_OK):
            raise ConfigError(f"cannot write the run store {self.root}: {p} is not writable")
        for sub in (self.records_dir, self.models_dir, self.root / "checkpoints"):
            if sub.exists() and not (sub.is_dir() and os.access(sub, os.W_OK | os.X_OK)):
                raise ConfigError(f"cannot write the run store {self.root}: {sub} is not writable")

    @contextlib.contextmanager
    def lock(self, run_id: str, wait_message: bool = True):
        """Hold the run `run_id` exclusively (training it, rewriting its record) across processes.

        An flock on `.locks/<run_id>.lock`, removed on release (no lock files accumulate);
        reentrant within a process. A process that has to wait says so in one line on stderr."""
        key = (str(self.root.absolute()), run_id)
        with _HELD_GUARD:
            depth = _HELD.get(key, 0)
            _HELD[key] = depth + 1
        try:
            if depth:  # this process already holds it
                yield
                return
            with _flock(self.root / ".locks" / f"{run_id}.lock", run_id, wait_message):
                (self.records_dir / f".{run_id}.lock").unlink(missing_ok=True)  # an older lock's
                yield
        finally:
            with _HELD_GUARD:
                _HELD[key] -= 1
                if not _HELD[key]:
                    del _HELD[key]


def run_locked(execute):
    """Decorate `execute(cfg, store, ...)`: one process at a time trains a run id in a store.

    Before training, the store is checked to be writable (nothing is trained into a store that
    cannot take the result) and the run's lock is taken. A second identical run started meanwhile
    waits for the first (saying so in one line) and then finds its record, so the run trains once
    and no two processes share its checkpoint. Under torchrun only rank 0 takes the lock (the other
    ranks train with it). A recorded run is returned without either, so a read-only store serves
    its records."""
    import functools

    @functools.wraps(execute)
    def wrapper(cfg, store: RunStore, *args, **kwargs):
        force = kwargs.get("force", args[0] if args else False)
        if store.exists(cfg.run_id) and not force:
            return execute(cfg, store, *args, **kwargs)
        store.check_writable()
        if int(os.environ.get("RANK", "0")) != 0:
            return execute(cfg, store, *args, **kwargs)
        with store.lock(cfg.run_id):
            return execute(cfg, store, *args, **kwargs)

    return wrapper


_HELD: dict[tuple[str, str], int] = {}
_HELD_GUARD = threading.Lock()


@contextlib.contextmanager
def _flock(path: Path, run_id: str, wait_message: bool):
    """An exclusive flock on `path`, created if needed and removed on release.

    Removing a lock file is safe with one check: after locking, the file we hold must still be the
    one at `path` (a releasing holder may have unlinked it meanwhile; then lock the new one)."""
    import fcntl

    said = False
    created: list[Path] = []  # folders made for the lock (the store's own on its first run)
    while True:
        created += _make_dirs(path.parent)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except FileNotFoundError:  # the folder was removed by a releasing holder: again
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if wait_message and not said:
                print(f"waiting for another process running {run_id} ({path})", file=sys.stderr)
                said = True
            fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
        for d in [path.parent, *reversed(created)]:  # each only when empty: no other run's lock,
            with contextlib.suppress(OSError):  # and a store that got nothing is left as found
                d.rmdir()
        os.close(fd)


def _make_dirs(path: Path) -> list[Path]:
    """`mkdir -p path`; returns the folders it created, outermost first."""
    missing = []
    p = path
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    path.mkdir(parents=True, exist_ok=True)
    return list(reversed(missing))


def _with_paths(record: dict, convert) -> dict:
    """A copy of `record` with `convert` applied to its model path and its snapshots' paths."""
    out = dict(record)
    if "model_path" in out:
        out["model_path"] = convert(out["model_path"])
    metrics = out.get("metrics")
    if isinstance(metrics, dict) and isinstance(metrics.get("snapshots"), list):
        snaps = [
            {**s, "path": convert(s["path"])} if isinstance(s, dict) and "path" in s else s
            for s in metrics["snapshots"]
        ]
        out["metrics"] = {**metrics, "snapshots": snaps}
    return out


def _read_record(path: Path) -> tuple[dict | None, str]:
    """(record, "") or (None, why it is unreadable)."""
    try:
        text = path.read_text()
    except OSError as e:
        return None, e.strerror or type(e).__name__
    except UnicodeDecodeError:
        return None, "not UTF-8 text"
    if not text.strip():
        return None, "empty file"
    try:
        record = json.loads(text)
    except json.JSONDecodeError as e:
        return None, f"truncated or invalid JSON at line {e.lineno} column {e.colno}"
    if not isinstance(record, dict) or "run_id" not in record:
        return None, "not a run record"
    return record, ""


def umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def upgrade_record(record: dict) -> dict:
    """A record as today's code reads it, whenever it was written (config.upgrade_config)."""
    from unlearnbench.config import upgrade_config

    if isinstance(record, dict) and isinstance(record.get("config"), dict):
        record["config"] = upgrade_config(record["config"])
    return record


def write_atomic(path: Path, write, binary: bool = False) -> None:
    """Call `write(file)` on a temporary file beside `path`, fsync it, and rename it into place:
    a reader sees the old content or the new, never a part; a failed write leaves nothing (and
    raises `StoreWriteError` naming the file and the reason)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise StoreWriteError(f"cannot write {path}: {e.strerror or e}") from None
    try:
        os.fchmod(fd, 0o666 & ~umask())  # mkstemp's 0600 would hide the file from the group
        with os.fdopen(fd, "wb" if binary else "w") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise StoreWriteError(f"cannot write {path}: {e.strerror or e}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, obj) -> None:
    def write(f):
        json.dump(obj, f, indent=2, sort_keys=False, default=_jsonable)
        f.write("\n")

    write_atomic(path, write)


def write_text_atomic(path: Path, text: str) -> None:
    write_atomic(path, lambda f: f.write(text))


def _jsonable(x):
    if isinstance(x, tuple | set):
        return list(x)
    if isinstance(x, Path):
        return str(x)
    if hasattr(x, "item"):
        return x.item()
    raise TypeError(f"not JSON serializable: {type(x).__name__}")
