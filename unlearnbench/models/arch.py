"""Where things are in a Hugging Face causal LM: its blocks, final norm, MLP down-projection and
the linear maps LoRA adapts, for every architecture the post-hoc methods and the evaluator run on.

The post-hoc methods (rmu, circuit breakers, the EleutherAI family, the loss-based ones) and the
evaluator work on GPT-Neo (the harness's own models), GPT-NeoX (Pythia, the Deep Ignorance models),
GPT-2 and the Llama family (Llama, Mistral, Qwen2: the same module names). A model of another type
is refused in one line (`UnsupportedModel`). The training-time partitioned methods (SGTM, gradient
routing, ERA, DeMix, ...) build their own GPT-Neo and stay GPT-Neo (`require_gpt_neo`).

Conventions, the same for every architecture:
- block l (0-based) is `blocks(model)[l]`; h_l is its output, the residual stream after it;
- HF `hidden_states[l]` is the output of block l-1 (index 0: the embeddings), and its last entry
  has the final norm applied (checked for each architecture in tests/test_architectures.py);
- module names inside a block are block-relative ("mlp.c_proj"); `block_prefix` gives the block's
  own prefix in the parameter names of the model it is asked about (a peft wrapper's included).

Every function accepts the model wrapped by peft (a `PeftModel` with LoRA adapters) as well.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from unlearnbench.config import ConfigError


@dataclass(frozen=True)
class Layout:
    """Block-relative names in one architecture (attribute paths below the HF body)."""

    blocks: str  # the body's block list
    final_norm: str  # the body's final norm (applied to the last block's output)
    qkv: tuple[str, ...]  # the attention's query/key/value maps (fused where the model fuses them)
    attention_out: tuple[str, ...]  # the attention's output map
    mlp_in: tuple[str, ...]  # the MLP's input maps
    mlp_out: str  # the MLP's down-projection (RMU's updated weights)
    conv1d: bool = False  # linear maps are transformers' Conv1D (weight (in, out)), as in GPT-2

    @property
    def attention(self) -> tuple[str, ...]:
        return self.qkv + self.attention_out

    @property
    def mlp(self) -> tuple[str, ...]:
        return self.mlp_in + (self.mlp_out,)


_LLAMA = Layout(
    blocks="layers",
    final_norm="norm",
    qkv=("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
    attention_out=("self_attn.o_proj",),
    mlp_in=("mlp.gate_proj", "mlp.up_proj"),
    mlp_out="mlp.down_proj",
)

# by `config.model_type`
LAYOUTS: dict[str, Layout] = {
    "gpt_neo": Layout(
        blocks="h",
        final_norm="ln_f",
        qkv=("attn.attention.q_proj", "attn.attention.k_proj", "attn.attention.v_proj"),
        attention_out=("attn.attention.out_proj",),
        mlp_in=("mlp.c_fc",),
        mlp_out="mlp.c_proj",
    ),
    # EleutherAI/unlearn, reference/grey_swan_circuit_breaker/args.py:91-92 "GPT-NeoX:
    # query_key_value dense dense_h_to_4h dense_4h_to_h"
    "gpt_neox": Layout(
        blocks="layers",
        final_norm="final_layer_norm",
        qkv=("attention.query_key_value",),
        attention_out=("attention.dense",),
        mlp_in=("mlp.dense_h_to_4h",),
        mlp_out="mlp.dense_4h_to_h",
    ),
    "gpt2": Layout(
        blocks="h",
        final_norm="ln_f",
        qkv=("attn.c_attn",),
        attention_out=("attn.c_proj",),  # GPT-2 names two maps c_proj: qualified by role
        mlp_in=("mlp.c_fc",),
        mlp_out="mlp.c_proj",
        conv1d=True,
    ),
    # args.py:91 "Llama/Mistral: q_proj k_proj v_proj o_proj gate_proj up_proj down_proj"
    "llama": _LLAMA,
    "mistral": _LLAMA,
    "qwen2": _LLAMA,
}

# The training-time partitioned methods name GPT-Neo's modules; an MLP down-projection written
# with GPT-Neo's name (RMU's default `params`) means the same role in another architecture
GPT_NEO_MLP_OUT = LAYOUTS["gpt_neo"].mlp_out


class UnsupportedModel(ConfigError):
    """A model whose blocks unlearnbench cannot locate (one line, naming the supported types)."""


def causal_lm(model: nn.Module) -> nn.Module:
    """The HF causal LM inside `model` (itself, or the model a peft wrapper adapts)."""
    if hasattr(model, "peft_config") and hasattr(model, "get_base_model"):
        return model.get_base_model()
    return model


def model_type(model: nn.Module) -> str:
    return str(getattr(getattr(causal_lm(model), "config", None), "model_type", None))


def layout(model: nn.Module) -> Layout:
    """The layout of `model`'s architecture; `UnsupportedModel` for one not in LAYOUTS."""
    kind = model_type(model)
    if kind not in LAYOUTS:
        raise UnsupportedModel(unsupported_message(kind))
    return LAYOUTS[kind]


