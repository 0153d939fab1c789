"""GPT-Neo size presets, by name.

`tiny` and `small` are ours, sized for the built-in storyworld benchmark on a 2-core CPU (a byte-level
BPE of a few thousand rows instead of GPT-2's 50,257, which would dominate CPU time). The others are
the papers' architectures; `vocab_size=None` means "the benchmark tokenizer's size".
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelPreset:
    num_layers: int
    hidden_size: int
    num_heads: int
    intermediate_size: int
    context: int
    vocab_size: int | None = None  # None: take the tokenizer's
    window_size: int = 256  # GPT-Neo local attention window (SGTM reference: 256)
    source: str = ""


MODEL_PRESETS: dict[str, ModelPreset] = {
    # ours: CPU presets for storyworld (see README for the measured speed)
    "tiny": ModelPreset(4, 128, 8, 512, 256, source="unlearnbench CPU preset"),
    "small": ModelPreset(6, 256, 8, 1024, 256, source="unlearnbench CPU preset"),
    # SGTM TinyStories sizes (Shilov et al. 2025), safety-research/selective-gradient-masking
    # configs/tinystories/<size>.yaml:2-4 (8M: "num_layers: 6", "hidden_size: 128", "num_heads: 32")
    # and :7 "context_size: 512"; the MLP, vocabulary and window from train/utils.py:92
    # "intermediate_size = 4 * hidden_size", :118 "vocab_size=50257,", :124 "window_size=256,"
    "8M": ModelPreset(6, 128, 32, 512, 512, 50257, source="SGTM TinyStories 8M"),
    "18M": ModelPreset(6, 256, 32, 1024, 512, 50257, source="SGTM TinyStories 18M"),
    "34M": ModelPreset(8, 384, 32, 1536, 512, 50257, source="SGTM TinyStories 34M"),
    "64M": ModelPreset(12, 512, 32, 2048, 512, 50257, source="SGTM TinyStories 64M"),
    # SGTM Wikipedia sizes: configs/wiki/<size>.yaml:2-4 (254M: "num_layers: 16", "hidden_size:
    # 1024", "num_heads: 32") and :7 "context_size: 1024"; the rest as above (train/utils.py)
    "wiki-34M": ModelPreset(8, 384, 32, 1536, 1024, 50257, source="SGTM Wikipedia 34M"),
    "wiki-64M": ModelPreset(12, 512, 32, 2048, 1024, 50257, source="SGTM Wikipedia 64M"),
    "wiki-125M": ModelPreset(12, 768, 32, 3072, 1024, 50257, source="SGTM Wikipedia 125M"),
    "wiki-254M": ModelPreset(16, 1024, 32, 4096, 1024, 50257, source="SGTM Wikipedia 254M"),
    # ERA TinyStories model (Cloud et al. 2024): TinyStories-28M architecture, context 256 in training
    "28M": ModelPreset(8, 512, 16, 2048, 256, 50257, source="Cloud et al. 2024, TinyStories-28M"),
}
