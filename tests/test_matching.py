"""The matching no-filter run and perfect filter: one rule, on a hand-made store that holds plain and
curriculum no-filter runs for several seeds, used by the runner, the leaderboard and the figures."""

from __future__ import annotations

import dataclasses
import json
import random
import subprocess
import sys

import pytest
from results_fixtures import record

from unlearnbench import runner, suites
from unlearnbench.registry import methods
from unlearnbench.results.leaderboard import leaderboard_rows
from unlearnbench.results.matching import (
    REFERENCE_OPTION_DEFAULTS,
    matching_no_filter,
    matching_perfect_filter,
    reference_overrides,
)
from unlearnbench.results.plots import relearn_figure, tradeoff_figure
from unlearnbench.results.store import RunStore

BENCH = "storyworld-topic"
SEEDS = (0, 1, 2)
CURRICULUM = {"forget_after": 0.5}


def curriculum(seed: int) -> dict:
    """The checkpoint-transfer base: forget documents enter halfway, snapshots every 25 steps."""
    r = record("no-filter", seed, 5.3 + seed, 2.7, options=CURRICULUM)
    r["config"]["train"]["snapshot_every"] = 25
    return r


def posthoc(method: str, seed: int, base: str | None, forget: float = 7.6) -> dict:
    r = record("filter", seed, forget, 2.7)  # the fields a record has; made post-hoc below
    r.update(method=method, kind="posthoc", base=base)
    r["run_id"] = f"{method}__{BENCH}__tiny__s{seed}__posthoc"
    r["config"].update(method=method, method_options={})
    r["config"]["train"] |= {"steps": 32, "batch_size": 32, "lr": 1e-4}  # its own budget
    return r


def store_records() -> list[dict]:
    """Per seed: plain no-filter, curriculum no-filter, the perfect filter, a strict filter, a
    filter at recall 0.9, and checkpoint-transfer from the curriculum run (by its saved path)."""
    out = []
    for s in SEEDS:
        cur = curriculum(s)
        strict = record("filter", s, 9.9, 2.9, options={"strict": True})
        out += [
            record("no-filter", s, 3.5 + s, 2.8),
            cur,
            record("filter", s, 9.6 + s, 2.6),
            strict,
            record("filter", s, 5.0 + s, 2.6, recall=0.9),
            posthoc("checkpoint-transfer", s, f"/elsewhere/models/{cur['run_id']}/"),
        ]
    random.Random(0).shuffle(out)  # the answer never depends on the order of the store
    return out


def _one(records, method, seed, **where):
    hits = [
        r
        for r in records
        if r["method"] == method
        and r["seed"] == seed
        and all(r["config"]["method_options"].get(k) == v for k, v in where.items())
        and r["config"]["labels"]["recall"] == 1.0
    ]
    assert len(hits) == 1, hits
    return hits[0]


@pytest.mark.parametrize("seed", SEEDS)
def test_the_plain_no_filter_run_of_the_same_seed_never_the_curriculum(seed):
    recs = store_records()
    plain = _one(recs, "no-filter", seed, forget_after=None)
    perfect = _one(recs, "filter", seed, strict=False)
    for run in (perfect, _one(recs, "no-filter", seed, forget_after=0.5), plain):
        assert matching_no_filter(run, recs) is plain
    # the curriculum variant only when asked for
    got = matching_no_filter(perfect, recs, options=CURRICULUM)
    assert got["config"]["method_options"] == CURRICULUM and got["seed"] == seed
    # a post-hoc run is matched through its base (the curriculum run, by a moved store's path):
    # the plain no-filter run with the base's setup, not the base and not another seed's
    ct = next(r for r in recs if r["method"] == "checkpoint-transfer" and r["seed"] == seed)
    assert matching_no_filter(ct, recs) is plain
    assert matching_perfect_filter(ct, recs) is perfect


def test_no_filter_matches_at_any_labels_benchmark_options_and_budget_must_agree():
    recs = store_records()
    at_09 = next(r for r in recs if r["method"] == "filter" and r["config"]["labels"]["recall"] < 1)
    # no-filter ignores labels: the recall-0.9 run is compared with the plain no-filter run ...
    plain = _one(recs, "no-filter", at_09["seed"], forget_after=None)
    assert matching_no_filter(at_09, recs) is plain
    # ... and of several no-filter runs of one seed, the one at the default labels wins
    nf_09 = record("no-filter", at_09["seed"], 3.0, 2.8, recall=0.9)
    assert matching_no_filter(at_09, recs + [nf_09]) is plain
    assert matching_no_filter(at_09, [r for r in recs if r is not plain] + [nf_09]) is nf_09
    # its perfect filter: recall 1.0, not strict, the other label rates its own
    assert matching_perfect_filter(at_09, recs) is _one(recs, "filter", at_09["seed"], strict=False)

    run = record("filter", 0, 9.6, 2.6)
    longer = dict(run, config=dict(run["config"], train=run["config"]["train"] | {"steps": 999}))
    assert matching_no_filter(longer, recs) is None  # a training-time run: the same budget
    other_data = dict(run, config=dict(run["config"], benchmark_options={"n_stories": 7}))
    assert matching_no_filter(other_data, recs) is None
    on_gpu = dict(
        run, config=dict(run["config"], train=run["config"]["train"] | {"device": "cuda"})
    )
    assert matching_no_filter(on_gpu, recs) is _one(recs, "no-filter", 0, forget_after=None)


