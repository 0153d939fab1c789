"""What the harness saves loads under the oldest transformers the package admits.

The models and tokenizers are saved here (the newest transformers of this environment) and loaded
in a second environment that has only torch and the oldest admitted transformers (pyproject's lower
bound), named by UNLEARNBENCH_OLDEST_PYTHON: CI builds it (`.ci/run`); elsewhere the test is skipped.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import torch

from unlearnbench.data.tokenizer import encode_batch, train_bpe
from unlearnbench.models.build import build_model, save_model

ROOT = Path(__file__).resolve().parents[1]
OLDEST_PYTHON = os.environ.get("UNLEARNBENCH_OLDEST_PYTHON")
if not OLDEST_PYTHON:
    if os.environ.get("CI"):  # CI builds the environment: a missing one is a failure, not a skip
        raise RuntimeError("CI must set UNLEARNBENCH_OLDEST_PYTHON (see .ci/run)")
    pytest.skip("UNLEARNBENCH_OLDEST_PYTHON is not set (CI sets it)", allow_module_level=True)

TEXTS = ["Pip the fox lives in the cave.", "¡Oh, no! Ñandú comió maíz… ☃", "  two  spaces\n"]

# run by the oldest environment: load the directory with the Auto classes, as a user would
LOAD = """
import json, sys, torch, transformers
from transformers import AutoModelForCausalLM, AutoTokenizer
path, texts = sys.argv[1], json.loads(sys.argv[2])
tok = AutoTokenizer.from_pretrained(path)
model = AutoModelForCausalLM.from_pretrained(path).eval()
ids = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
batch = tok(texts[0], return_tensors="pt")  # the usual call: model(**tok(x)), generate(**tok(x))
with torch.no_grad():
    logits = model(**batch).logits[0]
    generated = model.generate(**batch, max_new_tokens=8, do_sample=False, pad_token_id=tok.eos_token_id)
print(json.dumps({
    "version": transformers.__version__, "class": type(tok).__name__, "ids": ids,
    "decoded": [tok.decode(i) for i in ids], "eos": tok.eos_token_id, "pad": tok.pad_token_id,
    "model_max_length": tok.model_max_length, "inputs": sorted(batch), "logits": logits.tolist(),
    "generated": generated[0].tolist(),
}))
"""


def admitted_oldest() -> str:
    """The lower bound of transformers in pyproject.toml, e.g. "4.46"."""
    (bound,) = re.findall(r'"transformers>=([0-9.]+)', (ROOT / "pyproject.toml").read_text())
    return bound


def test_a_saved_model_and_tokenizer_load_under_the_oldest_admitted_transformers(tmp_path):
    tok = train_bpe([t * 3 for t in TEXTS] * 20, 300)
    model = build_model("tiny", len(tok), tok.eos_token_id, seed=0).eval()
    path = save_model(model, tok, tmp_path / "model")
    out = subprocess.run(
        [OLDEST_PYTHON, "-c", LOAD, str(path), json.dumps(TEXTS)],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},  # not this checkout
    )
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    # the environment is the one the bound names (a bound raised without CI following is caught)
    assert got["version"].startswith(admitted_oldest() + "."), got["version"]
    assert got["class"] == "PreTrainedTokenizerFast"
    assert got["ids"] == encode_batch(tok, TEXTS) and got["decoded"] == TEXTS
    assert got["eos"] == got["pad"] == tok.eos_token_id == 0
    assert got["model_max_length"] == model.config.max_position_embeddings == 256
    # model(**tok(x)) there is model(input_ids) here: no token_type_ids (GPT-Neo would add the
    # token-type embedding at every position), and greedy generate(**tok(x)) continues the same
    assert got["inputs"] == ["attention_mask", "input_ids"]
    ids = torch.tensor([got["ids"][0]])
    with torch.no_grad():
        ours = model(input_ids=ids).logits[0]
        continued = model.generate(
            input_ids=ids, max_new_tokens=8, do_sample=False, pad_token_id=tok.eos_token_id
        )
    torch.testing.assert_close(torch.tensor(got["logits"]), ours, rtol=1e-4, atol=1e-4)
    assert got["generated"] == continued[0].tolist()
