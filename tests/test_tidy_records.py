"""Records in long form: one row per run and metric, one per curve point, every cell a scalar."""

from __future__ import annotations

import json

from results_fixtures import sample_records

from unlearnbench.results import curves_long, load_records, metrics_long


def _store(tmp_path):
    (tmp_path / "records").mkdir()
    records = sample_records()
    for r in records:
        (tmp_path / "records" / f"{r['run_id']}.json").write_text(json.dumps(r))
    return records


def _scalar_cells(frame) -> bool:
    return not frame.map(lambda v: isinstance(v, dict | list | tuple)).any().any()


def test_metrics_long_has_one_row_per_run_and_metric(tmp_path):
    records = _store(tmp_path)
    m = metrics_long(tmp_path)
    assert _scalar_cells(m)
    assert not m.duplicated(["run_id", "source", "metric"]).any()
    for r in records:
        mine = m[m.run_id == r["run_id"]].set_index(["source", "metric"]).value
        assert mine[("run", "forget_loss")] == r["metrics"]["forget_loss"]
        assert (
            mine[("run/pre_finalize", "retain_loss")] == r["metrics"]["pre_finalize"]["retain_loss"]
        )
        for key, ev in (r.get("evals") or {}).items():
            for e in ev.get("headline") or []:
                got = mine[(key, e["name"])]
                assert got == e["value"] or (e.get("value") is None and got != got), (key, e)
    forget = m[(m.source == "run") & (m.metric == "forget_loss")]
    assert set(forget.direction) == {"higher"} and set(forget.unit) == {"nats"}
    bench = records[0]["benchmark"]  # one benchmark's rows
    assert metrics_long(tmp_path, bench).equals(m[m.benchmark == bench].reset_index(drop=True))


def test_curves_long_has_one_row_per_curve_point(tmp_path):
    records = _store(tmp_path)
    c = curves_long(tmp_path)
    points = sum(len(v) for r in records for v in (r.get("curves") or {}).values())
    assert points > 0 and len(c) == points and _scalar_cells(c)
    assert {"run_id", "method", "seed", "setting", "source", "step", "split", "loss"} <= set(c)
    # the wide frame has list or dict cells; the long ones are what a notebook groups
    assert not _scalar_cells(load_records(tmp_path).astype(object))
