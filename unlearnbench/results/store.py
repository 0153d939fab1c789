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
import re
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


# a name that becomes a file or folder name (a run id; a record's method, benchmark and model,
# which reports and figures are named by): letters, digits and `._+-`, not starting with a dot
# (no `..`, no hidden file, no separator, no control character)
SAFE_COMPONENT = re.compile(r"[A-Za-z0-9_+-][A-Za-z0-9._+-]{0,199}")


def safe_component(name, what: str = "name") -> str:
    """`name` when it can be one file-name component under a chosen folder, else a ConfigError:
    a name read from a record or typed by a user never reaches outside the folder it is put in."""
    if not isinstance(name, str) or not SAFE_COMPONENT.fullmatch(name):
        raise ConfigError(
            f"{what} {name!r} is not a safe file name (letters, digits and ._+- only, "
            "not starting with a dot, at most 200 characters)"
        )
    return name


class RunStore:
    def __init__(self, root: str | Path = DEFAULT_ROOT):
        self.root = Path(root)
        self.records_dir = self.root / "records"
        self.models_dir = self.root / "models"
        self.unreadable: list[str] = []  # what the last records() call skipped, with the reason
        self.trained: set[str] = set()  # the runs whose records this object wrote after training
        self._warned: set[str] = set()

    def record_path(self, run_id: str) -> Path:
        return self.records_dir / f"{safe_component(run_id, 'run id')}.json"

    def model_path(self, run_id: str) -> Path:
        return self.models_dir / safe_component(run_id, "run id")

    def checkpoint_path(self, run_id: str) -> Path:
        return self.root / "checkpoints" / safe_component(run_id, "run id") / "checkpoint.pt"

    def exists(self, run_id: str) -> bool:
        """Whether the store holds run `run_id` (a name that is no run id, a path, holds none)."""
        if not isinstance(run_id, str) or not SAFE_COMPONENT.fullmatch(run_id):
            return False
        return self.record_path(run_id).is_file()

    def load(self, run_id: str) -> dict:
        path = self.record_path(run_id)
        if not path.is_file():
            raise FileNotFoundError(f"no record for run {run_id!r} in {self.records_dir}")
        record, problem = _read_record(path)
        if problem:  # unreadable, or not a run record (a schema), or another run's
            raise CorruptRecord(
                f"record {path} is unreadable ({problem}); move it aside "
                f"(mv {path} {path}.bad) and run that run again (`unlearnbench run`) to recreate it"
            )
        return self._located(upgrade_record(record))

    def write(self, record: dict, trained: bool = False) -> Path:
        """Write `record` atomically; `trained`: the run was just trained (a failed write says
        where its saved model is kept; a record rewritten with new results has none to keep)."""
        path = self.record_path(record["run_id"])
        try:
            write_json_atomic(path, self._relative(record))
        except StoreWriteError as e:
            kept = record.get("model_path")
            if trained and kept and Path(kept).is_dir():  # saved before its record
                raise StoreWriteError(f"{e}; the trained model is kept in {kept}") from None
            raise
        if trained:
            self.trained.add(record["run_id"])
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
    _remove_stale_locks(path)
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
        for d in [path.parent, *reversed(created)]:  # each only when empty: no other run's lock,
            with contextlib.suppress(OSError):  # and a store that got nothing is left as found
                d.rmdir()
        os.close(fd)


def _remove_stale_locks(held: Path) -> None:
    """Remove the lock files beside `held` that no process holds (left by a killed process). A
    process about to lock one that is removed here finds it replaced and locks anew (`_flock`)."""
    import fcntl

    for other in held.parent.glob("*.lock"):
        if other == held:
            continue
        try:
            fd = os.open(other, os.O_RDWR)
        except OSError:
            continue  # removed meanwhile
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held: BlockingIOError, kept
            if os.fstat(fd).st_ino == os.stat(other).st_ino:
                other.unlink()
        except OSError:
            pass
        finally:
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
    problem = record_problem(record)
    if not problem and record["run_id"] != path.stem:  # another run's record under this name
        problem = f"its run_id {record['run_id']!r} is not its file name"
    return (None, problem) if problem else (record, "")


# The fields a run record may hold and their types (checked where present: a record of an older
# version may lack some). A field of another type is a record edited by hand or written by
# something else; tables, attacks and reruns would crash on it or show "nan": it is left out.
_NUMBER = (int, float)
RECORD_FIELDS: dict[str, tuple[type, ...]] = {
    "run_id": (str,),
    "config_hash": (str,),
    "method": (str,),
    "kind": (str,),
    "benchmark": (str,),
    "model": (str,),
    "seed": (int,),
    "config": (dict,),
    "non_default": (dict,),
    "metrics": (dict,),
    "tokens_seen": (int,),
    "tokens_by_split": (dict,),
    "phases": (list,),
    "label_counts": (dict,),
    "base": (str, type(None)),
    "history": (list,),
    "train_seconds": _NUMBER,
    "wall_seconds": _NUMBER,
    "resumed_from_step": (int,),
    "device": (str,),
    "torch_threads": (int, type(None)),
    "versions": (dict,),
    "model_path": (str, type(None)),
    "created": (str,),
    "evals": (dict,),
    "curves": (dict,),
}
# names that become file names (the record's own, its report's and figures')
NAMED_FIELDS = ("run_id", "method", "benchmark", "model")
CONFIG_SECTIONS = ("train", "labels", "method_options", "benchmark_options")


def record_problem(record: dict) -> str:
    """Why `record` is not a run record this code can use ("" when it is)."""
    for name, types in RECORD_FIELDS.items():
        if name not in record:
            continue
        value = record[name]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            return f"field {name!r} holds {type(value).__name__} {_short(value)}"
    for name in NAMED_FIELDS:
        if name in record and not SAFE_COMPONENT.fullmatch(record[name]):
            return f"field {name!r} {_short(record[name])} is not a safe file name"
    config = record.get("config") or {}
    for section in CONFIG_SECTIONS:
        if not isinstance(config.get(section, {}), dict):
            return f"field 'config.{section}' holds {type(config[section]).__name__}"
    for name in ("evals", "curves"):
        bad = [k for k, v in (record.get(name) or {}).items() if not isinstance(v, dict | list)]
        if bad:
            return f"field {name!r} entry {_short(bad[0])} is not a result"
    return ""


def _short(value) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


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
    for attempt in range(3):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            break
        except FileNotFoundError:  # the folder was tidied away meanwhile (an empty checkpoints/)
            if attempt == 2:
                raise StoreWriteError(f"cannot write {path}: its folder keeps vanishing") from None
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
