"""`quantization`: round-to-nearest weight quantization of the finalized model (Zhang et al. 2024,
"Catastrophic failure of LLM unlearning via quantization"), then losses and fact probes again.

An unlearning method that changed the weights only a little leaves the original model within one
quantization step of the unlearned one: rounding both to the same grid can bring the removed
knowledge back. Forget knowledge that quantization restores was a small weight change on top of
intact knowledge; a model that never learned it (the perfect filter) has nothing to restore.

The scheme, since the numbers depend on it:
- which weights: the weight matrix of every `nn.Linear` in the transformer blocks (GPT-Neo's
  attention q/k/v/out_proj and MLP c_fc/c_proj; GPT-2's `Conv1D` maps likewise, per output
  channel). Biases, layer norms, the token and position
  embeddings and the LM head stay in float32. GPT-Neo's LM head is the token embedding matrix
  (tied), so keeping one keeps the other; the reference's loading does the same (transformers'
  bitsandbytes path converts only `nn.Linear` modules and skips the output embedding:
  transformers/quantizers/base.py `get_keys_to_not_convert`). `embeddings=True` quantizes the
  tied matrix too (one scale per token row, which is per output channel of the head) and the
  position embedding.
- granularity: one scale per output channel (a row of the (out, in) weight); `group_size` g > 0
  gives one scale per g consecutive input weights of a row.
- symmetric (default): scale = max|w| / (2^(b-1) - 1), q = round(w / scale) in
  [-(2^(b-1) - 1), 2^(b-1) - 1], w' = q * scale (absmax quantization, as LLM.int8's weights:
  127 levels each side at 8 bits).
- asymmetric: the row's range [min(w, 0), max(w, 0)] in 2^b - 1 steps with an integer zero point
  z: q = clamp(round(w / scale) + z, 0, 2^b - 1), w' = (q - z) * scale.
  In both, zero is on the grid: a weight a method ablated to zero stays zero.
- simulated: each weight is replaced by its dequantized value (float32), so the model runs as
  before; the numbers are those of integer kernels with float32 activations. ours: weight-only,
  where the reference's 8-bit loading (bitsandbytes LLM.int8, `BitsAndBytesConfig(load_in_8bit)`)
  also rounds activations to int8 and keeps outlier features (|x| > 6) in float16, and its
  4-bit loading (`load_in_4bit`, default FP4) uses a 4-bit float grid in blocks of 64 weights
  (`group_size: 64` gives the blocks, on an integer grid). Losses are measured in float32, so
  the quantizer's is the only rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from unlearnbench.config import ConfigError
from unlearnbench.evals import (
    HIGHER,
    LOWER,
    EvalContext,
    EvalResult,
    Metric,
    copy_model,
    register_eval,
)
from unlearnbench.evals.fact_probes import probe_accuracy, probes_by_split
from unlearnbench.losses import split_losses

SCHEMES = ("symmetric", "asymmetric")


@dataclass(frozen=True)
class QuantizationOptions:
    # Zhang et al. 2024 quantize to 8 and 4 bits (zzwjames/FailureLLMUnlearning utils.py
    # `load_model`: `load_in_8bit`, `load_in_4bit`)
    bits: tuple[int, ...] = (8, 4)
    # ours: round-to-nearest on an integer grid (the scheme the module docstring states); the
    # reference loads through bitsandbytes, which needs a GPU and keeps no integer grid at 4 bits
    scheme: str = "symmetric"
    group_size: int = 0  # ours: 0 = one scale per output channel; bitsandbytes' 4-bit blocks: 64
    embeddings: bool = False  # as the reference: the (tied) embedding and LM head stay float32
    # ours: fact probes per split (a fixed subset, as robust-lite's fact probes; three models are
    # probed), 0 = all
    max_probes: int = 300

    def __post_init__(self):
        if not self.bits or any(not 2 <= b <= 16 for b in self.bits):
            raise ConfigError(f"quantization bits must be between 2 and 16, got {list(self.bits)}")
        if len(set(self.bits)) != len(self.bits):
            raise ConfigError(f"quantization bits must be distinct, got {list(self.bits)}")
        if self.scheme not in SCHEMES:
            raise ConfigError(f"quantization scheme must be one of {SCHEMES}, got {self.scheme!r}")
        if self.group_size < 0 or self.max_probes < 0:
            raise ConfigError("quantization group_size and max_probes must be >= 0")


def quantization_scale(w: torch.Tensor, bits: int, scheme: str, group_size: int = 0):
    """(scale, zero point) of each group of `w` (out, in), as tensors of shape (out, in // g, 1)
    with g = `group_size` or `in` (one group per row: per output channel)."""
    out_dim, in_dim = w.shape
    g = group_size or in_dim
    if in_dim % g:
        raise ConfigError(f"quantization group_size={g} does not divide a weight's {in_dim} inputs")
    x = w.detach().float().reshape(out_dim, in_dim // g, g)  # (out, groups, g)
    if scheme == "symmetric":
        scale = x.abs().amax(-1, keepdim=True) / (2 ** (bits - 1) - 1)
        zero = torch.zeros_like(scale)
    else:
        lo = x.amin(-1, keepdim=True).clamp(max=0.0)  # the range holds zero
        hi = x.amax(-1, keepdim=True).clamp(min=0.0)
        scale = (hi - lo) / (2**bits - 1)
        zero = torch.round(-lo / torch.where(scale > 0, scale, torch.ones_like(scale)))
    return scale, zero


@torch.no_grad()
def quantize_weight(
    w: torch.Tensor, bits: int, scheme: str = "symmetric", group_size: int = 0
) -> torch.Tensor:
    """Round-to-nearest quantization of a weight (out, in); returns the dequantized weight."""
    out_dim, in_dim = w.shape
    scale, zero = quantization_scale(w, bits, scheme, group_size)
    x = w.detach().float().reshape(*scale.shape[:2], -1)  # (out, groups, g)
    step = torch.where(scale > 0, scale, torch.ones_like(scale))  # an all-zero group stays zero
    if scheme == "symmetric":
        qmax = 2 ** (bits - 1) - 1
        q = torch.clamp(torch.round(x / step), -qmax, qmax)  # ties to even
    else:
        q = torch.clamp(torch.round(x / step) + zero, 0, 2**bits - 1) - zero
    return (q * scale).reshape(out_dim, in_dim).to(w.dtype)


def quantized_weights(model, embeddings: bool) -> dict[str, torch.Tensor]:
    """{name: weight (out, in)} of what the scheme quantizes: every block `nn.Linear` weight (the
    LM head, tied to the token embedding, excepted) and, with `embeddings`, the embedding tables.
    GPT-2's linear maps are transformers' `Conv1D`, weight (in, out): its transpose, a view, so
    writing to it writes the parameter."""
    from transformers.pytorch_utils import Conv1D

    head = model.get_output_embeddings()
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear) and m is not head:
            out[f"{name}.weight"] = m.weight
        elif isinstance(m, Conv1D):
            out[f"{name}.weight"] = m.weight.T  # (out, in)
    if embeddings:
        for name, m in model.named_modules():
            if isinstance(m, nn.Embedding):  # wte (also the tied head) and wpe, per row
                out[f"{name}.weight"] = m.weight
    return out


@torch.no_grad()
def quantize_model_(model, bits: int, scheme: str, group_size: int, embeddings: bool) -> dict:
    """Quantize `model` in place; returns what was quantized and the relative weight error."""
    weights = quantized_weights(model, embeddings)
    err2 = norm2 = 0.0
    for p in weights.values():
        q = quantize_weight(p, bits, scheme, group_size)
        err2 += float((p.float() - q.float()).pow(2).sum())
        norm2 += float(p.float().pow(2).sum())
        p.copy_(q)
    return {
        "n_matrices": len(weights),
        "n_weights": sum(p.numel() for p in weights.values()),
        "relative_weight_error": (err2 / norm2) ** 0.5 if norm2 > 0 else 0.0,
    }


def _forget(column: str):
    """{bits: the forget value after quantization}; None when not measured (no fact probes)."""

    def read(summary: dict):
        values = {int(b): m.get(column) for b, m in (summary.get("quantized") or {}).items()}
        return values if any(v is not None for v in values.values()) else None

    return read


QUANTIZATION_METRICS = [
    Metric("forget_loss", HIGHER, _forget("forget_loss"), "forget after {}-bit quantization"),
    Metric(
        "forget_accuracy",
        LOWER,
        _forget("forget_accuracy"),
        "forget facts acc after {}-bit quantization",
        "accuracy",
    ),
]


def _chance(probes: list) -> float | None:
    return sum(1 / len(p.options) for p in probes) / len(probes) if probes else None


@register_eval(
    "quantization",
    options=QuantizationOptions,
    metrics=QUANTIZATION_METRICS,
)
def run(ctx: EvalContext, options: QuantizationOptions) -> EvalResult:
    """Round-to-nearest 8- and 4-bit weights of the finalized model; losses and probes again."""
    g = options.group_size
    for name, w in quantized_weights(ctx.model, options.embeddings).items():
        if g and w.shape[1] % g:  # refused before anything is measured
            raise ConfigError(f"quantization group_size={g} does not divide {name}'s {w.shape[1]}")
    probes = probes_by_split(ctx.benchmark, options.max_probes)

    def evaluate(m) -> dict:
        out = {
            f"{s}_loss": v
            for s, v in split_losses(m, ctx.eval_blocks, ctx.eos_id, None, ctx.device).items()
        }
        for split, ps in sorted(probes.items()):
            out[f"{split}_accuracy"] = probe_accuracy(m, ctx.benchmark.tokenizer, ps)["accuracy"]
        return out

    before = evaluate(ctx.model)
    quantized, counts = {}, {}
    for bits in options.bits:
        model = copy_model(ctx.model)
        counts = quantize_model_(
            model, bits, options.scheme, options.group_size, options.embeddings
        )
        error = counts.pop("relative_weight_error")
        quantized[str(bits)] = evaluate(model) | {"relative_weight_error": error}
        del model
    summary = {
        "scheme": options.scheme,
        "granularity": (
            f"groups of {options.group_size} inputs" if options.group_size else "output channel"
        ),
        "quantized_weights": "block linear weights"
        + (" and embeddings (tied LM head)" if options.embeddings else ""),
        **counts,  # how many matrices and weights were quantized
        "before": before,
        "quantized": quantized,
        "n_probes": {s: len(ps) for s, ps in sorted(probes.items())},
        # the forget facts' chance level, shown beside the headline accuracy
        "chance": _chance(probes.get("forget", [])),
    }
    return EvalResult(summary)
