"""A benchmark exported as a Hugging Face dataset is exactly the data our runs use."""

from __future__ import annotations

from typer.testing import CliRunner

from unlearnbench.cli import app
from unlearnbench.data.benchmarks import load_benchmark

SMALL = {"n_stories": 300}


def test_export_benchmark_loads_with_datasets_and_matches_the_runs_data(tmp_path):
    from datasets import load_dataset, load_from_disk

    dest = tmp_path / "export"
    res = CliRunner().invoke(
        app, ["export-benchmark", "storyworld-lang", str(dest), "--set", "n_stories=300"]
    )
    assert res.exit_code == 0, res.output
    bench = load_benchmark("storyworld-lang", SMALL)
    data = load_from_disk(str(dest / "dataset"))
    assert set(data) == {"train", "test", "probes"}
    # the documents with their true split and metadata, the train/test partition as the runs see it
    train = data["train"]
    assert train["id"] == [d.id for d, _ in bench.train]
    assert train["split"] == [s for _, s in bench.train]
    assert train["language"] == [d.meta["language"] for d, _ in bench.train]
    assert {"topic", "entities", "text"} <= set(train.column_names)
    assert set(train["split"]) == {"forget", "retain"}  # storyworld-lang: Spanish is forget
    assert all(
        (s == "forget") == (lang == "es")
        for s, lang in zip(train["split"], train["language"], strict=True)
    )
    test_ids = {d.id for docs in bench.test.values() for d in docs}
    assert set(data["test"]["id"]) == test_ids and not test_ids & set(train["id"])
    probes = data["probes"]
    assert len(probes) == len(bench.probes)
    p, split = bench.probes[0]
    assert probes[0]["prompt"] == p.prompt and probes[0]["options"] == list(p.options)
    assert probes[0]["answer"] == p.answer and probes[0]["split"] == split
    # the parquet copy is the same data
    parquet = load_dataset("parquet", data_files={"test": str(dest / "parquet" / "test.parquet")})
    assert parquet["test"]["id"] == data["test"]["id"]


def test_export_benchmark_refuses_a_used_folder_and_a_typo_in_one_line(tmp_path):
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("mine")
    runner = CliRunner()
    res = runner.invoke(app, ["export-benchmark", "storyworld-lang", str(tmp_path / "used")])
    assert res.exit_code == 2 and "not an empty folder" in res.output
    assert (tmp_path / "used" / "x").read_text() == "mine"
    res = runner.invoke(
        app, ["export-benchmark", "storyworld-lang", str(tmp_path / "n"), "--set", "n_storie=3"]
    )
    assert res.exit_code == 2 and "did you mean n_stories" in res.output
    assert "Traceback" not in res.output and not (tmp_path / "n").exists()
