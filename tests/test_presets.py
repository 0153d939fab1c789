"""Paper-size model presets (parameter counts against the papers) and the YAML run presets."""

from __future__ import annotations

import pytest
import torch
import yaml
from transformers import GPTNeoForCausalLM

from unlearnbench.config import ConfigError
from unlearnbench.models.build import gpt_neo_config
from unlearnbench.models.presets import MODEL_PRESETS
from unlearnbench.registry import methods
from unlearnbench.run_presets import run_presets
from unlearnbench.runner import resolve_run_config

# Total parameter counts in SGTM's tables (Shilov et al. 2025). The reference model adds a bias to the
# output layer (`lm_head = nn.Linear(d, vocab, bias=True)`), which Hugging Face GPT-Neo has no slot
# for; its 50,257 entries are the whole difference (checked below, not assumed).
SGTM_COUNTS = {
    "8M": 7_736_273,
    "18M": 17_781_585,
    "34M": 33_732_817,
    "64M": 63_855_185,
    "wiki-34M": 33_929_425,
    "wiki-64M": 64_117_329,
    "wiki-125M": 124_462_417,
    "wiki-254M": 254_054_481,
}


def meta_count(name: str) -> int:
    p = MODEL_PRESETS[name]
    with torch.device("meta"):  # no memory: shapes only
        model = GPTNeoForCausalLM(gpt_neo_config(p, p.vocab_size, p.vocab_size - 1))
    return sum(t.numel() for t in model.parameters())  # tied head counted once


def formula_count(layers: int, d: int, d_mlp: int, vocab: int, context: int) -> int:
    """GPT-Neo by hand: q/k/v without bias, out_proj with bias, MLP with biases, two layer norms per
    block, final layer norm, token and position embeddings, head tied to the token embedding."""
    block = 3 * d * d + (d * d + d) + (d * d_mlp + d_mlp) + (d_mlp * d + d) + 2 * 2 * d
    return layers * block + 2 * d + vocab * d + context * d


@pytest.mark.parametrize("name", sorted(SGTM_COUNTS))
def test_sgtm_presets_match_paper_counts(name):
    p = MODEL_PRESETS[name]
    n = meta_count(name)
    assert n == formula_count(p.num_layers, p.hidden_size, p.intermediate_size, 50257, p.context)
    head_bias = p.vocab_size
    assert n + head_bias == SGTM_COUNTS[name], (name, n, SGTM_COUNTS[name] - n)


def test_era_28m_is_the_tinystories_28m_architecture():
    p = MODEL_PRESETS["28M"]
    assert (p.num_layers, p.hidden_size, p.num_heads, p.intermediate_size) == (8, 512, 16, 2048)
    assert p.vocab_size == 50257
    # "28M" is the TinyStories model's name, not a count: 25.2M outside the embeddings plus a
    # 25.7M GPT-2 token embedding.
    n = meta_count("28M")
    assert n == formula_count(8, 512, 2048, 50257, p.context)
    assert n - 50257 * 512 - p.context * 512 == 25_207_808


PRESETS = run_presets()


def test_presets_found_with_sources():
    names = {p.name for p in PRESETS}
    for size in ("8M", "18M", "34M", "64M"):
        assert f"sgtm-tinystories-{size}" in names
    for size in ("34M", "64M", "125M", "254M"):
        assert f"sgtm-wikipedia-{size}" in names
    assert "era-tinystories-28M" in names
    for p in PRESETS:
        assert p.source, f"{p.name} does not cite its source"
        assert p.model in MODEL_PRESETS, f"{p.name}: unknown model {p.model!r}"


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.name)
def test_preset_applies_and_set_wins(preset):
    data = yaml.safe_load(preset.path.read_text())
    named = [m for m in methods.names() if preset.name.startswith(m + "-")]
    if named:  # the longest match: "gradient-routing-..." is not "gradient-..."
        method = max(named, key=len)
    else:  # a preset for a method not in this checkout: its train keys still apply
        assert "method" not in data
        method = "no-filter"
    cfg = resolve_run_config(method, "storyworld-lang", None, 0, {}, preset.path)
    assert cfg.model == data["model"]
    for key, value in data.get("train", {}).items():
        assert getattr(cfg.train, key) == value, key
    for key, value in data.get("labels", {}).items():
        assert getattr(cfg.labels, key) == value, key
    for key, value in data.get("method", {}).items():
        got = cfg.method_options[key]
        assert (list(got) if isinstance(got, tuple) else got) == value, key
    # tiny has 256 positions: a paper preset's longer context is refused on it, so it is reset
    over_sets = {"lr": "1e-5", "context": "0"}
    over = resolve_run_config(method, "storyworld-lang", "tiny", 0, over_sets, preset.path)
    assert over.train.lr == 1e-5 and over.model == "tiny"
    assert over.train.steps == cfg.train.steps


def test_unknown_key_in_preset_is_a_config_error(tmp_path):
    bad = tmp_path / "sgtm-bad.yaml"
    bad.write_text("model: 8M\ntrain:\n  learning_rate: 0.1\n")
    with pytest.raises(ConfigError, match="learning_rate"):
        resolve_run_config("sgtm", "storyworld-lang", None, 0, {}, bad)


def test_cli_lists_presets():
    from typer.testing import CliRunner

    from unlearnbench.cli import app

    result = CliRunner().invoke(app, ["list", "presets"], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert "sgtm-wikipedia-254M" in result.output and "Shilov et al. 2025" in result.output
