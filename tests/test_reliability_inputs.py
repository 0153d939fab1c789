"""Bad input: every user mistake is one red line on stderr, exit code 2, no traceback, and the
store left as it was; a diverging loss stops training naming the step and the last good checkpoint.

The inputs of `BAD_INPUTS` and the line each gets after "error: " (SMALL: the tiny settings
below; A: a folder of test files; OUT: the store; ID: the run id; known names cut to "..."):

| input | command (after `unlearnbench`) | message |
|---|---|---|
| method-typo | `run sgtn` | unknown method 'sgtn'; did you mean sgtm? (known: ...) |
| model-typo | `run sgtm --model tinyy` | unknown model 'tinyy'; did you mean tiny? (known: ...) |
| benchmark-typo | `run sgtm -b storyworld-lan` | unknown benchmark 'storyworld-lan'; did you mean storyworld-lang, storyworld-topic? (known: ...) |
| key-typo | `run sgtm --set lrr=0.1` | unknown key 'lrr'; did you mean lr? valid keys: ... |
| section-key | `run sgtm --set train.recall=0.5` | unknown key 'train.recall'; did you mean recall? valid keys: ... |
| suite-typo | `run no-filter --suite quik` | unknown suite 'quik'; did you mean quick? (known: ...) |
| suite-unknown | `run no-filter --suite nothing-like-it` | unknown suite 'nothing-like-it' (known: ...) |
| attack-suite-typo | `attack r1 --suite robsut` | unknown suite 'robsut'; did you mean robust, robust-lite? (known: ...) |
| list-unknown | `list method` | unknown list 'method'; choose methods, benchmarks, models or presets |
| leaderboard-format | `leaderboard --format xls` | unknown format 'xls'; choose md, csv or html |
| plot-unknown | `plot tradeof` | unknown plot 'tradeof'; choose tradeoff, relearn, undiscovered or all |
| set-no-equals | `run sgtm --set steps` | --set expects key=value, got 'steps' |
| int-word | `run sgtm --set steps=many` | bad value for steps: 'many' is not a valid int |
| int-fraction | `run sgtm --set steps=1.5` | bad value for steps: '1.5' is not a valid int |
| int-overflow | `run sgtm --set steps=1e999` | bad value for steps: '1e999' is not a valid int |
| bool-word | `run sgtm --set bf16=maybe` | bad value for bf16: 'maybe' is not a valid bool |
| float-nan | `run sgtm --set lr=nan` | bad value for lr: 'nan' is not a valid float |
| steps-zero | `run sgtm SMALL --set steps=0` | steps must be >= 1, got 0 |
| steps-negative | `run sgtm --set steps=-3` | steps must be >= 1, got -3 |
| batch-zero | `run sgtm --set batch_size=0` | batch_size and micro_batch_size must be >= 1 |
| micro-over-batch | `run sgtm SMALL --set batch_size=4 --set micro_batch_size=8` | micro_batch_size (8) must be at most batch_size (4) |
| lr-negative | `run sgtm --set lr=-1` | lr must be > 0, got -1.0 |
| recall-over-1 | `run sgtm --set recall=1.5` | recall must be in [0, 1], got 1.5 |
| retain-rate-negative | `run sgtm --set retain_label_rate=-0.1` | retain_label_rate must be in [0, 1], got -0.1 |
| rates-over-1 | `run sgtm --set adjacent_label_rate=0.7 --set false_positive_rate=0.6` | adjacent_label_rate + false_positive_rate must be at most 1 |
| checkpoint-negative | `run sgtm --set checkpoint_every=-2` | checkpoint_every must be >= 0, got -2 |
| snapshot-negative | `run sgtm --set snapshot_every=-1` | snapshot_every must be >= 0, got -1 |
| eval-blocks-zero | `run sgtm --set eval_blocks=0` | warmup_steps, eval_every, context must be >= 0 and eval_blocks >= 1 |
| min-lr-ratio | `run sgtm --set min_lr_ratio=2` | min_lr_ratio must be in [0, 1] and warmup_start_factor in [0, 1] |
| warmup-factor | `run sgtm --set warmup_start_factor=-0.5` | min_lr_ratio must be in [0, 1] and warmup_start_factor in [0, 1] |
| lr-decay | `run sgtm --set lr_decay=step` | lr_decay must be 'cosine', 'linear' or 'constant', got 'step' |
| device-tpu | `run sgtm --set device=tpu` | device must be cpu, cuda or cuda:N, got 'tpu' |
| context-over-tiny | `run sgtm SMALL --set context=1024` | context=1024 is longer than model tiny's 256 positions |
| context-over-small | `run filter --model small SMALL --set context=300` | context=300 is longer than model small's 256 positions |
| config-missing | `run sgtm --config A/no.yaml` | config file not found: A/no.yaml |
| config-bad-yaml | `run sgtm --config A/bad.yaml` | config file A/bad.yaml is not valid YAML: while parsing a flow sequence |
| config-list | `run sgtm --config A/list.yaml` | config file A/list.yaml must hold a mapping of key: value |
| sweep-missing | `sweep A/no-sweep.yaml` | sweep spec not found: A/no-sweep.yaml |
| sweep-list | `sweep A/sweep.yaml` | sweep spec A/sweep.yaml must be a mapping (benchmark, model, seeds, methods, grid, set) |
| forget-mlp-dim | `run sgtm --set forget_mlp_dim=4096 SMALL` | sgtm: forget_mlp_dim must be in [0, 512), got 4096 |
| forget-heads | `run sgtm --set forget_heads=64 SMALL` | sgtm: forget_heads must be in [0, 8), got 64 |
| no-spanish | `run sgtm --set spanish_fraction=0 SMALL` | benchmark 'storyworld-lang': spanish_fraction must be in (0, 1), got 0.0 |
| two-stories | `run sgtm --set n_stories=2 SMALL-without-n_stories` | benchmark 'storyworld-lang' has no retain test documents |
| files-no-path | `run no-filter -b files` | benchmark 'files': the files benchmark needs --set path=DATA.jsonl (or a directory) |
| files-missing | `run no-filter -b files --set path=A/none.jsonl` | benchmark 'files': benchmark data not found: A/none.jsonl |
| files-empty-jsonl | `run no-filter -b files --set path=A/empty.jsonl --set split_by=lang --set forget=es` | benchmark 'files': A/empty.jsonl is empty: no JSON lines (one object per line) in it |
| files-blank-jsonl | `run no-filter -b files --set path=A/blank.jsonl --set split_by=lang --set forget=es` | benchmark 'files': A/blank.jsonl is empty: no JSON lines (one object per line) in it |
| files-bad-json | `run no-filter -b files --set path=A/bad.jsonl --set split_by=lang --set forget=es` | benchmark 'files': A/bad.jsonl:2: not valid JSON (Expecting value at column 10) |
| base-missing | `run rmu --set base=/no/such/path SMALL` | cannot load base model '/no/such/path': /no/such/path does not exist |
| base-relative-missing | `run rmu --set base=./no/model SMALL` | cannot load base model './no/model': ./no/model does not exist |
| base-is-a-file | `run rmu --set base=A/a-file SMALL` | cannot load base model 'A/a-file': A/a-file is a file, not a saved model directory |
| base-empty-dir | `run rmu --set base=A/empty-dir SMALL` | cannot load base model 'A/empty-dir': A/empty-dir is not a saved model (no config.json in it) |
| base-other-benchmark | `run rmu --set base=A/lang -b storyworld-topic SMALL` | base model A/lang was trained with another tokenizer: its vocabulary (1219 ids) agrees with storyworld-topic's (992 ids) on 263 ids; use a model trained on this benchmark with the same benchmark options |
| base-other-vocab-size | `run grad-ascent --set base=A/small-vocab SMALL` | base model A/small-vocab has 61 token embeddings but storyworld-lang's tokenizer has 1219 ids (and no tokenizer is saved with it) |
| base-short-positions | `run rmu --set base=A/short -b storyworld-topic SMALL` | context=32 is longer than base model A/short's 16 positions |
| checkpoint-other-benchmark | `run checkpoint-transfer --set base=A/topic --set checkpoint=A/lang -b storyworld-topic SMALL` | checkpoint-transfer: checkpoint A/lang was trained with another tokenizer: its vocabulary (1219 ids) agrees with storyworld-topic's (992 ids) on 263 ids; use a model trained on this benchmark with the same benchmark options |
| checkpoint-missing | `run checkpoint-transfer --set base=A/topic --set checkpoint=A/nope -b storyworld-topic SMALL` | checkpoint-transfer: cannot load checkpoint 'A/nope': A/nope does not exist |
| out-is-a-file | `run no-filter SMALL` | cannot write the run store OUT: OUT is not a directory |
| out-under-a-file | `run no-filter SMALL --out OUT/sub` | cannot write the run store OUT/sub: OUT is not a directory |
| run-corrupt-record | `run no-filter SMALL --set checkpoint_every=1` | record OUT/records/ID.json is unreadable (truncated or invalid JSON at line 1 column 12); move it aside (mv OUT/records/ID.json OUT/records/ID.json.bad) and run that run again (`unlearnbench run`) to recreate it |
| attack-missing-run | `attack r1 --suite quick` | no record for run 'r1' in OUT/records |
| attack-corrupt-record | `attack r1 --suite quick` | record OUT/records/r1.json is unreadable (truncated or invalid JSON at line 1 column 18); move it aside (mv OUT/records/r1.json OUT/records/r1.json.bad) and run that run again (`unlearnbench run`) to recreate it |
| resume-corrupt-checkpoint | `run no-filter SMALL --set checkpoint_every=1 --resume` | checkpoint OUT/checkpoints/ID/checkpoint.pt is corrupt or unreadable (truncated, damaged or not written by unlearnbench); delete it (or move it aside) to start over, or run without --resume |
| beta1-over-1 | `run sgtm --set beta1=1.5` | beta1 must be in [0, 1), got 1.5 |
| beta1-one | `run sgtm --set beta1=1` | beta1 must be in [0, 1), got 1.0 |
| beta2-negative | `run sgtm --set beta2=-0.1` | beta2 must be in [0, 1), got -0.1 |
| weight-decay-negative | `run sgtm --set weight_decay=-0.1` | weight_decay must be >= 0, got -0.1 |
| seed-overflow | `run sgtm --seed 99999999999999999999` | seed must be in [0, 4294967295], got 99999999999999999999 |
| seed-negative | `run sgtm --seed -1` | seed must be in [0, 4294967295], got -1 |
| context-one | `run sgtm --set context=1` | context must be 0 (the model's) or at least 2, got 1 |
| device-cuda-absent | `run sgtm --set device=cuda:99` | device=cuda:99: this machine has no CUDA device (or: N CUDA device(s)) |
| device-cuda-word | `run sgtm --set device=cuda:abc` | device must be cpu, cuda or cuda:N, got 'cuda:abc' |
| device-cuda-negative | `run sgtm --set device=cuda:-1` | device must be cpu, cuda or cuda:N, got 'cuda:-1' |
| vocab-negative | `run sgtm --set vocab_size=-5` | benchmark 'storyworld-lang': vocab_size must be >= 1, got -5 |
| vocab-zero | `run sgtm --set vocab_size=0` | benchmark 'storyworld-lang': vocab_size must be >= 1, got 0 |
| stories-negative | `run sgtm --set n_stories=-1` | benchmark 'storyworld-lang': n_stories must be >= 0, got -1 |
| files-text-column-empty | `run no-filter -b files --set path=A/bad.jsonl --set text_column=` | benchmark 'files': text_column must name a column, got '' |
| files-max-tokens-negative | `run no-filter -b files --set path=A/bad.jsonl --set max_tokens=-1` | benchmark 'files': max_tokens must be >= 0, got -1 |
| out-empty | `run no-filter SMALL --out ""` | an empty folder name was given (--out or --dest); name a folder, e.g. --out runs |
| attack-out-empty | `attack r1 --out ""` | an empty folder name was given (--out or --dest); name a folder, e.g. --out runs |
| leaderboard-dest-empty | `leaderboard --dest ""` | an empty folder name was given (--out or --dest); name a folder, e.g. --out runs |
| env-unknown | `UNLEARNBENCH_PROGRES=bar run sgtm` | unknown variable UNLEARNBENCH_PROGRES; did you mean UNLEARNBENCH_PROGRESS? known: ... |
| env-progress | `UNLEARNBENCH_PROGRESS=loud run sgtm` | UNLEARNBENCH_PROGRESS must be one of bar, lines, off, got 'loud' |
| env-log-every-zero | `UNLEARNBENCH_LOG_EVERY=0 run sgtm` | UNLEARNBENCH_LOG_EVERY must be a whole number of steps >= 1, got '0' |
| env-log-every-word | `UNLEARNBENCH_LOG_EVERY=often list models` | UNLEARNBENCH_LOG_EVERY must be a whole number of steps >= 1, got 'often' |
| env-cache-file | `UNLEARNBENCH_CACHE=A/a-file run sgtm` | UNLEARNBENCH_CACHE=A/a-file: A/a-file is a file, not a cache directory |
| env-cache-under-file | `UNLEARNBENCH_CACHE=A/a-file/sub run sgtm` | UNLEARNBENCH_CACHE=A/a-file/sub: A/a-file is a file, not a cache directory |
| posthoc-forget-tokens | `run rmu SMALL --set forget_tokens=bogus` (default base: none trained) | rmu: forget_tokens must be one of all, ratio, list, got 'bogus' |
| posthoc-token-list-empty | `run grad-ascent SMALL --set forget_tokens=list` | grad-ascent: forget_tokens=list needs forget_token_list |
| posthoc-token-position | `run npo SMALL --set forget_token_position=middle` | npo: forget_token_position must be one of ... |
| posthoc-coef-scale | `run rmu SMALL --set coef_scale=bogus` | rmu: coef_scale must be one of relative, absolute, adaptive, got 'bogus' |
| posthoc-layer | `run rmu SMALL --set layer=99` | rmu: rmu layer 99 outside 0..3 |
| posthoc-npo-beta | `run npo SMALL --set beta=0` | npo: npo beta must be > 0, got 0.0 |
| posthoc-lens-loss | `run tuned-lens SMALL --set lens_loss=mse` | tuned-lens: lens_loss must be 'kl' or 'ce', got 'mse' |
| posthoc-breaker-layers | `run circuit-breakers SMALL --set target_layers=9` | circuit-breakers: circuit-breakers target_layers (9,) outside 0..3 |
| posthoc-transfer-tolerance | `run checkpoint-transfer SMALL --set checkpoint_tolerance=1.5` | checkpoint-transfer: checkpoint_tolerance must be in [0, 1), got 1.5 |
| posthoc-transfer-retain | `run checkpoint-transfer SMALL --set retain_loss=l1` | checkpoint-transfer: retain_loss must be one of kl, mse, ce, got 'l1' |
| posthoc-resume-corrupt | `run rmu SMALL --set checkpoint_every=1 --resume` | checkpoint OUT/checkpoints/ID/checkpoint.pt is corrupt or unreadable (...) |
| suite-unsaved | `run no-filter SMALL --suite quick` | the suite 'quick' evaluates the run's saved model, but save_model=false keeps none: drop save_model=false or the suite |
| posthoc-suite-unsaved | `run rmu SMALL --suite quick` | the suite 'quick' evaluates the run's saved model, but save_model=false keeps none: ... |
| sweep-suite-unsaved | `sweep A/sweep-unsaved.yaml` | the suite 'quick' evaluates the run's saved model, but save_model=false keeps none: ... |
| config-not-utf8 | `run sgtm --config A/latin1.yaml` | config file A/latin1.yaml is not UTF-8 text (byte 13) |
| config-int-key | `run sgtm --config A/int-key.yaml` | config file A/int-key.yaml: keys must be names, got 5: 1 |
| config-section-int-key | `run sgtm --config A/section-int-key.yaml` | config file A/section-int-key.yaml: keys must be names, got 'train': {3: 1} |
| suite-not-utf8 | `run no-filter --suite A/latin1-suite.yaml` | suite A/latin1-suite.yaml is not UTF-8 text (byte 34) |
| suite-options-list | `run no-filter --suite A/suite-options-list.yaml` | suite A/suite-options-list.yaml: `options:` of relearn must be a mapping |
| suite-eval-list | `run no-filter --suite A/suite-eval-list.yaml` | suite A/suite-eval-list.yaml: every entry needs `eval: NAME`, got {'eval': ['relearn']} |
| suite-key-map | `attack r1 --suite A/suite-key-map.yaml` | suite A/suite-key-map.yaml: `key:` of relearn must be a name |
| sweep-not-utf8 | `sweep A/latin1-sweep.yaml` | sweep spec A/latin1-sweep.yaml is not UTF-8 text (byte 55) |
| sweep-benchmark-list | `sweep A/sweep-benchmark-list.yaml` | sweep spec: benchmark must be a name, got ['storyworld-lang'] |
| sweep-model-map | `sweep A/sweep-model-map.yaml` | sweep spec: model must be a name or a list of names, got {'a': 1} |
| sweep-seed-fraction | `sweep A/sweep-seed-fraction.yaml` | sweep spec: seeds must be integers, got [1.5] |
| sweep-seed-bool | `sweep A/sweep-seed-bool.yaml` | sweep spec: seeds must be integers, got [True] |
| sweep-set-int-key | `sweep A/sweep-set-int-key.yaml` | sweep spec: the keys of set must be names, got 5 |
| sweep-method-int-key | `sweep A/sweep-method-int-key.yaml` | sweep spec: a method is a name or {name: {key: value}}, got {5: None} |
| attack-run-id-traversal | `attack ../../etc/passwd --suite quick` | run id '../../etc/passwd' is not a safe file name (letters, digits and ._+- only, not starting with a dot, at most 200 characters) |
| attack-record-of-another-run | `attack r1 --suite quick` (r1.json holds run r2) | record OUT/records/r1.json is unreadable (its run_id 'r2' is not its file name); move it aside ... |
| attack-record-wrong-type | `attack r1 --suite quick` (`"config": []`) | record OUT/records/r1.json is unreadable (field 'config' holds list []); move it aside ... |
| attack-record-unsafe-name | `attack r1 --suite quick` (`"benchmark": "../x"`) | record OUT/records/r1.json is unreadable (field 'benchmark' "../x" is not a safe file name); move it aside ... |
| base-truncated-weights | `run rmu --set base=A/truncated SMALL` | cannot load base model 'A/truncated': saved model A/truncated: model.safetensors is damaged: Error while deserializing header: ... |
| base-no-weights | `run rmu --set base=A/no-weights SMALL` | cannot load base model 'A/no-weights': saved model A/no-weights has no weights file (model.safetensors) |
| base-config-not-json | `run rmu --set base=A/bad-config SMALL` | cannot load base model 'A/bad-config': saved model A/bad-config: A/bad-config/config.json is not valid JSON (...) |
| base-config-other-model | `run rmu --set base=A/bert-config SMALL` | cannot load base model 'A/bert-config': saved model A/bert-config: A/bert-config/config.json describes a 'bert' model, not GPT-Neo, GPT-NeoX, GPT-2 or Llama-family (the model types unlearnbench loads: ...) |
| base-missing-tensor | `run rmu --set base=A/missing-tensor SMALL` | cannot load base model 'A/missing-tensor': saved model A/missing-tensor: model.safetensors lacks 1 tensor(s) (...) |
| list-defaults-models | `list models --defaults` | --defaults lists the defaults of methods only, not of models |
| attack-store-unwritable | `attack r1 --suite quick` (OUT/models is a file) | cannot write the run store OUT: OUT/models is not writable |
"""

