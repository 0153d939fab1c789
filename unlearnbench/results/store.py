"""The run store: one JSON record per run, written atomically, and the saved models.

Layout under the store root (default `runs/`): `records/<run_id>.json`, `models/<run_id>/`.
A record is written to a temporary file in the same directory and renamed into place, so a reader
sees a whole record or none, and concurrent writers never interleave.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

DEFAULT_ROOT = Path("runs")


class RunStore:
    def __init__(self, root: str | Path = DEFAULT_ROOT):
        self.root = Path(root)
        self.records_dir = self.root / "records"
        self.models_dir = self.root / "models"

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
        return upgrade_record(json.loads(path.read_text()))

    def write(self, record: dict) -> Path:
        path = self.record_path(record["run_id"])
        write_json_atomic(path, record)
        return path

    def records(self) -> list[dict]:
        if not self.records_dir.is_dir():
            return []
        out = []
        for p in sorted(self.records_dir.glob("*.json")):
            try:
                out.append(upgrade_record(json.loads(p.read_text())))
            except (json.JSONDecodeError, OSError):
                continue  # never half-written (atomic), but skip foreign files
        return out

    def find(self, **fields) -> list[dict]:
        """Records whose top-level fields equal the given values (e.g. method, benchmark, seed)."""
        return [r for r in self.records() if all(r.get(k) == v for k, v in fields.items())]


def upgrade_record(record: dict) -> dict:
    """A record as today's code reads it, whenever it was written (config.upgrade_config)."""
    from unlearnbench.config import upgrade_config

    if isinstance(record, dict) and isinstance(record.get("config"), dict):
        record["config"] = upgrade_config(record["config"])
    return record


def write_atomic(path: Path, write, binary: bool = False) -> None:
    """Call `write(file)` on a temporary file beside `path`, fsync it, and rename it into place:
    a reader sees the old content or the new, never a part; a failed write leaves nothing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if binary else "w") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
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
