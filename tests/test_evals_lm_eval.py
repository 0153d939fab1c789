"""lm-eval adapter: a tiny local multiple-choice task, offline, on an in-memory model."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import GPTNeoConfig, GPTNeoForCausalLM

from unlearnbench.data.tokenizer import train_bpe
from unlearnbench.evals.lm_eval_tasks import LMEvalOptions, evaluate_tasks

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
    texts = [x["question"] + c for x in items for c in x["choices"]] * 5
    tok = train_bpe(texts, 280)
    cfg = GPTNeoConfig(
        vocab_size=len(tok), max_position_embeddings=64, hidden_size=32, num_layers=2,
        attention_types=[[["global", "local"], 1]], num_heads=4, intermediate_size=64,
        window_size=8, eos_token_id=tok.eos_token_id, bos_token_id=tok.eos_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    model = GPTNeoForCausalLM(cfg)
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
