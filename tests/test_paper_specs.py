"""The paper-scale sweep specs (sweeps/paper/*.yaml): each loads, validates and dry-runs with the
SLURM launcher to its number of runs here, with no GPU, no cluster and no data (the hub loaders are
never called); the setup presets they name layer as the sweep module says; the GPU-hours estimate
(scripts/paper_scale.py) is the FLOP count over the assumed throughput."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from unlearnbench.cli import app
from unlearnbench.config import ConfigError
from unlearnbench.results.store import RunStore
from unlearnbench.sweep import load_spec, plan

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "sweeps" / "paper"
# spec -> runs: models x seeds x method entries (x grid points), less runs listed twice
EXPECTED_RUNS = {
    "sgtm-tinystories.yaml": 4 * 3 * 6,  # 4 sizes, 3 seeds, 6 method entries
    # no-filter and the perfect filter once, 3 methods x 10 recalls
    "sgtm-tinystories-undiscovered.yaml": 3 * (2 + 3 * 10),
    "sgtm-wikipedia.yaml": 4 * 3 * 4,  # 4 sizes, 3 seeds, no-filter / weak / strict / sgtm
    "sgtm-wikipedia-254M-relearning.yaml": 3 * 5,  # ... and rmu
    "era-tinystories.yaml": 10 * 3,  # 10 seeds, no-filter / filter / era
    "era-tinystories-oversight.yaml": 3 * (1 + 3 * 11),  # no-filter once, 3 methods x 11 recalls
}
NO_GPU = not torch.cuda.is_available()


@pytest.fixture
def no_data(monkeypatch):
    """Loading any benchmark's data fails the test: a dry run must not."""
    from unlearnbench.data.benchmarks import hub

    def refuse(*args, **kwargs):
        raise AssertionError("a dry run loaded data")

    monkeypatch.setattr(hub, "load_split", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_every_shipped_paper_spec_is_counted():
    assert sorted(p.name for p in PAPER.glob("*.yaml")) == sorted(EXPECTED_RUNS)


@pytest.mark.parametrize("name", sorted(EXPECTED_RUNS))
def test_paper_spec_dry_runs_on_slurm_here(name, tmp_path, no_data):
    spec = load_spec(PAPER / name)
    runs = plan(spec, RunStore(tmp_path), device_here=False)
    assert len(runs) == EXPECTED_RUNS[name]
    assert len({r.run_id for r in runs}) == len(runs)
    assert all(r.config.train.device == "cuda" for r in runs)
    # the CLI's dry run: the SLURM launcher off a cluster, the spec's device absent here
    res = CliRunner().invoke(
        app,
        ["sweep", str(PAPER / name), "--launcher", "slurm", "--dry-run", "--out", str(tmp_path)],
        env={"COLUMNS": "200"},
    )
    assert res.exit_code == 0, res.output
    assert f"{EXPECTED_RUNS[name]} runs (0 already recorded)" in res.output


def test_the_setup_preset_layers_by_method(tmp_path, no_data):
    runs = plan(load_spec(PAPER / "sgtm-wikipedia-254M-relearning.yaml"), RunStore(tmp_path), False)
    by = {r.method + ("-strict" if r.overrides.get("strict") else ""): r.config for r in runs}
    sgtm, base, rmu = by["sgtm"], by["no-filter"], by["rmu"]
    # the preset's training for every training-time method (configs/wiki/254M.yaml)
    for cfg in (sgtm, base, by["filter"], by["filter-strict"]):
        assert (cfg.train.steps, cfg.train.batch_size, cfg.train.lr) == (9689, 512, 6e-4)
        assert cfg.train.bf16 and cfg.model == "wiki-254M"
    # its labels and method options for sgtm only: no-filter stays at the default labels
    assert sgtm.labels.retain_label_rate == 0.1 and sgtm.method_options["mask_embeddings"]
    assert base.labels.retain_label_rate == 0.25 and base.labels.adjacent_label_rate == 0.0
    assert by["filter-strict"].method_options["strict"]
    # rmu runs its own preset, not the setup's pretraining
    assert (rmu.train.steps, rmu.train.lr, rmu.method_options["layer"]) == (240, 5e-5, 7)
    # and shares with its base what a post-hoc run passes on (results/matching.py)
    assert (rmu.train.context, rmu.train.bf16) == (base.train.context, base.train.bf16)


def test_undiscovered_grid_overrides_the_preset_recall(tmp_path, no_data):
    runs = plan(load_spec(PAPER / "sgtm-tinystories-undiscovered.yaml"), RunStore(tmp_path), False)
    sgtm = sorted(r.config.labels.recall for r in runs if r.method == "sgtm" and r.seed == 0)
    assert sgtm == sorted([1.0, 0.998, 0.995, 0.99, 0.98, 0.95, 0.9, 0.8, 0.5, 0.0])
    no_filter = [r for r in runs if r.method == "no-filter"]
    assert len(no_filter) == 3 and all(r.config.labels.recall == 1.0 for r in no_filter)


def test_the_tradeoff_filters_differ_in_recall_only_beside_the_plain_perfect_filter(
    tmp_path, no_data
):
    """The reference's trade-off filters (tradeoff.sh at 0.99, mislabeling.sh at 1.0) both skip
    forget-drawn steps; the plain perfect filter stays the reference the score is charged against."""
    runs = plan(load_spec(PAPER / "sgtm-tinystories.yaml"), RunStore(tmp_path), False)
    skip = {"sampling": "single_source", "skip_forget_steps": True}
    for size in ("8M", "18M", "34M", "64M"):
        filters = [
            r.config
            for r in runs
            if r.method == "filter" and r.config.model == size and r.seed == 0
        ]
        got = sorted(
            (c.labels.recall, c.method_options.get("skip_forget_steps", False)) for c in filters
        )
        assert got == [(0.99, True), (1.0, False), (1.0, True)], size
        for c in filters:  # a skipping filter is single-source; the plain one has neither option
            on = c.method_options.get("skip_forget_steps", False)
            assert all(c.method_options.get(k) == v for k, v in skip.items()) == on
    # at 64M the skipping perfect filter is the undiscovered-rate grid's recall-1.0 filter
    grid = plan(load_spec(PAPER / "sgtm-tinystories-undiscovered.yaml"), RunStore(tmp_path), False)
    ids = {r.run_id for r in grid}
    perfect_skip = [
        r
        for r in runs
        if r.method == "filter"
        and r.config.model == "64M"
        and r.config.labels.recall == 1.0
        and r.config.method_options.get("skip_forget_steps")
    ]
    assert len(perfect_skip) == 3 and all(r.run_id in ids for r in perfect_skip)


BASE = {
    "benchmark": "storyworld-lang",
    "model": ["8M", "18M"],
    "seeds": [0],
    "methods": ["no-filter", "sgtm"],
    "config": {"8M": "sgtm-tinystories-8M", "18M": "sgtm-tinystories-18M"},
}


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"config": {"8M": "sgtm-tinystories-8M"}}, "one preset per model"),
        ({"config": {"8M": "sgtm-tinystories-18M", "18M": "sgtm-tinystories-18M"}}, "is for model"),
        ({"config": "sgtm-tinystories-99M"}, "not found"),
        ({"config": ["sgtm-tinystories-8M"]}, "config must be a run preset"),
        ({"model": []}, "at least one model"),
        ({"methods": [{"rmu": {"config": 7}}]}, "config of method rmu"),
    ],
)
def test_bad_setup_presets_are_refused(tmp_path, bad, message):
    with pytest.raises(ConfigError, match=message):
        plan({**BASE, **bad}, RunStore(tmp_path))