import dataclasses
from pathlib import Path

import pytest
import torch
from helpers import EOS, groups, tiny_gpt_neo
from typer.testing import CliRunner

from unlearnbench.checkpoint import Checkpointer
from unlearnbench.cli import app
from unlearnbench.config import TrainConfig
from unlearnbench.losses import lm_loss
from unlearnbench.training import Objective, train

SMALL = ["--set", "n_stories=300", "--set", "steps=1", "--set", "eval_blocks=2"]
SMALL += ["--set", "context=32", "--set", "save_model=false", "--quiet"]
TOPIC = ["-b", "storyworld-topic", *SMALL]
STORE_COMMANDS = ("run", "attack", "leaderboard", "plot", "report", "sweep")
# the run of the corrupt-record and corrupt-checkpoint cases
NO_FILTER = ["run", "no-filter", *SMALL, "--set", "checkpoint_every=1"]
NO_FILTER_SETS = {"n_stories": "300", "steps": "1", "eval_blocks": "2", "context": "32"}
NO_FILTER_SETS |= {"save_model": "false", "checkpoint_every": "1"}
POSTHOC_SETS = NO_FILTER_SETS  # the same settings for a post-hoc run (rmu)


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    """Files outside the store that the bad inputs point at: saved models that do not fit, a file
    where a model directory is expected, bad YAML and JSONL files."""
    from unlearnbench.data.benchmarks import load_benchmark, option_defaults
    from unlearnbench.models.build import build_model, gpt_neo_config, save_model
    from unlearnbench.models.presets import MODEL_PRESETS

    root = tmp_path_factory.mktemp("assets")
    lang, topic = (
        load_benchmark(b, option_defaults(b) | {"n_stories": 300})
        for b in ("storyworld-lang", "storyworld-topic")
    )
    save_model(build_model("tiny", len(lang.tokenizer), EOS, 0), lang.tokenizer, root / "lang")
    save_model(build_model("tiny", len(topic.tokenizer), EOS, 0), topic.tokenizer, root / "topic")
    save_model(tiny_gpt_neo(), None, root / "small-vocab")  # 61 token ids, no tokenizer saved
    short = gpt_neo_config(MODEL_PRESETS["tiny"], len(topic.tokenizer), EOS)
    short.max_position_embeddings = 16
    from transformers import GPTNeoForCausalLM

    save_model(GPTNeoForCausalLM(short), topic.tokenizer, root / "short")
    (root / "empty-dir").mkdir()
    (root / "a-file").write_text("not a model\n")
    (root / "empty.jsonl").write_text("")
    (root / "blank.jsonl").write_text("\n\n")
    (root / "bad.jsonl").write_text('{"text": "a", "lang": "en"}\n{"text": oops}\n')
    (root / "bad.yaml").write_text("train: [unclosed\n")
    (root / "list.yaml").write_text("- steps\n- 3\n")
    (root / "sweep.yaml").write_text("[1, 2]\n")
    _damaged_models(root, topic)
    _malformed_yaml(root)
    return root


