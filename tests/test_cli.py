"""The command line contract: runs, records, skipping, and one-line errors for user mistakes."""

import json

import pytest
from typer.testing import CliRunner

from unlearnbench.cli import app

runner = CliRunner()
SMALL = [
    "--set", "n_stories=300", "--set", "vocab_size=300", "--set", "context=32",
    "--set", "steps=3", "--set", "batch_size=4", "--set", "eval_blocks=2", "--set", "warmup_steps=1",
]  # fmt: skip


@pytest.mark.parametrize(
    "args, needle",
    [
        (["run", "sgtn"], "unknown method 'sgtn'; did you mean sgtm"),
        (["run", "sgtm", "--benchmark", "storyworld-lnag"], "unknown benchmark 'storyworld-lnag'"),
        (["run", "sgtm", "--model", "tiyn"], "unknown model 'tiyn'; did you mean tiny"),
        (["run", "sgtm", "--set", "forget_mlp=3"], "unknown key 'forget_mlp'"),
        (["run", "sgtm", "--set", "recall=2"], "recall must be in [0, 1]"),
        (["run", "sgtm", "--set", "recall"], "--set expects key=value"),
        (["run", "sgtm", "--config", "missing.yaml"], "config file not found"),
    ],
)
def test_user_mistakes_give_one_line_and_exit_2(args, needle, tmp_path):
    result = runner.invoke(app, args + ["--out", str(tmp_path)])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], result.stderr
    assert not (tmp_path / "records").exists(), "no record for a rejected run"


def test_forget_dim_larger_than_the_layer_is_rejected(tmp_path):
    result = runner.invoke(
        app, ["run", "sgtm", "--set", "forget_mlp_dim=100000", "--out", str(tmp_path)] + SMALL
    )
    assert result.exit_code == 2 and "forget_mlp_dim" in result.stderr


def test_run_writes_a_record_reproducibly_and_skips_existing(tmp_path):
    out = str(tmp_path)
    first = runner.invoke(
        app, ["run", "sgtm", "--set", "recall=0.9", "--json", "--out", out] + SMALL
    )
    assert first.exit_code == 0, first.stderr
    rec = json.loads(first.stdout)
    for key in ("run_id", "config_hash", "method", "benchmark", "model", "seed", "config",
                "tokens_seen", "wall_seconds", "versions", "model_path"):  # fmt: skip
        assert key in rec, key
    m = rec["metrics"]
    assert m["adjacent_loss"] is None, "storyworld-lang has no adjacent split"
    assert m["forget_loss"] > 0 and m["retain_loss"] > 0
    assert set(m["pre_finalize"]) == {"forget_loss", "adjacent_loss", "retain_loss"}
    assert m["pre_finalize"]["forget_loss"] != m["forget_loss"], "ablation must change forget loss"
    assert rec["config"]["labels"]["recall"] == 0.9 and rec["tokens_seen"] == 3 * 4 * 32
    # an existing record is returned, not recomputed
    again = runner.invoke(
        app, ["run", "sgtm", "--set", "recall=0.9", "--json", "--out", out] + SMALL
    )
    assert json.loads(again.stdout)["created"] == rec["created"]
    # --force recomputes: same seed, bit-identical metrics on CPU
    forced = runner.invoke(
        app, ["run", "sgtm", "--set", "recall=0.9", "--json", "--force", "--out", out] + SMALL
    )
    assert json.loads(forced.stdout)["metrics"] == m

    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(rec["model_path"])
    tok = AutoTokenizer.from_pretrained(rec["model_path"])
    assert model.config.vocab_size == len(tok)

    board = runner.invoke(app, ["leaderboard", "--out", out])
    assert board.exit_code == 0 and "sgtm (recall=0.9" in board.stdout


def test_labels_are_identical_across_methods(tmp_path):
    out = str(tmp_path)
    counts = []
    for method in ("no-filter", "filter", "sgtm"):
        r = runner.invoke(
            app, ["run", method, "--set", "recall=0.6", "--json", "--out", out] + SMALL
        )
        assert r.exit_code == 0, r.stderr
        counts.append(json.loads(r.stdout)["label_counts"])
    assert counts[0] == counts[1] == counts[2]
    assert counts[0]["forget/unlabeled"] > 0 and counts[0]["forget/forget"] > 0


def test_list_commands():
    for what, needle in (
        ("methods", "sgtm"),
        ("benchmarks", "storyworld-topic"),
        ("models", "tiny"),
    ):
        r = runner.invoke(app, ["list", what])
        assert r.exit_code == 0 and needle in r.stdout
    assert runner.invoke(app, ["list", "nothing"]).exit_code == 2


