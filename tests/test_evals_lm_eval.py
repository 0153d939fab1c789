"""lm-eval adapter: a tiny local multiple-choice task, offline, on an in-memory model."""

from __future__ import annotations

import json
import os

import pytest
import torch
from transformers import GPTNeoConfig, GPTNeoForCausalLM

from unlearnbench.data.tokenizer import train_bpe
from unlearnbench.evals import headline, load_suite
from unlearnbench.evals.lm_eval_tasks import Z95, LMEvalOptions, evaluate_tasks
from unlearnbench.package_files import LM_EVAL_TASKS_DIR
from unlearnbench.registry import evals

if os.environ.get("CI"):
    import lm_eval  # noqa: F401  CI installs the extra: there a missing one fails, never skips
else:
    pytest.importorskip("lm_eval")

TASK = """task: toy_mc
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{question}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: "{{{{answer}}}}"
metric_list:
  - metric: acc
"""


def tiny_model(texts):
    tok = train_bpe(texts, 280)
    cfg = GPTNeoConfig(
        vocab_size=len(tok), max_position_embeddings=256, hidden_size=32, num_layers=2,
        attention_types=[[["global", "local"], 1]], num_heads=4, intermediate_size=64,
        window_size=8, eos_token_id=tok.eos_token_id, bos_token_id=tok.eos_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    return GPTNeoForCausalLM(cfg), tok


def test_local_task_runs_offline_on_an_in_memory_model(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    items = [
        {"question": "Pip the fox lives in the", "choices": [" cave", " barn"], "answer": 0},
        {"question": "Tom the cat eats", "choices": [" bread", " fish"], "answer": 1},
        {"question": "The sky is", "choices": [" blue", " red"], "answer": 0},
    ]
    data = tmp_path / "toy.jsonl"
    data.write_text("".join(json.dumps(x) + "\n" for x in items))
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "toy_mc.yaml").write_text(TASK.format(data=data))
    model, tok = tiny_model([x["question"] + c for x in items for c in x["choices"]] * 5)
    opts = LMEvalOptions(tasks=("toy_mc",), include_path=str(tasks), batch_size=4)
    results = evaluate_tasks(model, tok, opts)
    # lm-eval's `acc` is the argmax of total log-likelihood: our fact-probe scoring must agree
    from unlearnbench.evals.fact_probes import option_logprobs

    scores = option_logprobs(
        model, tok, [x["question"] for x in items], [x["choices"] for x in items]
    )
    ours = sum(
        max(range(2), key=s.__getitem__) == x["answer"] for s, x in zip(scores, items, strict=True)
    )
    assert results["toy_mc"]["acc,none"] == pytest.approx(ours / len(items))


def our_accuracy(model, tok, rows: list[dict]) -> float:
    """Accuracy of the argmax of each choice's summed log-likelihood after " ", as lm-eval's `acc`
    (our fact probes' scoring)."""
    from unlearnbench.evals.fact_probes import option_logprobs

    with torch.no_grad():
        scores = option_logprobs(
            model,
            tok,
            [r["context"] for r in rows],
            [[" " + c for c in r["choices"]] for r in rows],
        )
    right = sum(
        max(range(len(s)), key=s.__getitem__) == r["answer"]
        for s, r in zip(scores, rows, strict=True)
    )
    return right / len(rows)


def test_the_shipped_suite_runs_its_tasks_from_any_directory_and_shows_accuracy(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)  # the tasks' data is read next to their YAML, not here
    (entry,), _ = load_suite("lm-eval")
    options = LMEvalOptions(**{**entry.options, "limit": 30})  # the first 30 items: fast
    assert options.tasks == ("story_cloze_en", "story_cloze_es") and not options.include_path
    items = {}
    for task in options.tasks:
        path = LM_EVAL_TASKS_DIR / f"{task}.jsonl"
        items[task] = [json.loads(line) for line in open(path)][: options.limit]
    texts = [x["context"] + " " + c for rows in items.values() for x in rows for c in x["choices"]]
    model, tok = tiny_model(texts * 3)
    results = evaluate_tasks(model, tok, options)
    for task, rows in items.items():
        assert len({x["answer"] for x in rows}) == 3  # answers not in one place
        assert results[task]["acc,none"] == pytest.approx(our_accuracy(model, tok, rows))
    # the declared headline reads lm-eval's `acc,none` and its interval: both shown by the tables
    shown = headline(evals.get("lm-eval").metrics, {"results": results})
    values = {e["title"]: e["value"] for e in shown}
    for t in options.tasks:
        assert values[f"{t} acc"] == results[t]["acc,none"]
        assert values[f"{t} acc ± (95%)"] == pytest.approx(Z95 * results[t]["acc_stderr,none"])
    assert all(e["unit"] == "accuracy" for e in shown)


def test_the_shipped_tasks_load_with_lm_evals_own_loader_from_any_directory(tmp_path, monkeypatch):
    """What `lm_eval --include_path unlearnbench/lm_eval_tasks` does, run from elsewhere: every
    item is read (a data path relative to the YAML was read from the working directory)."""
    from lm_eval.tasks import TaskManager, get_task_dict

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    manager = TaskManager(include_path=str(LM_EVAL_TASKS_DIR), include_defaults=False)
    tasks = get_task_dict(["story_cloze_en", "story_cloze_es"], manager)
    for name, task in tasks.items():
        docs = list(task.test_docs())
        rows = [json.loads(line) for line in open(LM_EVAL_TASKS_DIR / f"{name}.jsonl")]
        assert [d["context"] for d in docs] == [r["context"] for r in rows]
        # enough items to tell accuracies 0.1 apart: a 95% half-width of at most 0.05 at p = 0.5
        assert Z95 * (0.25 / len(docs)) ** 0.5 <= 0.05, len(docs)


def test_an_untrained_model_is_at_chance_on_the_shipped_tasks():
    """The choices do not give the answer away: distractors of the answer's frequency have about
    as many tokens, so a random model's summed log-likelihoods pick it a third of the time (with
    frequent-word distractors, one scored 0.85 on story_cloze_en)."""
    from unlearnbench.data import storyworld as sw
    from unlearnbench.models.build import build_model

    world = sw.build_world(0)  # the benchmark's world: its tokenizer, not the tasks' own text
    texts = [
        sw.render(p, world, lang)
        for p in sw.plan_stories(world, 300, 1)
        for lang in "en es".split()
    ]
    tok = train_bpe(texts, 1024)
    model = build_model("tiny", len(tok), tok.eos_token_id, seed=0).eval()
    for task in ("story_cloze_en", "story_cloze_es"):
        rows = [json.loads(line) for line in open(LM_EVAL_TASKS_DIR / f"{task}.jsonl")]
        acc = our_accuracy(model, tok, rows)
        assert abs(acc - 1 / 3) < 0.1, (task, acc)