def _damaged_models(root: Path, topic) -> None:
    """Copies of a good saved model, each with one file damaged."""
    import json
    import shutil

    from safetensors.torch import load_file, save_file

    from unlearnbench.models.build import build_model, save_model

    good = save_model(build_model("tiny", len(topic.tokenizer), EOS, 0), None, root / "good")

    def damaged(name: str) -> Path:
        shutil.copytree(good, root / name)
        return root / name

    weights = damaged("truncated") / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    (damaged("no-weights") / "model.safetensors").unlink()
    (damaged("bad-config") / "config.json").write_text('{"model_type": "gpt_neo", ')
    (damaged("bert-config") / "config.json").write_text(json.dumps({"model_type": "bert"}))
    weights = damaged("missing-tensor") / "model.safetensors"
    tensors = load_file(weights)
    tensors.pop(sorted(tensors)[0])
    save_file(tensors, weights, metadata={"format": "pt"})


def _malformed_yaml(root: Path) -> None:
    """Config, suite and sweep files that are not UTF-8 or hold values of the wrong type."""
    sweep = "benchmark: storyworld-lang\nmethods: [no-filter]\n"
    files = {
        "latin1.yaml": b"steps: 3\nlr: \xff\xfe\n",
        "int-key.yaml": "5: 1\n",
        "section-int-key.yaml": "train: {3: 1}\n",
        "latin1-suite.yaml": b"evals:\n  - eval: relearn\n    key: \xff\n",
        "suite-options-list.yaml": "evals:\n  - eval: relearn\n    options: [1, 2]\n",
        "suite-eval-list.yaml": "evals:\n  - eval: [relearn]\n",
        "suite-key-map.yaml": "evals:\n  - eval: relearn\n    key: {a: 1}\n",
        "latin1-sweep.yaml": sweep.encode() + b"notes: \xff\n",
        "sweep-benchmark-list.yaml": "benchmark: [storyworld-lang]\nmethods: [no-filter]\n",
        "sweep-model-map.yaml": sweep + "model: {a: 1}\n",
        "sweep-seed-fraction.yaml": sweep + "seeds: [1.5]\n",
        "sweep-seed-bool.yaml": sweep + "seeds: [true]\n",
        "sweep-set-int-key.yaml": sweep + "set: {5: 1}\n",
        "sweep-method-int-key.yaml": "benchmark: storyworld-lang\nmethods: [{5: null}]\n",
        "sweep-unsaved.yaml": sweep + "suite: quick\nset: {save_model: false}\n",
    }
    for name, content in files.items():
        path = root / name
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)


