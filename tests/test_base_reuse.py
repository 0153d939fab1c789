"""Post-hoc runs get their base from the run store: the no-filter run is trained once and reused."""

import pytest

from unlearnbench import runner
from unlearnbench.config import ConfigError
from unlearnbench.registry import methods
from unlearnbench.results.store import RunStore

TINY = {"n_stories": 200, "steps": 2, "context": 32, "eval_blocks": 2, "batch_size": 4}


@pytest.fixture
def trained(monkeypatch):
    """Count the loop's runs by description; make the no-filter base a 2-step run."""
    calls = []
    real = runner.train

    def counting(objective, groups, cfg, seed, eos_id, **kw):
        calls.append(kw.get("description", ""))
        return real(objective, groups, cfg, seed, eos_id, **kw)

    monkeypatch.setattr(runner, "train", counting)
    spec = methods.get("no-filter")
    monkeypatch.setitem(spec.train_defaults, "steps", 2)
    monkeypatch.setitem(spec.train_defaults, "batch_size", 4)
    return calls


def test_posthoc_runs_train_the_no_filter_base_once_then_reuse_it(tmp_path, trained):
    store = RunStore(tmp_path)
    cfg = runner.resolve_run_config("grad-ascent", "storyworld-lang", "tiny", 0, TINY)
    first = runner.execute(cfg, store, progress=False)
    assert [c.split()[0] for c in trained] == ["no-filter", "grad-ascent"]
    base = store.load(first["base"])
    assert base["method"] == "no-filter" and base["kind"] == "training"
    # the base shares what is measured: block length and test blocks
    assert base["config"]["train"]["context"] == 32 and base["config"]["train"]["eval_blocks"] == 2
    assert base["config"]["labels"] == first["config"]["labels"]

    cfg2 = runner.resolve_run_config("npo", "storyworld-lang", "tiny", 0, TINY)
    second = runner.execute(cfg2, store, progress=False)
    assert [c.split()[0] for c in trained] == ["no-filter", "grad-ascent", "npo"]  # no retraining
    assert second["base"] == first["base"]
    assert len(store.find(method="no-filter")) == 1


def test_base_option_loads_a_checkpoint_and_skips_the_no_filter_run(tmp_path, trained):
    store = RunStore(tmp_path)
    nf = runner.resolve_run_config("no-filter", "storyworld-lang", "tiny", 0, TINY)
    path = runner.execute(nf, store, progress=False)["model_path"]
    other = RunStore(tmp_path / "other")  # a store without the no-filter record
    cfg = runner.resolve_run_config(
        "grad-ascent", "storyworld-lang", "tiny", 0, TINY | {"base": path}
    )
    record = runner.execute(cfg, other, progress=False)
    assert record["base"] == path
    assert [c.split()[0] for c in trained] == ["no-filter", "grad-ascent"]
    assert other.find(method="no-filter") == []
    bad = runner.resolve_run_config(
        "grad-ascent", "storyworld-lang", "tiny", 0, TINY | {"base": str(tmp_path / "nope")}
    )
    with pytest.raises(ConfigError, match="cannot load base model"):
        runner.execute(bad, other, progress=False)
