"""The run store under concurrency: parallel writer processes lose nothing and corrupt nothing, and
a reader never sees a partial record."""

import json
import multiprocessing as mp

from unlearnbench.results.store import RunStore

WRITERS = 4
PER_WRITER = 20


def _record(run_id: str, writer: int, n: int) -> dict:
    data = [writer * 1000 + n + k for k in range(2000)]  # ~15 kB: more than one write() call
    return {"run_id": run_id, "writer": writer, "n": n, "data": data, "checksum": sum(data)}


def _write_many(root: str, writer: int, start) -> None:
    store = RunStore(root)
    start.wait()
    for n in range(PER_WRITER):
        store.write(_record(f"own-w{writer}-{n}", writer, n))  # a record of its own
        store.write(_record("shared", writer, n))  # the same record rewritten by everyone


def _whole(record: dict) -> bool:
    return sum(record["data"]) == record["checksum"] and len(record["data"]) == 2000


def test_parallel_writers_lose_nothing_and_readers_see_whole_records(tmp_path):
    ctx = mp.get_context("fork")
    start = ctx.Event()
    procs = [
        ctx.Process(target=_write_many, args=(str(tmp_path), w, start)) for w in range(WRITERS)
    ]
    for p in procs:
        p.start()
    store = RunStore(tmp_path)
    start.set()
    reads = 0
    while any(p.is_alive() for p in procs):
        if store.exists("shared"):
            assert _whole(store.load("shared")), "a reader saw a partial shared record"
            reads += 1
        for record in store.records():
            assert _whole(record), f"partial record {record.get('run_id')}"
    for p in procs:
        p.join()
        assert p.exitcode == 0
    assert reads > 0, "the reader never overlapped the writers"
    own = {p.stem for p in (tmp_path / "records").glob("own-*.json")}
    assert own == {f"own-w{w}-{n}" for w in range(WRITERS) for n in range(PER_WRITER)}
    for path in (tmp_path / "records").glob("*.json"):
        assert _whole(json.loads(path.read_text())), path
    last = store.load("shared")
    assert last["n"] == PER_WRITER - 1, "the shared record is some writer's last version"
    leftovers = [p.name for p in (tmp_path / "records").iterdir() if p.name.endswith(".tmp")]
    assert not leftovers, f"temporary files left behind: {leftovers}"