def _corrupt_record(store: Path) -> None:
    from unlearnbench.runner import resolve_run_config

    cfg = resolve_run_config("no-filter", "storyworld-lang", "tiny", 0, NO_FILTER_SETS)
    (store / "records").mkdir(parents=True)
    (store / "records" / f"{cfg.run_id}.json").write_text('{"run_id": "no-filter__stor')


def _corrupt_checkpoint(store: Path, method: str = "no-filter", sets: dict = NO_FILTER_SETS):
    from unlearnbench.runner import resolve_run_config

    cfg = resolve_run_config(method, "storyworld-lang", "tiny", 0, sets)
    path = store / "checkpoints" / cfg.run_id / "checkpoint.pt"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\x80\x04\x95 half of a pickle")  # torch would advise weights_only=False


PREPARE = {
    "out-is-a-file": lambda store: store.write_text("a file, not a store\n"),
    "out-under-a-file": lambda store: store.write_text("a file, not a store\n"),
    "run-corrupt-record": _corrupt_record,
    "attack-corrupt-record": lambda store: (
        (store / "records").mkdir(parents=True)
        or (store / "records" / "r1.json").write_text('{"run_id": "r1", "metr')
    ),
    "resume-corrupt-checkpoint": _corrupt_checkpoint,
    "posthoc-resume-corrupt": lambda store: _corrupt_checkpoint(store, "rmu", POSTHOC_SETS),
    "attack-record-of-another-run": lambda store: _record_file(store, {"run_id": "r2"}),
    "attack-record-wrong-type": lambda store: _record_file(store, {"run_id": "r1", "config": []}),
    "attack-store-unwritable": lambda store: (
        _record_file(store, {"run_id": "r1"}) or (store / "models").write_text("a file\n")
    ),
    "attack-record-unsafe-name": lambda store: _record_file(
        store, {"run_id": "r1", "benchmark": "../x"}
    ),
}