@pytest.mark.skipif(not NO_GPU, reason="this machine has a GPU")
def test_a_cuda_spec_is_checked_here_unless_it_runs_elsewhere(tmp_path):
    spec = {**BASE, "set": {"train.device": "cuda"}}
    with pytest.raises(ConfigError, match="no CUDA device"):
        plan(spec, RunStore(tmp_path))  # serial, pool: the runs train here
    assert len(plan(spec, RunStore(tmp_path), device_here=False)) == 4
    with pytest.raises(ConfigError, match="device must be"):  # a name is still checked
        plan({**BASE, "set": {"train.device": "gpu"}}, RunStore(tmp_path), device_here=False)


@pytest.mark.skipif(shutil.which("srun") is not None, reason="a SLURM cluster")
def test_slurm_dry_run_off_a_cluster_checks_parameter_names(tmp_path):
    spec = PAPER / "era-tinystories.yaml"
    args = ["sweep", str(spec), "--launcher", "slurm", "--out", str(tmp_path)]
    bad = CliRunner().invoke(app, [*args, "--dry-run", "--slurm", "slurm_partitoin=gpu"])
    assert bad.exit_code == 2 and "partitoin" in bad.output
    real = CliRunner().invoke(app, args)  # not a dry run: submitting needs a cluster
    assert real.exit_code == 2 and "srun" in real.output


