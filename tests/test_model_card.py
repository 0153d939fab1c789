"""Model cards are `huggingface_hub` model cards: metadata a hub push accepts, metrics as
model-index, rewritten when an evaluation adds a result."""

from __future__ import annotations

from huggingface_hub import ModelCard

from unlearnbench.models.card import write_model_card

RECORD = {
    "run_id": "rmu__tinystories-forest__hub__s1__abc",
    "method": "rmu",
    "kind": "posthoc",
    "benchmark": "tinystories-forest",
    "model": "28M",
    "seed": 1,
    "base": "EleutherAI/pythia-14m",
    "config": {"benchmark_options": {"dataset": "roneneldan/TinyStories"}},
    "metrics": {"forget_loss": 5.25, "retain_loss": 2.5, "pre_finalize": {"forget_loss": 3.0}},
    "evals": {
        "robust/fact-probes": {
            "headline": [
                {"name": "forget_accuracy", "title": "forget facts acc", "value": 0.25},
                {"name": "adjacent_accuracy", "title": "adjacent facts acc", "value": None},
            ]
        }
    },
    "tokens_seen": 1234,
}


def test_the_card_has_hub_metadata_and_the_headline_as_model_index(tmp_path):
    card = ModelCard.load(write_model_card(tmp_path, RECORD))
    data = card.data
    assert data.license == "mit" and data.library_name == "transformers"
    assert data.base_model == "EleutherAI/pythia-14m" and data.datasets == [
        "roneneldan/TinyStories"
    ]
    got = {r.metric_type: r.metric_value for r in data.eval_results}
    # the final losses and the evaluation's measured headline; nothing for what was not measured
    assert got == {
        "forget_loss": 5.25,
        "retain_loss": 2.5,
        "robust/fact-probes/forget_accuracy": 0.25,
    }
    assert {r.dataset_name for r in data.eval_results} == {"tinystories-forest"}
    assert "| forget | 3.0000 | 5.2500 |" in card.text  # the body as before


def test_a_local_base_is_named_in_the_text_never_as_hub_metadata(tmp_path):
    record = {**RECORD, "base": "no-filter__storyworld-lang__tiny__s0__ff3f", "config": {}}
    card = ModelCard.load(write_model_card(tmp_path, record))
    assert card.data.base_model is None and card.data.datasets is None
    assert "no-filter__storyworld-lang__tiny__s0__ff3f" in card.text


def test_an_evaluation_merged_into_the_record_rewrites_the_card(tmp_path):
    from unlearnbench.results.store import RunStore
    from unlearnbench.suites import merge_eval

    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text("{}")
    record = {**RECORD, "evals": {}, "model_path": str(model_dir)}
    store = RunStore(tmp_path / "store")
    store.write(record)
    write_model_card(model_dir, record)
    assert len(ModelCard.load(model_dir / "README.md").data.eval_results) == 2
    summary = {"headline": [{"name": "forget_loss@10", "title": "after 10", "value": 4.0}]}
    merge_eval(store, record["run_id"], "quick/relearn", summary, None)
    results = ModelCard.load(model_dir / "README.md").data.eval_results
    assert {r.metric_type: r.metric_value for r in results}["quick/relearn/forget_loss@10"] == 4.0