def test_a_posthoc_run_without_a_recorded_base_shares_the_measured_settings_only():
    recs = store_records()
    plain = _one(recs, "no-filter", 1, forget_after=None)
    short = record("no-filter", 1, 6.0, 4.0)
    short["run_id"] += "-short"
    short["config"]["train"]["steps"] = 10
    run = posthoc("rmu", 1, "/a/model/from/elsewhere")
    # its own steps and lr are not the base's; of two candidates, the default budget wins
    assert matching_no_filter(run, recs + [short]) is plain
    assert matching_no_filter(run, [short]) is short
    other_blocks = posthoc("rmu", 1, None)
    other_blocks["config"]["train"]["context"] = 64
    assert matching_no_filter(other_blocks, recs) is None  # measured on other test blocks


def test_the_overrides_train_the_run_the_rule_then_finds():
    """When no reference is recorded the runner trains one from `reference_overrides`; that run's
    record is the one the rule finds afterwards (resolved here, not trained)."""
    recs = store_records()
    cfg = runner.resolve_run_config(
        "filter", BENCH, "tiny", 2, {"recall": 0.9, "steps": 7, "lr": 3e-4}
    )
    run = {"kind": "training", "benchmark": BENCH, "model": "tiny", "seed": 2}
    run |= {"run_id": cfg.run_id, "method": "filter", "config": cfg.to_dict()}
    for name, finder in (("no-filter", matching_no_filter), ("perfect-filter", None)):
        method, overrides = reference_overrides(run, recs, name)
        cfg = runner.resolve_run_config(method, BENCH, "tiny", 2, overrides)
        trained = {
            "run_id": cfg.run_id,
            "method": method,
            "kind": "training",
            "benchmark": BENCH,
            "model": "tiny",
            "seed": 2,
            "config": cfg.to_dict(),
        }
        assert cfg.train.steps == 7 and cfg.train.lr == 3e-4
        # both are trained at the default labels: no-filter ignores them, the filter's is 1.0
        assert cfg.labels.recall == 1.0
        if finder is None:
            assert matching_perfect_filter(run, [trained]) is trained
        else:
            assert finder(run, [trained]) is trained
    # a post-hoc run's no-filter base gets the measured settings, and no-filter's own budget
    rmu = posthoc("rmu", 2, None)
    method, overrides = reference_overrides(rmu, [], "no-filter")
    cfg = runner.resolve_run_config(method, BENCH, "tiny", 2, overrides)
    assert cfg.train.steps != 32 and cfg.method_options == {}


def test_reference_option_defaults_are_the_registrys():
    for method, table in REFERENCE_OPTION_DEFAULTS.items():
        fields = dataclasses.fields(methods.get(method).options)
        assert table == {f.name: f.default for f in fields}, method


