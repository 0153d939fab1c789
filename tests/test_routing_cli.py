"""The routing family through the CLI: ERA's record holds its extra losses and a plain GPT-Neo;
bad routed tokens are a user mistake (one line, exit 2)."""

import json

from transformers import GPTNeoForCausalLM
from typer.testing import CliRunner

from unlearnbench.cli import app

runner = CliRunner()
SMALL = [
    "--benchmark", "storyworld-topic",
    "--set", "n_stories=300", "--set", "vocab_size=300", "--set", "context=32",
    "--set", "steps=2", "--set", "batch_size=4", "--set", "eval_blocks=2", "--set", "warmup_steps=1",
]  # fmt: skip


def test_era_record_has_post_ablation_and_coherence_and_a_plain_model(tmp_path):
    args = ["run", "era", "--json", "--out", str(tmp_path), "--set", "coherence_steps=2"]
    args += ["--set", "coherence_blocks=2", "--set", "coherence_eval_blocks=2"]
    result = runner.invoke(app, args + SMALL)
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    metrics = record["metrics"]
    assert set(metrics["post_ablation"]) == {"forget_loss", "adjacent_loss", "retain_loss"}
    assert 0 <= metrics["coherence"]["best_step"] <= 2
    model = GPTNeoForCausalLM.from_pretrained(record["model_path"])
    d_mlp = model.config.intermediate_size
    assert all(b.mlp.c_fc.out_features == d_mlp for b in model.transformer.h)


def test_route_tokens_that_are_not_one_token_are_a_user_error(tmp_path):
    args = ["run", "gradient-routing", "--set", "route_tokens=zqxjzqxj", "--out", str(tmp_path)]
    result = runner.invoke(app, args + SMALL)
    assert result.exit_code == 2
    assert "not one token" in result.output and len(result.output.strip().splitlines()) == 1
