"""Post-hoc methods and the evaluator on other Hugging Face causal LMs: GPT-NeoX (Pythia), GPT-2 and
Llama, tiny and randomly initialized from a config (no hub), beside the harness's GPT-Neo."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from helpers import EOS, VOCAB, groups, tiny_gpt_neo

from unlearnbench.config import ConfigError, TrainConfig
from unlearnbench.data.packing import inputs_and_targets
from unlearnbench.evals.calibrated_loss import CalibrationOptions, calibrate
from unlearnbench.evals.direction_ablation import projected_out
from unlearnbench.losses import split_losses
from unlearnbench.methods import RunContext
from unlearnbench.methods._representation import hidden_stack
from unlearnbench.methods.circuit_breakers import CircuitBreakerOptions, circuit_breaker_objective
from unlearnbench.methods.grad_diff import GradDiffOptions
from unlearnbench.methods.grad_diff import setup as grad_diff_setup
from unlearnbench.methods.npo import NPOOptions
from unlearnbench.methods.npo import setup as npo_setup
from unlearnbench.methods.orthogonal_circuit_breakers import (
    OrthCircuitBreakerOptions,
    orth_circuit_breaker_objective,
)
from unlearnbench.methods.rmu import RMUOptions, random_direction, rmu_objective
from unlearnbench.methods.sequential_unlearn import SequentialOptions, layer_objective
from unlearnbench.methods.tuned_lens import Lenses, TunedLensOptions, unlearning_objective
from unlearnbench.models import arch
from unlearnbench.models.hidden import block_outputs, frozen_copy
from unlearnbench.training import train

D, LAYERS = 32, 4
CFG = TrainConfig(steps=6, batch_size=8, micro_batch_size=8, lr=1e-2, warmup_steps=0, grad_clip=0.0)


def tiny(kind: str, vocab: int = VOCAB, seed: int = 0):
    """A tiny randomly initialized causal LM of architecture `kind` (4 blocks, d 32)."""
    from transformers import (
        GPT2Config,
        GPT2LMHeadModel,
        GPTNeoXConfig,
        GPTNeoXForCausalLM,
        LlamaConfig,
        LlamaForCausalLM,
    )

    if kind == "gpt_neo":
        return tiny_gpt_neo(seed=seed, layers=LAYERS, d=D)
    ids = {"bos_token_id": EOS, "eos_token_id": EOS, "vocab_size": vocab}
    configs = {
        "gpt_neox": lambda: GPTNeoXConfig(
            hidden_size=D,
            num_hidden_layers=LAYERS,
            num_attention_heads=4,
            intermediate_size=4 * D,
            max_position_embeddings=64,
            **ids,
        ),  # fmt: skip
        "gpt2": lambda: GPT2Config(
            n_embd=D,
            n_layer=LAYERS,
            n_head=4,
            n_positions=64,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            **ids,
        ),  # fmt: skip
        "llama": lambda: LlamaConfig(
            hidden_size=D,
            num_hidden_layers=LAYERS,
            num_attention_heads=4,
            num_key_value_heads=2,
            intermediate_size=3 * D,
            max_position_embeddings=64,
            **ids,
        ),  # fmt: skip
    }
    classes = {"gpt_neox": GPTNeoXForCausalLM, "gpt2": GPT2LMHeadModel, "llama": LlamaForCausalLM}
    torch.manual_seed(seed)
    model = classes[kind](configs[kind]())
    model.config.use_cache = False
    return model


OTHERS = ("gpt_neox", "gpt2", "llama")
ALL = ("gpt_neo", *OTHERS)
# each architecture's block list and MLP down-projection, written out (not read from arch.py)
BLOCKS = {
    "gpt_neo": "transformer.h",
    "gpt_neox": "gpt_neox.layers",
    "gpt2": "transformer.h",
    "llama": "model.layers",
}
DOWN_PROJ = {
    "gpt_neo": "mlp.c_proj",
    "gpt_neox": "mlp.dense_4h_to_h",
    "gpt2": "mlp.c_proj",
    "llama": "mlp.down_proj",
}
EVERY_LINEAR_MAP = {
    "gpt_neo": {
        "attn.attention.q_proj", "attn.attention.k_proj", "attn.attention.v_proj",
        "attn.attention.out_proj", "mlp.c_fc", "mlp.c_proj",
    },
    "gpt_neox": {
        "attention.query_key_value", "attention.dense", "mlp.dense_h_to_4h", "mlp.dense_4h_to_h",
    },
    "gpt2": {"attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"},
    "llama": {
        "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
        "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj",
    },
}  # fmt: skip


def snapshot(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def changed(before, model):
    return {n for n, p in model.named_parameters() if not torch.equal(before[n], p)}


def forget_inputs():
    return inputs_and_targets(groups()[0].blocks, EOS)[0]  # (4, 16)


def adapted_maps(names, kind):
    """{(block, block-relative map)} of LoRA parameter names."""
    out = set()
    for n in names:
        path = n.split(".lora_")[0]
        block_part = path.split(BLOCKS[kind] + ".", 1)[1]  # "3.mlp.c_proj"
        index, _, rest = block_part.partition(".")
        out.add((int(index), rest))
    return out


# ---------------------------------------------------------------- locating the layers


@pytest.mark.parametrize("kind", ALL)
def test_layers_norm_and_hidden_state_indexing_are_located(kind):
    model = tiny(kind)
    assert arch.model_type(model) == kind and arch.num_blocks(model) == LAYERS
    assert arch.block_prefix(model, 2) == f"{BLOCKS[kind]}.2."
    block = arch.blocks(model)[0]
    for name in EVERY_LINEAR_MAP[kind]:  # every LoRA target names a module of the block
        block.get_submodule(name)
    assert set(arch.lora_targets(model, "all")) == EVERY_LINEAR_MAP[kind]
    # HF hidden_states[l] = output of block l-1, the last with the final norm applied
    x = forget_inputs()
    with torch.no_grad():
        hs = hidden_stack(model, x)  # (L + 1, B, T, d)
        outs = block_outputs(model, x, range(LAYERS))
    assert hs.shape == (LAYERS + 1, *x.shape, D)
    for i in range(LAYERS - 1):
        torch.testing.assert_close(hs[i + 1], outs[i])
    torch.testing.assert_close(hs[-1], arch.final_norm(model)(outs[LAYERS - 1]))
    assert not torch.allclose(hs[-1], outs[LAYERS - 1])


def test_a_model_whose_layers_cannot_be_located_is_refused_in_one_line():
    from transformers import OPTConfig, OPTForCausalLM

    opt = OPTForCausalLM(
        OPTConfig(vocab_size=VOCAB, hidden_size=D, num_hidden_layers=2, ffn_dim=64,
                  num_attention_heads=4, word_embed_proj_dim=D, max_position_embeddings=64)
    )  # fmt: skip
    with pytest.raises(ConfigError, match=r"^the base model is a 'opt' model: .*gpt_neox") as e:
        arch.check_supported(opt, "base model")
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="'opt' model"):
        rmu_objective(opt, 1, random_direction(D, 0), RMUOptions())


def test_the_partition_and_expansion_refuse_other_architectures_in_one_line():
    from unlearnbench.models.expand import expand_mlp
    from unlearnbench.models.partition import Partition

    with pytest.raises(ConfigError, match="partition runs on GPT-Neo only .* not on a 'llama'"):
        Partition.for_model(tiny("llama"), 8, 1)
    with pytest.raises(ConfigError, match="runs on GPT-Neo only .* not on a 'gpt2' model"):
        expand_mlp(tiny("gpt2"), (0,), 4)
    assert Partition.for_model(tiny("gpt_neo"), 8, 1).forget_mlp_dim == 8


# ---------------------------------------------------------------- RMU


@pytest.mark.parametrize("kind", OTHERS)
def test_rmu_updates_only_the_mlp_down_projection_of_blocks_l_minus_2_to_l(kind):
    model, layer = tiny(kind), 2
    x = forget_inputs()
    with torch.no_grad():
        h0 = block_outputs(model, x, [layer])[layer]
    control = 4 * float(h0.norm(dim=-1).mean()) * random_direction(D, 0)  # (1, 1, d)
    objective = rmu_objective(model, layer, control, RMUOptions(alpha=1.0))
    # the default `params` (GPT-Neo's name) means this architecture's down-projection
    expected = {f"{BLOCKS[kind]}.{i}.{DOWN_PROJ[kind]}.weight" for i in (0, 1, 2)}
    assert set(objective.trainable) == expected
    before = snapshot(model)
    train(objective, groups(), CFG, 0, EOS, progress=False)
    assert changed(before, model) == expected
    with torch.no_grad():
        h1 = block_outputs(model, x, [layer])[layer]
    target = control.expand_as(h0)
    assert F.mse_loss(h1, target) < F.mse_loss(h0, target)
    # a name of the architecture itself is used as given
    own = RMUOptions(params=(f"{DOWN_PROJ[kind]}.weight",))
    assert set(rmu_objective(tiny(kind), layer, control, own).trainable) == expected


# ---------------------------------------------------------------- LoRA methods


@pytest.mark.parametrize("kind", OTHERS)
def test_circuit_breakers_adapt_every_linear_map_train_only_lora_and_merge(kind):
    model = tiny(kind)
    cls = type(model)
    opts = CircuitBreakerOptions(target_layers=(1, 2), lora_r=4, lora_alpha=8.0, lora_dropout=0.0)
    objective = circuit_breaker_objective(model, opts)
    peft_model = objective.model
    # blocks 0..3 (0..D+1 for the deepest target D = 2), every linear map of each
    assert adapted_maps(objective.trainable, kind) == {
        (i, m) for i in range(4) for m in EVERY_LINEAR_MAP[kind]
    }
    x = forget_inputs()

    def forget_cosine():
        with torch.no_grad():
            h = block_outputs(peft_model, x, [1, 2])
            with peft_model.disable_adapter():
                h0 = block_outputs(peft_model, x, [1, 2])
        return float(sum(F.cosine_similarity(h[i], h0[i], dim=-1).mean() for i in (1, 2)) / 2)

    cos0, before = forget_cosine(), snapshot(peft_model)
    train(objective, groups(), CFG, 0, EOS, progress=False)
    moved = changed(before, peft_model)
    assert moved and all("lora_" in n for n in moved), sorted(moved)[:3]
    assert forget_cosine() < cos0 - 0.05
    peft_model.eval()
    with torch.no_grad():
        adapted = peft_model(input_ids=x).logits
    merged = objective.finalize(peft_model)
    assert type(merged) is cls and not any("lora" in n for n, _ in merged.named_parameters())
    with torch.no_grad():  # GPT-2's Conv1D merges the right way round (fan_in_fan_out)
        torch.testing.assert_close(merged(input_ids=x).logits, adapted, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("kind", OTHERS)
def test_orthogonal_circuit_breakers_and_tuned_lens_lora_pick_maps_by_role(kind):
    lay = arch.LAYOUTS[kind]
    opts = OrthCircuitBreakerOptions(target_layers=(1,), lora_r=2, lora_dropout=0.0)
    for target, maps in (("attn", lay.attention), ("mlp", lay.mlp)):
        o = orth_circuit_breaker_objective(
            tiny(kind), dataclasses.replace(opts, lora_target=target)
        )
        assert {m for _, m in adapted_maps(o.trainable, kind)} == set(maps)
    objective = orth_circuit_breaker_objective(tiny(kind), opts)
    before = snapshot(objective.model)
    train(objective, groups(), dataclasses.replace(CFG, steps=2), 0, EOS, progress=False)
    moved = changed(before, objective.model)
    assert moved and all("lora_" in n for n in moved)
    model = tiny(kind)
    lens = unlearning_objective(model, Lenses(model), TunedLensOptions(lora=True, lora_r=2))
    assert {m for _, m in adapted_maps(lens.trainable, kind)} == set(lay.qkv)


# ---------------------------------------------------------------- full-parameter methods


@pytest.mark.parametrize("kind", OTHERS)
def test_tuned_lens_and_sequential_unlearning_train_what_they_should(kind):
    # tuned lens, full fine-tuning: the lenses read the architecture's final norm and head
    model = tiny(kind)
    lenses = Lenses(model)
    x = forget_inputs()
    with torch.no_grad():
        last = block_outputs(model, x, [LAYERS - 1])[LAYERS - 1]
        torch.testing.assert_close(lenses(last, LAYERS - 1), model(input_ids=x).logits)
    objective = unlearning_objective(model, lenses, TunedLensOptions())
    before = snapshot(model)
    train(objective, groups(), dataclasses.replace(CFG, steps=2), 0, EOS, progress=False)
    assert changed(before, model)
    # sequential unlearning: only block 2 trains in its phase
    model = tiny(kind)
    before = snapshot(model)
    objective = layer_objective(model, frozen_copy(model), 2, SequentialOptions())
    train(objective, groups(), dataclasses.replace(CFG, steps=2), 0, EOS, progress=False)
    moved = changed(before, model)
    assert moved and all(n.startswith(f"{BLOCKS[kind]}.2.") for n in moved), sorted(moved)[:3]


@pytest.mark.parametrize("kind", OTHERS)
def test_grad_diff_and_npo_raise_the_forget_loss(kind):
    for setup, options in ((grad_diff_setup, GradDiffOptions()), (npo_setup, NPOOptions())):
        model = tiny(kind)
        data = {"forget": groups()[0].blocks[:, :17]}
        loss0 = split_losses(model, data, EOS)["forget"]
        objective = setup(RunContext(config=None, benchmark=None, model=model), options)
        train(objective, groups(), dataclasses.replace(CFG, lr=3e-3), 0, EOS, progress=False)
        assert split_losses(model, data, EOS)["forget"] > loss0


# ---------------------------------------------------------------- the evaluator


@pytest.mark.parametrize("kind", OTHERS)
def test_the_evaluator_losses_calibration_and_direction_ablation_run(kind):
    model = tiny(kind)
    data = {g.label: g.blocks for g in groups()}
    losses = split_losses(model, data, EOS)
    assert set(losses) == {"forget", "retain"} and all(v > 0 for v in losses.values())
    options = CalibrationOptions(steps=3, batch_size=2, n_docs=4)
    calibrated, name = calibrate(model, groups(), options, EOS)
    assert name.endswith("bias") and calibrated.get_output_embeddings().bias is not None
    assert split_losses(calibrated, data, EOS) != losses
    x = forget_inputs()
    u = F.normalize(torch.randn(D), dim=0)
    with torch.no_grad(), projected_out(model, {1: u}):
        h = block_outputs(model, x, [1])[1]
    assert float((h @ u).abs().max()) < 1e-4  # block 1's output has no component along u


def test_quantization_rounds_gpt2_conv1d_maps_per_output_channel():
    from unlearnbench.evals import quantization as quant

    model = tiny("gpt2")
    expected = {
        f"transformer.h.{i}.{m}.weight" for i in range(LAYERS) for m in EVERY_LINEAR_MAP["gpt2"]
    }
    assert set(quant.quantized_weights(model, embeddings=False)) == expected
    before = snapshot(model)
    quant.quantize_model_(model, 4, "symmetric", 0, embeddings=False)
    assert changed(before, model) == expected
    w = model.transformer.h[0].mlp.c_proj.weight  # Conv1D: (in, out); a column is a channel
    assert all(len(torch.unique(w[:, j])) <= 15 for j in range(w.shape[1]))  # 4-bit: +-7
    assert max(len(torch.unique(w[i])) for i in range(w.shape[0])) > 15  # not per input row


@pytest.mark.parametrize("kind", OTHERS)
def test_the_relearning_attack_fine_tunes_with_lora(kind):
    from unlearnbench.evals.relearn import fine_tune

    model = tiny(kind)
    forget = [groups()[0]]
    data = {"forget": forget[0].blocks}
    points = fine_tune(
        model, forget, steps=3, lr=1e-2, seed=0, eos_id=EOS, batch_plan=None, batch_size=4,
        evaluate=lambda m: split_losses(m, data, EOS), eval_every=3, mode="lora", lora_r=2,
    )  # fmt: skip
    (step0, _, first), (step3, _, last) = points
    assert (step0, step3) == (0, 3) and last["forget"] < first["forget"]


# ---------------------------------------------------------------- a run on a saved Llama


@pytest.fixture(scope="module")
def llama_runs(tmp_path_factory):
    """A tiny Llama saved beside the benchmark's tokenizer, and the store of the RMU and circuit
    breaker runs given it as `base` (`--set base=PATH`)."""
    from unlearnbench import runner
    from unlearnbench.data.benchmarks import load_benchmark
    from unlearnbench.models.build import save_model
    from unlearnbench.results.store import RunStore

    tmp = tmp_path_factory.mktemp("llama")
    small = {"n_stories": 200, "steps": 2, "context": 32, "eval_blocks": 2, "batch_size": 4}
    cfg = runner.resolve_run_config("rmu", "storyworld-lang", "tiny", 0, small)
    bench = load_benchmark(cfg.benchmark, cfg.benchmark_options)
    base = save_model(tiny("llama", vocab=len(bench.tokenizer)), bench.tokenizer, tmp / "base")
    store = RunStore(tmp / "store")
    records = {}
    for method in ("rmu", "circuit-breakers"):
        cfg = runner.resolve_run_config(method, cfg.benchmark, "tiny", 0, small | {"base": base})
        records[method] = runner.execute(cfg, store, progress=False)
    return base, store, records


def test_a_posthoc_run_unlearns_a_saved_llama_given_as_its_base(llama_runs):
    """RMU and circuit breakers run end to end, evaluate, and save a Llama; RMU changed only the
    down-projections of blocks l-2..l."""
    from safetensors.torch import load_file

    from unlearnbench.models.build import load_model

    base, _, records = llama_runs
    for record in records.values():
        assert record["base"] == str(base)
        assert all(record["metrics"][f"{s}_loss"] > 0 for s in ("forget", "retain"))
        assert type(load_model(record["model_path"])).__name__ == "LlamaForCausalLM"
    before = load_file(base / "model.safetensors")  # layer 2 of 4: blocks 0..2 moved
    after = load_file(f"{records['rmu']['model_path']}/model.safetensors")
    moved = {n for n in before if not torch.equal(before[n], after[n])}
    assert moved == {f"model.layers.{i}.mlp.down_proj.weight" for i in (0, 1, 2)}


def test_every_evaluation_runs_on_an_unlearned_llama(llama_runs, tmp_path):
    from unlearnbench.suites import run_suite

    _, store, records = llama_runs
    suite = tmp_path / "every-eval.yaml"
    suite.write_text(EVERY_EVAL)
    run = records["rmu"]["run_id"]
    recorded = run_suite(run, str(suite), store, progress=False, references=False)["evals"]
    evals = {k.split("/")[1]: v for k, v in recorded.items() if k.startswith("every-eval/")}
    assert set(evals) == {line.split()[-1] for line in EVERY_EVAL.splitlines() if "eval:" in line}
    assert evals["direction-ablation"]["ablated"]["forget_loss"] > 0  # against the saved base
    assert evals["quantization"]["n_matrices"] == 7 * LAYERS  # q, k, v, o, gate, up, down
    assert evals["relearn"]["budget"]


EVERY_EVAL = """\
references: false
evals:
  - eval: relearn
    options: {budgets: [2], lrs: [1e-3], modes: [full, lora], seeds: [0], eval_every: 2,
              eval_blocks: 2, n_docs: 20, batch_size: 2}
  - eval: fact-probes
    options: {max_per_split: 8}
  - eval: hidden-probes
    options: {max_per_split: 40, max_iter: 5}
  - eval: in-context
    options: {max_per_split: 2}
  - eval: soft-prompt
    options: {n_tokens: 2, steps: 2, lrs: [1e-2], n_docs: 8, eval_blocks: 2, max_probes: 8}
  - eval: generations
    options: {max_new_tokens: 4}
  - eval: direction-ablation
    options: {n_blocks: 4}
  - eval: calibrated-loss
    options: {steps: 2, n_docs: 8}
  - eval: quantization
    options: {bits: [4], max_probes: 8}