def _record_file(store: Path, record: dict) -> None:
    """`records/r1.json` holding `record` (valid JSON; not a usable record of run r1)."""
    import json

    (store / "records").mkdir(parents=True)
    (store / "records" / "r1.json").write_text(json.dumps(record))


def _case(case_id, args, expected):
    return pytest.param(args, expected, id=case_id)


BAD_INPUTS = [
    # names: a miss lists the close matches
    _case("method-typo", ["run", "sgtn"], "did you mean sgtm"),
    _case("model-typo", ["run", "sgtm", "--model", "tinyy"], "did you mean tiny"),
    _case(
        "benchmark-typo", ["run", "sgtm", "-b", "storyworld-lan"], "did you mean storyworld-lang"
    ),
    _case("key-typo", ["run", "sgtm", "--set", "lrr=0.1"], "did you mean lr"),
    _case(
        "section-key", ["run", "sgtm", "--set", "train.recall=0.5"], "unknown key 'train.recall'"
    ),
    _case("suite-typo", ["run", "no-filter", "--suite", "quik"], "did you mean quick"),
    _case("suite-unknown", ["run", "no-filter", "--suite", "nothing-like-it"], "unknown suite"),
    _case("attack-suite-typo", ["attack", "r1", "--suite", "robsut"], "did you mean robust"),
    _case("list-unknown", ["list", "method"], "unknown list 'method'"),
    _case("leaderboard-format", ["leaderboard", "--format", "xls"], "unknown format 'xls'"),
    _case("plot-unknown", ["plot", "tradeof"], "unknown plot 'tradeof'"),
    # values that do not parse
    _case("set-no-equals", ["run", "sgtm", "--set", "steps"], "--set expects key=value"),
    _case("int-word", ["run", "sgtm", "--set", "steps=many"], "'many' is not a valid int"),
    _case("int-fraction", ["run", "sgtm", "--set", "steps=1.5"], "'1.5' is not a valid int"),
    _case("int-overflow", ["run", "sgtm", "--set", "steps=1e999"], "is not a valid int"),
    _case("bool-word", ["run", "sgtm", "--set", "bf16=maybe"], "'maybe' is not a valid bool"),
    _case("float-nan", ["run", "sgtm", "--set", "lr=nan"], "'nan' is not a valid float"),
    # values out of range
    _case("steps-zero", ["run", "sgtm", *SMALL, "--set", "steps=0"], "steps must be >= 1, got 0"),
    _case("steps-negative", ["run", "sgtm", "--set", "steps=-3"], "steps must be >= 1, got -3"),
    _case("batch-zero", ["run", "sgtm", "--set", "batch_size=0"], "batch_size and micro_batch"),
    _case(
        "micro-over-batch",
        ["run", "sgtm", *SMALL, "--set", "batch_size=4", "--set", "micro_batch_size=8"],
        "micro_batch_size (8) must be at most batch_size (4)",
    ),
    _case("lr-negative", ["run", "sgtm", "--set", "lr=-1"], "lr must be > 0"),
    _case("recall-over-1", ["run", "sgtm", "--set", "recall=1.5"], "recall must be in [0, 1]"),
    _case(
        "retain-rate-negative",
        ["run", "sgtm", "--set", "retain_label_rate=-0.1"],
        "retain_label_rate must be in [0, 1]",
    ),
    _case(
        "rates-over-1",
        ["run", "sgtm", "--set", "adjacent_label_rate=0.7", "--set", "false_positive_rate=0.6"],
        "adjacent_label_rate + false_positive_rate must be at most 1",
    ),
    _case("checkpoint-negative", ["run", "sgtm", "--set", "checkpoint_every=-2"], ">= 0"),
    _case("snapshot-negative", ["run", "sgtm", "--set", "snapshot_every=-1"], ">= 0, got -1"),
    _case("eval-blocks-zero", ["run", "sgtm", "--set", "eval_blocks=0"], "eval_blocks >= 1"),
    _case("min-lr-ratio", ["run", "sgtm", "--set", "min_lr_ratio=2"], "min_lr_ratio must be"),
    _case("warmup-factor", ["run", "sgtm", "--set", "warmup_start_factor=-0.5"], "warmup_start"),
    _case("lr-decay", ["run", "sgtm", "--set", "lr_decay=step"], "lr_decay must be 'cosine'"),
    _case("device-tpu", ["run", "sgtm", "--set", "device=tpu"], "device must be cpu, cuda"),
    _case(
        "context-over-tiny",
        ["run", "sgtm", *SMALL, "--set", "context=1024"],
        "context=1024 is longer than model tiny's 256 positions",
    ),
    _case(
        "context-over-small",
        ["run", "filter", "--model", "small", *SMALL, "--set", "context=300"],
        "context=300 is longer than model small's 256 positions",
    ),
    # config files
    _case("config-missing", ["run", "sgtm", "--config", "{A}/no.yaml"], "config file not found"),
    _case("config-bad-yaml", ["run", "sgtm", "--config", "{A}/bad.yaml"], "is not valid YAML"),
    _case("config-list", ["run", "sgtm", "--config", "{A}/list.yaml"], "must hold a mapping"),
    _case("sweep-missing", ["sweep", "{A}/no-sweep.yaml"], "sweep spec not found"),
    _case("sweep-list", ["sweep", "{A}/sweep.yaml"], "must be a mapping"),
    # the model and the data, refused before training
    _case(
        "forget-mlp-dim",
        ["run", "sgtm", "--set", "forget_mlp_dim=4096", *SMALL],
        "forget_mlp_dim must be in [0, 512)",
    ),
    _case(
        "forget-heads",
        ["run", "sgtm", "--set", "forget_heads=64", *SMALL],
        "forget_heads must be in [0, 8)",
    ),
    _case(
        "no-spanish",
        ["run", "sgtm", "--set", "spanish_fraction=0", *SMALL],
        "spanish_fraction must be in (0, 1)",
    ),
    _case("two-stories", ["run", "sgtm", "--set", "n_stories=2", *SMALL[2:]], "has no"),
    _case("files-no-path", ["run", "no-filter", "-b", "files"], "needs --set path="),
    _case(
        "files-missing",
        ["run", "no-filter", "-b", "files", "--set", "path={A}/none.jsonl"],
        "benchmark data not found",
    ),
    _case(
        "files-empty-jsonl",
        [
            "run",
            "no-filter",
            "-b",
            "files",
            "--set",
            "path={A}/empty.jsonl",
            "--set",
            "split_by=lang",
            "--set",
            "forget=es",
        ],
        "empty.jsonl is empty",
    ),
    _case(
        "files-blank-jsonl",
        [
            "run",
            "no-filter",
            "-b",
            "files",
            "--set",
            "path={A}/blank.jsonl",
            "--set",
            "split_by=lang",
            "--set",
            "forget=es",
        ],
        "blank.jsonl is empty",
    ),
    _case(
        "files-bad-json",
        [
            "run",
            "no-filter",
            "-b",
            "files",
            "--set",
            "path={A}/bad.jsonl",
            "--set",
            "split_by=lang",
            "--set",
            "forget=es",
        ],
        "bad.jsonl:2: not valid JSON",
    ),
    # a post-hoc base, a checkpoint-transfer checkpoint
    _case("base-missing", ["run", "rmu", "--set", "base=/no/such/path", *SMALL], "does not exist"),
    _case("base-relative-missing", ["run", "rmu", "--set", "base=./no/model", *SMALL], "not exist"),
    _case("base-is-a-file", ["run", "rmu", "--set", "base={A}/a-file", *SMALL], "is a file"),
    _case(
        "base-empty-dir", ["run", "rmu", "--set", "base={A}/empty-dir", *SMALL], "no config.json"
    ),
    _case(
        "base-other-benchmark",
        ["run", "rmu", "--set", "base={A}/lang", *TOPIC],
        "was trained with another tokenizer",
    ),
    _case(
        "base-other-vocab-size",
        ["run", "grad-ascent", "--set", "base={A}/small-vocab", *SMALL],
        "has 61 token embeddings but storyworld-lang's tokenizer has 1219 ids",
    ),
    _case(
        "base-short-positions",
        ["run", "rmu", "--set", "base={A}/short", *TOPIC],
        "context=32 is longer than base model",
    ),
    _case(
        "checkpoint-other-benchmark",
        [
            "run",
            "checkpoint-transfer",
            "--set",
            "base={A}/topic",
            "--set",
            "checkpoint={A}/lang",
            *TOPIC,
        ],
        "checkpoint {A}/lang was trained with another tokenizer",
    ),
    _case(
        "checkpoint-missing",
        [
            "run",
            "checkpoint-transfer",
            "--set",
            "base={A}/topic",
            "--set",
            "checkpoint={A}/nope",
            *TOPIC,
        ],
        "nope does not exist",
    ),
    # the store
    _case("out-is-a-file", ["run", "no-filter", *SMALL], "is not a directory"),
    _case(
        "out-under-a-file",
        ["run", "no-filter", *SMALL, "--out", "{store}/sub"],
        "is not a directory",
    ),
    _case("run-corrupt-record", NO_FILTER, "is unreadable (truncated or invalid JSON"),
    _case("attack-missing-run", ["attack", "r1", "--suite", "quick"], "no record for run 'r1'"),
    _case("attack-corrupt-record", ["attack", "r1", "--suite", "quick"], "r1.json.bad"),
    _case(
        "resume-corrupt-checkpoint",
        [*NO_FILTER, "--resume"],
        "is corrupt or unreadable (truncated, damaged or not written by unlearnbench)",
    ),
    # values accepted before that crashed later or meant nothing
    _case("beta1-over-1", ["run", "sgtm", "--set", "beta1=1.5"], "beta1 must be in [0, 1)"),
    _case("beta1-one", ["run", "sgtm", "--set", "beta1=1"], "beta1 must be in [0, 1), got 1.0"),
    _case("beta2-negative", ["run", "sgtm", "--set", "beta2=-0.1"], "beta2 must be in [0, 1)"),
    _case("weight-decay-negative", ["run", "sgtm", "--set", "weight_decay=-0.1"], "must be >= 0"),
    _case("seed-overflow", ["run", "sgtm", "--seed", "9" * 20], "seed must be in [0, 4294967295]"),
    _case("seed-negative", ["run", "sgtm", "--seed", "-1"], "seed must be in [0, 4294967295]"),
    _case("context-one", ["run", "sgtm", "--set", "context=1"], "or at least 2, got 1"),
    _case("device-cuda-absent", ["run", "sgtm", "--set", "device=cuda:99"], "this machine has"),
    _case("device-cuda-word", ["run", "sgtm", "--set", "device=cuda:abc"], "got 'cuda:abc'"),
    _case("device-cuda-negative", ["run", "sgtm", "--set", "device=cuda:-1"], "got 'cuda:-1'"),
    _case("vocab-negative", ["run", "sgtm", "--set", "vocab_size=-5"], "vocab_size must be >= 1"),
    _case("vocab-zero", ["run", "sgtm", "--set", "vocab_size=0"], "vocab_size must be >= 1"),
    _case("stories-negative", ["run", "sgtm", "--set", "n_stories=-1"], "n_stories must be >= 0"),
    _case(
        "files-text-column-empty",
        ["run", "no-filter", "-b", "files", "--set", "path={A}/bad.jsonl", "--set", "text_column="],
        "text_column must name a column",
    ),
    _case(
        "files-max-tokens-negative",
        [
            "run",
            "no-filter",
            "-b",
            "files",
            "--set",
            "path={A}/bad.jsonl",
            "--set",
            "max_tokens=-1",
        ],
        "max_tokens must be >= 0, got -1",
    ),
    _case("out-empty", ["run", "no-filter", *SMALL, "--out", ""], "an empty folder name"),
    _case("attack-out-empty", ["attack", "r1", "--out", ""], "an empty folder name"),
    _case("leaderboard-dest-empty", ["leaderboard", "--dest", ""], "an empty folder name"),
    # the environment
    _case("env-unknown", ["env:UNLEARNBENCH_PROGRES=bar", "run", "sgtm"], "did you mean"),
    _case("env-progress", ["env:UNLEARNBENCH_PROGRESS=loud", "run", "sgtm"], "got 'loud'"),
    _case("env-log-every-zero", ["env:UNLEARNBENCH_LOG_EVERY=0", "run", "sgtm"], "got '0'"),
    _case("env-log-every-word", ["env:UNLEARNBENCH_LOG_EVERY=often", "list", "models"], "often"),
    _case(
        "env-cache-file",
        ["env:UNLEARNBENCH_CACHE={A}/a-file", "run", "sgtm"],
        "{A}/a-file is a file, not a cache directory",
    ),
    _case(
        "env-cache-under-file",
        ["env:UNLEARNBENCH_CACHE={A}/a-file/sub", "run", "sgtm"],
        "{A}/a-file is a file, not a cache directory",
    ),
    # a post-hoc run's mistakes, found before its default base (no-filter) is trained: the store
    # stays empty
    _case(
        "posthoc-forget-tokens",
        ["run", "rmu", *SMALL, "--set", "forget_tokens=bogus"],
        "rmu: forget_tokens must be one of all, ratio, list, got 'bogus'",
    ),
    _case(
        "posthoc-token-list-empty",
        ["run", "grad-ascent", *SMALL, "--set", "forget_tokens=list"],
        "forget_tokens=list needs forget_token_list",
    ),
    _case(
        "posthoc-token-position",
        ["run", "npo", *SMALL, "--set", "forget_token_position=middle"],
        "forget_token_position must be one of",
    ),
    _case(
        "posthoc-coef-scale",
        ["run", "rmu", *SMALL, "--set", "coef_scale=bogus"],
        "coef_scale must be one of",
    ),
    _case("posthoc-layer", ["run", "rmu", *SMALL, "--set", "layer=99"], "layer 99 outside 0..3"),
    _case("posthoc-npo-beta", ["run", "npo", *SMALL, "--set", "beta=0"], "beta must be > 0"),
    _case(
        "posthoc-lens-loss",
        ["run", "tuned-lens", *SMALL, "--set", "lens_loss=mse"],
        "lens_loss must be 'kl' or 'ce'",
    ),
    _case(
        "posthoc-breaker-layers",
        ["run", "circuit-breakers", *SMALL, "--set", "target_layers=9"],
        "target_layers (9,) outside 0..3",
    ),
    _case(
        "posthoc-transfer-tolerance",
        ["run", "checkpoint-transfer", *SMALL, "--set", "checkpoint_tolerance=1.5"],
        "checkpoint_tolerance must be in [0, 1), got 1.5",
    ),
    _case(
        "posthoc-transfer-retain",
        ["run", "checkpoint-transfer", *SMALL, "--set", "retain_loss=l1"],
        "retain_loss must be one of",
    ),
    _case(
        "posthoc-resume-corrupt",
        ["run", "rmu", *SMALL, "--set", "checkpoint_every=1", "--resume"],
        "is corrupt or unreadable",
    ),
    _case("suite-unsaved", ["run", "no-filter", *SMALL, "--suite", "quick"], "save_model=false"),
    _case("posthoc-suite-unsaved", ["run", "rmu", *SMALL, "--suite", "quick"], "keeps none"),
    _case("sweep-suite-unsaved", ["sweep", "{A}/sweep-unsaved.yaml"], "save_model=false keeps"),
    # malformed YAML: not UTF-8, or values of the wrong type
    _case("config-not-utf8", ["run", "sgtm", "--config", "{A}/latin1.yaml"], "is not UTF-8"),
    _case("config-int-key", ["run", "sgtm", "--config", "{A}/int-key.yaml"], "must be names"),
    _case(
        "config-section-int-key",
        ["run", "sgtm", "--config", "{A}/section-int-key.yaml"],
        "keys must be names",
    ),
    _case(
        "suite-not-utf8",
        ["run", "no-filter", "--suite", "{A}/latin1-suite.yaml"],
        "latin1-suite.yaml is not UTF-8 text",
    ),
    _case(
        "suite-options-list",
        ["run", "no-filter", "--suite", "{A}/suite-options-list.yaml"],
        "`options:` of relearn must be a mapping",
    ),
    _case(
        "suite-eval-list",
        ["run", "no-filter", "--suite", "{A}/suite-eval-list.yaml"],
        "every entry needs `eval: NAME`",
    ),
    _case(
        "suite-key-map",
        ["attack", "r1", "--suite", "{A}/suite-key-map.yaml"],
        "`key:` of relearn must be a name",
    ),
    _case("sweep-not-utf8", ["sweep", "{A}/latin1-sweep.yaml"], "is not UTF-8 text"),
    _case(
        "sweep-benchmark-list",
        ["sweep", "{A}/sweep-benchmark-list.yaml"],
        "benchmark must be a name",
    ),
    _case("sweep-model-map", ["sweep", "{A}/sweep-model-map.yaml"], "model must be a name"),
    _case("sweep-seed-fraction", ["sweep", "{A}/sweep-seed-fraction.yaml"], "got [1.5]"),
    _case("sweep-seed-bool", ["sweep", "{A}/sweep-seed-bool.yaml"], "got [True]"),
    _case("sweep-set-int-key", ["sweep", "{A}/sweep-set-int-key.yaml"], "keys of set must be"),
    _case("sweep-method-int-key", ["sweep", "{A}/sweep-method-int-key.yaml"], "a method is a"),
    # names that reach the file system; records that are JSON but not usable run records
    _case(
        "attack-run-id-traversal",
        ["attack", "../../etc/passwd", "--suite", "quick"],
        "run id '../../etc/passwd' is not a safe file name",
    ),
    _case(
        "attack-record-of-another-run",
        ["attack", "r1", "--suite", "quick"],
        "its run_id 'r2' is not its file name",
    ),
    _case(
        "attack-record-wrong-type",
        ["attack", "r1", "--suite", "quick"],
        "(field 'config' holds list [])",
    ),
    _case(
        "attack-record-unsafe-name",
        ["attack", "r1", "--suite", "quick"],
        "field 'benchmark' \"../x\" is not a safe file name",
    ),
    # a damaged saved model as a base: one line naming the file
    _case(
        "base-truncated-weights",
        ["run", "rmu", "--set", "base={A}/truncated", *SMALL],
        "model.safetensors is damaged",
    ),
    _case(
        "base-no-weights",
        ["run", "rmu", "--set", "base={A}/no-weights", *SMALL],
        "has no weights file (model.safetensors)",
    ),
    _case(
        "base-config-not-json",
        ["run", "rmu", "--set", "base={A}/bad-config", *SMALL],
        "{A}/bad-config/config.json is not valid JSON",
    ),
    _case(
        "base-config-other-model",
        ["run", "rmu", "--set", "base={A}/bert-config", *SMALL],
        "config.json describes a 'bert' model, not GPT-Neo",
    ),
    _case(
        "base-missing-tensor",
        ["run", "rmu", "--set", "base={A}/missing-tensor", *SMALL],
        "model.safetensors lacks 1 tensor(s)",
    ),
    _case("list-defaults-models", ["list", "models", "--defaults"], "of methods only"),
    _case(
        "attack-store-unwritable",
        ["attack", "r1", "--suite", "quick"],
        "cannot write the run store {store}: {store}/models is not writable",
    ),
]