def unsupported_message(kind: str) -> str:
    return (
        f"a {kind!r} model: unlearnbench locates the layers of {', '.join(LAYOUTS)} causal LMs only"
    )


def check_supported(model: nn.Module, what: str = "model") -> nn.Module:
    """`model` when its layers can be located, else `UnsupportedModel` naming `what`."""
    kind = model_type(model)
    if kind not in LAYOUTS:
        raise UnsupportedModel(f"the {what} is {unsupported_message(kind)}")
    return model


def require_gpt_neo(model: nn.Module, what: str) -> None:
    """Refuse, in one line, to partition or expand a model that is not GPT-Neo (`what` does)."""
    kind = model_type(model)
    if kind != "gpt_neo":
        raise UnsupportedModel(
            f"{what} runs on GPT-Neo only (the training-time partitioned methods build their own "
            f"GPT-Neo), not on a {kind!r} model"
        )


def body(model: nn.Module) -> nn.Module:
    """The transformer body (GPTNeoModel, GPTNeoXModel, GPT2Model, LlamaModel): embeddings, blocks,
    final norm, no head. HF's `base_model` is the attribute its `base_model_prefix` names."""
    return causal_lm(model).base_model


def blocks(model: nn.Module) -> nn.ModuleList:
    return getattr(body(model), layout(model).blocks)


def num_blocks(model: nn.Module) -> int:
    return len(blocks(model))


def final_norm(model: nn.Module) -> nn.Module:
    return getattr(body(model), layout(model).final_norm)


def hidden_size(model: nn.Module) -> int:
    return int(causal_lm(model).config.hidden_size)  # GPT-2's n_embd through its attribute map


def block_prefix(model: nn.Module, layer: int) -> str:
    """The prefix of block `layer`'s parameter names in `model.named_parameters()`, with its dot
    ("transformer.h.3.", "gpt_neox.layers.3.", "model.layers.3.", under peft "base_model.model...")."""
    block = blocks(model)[layer]
    name = next(n for n, m in model.named_modules() if m is block)
    return f"{name}."


def block_parameter_names(model: nn.Module, layer: int) -> list[str]:
    """Every parameter of block `layer`, by its name in `model`."""
    prefix = block_prefix(model, layer)
    return [n for n, _ in model.named_parameters() if n.startswith(prefix)]


def in_architecture(model: nn.Module, name: str) -> str:
    """A block-relative parameter name in `model`'s architecture: GPT-Neo's MLP down-projection
    ("mlp.c_proj.weight") means the architecture's own ("mlp.down_proj.weight" in Llama); every
    other name is used as given."""
    own = layout(model).mlp_out
    head, dot, rest = name.rpartition(".")  # "mlp.c_proj", ".", "weight"
    if head == GPT_NEO_MLP_OUT and own != GPT_NEO_MLP_OUT:
        return f"{own}{dot}{rest}"
    return name


def lora_targets(model: nn.Module, which: str = "all") -> tuple[str, ...]:
    """Block-relative names of the linear maps LoRA adapts: "all" (attention and MLP), "attn",
    "mlp", or "qkv" (the query/key/value maps only)."""
    lay = layout(model)
    choices = {
        "all": lay.attention + lay.mlp,
        "attn": lay.attention,
        "mlp": lay.mlp,
        "qkv": lay.qkv,
    }
    if which not in choices:
        raise ValueError(f"LoRA targets must be one of {', '.join(choices)}, got {which!r}")
    return choices[which]
