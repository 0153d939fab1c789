"""The evaluation contract: an evaluation declares its headline metrics when it registers, and they
appear in the CLI summary, the leaderboard and the report with no other edit; results of two
suites never overwrite each other; older results are read, not rerun."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from typer.testing import CliRunner

from unlearnbench.cli import app
from unlearnbench.evals import HIGHER, EvalResult, Metric, register_eval
from unlearnbench.losses import split_losses
from unlearnbench.registry import evals, methods

runner = CliRunner()
SMALL = [
    "--set", "n_stories=300", "--set", "vocab_size=300", "--set", "context=32",
    "--set", "steps=3", "--set", "batch_size=4", "--set", "eval_blocks=2", "--set", "warmup_steps=1",
]  # fmt: skip
NAME = "first-blocks"  # a throwaway evaluation, registered by this test only
CALLS = []


@dataclass(frozen=True)
class FirstBlocksOptions:
    blocks: int = 1  # test blocks of the forget split to measure


def first_blocks(ctx, options: FirstBlocksOptions) -> EvalResult:
    """Forget loss on the first test blocks only."""
    CALLS.append(options.blocks)
    blocks = {"forget": ctx.eval_blocks["forget"][: options.blocks]}
    return EvalResult({"first": split_losses(ctx.model, blocks, ctx.eos_id, None, ctx.device)})


@pytest.fixture(scope="module")
def throwaway_eval():
    metric = Metric(
        "forget_loss", HIGHER, lambda s: s["first"]["forget"], "forget loss on the first blocks"
    )
    register_eval(NAME, FirstBlocksOptions, metrics=[metric])(first_blocks)
    yield
    evals._entries.pop(NAME)


@pytest.fixture(scope="module")
def store(tmp_path_factory, throwaway_eval):
    """A trained tiny run with the throwaway evaluation run by a one-line suite (`run --suite`)."""
    root = tmp_path_factory.mktemp("contract")
    suite = root / "mine.yaml"
    suite.write_text(f"references: false\nevals:\n  - eval: {NAME}\n")
    out = root / "runs"
    res = runner.invoke(app, ["run", "no-filter", "--suite", str(suite), "--out", str(out)] + SMALL)
    assert res.exit_code == 0, res.output
    (record_path,) = (out / "records").glob("*.json")
    return root, out, json.loads(record_path.read_text()), res.output


def test_a_new_evaluation_appears_in_the_cli_summary_leaderboard_and_report(store):
    root, out, record, cli_output = store
    summary = record["evals"][f"mine/{NAME}"]
    assert summary["eval"] == NAME and summary["suite"] == "mine"
    value = summary["first"]["forget"]
    (entry,) = summary["headline"]
    assert entry["value"] == value and entry["direction"] == "higher"
    # the CLI summary after `run --suite`
    assert f"mine/{NAME}: forget loss on the first blocks {value:.3f}" in cli_output
    # the leaderboard (its column is named by SUITE/KEY, with the declared arrow)
    res = runner.invoke(app, ["leaderboard", "--out", str(out), "--dest", str(root / "lb")])
    assert res.exit_code == 0, res.output
    full = (root / "lb" / "leaderboard.md").read_text()  # the CLI prints the headline columns
    assert f"mine/{NAME}: forget loss on the first blocks ↑" in full
    assert f"{value:.3f}" in full
    # the report
    res = runner.invoke(app, ["report", "--out", str(out), "--dest", str(root / "report")])
    assert res.exit_code == 0, res.output
    page = (root / "report" / "report-storyworld-lang.html").read_text()
    assert f"mine/{NAME}: forget loss on the first blocks ↑" in page
    assert f"<td>{NAME}</td><td>mine</td>" in page  # the evaluations table says which suite


def test_the_record_states_its_non_default_options(store):
    _, _, record, _ = store
    nd = record["non_default"]
    assert nd["train"] == {
        "steps": 3,
        "eval_blocks": 2,
        "warmup_steps": 1,
        "context": 32,
    }
    assert nd["method_options"] == {} and nd["labels"] == {}


def test_non_default_options_leave_out_what_the_run_id_does_not_cover():
    from unlearnbench.runner import non_default_options, resolve_run_config

    sets = {"checkpoint_every": 5, "snapshot_every": 2, "optimizer": "strict", "recall": 0.9}
    cfg = resolve_run_config("sgtm", "storyworld-lang", "tiny", 0, sets)
    nd = non_default_options(cfg, methods.get("sgtm"))
    assert nd == {"method_options": {"optimizer": "strict"}, "labels": {"recall": 0.9}, "train": {}}


def test_two_suites_with_different_options_keep_both_results(store):
    root, out, record, _ = store
    other = root / "other.yaml"
    other.write_text(f"evals:\n  - eval: {NAME}\n    options: {{blocks: 2}}\n")
    res = runner.invoke(app, ["attack", record["run_id"], "--suite", str(other), "--out", str(out)])
    assert res.exit_code == 0, res.output
    after = json.loads((out / "records" / f"{record['run_id']}.json").read_text())
    assert after["evals"][f"mine/{NAME}"] == record["evals"][f"mine/{NAME}"]  # not overwritten
    assert after["evals"][f"other/{NAME}"]["options"] == {"blocks": 2}
    res = runner.invoke(app, ["leaderboard", "--out", str(out), "--dest", str(root / "lb2")])
    full = (root / "lb2" / "leaderboard.md").read_text()
    assert f"mine/{NAME}: forget loss" in full and f"other/{NAME}: forget loss" in full


def test_an_older_result_is_adopted_by_its_suite_not_rerun(store):
    """A result recorded before results were keyed by suite and carried headline metrics moves to
    SUITE/KEY and gains them when the suite asks for the same options; nothing is rerun."""
    root, out, record, _ = store
    path = out / "records" / f"{record['run_id']}.json"
    old = json.loads(path.read_text())
    legacy = {"options": {"blocks": 3}, "first": {"forget": 9.5}, "seconds": 1.0}
    old["evals"] = {NAME: legacy}
    path.write_text(json.dumps(old))
    suite = root / "legacy.yaml"
    suite.write_text(f"references: false\nevals:\n  - eval: {NAME}\n    options: {{blocks: 3}}\n")
    CALLS.clear()
    res = runner.invoke(app, ["attack", record["run_id"], "--suite", str(suite), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert CALLS == []  # read, not rerun
    after = json.loads(path.read_text())
    assert set(after["evals"]) == {f"legacy/{NAME}"}
    moved = after["evals"][f"legacy/{NAME}"]
    assert moved["first"] == {"forget": 9.5} and moved["headline"][0]["value"] == 9.5
    assert "forget loss on the first blocks 9.500" in res.output
    # one with other options stays where it is, and the suite's own result is measured
    old["evals"] = {NAME: legacy | {"options": {"blocks": 1}}}
    path.write_text(json.dumps(old))
    res = runner.invoke(app, ["attack", record["run_id"], "--suite", str(suite), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert CALLS == [3]
    assert set(json.loads(path.read_text())["evals"]) == {NAME, f"legacy/{NAME}"}


def test_suite_keys_may_not_hold_a_slash(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("evals:\n  - eval: fact-probes\n    key: a/b\n")
    res = runner.invoke(app, ["attack", "nope", "--suite", str(bad), "--out", str(tmp_path)])
    assert res.exit_code == 2 and "may not hold '/'" in res.stderr


def test_a_reference_two_processes_ask_for_at_once_is_trained_and_measured_once(store, tmp_path):
    """Two runs of a sweep that share a perfect filter ask at once for their references' suite:
    one process trains and measures it, the other waits and finds it."""
    import multiprocessing
    import sys
    from concurrent.futures import ProcessPoolExecutor
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    import slow_reference_eval

    _, out, record, _ = store
    counter = tmp_path / "count.txt"
    suite = tmp_path / "slow.yaml"
    suite.write_text(
        f"evals:\n  - eval: {slow_reference_eval.NAME}\n    options: {{counter: '{counter}'}}\n"
    )
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=2, mp_context=context) as pool:
        futures = [
            pool.submit(
                slow_reference_eval.references_in_process, str(out), record["run_id"], str(suite)
            )
            for _ in range(2)
        ]
        filters = {f.result() for f in futures}
    assert len(filters) == 1  # one perfect filter trained
    # measured once, on the reference only (the no-filter run is its own no-filter reference)
    assert counter.read_text().splitlines() == list(filters)
