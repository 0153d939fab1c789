"""Saved models load with plain `transformers` (no unlearnbench code) and give the same logits."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from gpt2_fixture import FIXTURES, gpt2_dir

from unlearnbench.data.benchmarks.files import FilesOptions, load_files
from unlearnbench.data.tokenizer import train_bpe
from unlearnbench.models.build import gpt_neo_config, save_model
from unlearnbench.models.card import write_model_card
from unlearnbench.models.partition import Partition, ablate, forget_masks
from unlearnbench.models.presets import ModelPreset

TEXT = "Once upon a time, a fox lived in the forest. Había una vez un oso."
JSONL = FIXTURES / "files" / "stories.jsonl"

# Load in a fresh interpreter that imports only transformers and torch, and print the logits.
LOADER = """
import json, sys, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
text, out = sys.argv[1], []
for path in sys.argv[2:]:
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    tok = AutoTokenizer.from_pretrained(path)
    ids = tok(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logits = model(ids).logits
    out.append({"ids": ids[0].tolist(), "logits": logits[0].tolist(), "eos": tok.eos_token_id,
                "class": type(model).__name__})
mods = [m for m in sys.modules if m.startswith("unlearnbench")]
print(json.dumps({"models": out, "unlearnbench": mods}))
"""


def load_elsewhere(paths: list) -> list[dict]:
    """Load every path in one fresh interpreter that imports only torch and transformers."""
    out = subprocess.run(
        [sys.executable, "-c", LOADER, TEXT, *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=str(paths[0]),  # not the repository: nothing of ours is importable by accident
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["unlearnbench"] == []
    return result["models"]


def small_model(vocab: int, eos: int, seed=0):
    from transformers import GPTNeoForCausalLM

    cfg = gpt_neo_config(ModelPreset(2, 32, 4, 64, 64), vocab, eos)
    torch.manual_seed(seed)
    model = GPTNeoForCausalLM(cfg)
    with torch.no_grad():  # non-zero biases, so a lost bias would show in the logits
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.1)
    return model.eval()


def logits_of(model, tokenizer) -> tuple[list[int], torch.Tensor]:
    ids = tokenizer(TEXT, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        return ids[0].tolist(), model(ids).logits[0]  # (T, V)


def ablated_model(tmp_path):
    """A SGTM-ablated model, saved with a byte-level BPE tokenizer and a model card."""
    tok = train_bpe(JSONL.read_text().splitlines(), vocab_size=300)
    model = small_model(len(tok), tok.eos_token_id)
    part = Partition.for_model(model, forget_mlp_dim=16, forget_heads=1)
    model = ablate(model, part)
    params = dict(model.named_parameters())
    for name, mask in forget_masks(model, part).items():
        assert params[name][mask].abs().sum() == 0  # ablated before saving
    path = save_model(model, tok, tmp_path / "ablated")
    write_model_card(path, CARD_RECORD)
    return path, tok, model


CARD_RECORD = {
    "run_id": "sgtm__files__tiny__s0__abc",
    "method": "sgtm",
    "kind": "training",
    "benchmark": "files",
    "model": "tiny",
    "seed": 0,
    "config": {"method_options": {"forget_mlp_dim": 16}},
    "metrics": {"forget_loss": 5.25, "retain_loss": 2.5, "pre_finalize": {"forget_loss": 3.0}},
    "tokens_seen": 1234,
}


def compact_gpt2_model(tmp_path):
    """A model with the compact GPT-2 vocabulary of the fixture corpus."""
    bench = load_files(
        FilesOptions(
            path=str(JSONL),
            split_by="language",
            forget=("es",),
            test_fraction=0.3,
            tokenizer=str(gpt2_dir(tmp_path)),
            compact_vocab=True,
        )
    )
    model = small_model(len(bench.tokenizer), bench.eos_id, seed=1)
    return save_model(model, bench.tokenizer, tmp_path / "compact"), bench.tokenizer, model


def runner_model(tmp_path):
    """A model saved by a real (two-step) SGTM run on the files benchmark."""
    from unlearnbench.results.store import RunStore
    from unlearnbench.runner import execute, resolve_run_config

    over = {
        "path": str(JSONL),
        "split_by": "language",
        "forget": "es",
        "adjacent": "pt",
        "test_fraction": "0.3",
        "vocab_size": "300",
        "steps": "2",
        "batch_size": "4",
        "micro_batch_size": "4",
        "warmup_steps": "1",
        "context": "16",
        "eval_blocks": "2",
    }
    cfg = resolve_run_config("sgtm", "files", "tiny", 0, over)
    return execute(cfg, RunStore(tmp_path / "runs"), progress=False)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("interop")
    built = {"ablated": ablated_model(tmp), "compact": compact_gpt2_model(tmp)}
    record = runner_model(tmp)
    paths = [built["ablated"][0], built["compact"][0], record["model_path"]]
    loaded = dict(zip(["ablated", "compact", "runner"], load_elsewhere(paths), strict=True))
    return built, record, loaded


@pytest.mark.parametrize("name", ["ablated", "compact"])
def test_same_ids_and_logits_without_unlearnbench(saved, name):
    built, _, loaded = saved
    path, tok, model = built[name]
    ids, logits = logits_of(model, tok)
    got = loaded[name]
    assert got["class"] == "GPTNeoForCausalLM"
    assert got["ids"] == ids and got["eos"] == tok.eos_token_id
    assert torch.equal(torch.tensor(got["logits"]), logits)
    files = {p.name for p in path.iterdir()}
    assert "model.safetensors" in files and "pytorch_model.bin" not in files
    assert {"config.json", "tokenizer.json"} <= files


def test_model_card(saved):
    built, _, _ = saved
    card = (built["ablated"][0] / "README.md").read_text()
    assert "# sgtm on files (tiny, seed 0)" in card
    assert "| forget | 3.0000 | 5.2500 |" in card and '"forget_mlp_dim": 16' in card


def test_runner_writes_card_and_loadable_model(saved):
    from pathlib import Path

    _, record, loaded = saved
    card = (Path(record["model_path"]) / "README.md").read_text()
    assert record["run_id"] in card and "sgtm" in card
    assert f"{record['metrics']['forget_loss']:.4f}" in card
    assert loaded["runner"]["class"] == "GPTNeoForCausalLM"
    assert len(loaded["runner"]["logits"][0]) == 300  # the benchmark's BPE vocabulary