def paper_scale():
    path = ROOT / "scripts" / "paper_scale.py"
    spec = importlib.util.spec_from_file_location("paper_scale", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_hours_are_the_flops_over_the_assumed_throughput(tmp_path, no_data):
    ps = paper_scale()
    runs = plan(load_spec(PAPER / "sgtm-tinystories.yaml"), RunStore(tmp_path), False)
    runs64 = [r for r in runs if r.config.model == "64M"]
    flops = ps._bench().model_flops_per_token("64M", 50257, 512, "train")
    # configs/tinystories/64M.yaml: 33120 steps of 128 blocks of 512 tokens
    tokens = 33120 * 128 * 512
    cal = 200 * 4 * 2 * 512 * flops / 3  # calibration: 200 forward steps, 4 blocks x 2 splits
    got = ps.estimate(runs64, None, 100.0, set())
    assert got["64M"]["tokens"] == 18 * tokens
    assert got["64M"]["gpu_hours"] == pytest.approx(18 * tokens * flops / 100e12 / 3600)
    # with the suite; a run already trained (or counted by another spec) costs its suite only
    trained = {runs64[0].run_id}
    with_suite = ps.estimate(runs64, "sgtm-tinystories-paper", 100.0, trained)
    assert with_suite["total"]["flops"] == pytest.approx(17 * tokens * flops + 18 * cal)
    assert runs64[1].run_id in trained  # counted: a later spec does not train it again


def test_paper_scale_script_prints_hours_and_refuses_bad_input(capsys, no_data):
    ps = paper_scale()
    assert ps.main([str(PAPER / "era-tinystories.yaml"), "--mfu", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "50% MFU x 989 TFLOP/s" in out and "28M" in out and "30 runs to do" in out
    assert ps.main([str(PAPER / "era-tinystories.yaml"), "--mfu", "0"]) == 2
    assert ps.main(["no-such-spec.yaml"]) == 2
    assert "sweep spec not found" in capsys.readouterr().err


def test_a_sweep_job_continues_from_its_runs_checkpoint(tmp_path, monkeypatch):
    """A job killed at a SLURM time limit is started again by the next `sweep`: it resumes the
    run's checkpoint (the resume itself: test_reliability_resume.py); --force starts afresh."""
    import unlearnbench.runner as runner
    from unlearnbench.launch import run_one

    seen = []

    def fake_execute(cfg, store, force=False, progress=True, resume=False, log=()):
        seen.append((force, resume))
        store.write({"run_id": cfg.run_id, "method": cfg.method})

    monkeypatch.setattr(runner, "execute", fake_execute)
    (run,) = plan({**BASE, "model": "8M", "config": "sgtm-tinystories-8M", "methods": ["sgtm"]},
                  RunStore(tmp_path))  # fmt: skip
    store = RunStore(tmp_path)
    assert run_one(run.config, run.label, store)["status"] == "done"
    assert run_one(run.config, run.label, store, force=True)["status"] == "done"
    assert seen == [(False, True), (True, False)]


@pytest.mark.parametrize("name", sorted(EXPECTED_RUNS))
def test_every_method_run_of_a_spec_has_both_references_in_it(name, tmp_path, no_data):
    """A paper setup's tables compare each method with the setup's own no-filter and perfect
    filter: the spec must plan runs the matching rule accepts (same training, benchmark, model,
    seed; the perfect filter at the run's labels with recall 1.0)."""
    from unlearnbench.registry import methods
    from unlearnbench.results.references import join
    from unlearnbench.runner import record_identity

    runs = plan(load_spec(PAPER / name), RunStore(tmp_path), device_here=False)
    records = [record_identity(r.config, methods.get(r.config.method)) for r in runs]
    missing = [
        (j.run["method"], j.run["model"], j.run["seed"], ref)
        for j in join(records).values()
        if j.role == "method"
        for ref in ("no_filter", "perfect_filter")
        if getattr(j, ref) is None
    ]
    assert not missing, missing