def _tree(root: Path) -> dict[str, bytes | None]:
    """Every path under `root` (and `root` itself): file contents, None for a folder."""
    if not root.exists():
        return {}
    if root.is_file():
        return {".": root.read_bytes()}
    out: dict[str, bytes | None] = {".": None}
    for p in sorted(root.rglob("*")):
        out[str(p.relative_to(root))] = p.read_bytes() if p.is_file() else None
    return out


def _invoke(args: list[str], store: Path):
    """Run the CLI on `args` (leading `env:NAME=VALUE` items set the environment) in `store`."""
    env = dict(a[len("env:") :].split("=", 1) for a in args if a.startswith("env:"))
    args = [a for a in args if not a.startswith("env:")]
    if args[0] in STORE_COMMANDS and "--out" not in args:
        args = [*args, "--out", str(store)]
    return CliRunner().invoke(app, args, env=env)


@pytest.mark.parametrize("args, expected", BAD_INPUTS)
def test_bad_input_is_one_red_line_exit_2_and_leaves_nothing(
    request, tmp_path, assets, args, expected, monkeypatch
):
    import unlearnbench.runner as runner

    def no_training(*args, **kwargs):  # refused before anything trains: a base included
        raise AssertionError("an input that should have been refused is being trained")

    monkeypatch.setattr(runner, "train", no_training)
    store = tmp_path / "runs"
    case_id = request.node.callspec.id
    if case_id in PREPARE:
        PREPARE[case_id](store)
    before = _tree(store)
    fill = {"A": str(assets), "store": str(store)}
    result = _invoke([a.format(**fill) for a in args], store)
    output = " ".join(result.output.split())  # rich wraps long lines
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # no traceback
    lines = [x for x in result.output.strip().splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert "Traceback" not in result.output and "weights_only" not in result.output
    assert expected.format(**fill) in output, result.output
    assert _tree(store) == before, "a refused input changed the store"


def test_the_table_covers_a_hundred_distinct_inputs():
    ids = [p.id for p in BAD_INPUTS]
    assert len(set(ids)) == len(ids) >= 100
    documented = __doc__.split("| input |")[1]
    for case_id in ids:
        assert f"| {case_id} |" in documented, f"{case_id} is missing from the docstring table"


def test_resume_without_a_checkpoint_says_it_starts_fresh(tmp_path):
    result = _invoke(["run", "no-filter", *SMALL, "--resume"], tmp_path / "runs")
    assert result.exit_code == 0, result.output
    assert "--resume: no checkpoint of no-filter__" in result.output
    assert "starting from step 0" in " ".join(result.output.split())


def test_the_readme_states_the_exit_code_of_bad_input():
    import inspect

    from unlearnbench.cli import fail

    code = inspect.signature(fail).parameters["code"].default
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    bad_input = readme.split("**Bad input**", 1)[1].split("\n\n", 1)[0]
    assert f"exit code {code}" in " ".join(bad_input.split()), bad_input


def test_recall_zero_leaves_no_forget_labels_for_a_plan_that_needs_them():
    data = [g for g in groups() if g.label == "retain"]
    obj = Objective(model=tiny_gpt_neo(), batch_plan={"forget": 0.5, "retain": 0.5})
    with pytest.raises(ValueError, match="no training blocks for 'forget'"):
        train(obj, data, TrainConfig(steps=1, batch_size=4), 0, EOS, progress=False)


def test_nan_loss_stops_naming_the_step_and_the_last_good_checkpoint(tmp_path):
    calls = {"n": 0}

    def loss(model, inputs, targets, label):
        calls["n"] += 1
        out = lm_loss(model, inputs, targets)
        return out * float("nan") if calls["n"] > 5 else out  # one micro-batch per step

    cfg = TrainConfig(steps=10, batch_size=4, micro_batch_size=4, warmup_steps=0)
    path = tmp_path / "ckpt" / "checkpoint.pt"
    ckpt = Checkpointer(path, every=2, resume=False, run_key="r")
    obj = Objective(model=tiny_gpt_neo(), loss=loss, trains_on=lambda g: g.label == "retain")
    with pytest.raises(FloatingPointError) as err:
        train(obj, groups(), cfg, 0, EOS, progress=False, checkpoint=ckpt)
    message = str(err.value)
    assert "at step 6" in message and f"{path} (step 4)" in message, message
    assert torch.load(path, weights_only=True)["step"] == 4


def test_infinite_loss_is_reported_by_the_cli_without_a_record(tmp_path, monkeypatch):
    import unlearnbench.runner as runner

    def diverge(*args, **kwargs):
        raise FloatingPointError("training diverged: loss inf at step 3; no checkpoint was written")

    monkeypatch.setattr(runner, "train", diverge)
    result = _invoke(["run", "no-filter", *SMALL], tmp_path / "runs")
    assert result.exit_code != 0
    lines = [x for x in result.output.strip().splitlines() if x.strip()]
    assert len(lines) == 1 and "at step 3" in lines[0], result.output
    assert not list((tmp_path / "runs").rglob("*.json"))


def test_resume_does_not_change_an_uninterrupted_single_process_run(tmp_path):
    """A Checkpointer that writes but never resumes leaves the run bit-identical."""
    cfg = TrainConfig(steps=4, batch_size=4, micro_batch_size=2, warmup_steps=1)
    a, b = tiny_gpt_neo(), tiny_gpt_neo()
    train(Objective(model=a), groups(), cfg, 0, EOS, progress=False)
    ckpt = Checkpointer(tmp_path / "c.pt", every=1, resume=False, run_key="r")
    train(Objective(model=b), groups(), cfg, 0, EOS, progress=False, checkpoint=ckpt)
    for (name, p), q in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q), name


