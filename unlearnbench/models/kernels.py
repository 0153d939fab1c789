"""Fused kernels for GPT-Neo: the same functions as Hugging Face's eager code, up to rounding.

- Attention through torch's `scaled_dot_product_attention`: GPT-Neo does not scale the scores by
  1/sqrt(head_dim) (so `scale=1.0`), local layers see only the last `window_size` positions, and the
  additive mask HF builds (causal plus padding) is applied as is. The fused kernel never
  materializes the (B, H, T, T) softmax for the backward pass, where the eager path spends its time
  on a CPU.
- `gelu_new` through torch's tanh-approximate GELU: the same formula in one kernel instead of
  eight elementwise ones (gelu(0) = 0 still, which the partition's ablation relies on).

Switched per model (`TrainConfig.fused_kernels`, on by default; evaluations use the run's
setting): the attention method is replaced once by a dispatcher that reads a plain attribute of each attention module, and each MLP's activation module
is swapped; models never switched keep HF's eager path, deep copies keep their setting, and state
dicts and saved configs are unchanged (a saved model loads in plain HF and computes the same).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers.activations import NewGELUActivation
from transformers.models.gpt_neo import modeling_gpt_neo

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


class TanhGELU(torch.nn.Module):
    """gelu_new (0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))) as one fused kernel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(x, approximate="tanh")


def use_fused_kernels(model: torch.nn.Module, on: bool = True) -> torch.nn.Module:
    """Switch every GPT-Neo attention and gelu_new activation of `model` to the fused kernels (on)
    or back to Hugging Face's eager code (off). Returns the model."""
    modeling_gpt_neo.GPTNeoSelfAttention._attn = _dispatch
    for module in model.modules():
        if isinstance(module, modeling_gpt_neo.GPTNeoSelfAttention):
            module.unlearnbench_attention = "sdpa" if on else "eager"
        if isinstance(module, modeling_gpt_neo.GPTNeoMLP):
            if on and isinstance(module.act, NewGELUActivation):
                module.act = TanhGELU()
            elif not on and isinstance(module.act, TanhGELU):
                module.act = NewGELUActivation()
    return model


def fused_kernels_on(model: torch.nn.Module) -> bool:
    """Whether `model`'s attention runs the fused kernel (a copy fine-tuned by an attack keeps it)."""
    return any(
        getattr(m, "unlearnbench_attention", "eager") == "sdpa"
        for m in model.modules()
        if isinstance(m, modeling_gpt_neo.GPTNeoSelfAttention)
    )
