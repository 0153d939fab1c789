"""Build, save and load GPT-Neo models (Hugging Face format, loadable without unlearnbench)."""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import tempfile
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, GPTNeoConfig, GPTNeoForCausalLM

from unlearnbench.config import ConfigError
from unlearnbench.data.tokenizer import save_tokenizer
from unlearnbench.models import arch
from unlearnbench.models.presets import MODEL_PRESETS, ModelPreset
from unlearnbench.results.store import StoreWriteError, umask


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
    """Save in Hugging Face format (safetensors), atomically: a reader sees all or nothing.

    The files get the umask's permissions (not the temporary directory's 0700), and the temporary
    directories of an earlier save of the same path that was killed are removed first (saves of one
    model path are serialized by the run lock, `RunStore.lock`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_killed_saves(path)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.{SAVING}"))
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # our own progress is enough
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        if tokenizer is not None:  # its longest input is the model's context
            save_tokenizer(tokenizer, tmp, getattr(model.config, "max_position_embeddings", None))
        _umask_permissions(tmp)
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError) or type(e).__name__ == "SafetensorError":  # no space, no access
            raise StoreWriteError(f"cannot save the model to {path}: {_first_line(e)}") from None
        raise
    return path


def _umask_permissions(root: Path) -> None:
    """What the umask gives a new file or folder, for `root` and all in it: mkdtemp makes 0700
    and safetensors writes 0600, which would hide a shared store's models from its group."""
    mask = umask()
    for p in [root, *root.rglob("*")]:
        os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~mask)


SAVING = "saving-"  # marks the temporary directory of a save in progress: `.<name>.saving-XXXX`


def remove_killed_saves(path: Path) -> None:
    """Remove `.<name>.saving-*` (and the older `.<name>.XXXXXXXX`) directories beside `path`:
    what a save killed before its rename left behind."""
    older = re.compile(rf"^\.{re.escape(path.name)}\.[a-z0-9_]{{8}}$")  # mkdtemp's random part
    for d in path.parent.glob(f".{glob.escape(path.name)}.*"):
        if d.is_dir() and (d.name.startswith(f".{path.name}.{SAVING}") or older.match(d.name)):
            shutil.rmtree(d, ignore_errors=True)


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


class DamagedModel(ConfigError):
    """A saved model directory whose files cannot be loaded (the message names the file)."""


WEIGHTS_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


def load_model(path: str | Path):
    """A saved causal LM whose layers models/arch.py locates (GPT-Neo, GPT-NeoX, GPT-2, Llama
    family), from a directory or a hub name; a local path that is not a saved model is named
    as such (transformers would take it for a malformed hub name), and a damaged one is a
    `DamagedModel` naming the file (its config or its weights) and what is wrong with it."""
    name = str(path)
    local = Path(name).expanduser()
    looks_local = local.is_absolute() or name.startswith((".", "~")) or name.count("/") > 1
    if not (local.exists() or looks_local):  # a hub name
        with _quiet_transformers():
            model = arch.check_supported(AutoModelForCausalLM.from_pretrained(name), name)
        model.config.use_cache = False
        return model
    if not local.exists():
        raise FileNotFoundError(f"{name} does not exist")
    if not local.is_dir():
        raise NotADirectoryError(f"{name} is a file, not a saved model directory")
    if not (local / "config.json").is_file():
        raise FileNotFoundError(f"{name} is not a saved model (no config.json in it)")
    config = _saved_config(local, name)
    weights = next((local / f for f in WEIGHTS_FILES if (local / f).is_file()), None)
    if weights is None:
        raise DamagedModel(f"saved model {name} has no weights file ({WEIGHTS_FILES[0]})")
    try:
        with _quiet_transformers():
            model, info = AutoModelForCausalLM.from_pretrained(
                str(local), config=config, output_loading_info=True
            )
    except Exception as e:  # truncated or foreign bytes, tensors of other shapes: many types
        if "ignore_mismatched_sizes" in str(e):  # its text points at a report we silenced
            raise DamagedModel(
                f"saved model {name}: the tensors in {weights.name} have other shapes than its "
                "config.json says"
            ) from None
        raise DamagedModel(
            f"saved model {name}: {weights.name} is damaged: {_first_line(e)}"
        ) from None
    missing = sorted(info.get("missing_keys") or ())
    if missing:  # transformers would initialize them at random, without an error
        raise DamagedModel(
            f"saved model {name}: {weights.name} lacks {len(missing)} tensor(s) ({missing[0]}, ...)"
        )
    model.config.use_cache = False
    return model


def _saved_config(local: Path, name: str):
    """The config saved in `local` (of a model type arch.py locates), or a DamagedModel naming its
    config.json."""
    import json

    path = local / "config.json"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise DamagedModel(
            f"saved model {name}: {path} is not valid JSON ({_first_line(e)})"
        ) from None
    if not isinstance(raw, dict):
        raise DamagedModel(f"saved model {name}: {path} is not a JSON object")
    if raw.get("model_type") not in arch.LAYOUTS:
        kind = raw.get("model_type")
        raise DamagedModel(
            f"saved model {name}: {path} describes a {kind!r} model, not GPT-Neo, GPT-NeoX, GPT-2 "
            f"or Llama-family (the model types unlearnbench loads: {', '.join(arch.LAYOUTS)})"
        )
    try:
        with _quiet_transformers():
            return AutoConfig.from_pretrained(str(local))
    except Exception as e:  # values out of range, wrong types: transformers' own checks
        text = " ".join(str(e).split())  # its first line is often only a heading
        text = text if len(text) <= 200 else text[:197] + "..."
        raise DamagedModel(f"saved model {name}: {path} is invalid: {text}") from None


@contextlib.contextmanager
def _quiet_transformers():
    """No progress bar and no load report from transformers (a failed load is our one line)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a base or checkpoint load would draw its own bar
    before = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(before)