"""


def test_the_cli_unlearns_a_saved_gpt_neox_with_its_own_tokenizer_on_local_files(tmp_path):
    """A Pythia-like workflow: a GPT-NeoX saved with its (GPT-2-style BPE) tokenizer, a local
    JSONL benchmark tokenized by that same tokenizer, `run rmu --set base=PATH`."""
    from gpt2_fixture import FIXTURES, gpt2_dir
    from typer.testing import CliRunner

    from unlearnbench.cli import app
    from unlearnbench.data.gpt2 import load_gpt2_tokenizer
    from unlearnbench.models.build import load_model, save_model
    from unlearnbench.results.store import RunStore

    tokenizer_dir = gpt2_dir(tmp_path)
    tokenizer = load_gpt2_tokenizer(str(tokenizer_dir))
    base = save_model(tiny("gpt_neox", vocab=len(tokenizer)), tokenizer, tmp_path / "neox")
    settings = {
        "path": FIXTURES / "files" / "stories.jsonl", "split_by": "language", "forget": "es",
        "tokenizer": tokenizer_dir, "base": base, "steps": 2, "context": 16, "batch_size": 4,
        "eval_blocks": 2, "test_fraction": 0.3,
    }  # fmt: skip
    sets = [a for k, v in settings.items() for a in ("--set", f"{k}={v}")]
    out = tmp_path / "runs"
    result = CliRunner().invoke(app, ["run", "rmu", "-b", "files", *sets, "--out", str(out)])
    assert result.exit_code == 0, result.output
    (record,) = RunStore(out).records()
    assert record["base"] == str(base) and record["metrics"]["forget_loss"] > 0
    model = load_model(record["model_path"])
    assert type(model).__name__ == "GPTNeoXForCausalLM"


def test_a_models_own_sentencepiece_style_tokenizer_loads_as_saved(tmp_path):
    """A Llama-2/Mistral-style tokenizer (Metaspace pre-tokenizer) given as a benchmark's
    `tokenizer=DIR` gives the ids the model was trained on, not GPT-2's byte-level ones."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from unlearnbench.data.gpt2 import load_gpt2_tokenizer

    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer, backend.decoder = pre_tokenizers.Metaspace(), decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<unk>", "<s>", "</s>"])
    words = [a + b + c for a in "abcdefghij" for b in "klmnopqrst" for c in "uvwxyz"]
    backend.train_from_iterator(["the fox lives in the cave by the river", *words], trainer)
    own = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    own.save_pretrained(tmp_path / "tok")
    loaded = load_gpt2_tokenizer(str(tmp_path / "tok"))
    text = "the fox lives by the river"
    assert loaded(text)["input_ids"] == own(text)["input_ids"]
    assert loaded.eos_token == "</s>" and loaded.get_vocab() == own.get_vocab()