def test_the_rule_imports_neither_torch_nor_a_registry():
    code = (
        "import sys, unlearnbench.results.matching; "
        "assert 'torch' not in sys.modules and 'unlearnbench.registry' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_runner_attack_reference_is_the_plain_run_of_the_store(tmp_path):
    store = RunStore(tmp_path)
    for r in store_records():
        store.model_path(r["run_id"]).mkdir(parents=True)  # a saved model's folder (empty)
        store.write(r | {"model_path": str(store.model_path(r["run_id"]))})
    # (matched, so nothing is trained: no model is loaded or built here)
    for seed in SEEDS:
        run = store.load(_one(store_records(), "filter", seed, strict=False)["run_id"])
        ref = suites.reference_record(run, "no-filter", store, progress=False)
        assert ref["method"] == "no-filter" and ref["seed"] == seed
        assert ref["config"]["method_options"] == {}
        assert suites.reference_record(run, "perfect-filter", store, progress=False) == run


def _hlines(ax, label: str) -> list[float]:
    return [ln.get_ydata()[0] for ln in ax.get_lines() if ln.get_label().startswith(label)]


def test_figures_mark_the_plain_no_filter_level_not_the_curriculum_nor_a_mean():
    from results_fixtures import relearn_rows

    recs = store_records()
    for r in recs:  # attack curves on every run, so the relearn figure draws them all
        f = r["metrics"]["forget_loss"]
        r["curves"] = {"relearn": relearn_rows(f, f - 1.0)}
    plain = [
        r["metrics"]["forget_loss"]
        for r in recs
        if r["method"] == "no-filter" and not r["config"]["method_options"]
    ]
    level = sum(plain) / len(plain)  # mean over the seeds of the plain runs
    fig = tradeoff_figure(recs, BENCH)  # Δ against the plain run of each seed: it is the origin
    # the perfect filter's Δforget, paired by seed: 9.6 + s - (3.5 + s) in every seed
    assert _hlines(fig.axes[0], "perfect filter's Δforget") == pytest.approx([6.1])
    points = {c.get_label(): c.lines[0].get_ydata()[0] for c in fig.axes[0].containers}
    curriculum = next(y for label, y in points.items() if "forget_after" in label)
    assert curriculum == pytest.approx(1.8)  # a point against the plain run, not the reference
    fig = relearn_figure(recs, BENCH)
    assert _hlines(fig.axes[0], "no-filter forget loss") == pytest.approx([level])


def test_leaderboard_deltas_use_the_rule():
    rows = leaderboard_rows(store_records())
    by = {(r["method"], r["setting"]): r for r in rows}
    # the curriculum run against the plain one of its seed: +1.8 nats in every seed
    cur = next(r for k, r in by.items() if k[0] == "no-filter" and "forget_after" in k[1])
    assert cur["cells"]["d_forget"].mean == pytest.approx(1.8)
    assert by[("filter", "recall=1.0")]["cells"]["d_forget"].mean == pytest.approx(6.1)
    # a post-hoc run against the plain no-filter run, and beside it against the base it started
    # from (what the unlearning itself changed)
    ct = next(r for k, r in by.items() if k[0] == "checkpoint-transfer")
    plain = by[("no-filter", "")]["cells"]["forget"].mean
    assert ct["cells"]["d_forget"].mean == pytest.approx(7.6 - plain)
    assert ct["cells"]["base_d_forget"].mean == pytest.approx(7.6 - (5.3 + 1.0))


def test_a_posthoc_runs_perfect_filter_is_the_plain_one_not_a_grad_clip_variant():
    recs = store_records()
    seed = 0
    plain = _one(recs, "filter", seed, strict=False)
    clipped = json.loads(json.dumps(plain))
    clipped["run_id"] = "filter__storyworld-topic__tiny__s0__0000clip"  # sorts first by id
    clipped["config"]["train"] |= {"grad_clip": 1.0, "weight_decay_groups": "matrices"}
    clipped["non_default"] = {"train": {"grad_clip": 1.0, "weight_decay_groups": "matrices"}}
    rmu = posthoc("rmu", seed, None)
    assert matching_perfect_filter(rmu, recs + [clipped]) is plain
    assert matching_perfect_filter(rmu, [clipped] + recs) is plain


def test_where_a_reference_ran_does_not_make_it_a_variant_to_the_rule():
    """A GPU-trained plain filter (its record states `device`) before a clipped one whose record,
    from before `non_default`, states nothing."""
    recs = store_records()
    plain = _one(recs, "filter", 0, strict=False)
    gpu = json.loads(json.dumps(plain))
    gpu["config"]["train"]["device"] = "cuda"
    gpu["non_default"] = {"train": {"device": "cuda"}}
    clipped = json.loads(json.dumps(plain))
    clipped["run_id"] = "filter__storyworld-topic__tiny__s0__0000clip"  # sorts first by id
    clipped["config"]["train"]["grad_clip"] = 1.0
    del clipped["non_default"]
    others = [r for r in recs if r is not plain]
    assert matching_perfect_filter(posthoc("rmu", 0, None), others + [clipped, gpu]) is gpu


def test_the_perfect_filter_is_matched_at_any_retain_and_adjacent_label_rates():
    """A plain filter trains every document not labeled forget alike, so the rates at which retain
    and adjacent documents are labeled retain cannot change it; the forget labels it reads can."""
    sgtm = record("sgtm", 0, 8.0, 2.7)
    sgtm["config"]["labels"] |= {"retain_label_rate": 0.1, "adjacent_label_rate": 0.1}
    plain = record("filter", 0, 9.6, 2.6)
    assert matching_perfect_filter(sgtm, [sgtm, plain]) is plain
    # a filter that drops other documents (adjacent ones mislabeled forget) is not it
    sgtm["config"]["labels"]["false_positive_rate"] = 0.2
    assert matching_perfect_filter(sgtm, [sgtm, plain]) is None
    # and the one the runner trains for it is at the run's forget labels only
    _, overrides = reference_overrides(sgtm, [sgtm], "perfect-filter")
    assert {k for k in overrides if k.startswith("labels.")} == {
        "labels.recall",
        "labels.false_positive_rate",
    }