def test_list_evals_and_suites_show_descriptions_metrics_and_contents():
    r = runner.invoke(app, ["list", "evals"], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    row = next(line for line in r.stdout.splitlines() if "fact-probes" in line)
    assert "Multiple-choice fact accuracy" in row and "forget_accuracy ↓" in row
    assert "relearn" in r.stdout and "forget_loss ↑" in r.stdout  # an attack: higher is better
    r = runner.invoke(app, ["list", "suites"], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    row = next(line for line in r.stdout.splitlines() if line.startswith("│ quick "))
    assert "relearn, fact-probes, generations" in row and "light relearning attack" in row
    assert "unlearnbench[lm-eval]" in r.stdout  # the text's brackets are shown, not markup


def test_version_and_run_help_name_no_source_file():
    from unlearnbench import __version__

    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and r.stdout.strip() == f"unlearnbench {__version__}"
    r = runner.invoke(app, ["run", "--help"], env={"COLUMNS": "200"})
    assert r.exit_code == 0 and ".py" not in r.stdout


def test_compare_fact_probes_script_pairs_runs_and_rejects_unknown_ones(tmp_path):
    import os
    import subprocess
    import sys

    out = str(tmp_path)
    for steps in ("3", "4"):
        res = runner.invoke(
            app, ["run", "no-filter", "--out", out, *SMALL, "--set", f"steps={steps}"]
        )
        assert res.exit_code == 0, res.stderr
    ids = sorted(p.stem for p in (tmp_path / "records").glob("*.json"))
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "compare_fact_probes.py"
    # a fixed subset of the probes: the pairing is the same on every probe, and all of them take
    # minutes on the CPU
    script = [sys.executable, str(path), "--runs", out, "--max-per-split", "60"]
    env = {**os.environ, "COLUMNS": "200"}
    same = subprocess.run(
        script + [ids[0], ids[0], ids[1]], capture_output=True, text=True, env=env
    )
    assert same.returncode == 0, same.stderr
    rows = [line.split("│") for line in same.stdout.splitlines() if "│" in line]
    cells = [[c.strip() for c in r[1:-1]] for r in rows if r[2].strip() in ("forget", "retain")]
    assert len(cells) == 4  # two models x two splits
    for model, _, n, base_acc, acc, lost, gained, p in cells[:2]:  # the base against itself
        assert model == ids[0] and base_acc == acc and (lost, gained, p) == ("0", "0", "1")
        assert int(n) == 60  # the subset asked for
    bad = subprocess.run(script + [ids[0], "no-such-run"], capture_output=True, text=True, env=env)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert "'no-such-run' is neither a run" in bad.stderr.strip().splitlines()[-1]


def test_run_summary_names_the_selected_forget_tokens(capsys):
    from unlearnbench.cli import _print_run

    record = {
        "run_id": "grad-ascent__x",
        "metrics": {
            "forget_loss": 3.0,
            "retain_loss": 2.0,
            "pre_finalize": {"forget_loss": 3.0, "retain_loss": 2.0},
            "forget_tokens": {
                "count": 23,
                "tokens": [f"tok{i}" for i in range(23)],
                "mode": "ratio",
            },
        },
        "tokens_seen": 10,
        "wall_seconds": 1.0,
        "model_path": None,
    }
    _print_run(record, existed=False)
    out = capsys.readouterr().out
    assert "forget tokens (ratio, 23): tok0, tok1" in out and "tok19 ..." in out
    assert "tok20" not in out  # at most 20 named
    del record["metrics"]["forget_tokens"]
    _print_run(record, existed=False)
    assert "forget tokens" not in capsys.readouterr().out


@pytest.mark.parametrize("width", [120, 100])
def test_leaderboard_prints_the_headline_as_a_terminal_table_that_fits(tmp_path, width):
    """Not raw Markdown (lines of a thousand characters): a table within the terminal's width,
    every headline column and row in it; the file keeps the full Markdown table."""
    from results_fixtures import sample_records

    from unlearnbench.results.leaderboard import (
        _by_benchmark_model,
        _headline_table,
        leaderboard_rows,
    )

    (tmp_path / "records").mkdir()
    records = sample_records()
    for r in records:
        (tmp_path / "records" / f"{r['run_id']}.json").write_text(json.dumps(r))
    res = runner.invoke(app, ["leaderboard", "--out", str(tmp_path)], env={"COLUMNS": str(width)})
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert max(map(len, lines)) <= width and not any(line.startswith("|") for line in lines)
    words = set(res.stdout.split())
    for title, rows in _by_benchmark_model(leaderboard_rows(records)):
        head, body = _headline_table(rows)
        assert title in res.stdout
        for text in [*head, *(cells[0] for cells in body)]:  # every column and row, whole
            assert all(w in words for w in text.split() if len(w) <= 6), text
    full = tmp_path / "leaderboard.md"
    assert str(full) in res.stdout.replace("\n", "")  # where the full table is
    assert "| method" in full.read_text()


def test_ctrl_c_is_one_line_saying_what_was_kept_and_exit_130(tmp_path, monkeypatch):
    import unlearnbench.runner

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(unlearnbench.runner, "execute", interrupted)
    res = runner.invoke(app, ["run", "no-filter", "--out", str(tmp_path / "runs"), "--quiet"])
    assert res.exit_code == 130, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) <= 3 and "Traceback" not in res.output  # one (wrapped) line
    text = " ".join(res.output.split())
    assert text.startswith("error: interrupted; kept: the records of the runs that finished")
    assert f"{tmp_path / 'runs'}/records" in "".join(res.output.split())  # where they are
    assert "--resume" in text