def test_resume_in_process_continues_exactly(tmp_path):
    """Train 3 of 6 steps, checkpoint, rebuild everything, resume: equal to 6 steps at once."""
    cfg = TrainConfig(steps=6, batch_size=4, micro_batch_size=2, warmup_steps=2)
    full = tiny_gpt_neo()
    ref = train(Objective(model=full), groups(n_unlabeled=4), cfg, 0, EOS, progress=False)

    class Stop(Exception):
        pass

    def stop_after_three(step, total):
        if step == 3:
            raise Stop

    path = tmp_path / "c.pt"
    first = Objective(model=tiny_gpt_neo(), on_step=stop_after_three)
    with pytest.raises(Stop):
        train(
            first,
            groups(n_unlabeled=4),
            cfg,
            0,
            EOS,
            progress=False,
            checkpoint=Checkpointer(path, every=3, resume=False, run_key="r"),
        )
    again = tiny_gpt_neo(seed=5)  # a different init: everything must come from the checkpoint
    res = train(
        Objective(model=again),
        groups(n_unlabeled=4),
        cfg,
        0,
        EOS,
        progress=False,
        checkpoint=Checkpointer(path, every=3, resume=True, run_key="r"),
    )
    assert res.resumed_from == 3
    assert [h["loss"] for h in res.history] == [h["loss"] for h in ref.history]
    for (name, p), q in zip(full.named_parameters(), again.parameters(), strict=True):
        assert torch.equal(p, q), name
    assert dataclasses.asdict(res)["tokens_seen"] == ref.tokens_seen
