"""Build, save and load GPT-Neo models (Hugging Face format, loadable without unlearnbench)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import torch
from transformers import GPTNeoConfig, GPTNeoForCausalLM

from unlearnbench.models.presets import MODEL_PRESETS, ModelPreset


def gpt_neo_config(preset: ModelPreset, vocab_size: int, eos_token_id: int) -> GPTNeoConfig:
    # Alternating global/local attention and dropout 0, as in the SGTM reference models.
    assert preset.num_layers % 2 == 0, "GPT-Neo presets alternate global/local layers in pairs"
    return GPTNeoConfig(
        vocab_size=vocab_size,
        max_position_embeddings=preset.context,
        hidden_size=preset.hidden_size,
        num_layers=preset.num_layers,
        attention_types=[[["global", "local"], preset.num_layers // 2]],
        num_heads=preset.num_heads,
        intermediate_size=preset.intermediate_size,
        window_size=preset.window_size,
        activation_function="gelu_new",
        resid_dropout=0.0,
        embed_dropout=0.0,
        attention_dropout=0.0,
        initializer_range=0.02,
        tie_word_embeddings=True,
        bos_token_id=eos_token_id,
        eos_token_id=eos_token_id,
        pad_token_id=eos_token_id,
    )


def build_model(
    preset_name: str, vocab_size: int, eos_token_id: int, seed: int
) -> GPTNeoForCausalLM:
    """A fresh GPT-Neo, initialized identically for every method given the seed.

    HF's GPT-Neo init is N(0, 0.02) for every Linear and Embedding with zero biases; we apply it to
    every layer, so no method's split layers keep a different init (a pitfall of the SGTM reference).
    """
    preset = MODEL_PRESETS[preset_name]
    config = gpt_neo_config(preset, preset.vocab_size or vocab_size, eos_token_id)
    torch.manual_seed(seed)
    model = GPTNeoForCausalLM(config)
    model.config.use_cache = False
    return model


def save_model(model, tokenizer, path: Path) -> Path:
    """Save in Hugging Face format (safetensors), atomically: a reader sees all or nothing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # our own progress is enough
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def load_model(path: str | Path) -> GPTNeoForCausalLM:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a base or checkpoint load would draw its own bar
    model = GPTNeoForCausalLM.from_pretrained(str(path))
    model.config.use_cache = False
    return model
