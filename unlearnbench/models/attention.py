"""GPT-Neo self-attention through torch's fused `scaled_dot_product_attention`.

The same function as Hugging Face's eager GPT-Neo attention, up to rounding: GPT-Neo does not scale
the scores by 1/sqrt(head_dim) (so `scale=1.0`), local layers see only the last `window_size`
positions, and the additive mask HF builds (causal plus padding) is applied as is. The fused kernel
never materializes the (B, H, T, T) softmax for the backward pass, which is where the eager path
spends its time on a CPU.

Opt-in per model (`TrainConfig.attention`): the class method is replaced once by a dispatcher that
reads a plain attribute of each attention module, so models without the attribute keep HF's eager
path, deep copies keep their setting, and state dicts are unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers.models.gpt_neo import modeling_gpt_neo

ATTENTION_IMPLEMENTATIONS = ("eager", "sdpa")
_eager_attn = modeling_gpt_neo.GPTNeoSelfAttention._attn


def _sdpa_attn(self, query, key, value, attention_mask=None):
    # query, key, value: (B, H, T, hd)
    q_len, k_len = query.size(-2), key.size(-2)
    allowed = self.bias[:, :, k_len - q_len : k_len, :k_len]  # (1, 1, T, T) causal (and window)
    if attention_mask is None:
        mask = allowed
    else:  # HF's additive (B, 1, T, T) mask; the window is not in it
        floor = torch.finfo(attention_mask.dtype).min
        mask = attention_mask.masked_fill(~allowed, floor).to(query.dtype)
    dropout = self.attn_dropout.p if self.training else 0.0
    out = F.scaled_dot_product_attention(
        query, key, value, attn_mask=mask, dropout_p=dropout, scale=1.0
    )  # (B, H, T, hd)
    return out, None  # no attention weights: nothing in the harness reads them


def _dispatch(self, query, key, value, attention_mask=None):
    if getattr(self, "unlearnbench_attention", "eager") == "sdpa":
        return _sdpa_attn(self, query, key, value, attention_mask)
    return _eager_attn(self, query, key, value, attention_mask)


def set_attention(model: torch.nn.Module, implementation: str) -> torch.nn.Module:
    """Run every GPT-Neo attention module of `model` with `implementation` ("eager" | "sdpa")."""
    assert implementation in ATTENTION_IMPLEMENTATIONS, implementation
    modeling_gpt_neo.GPTNeoSelfAttention._attn = _dispatch
    for module in model.modules():
        if isinstance(module, modeling_gpt_neo.GPTNeoSelfAttention):
            module.unlearnbench_attention = implementation
    return model
