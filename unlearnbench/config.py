"""Run configuration: frozen dataclasses, `--set key=value` overrides, and the config hash.

A run is fully described by one resolved `RunConfig`. Resolution layers, lowest first:
dataclass defaults < the method's own training defaults < a YAML config file < `--set` overrides.
Keys are field names of `TrainConfig`, `LabelConfig`, the method's options and the benchmark's
options; a key may be qualified (`train.lr`, `labels.recall`, `method.forget_mlp_dim`,
`benchmark.n_stories`) and must be where a bare name is ambiguous. `base` is the run's own: where a
post-hoc method starts (`scratch`, `no-filter`, or a saved model's path).
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import hashlib
import json
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path

from unlearnbench.suggest import unknown_name


class ConfigError(ValueError):
    """A user mistake in a config: unknown key, bad value, value out of range."""


@dataclass(frozen=True)
class TrainConfig:
    # ours: the CPU budget, ~1.2M tokens (about 3 minutes of `tiny` on 2 cores). Facts form in
    # `tiny` only after some hundreds of statements each, and more optimizer steps per token help
    # (docs/storyworld-calibration.md): 1,200 steps of 4 blocks learn the built-in benchmarks'
    # facts where 200 steps of 16 left them at chance. Paper presets set their own (presets/*.yaml)
    steps: int = 1200
    batch_size: int = 4  # blocks per optimizer step (the global batch); ours, as `steps`
    # blocks per forward/backward, accumulated up to batch_size; ours: 4 measured ~1.5x faster than
    # 16 per token on a 2-core CPU (tiny, context 256), and the update is the same up to rounding,
    # except where a loss couples a forward's rows (orthogonal circuit breakers' orthogonality
    # term: that method sets its reference's 4)
    micro_batch_size: int = 4
    lr: float = 1e-3  # ours for the CPU presets; paper presets set their own (methods/*.yaml)
    warmup_steps: int = 100  # ours: ~8% of the steps (the calibration's warmup)
    # SGTM reference: trainer.py:400 "LinearLR(optim_v, start_factor=0.1, end_factor=1.0,"
    warmup_start_factor: float = 0.1
    min_lr_ratio: float = 0.0  # SGTM reference: trainer.py:401 "eta_min=0)", cosine to 0
    # decay after warmup: "cosine" (SGTM reference, trainer.py:401 "CosineAnnealingLR(optim_v") | "linear"
    # (HF Trainer's default lr_scheduler_type, for the EleutherAI unlearn methods) | "constant"
    lr_decay: str = "cosine"
    # SGTM reference: selective-gradient-masking src/sgtm/train/trainer.py:360 "weight_decay=0.1,"
    weight_decay: float = 0.1
    # which parameters decay: "matrices" = ours, nanoGPT's grouping (no decay on biases and layer
    # norms; for GPT-Neo the same split as HF Trainer's get_decay_parameter_names); "all" = every
    # parameter, as the SGTM reference (trainer.py:358 "model.parameters(),") and the gradient
    # routing TinyStories script (kxcloud/gradient-routing projects/tinystories/tinystories_era.py:476)
    # do: their methods set "all" in their training defaults
    weight_decay_groups: str = "matrices"
    # SGTM reference: trainer.py:361 "betas=(0.9, 0.95),"
    beta1: float = 0.9
    beta2: float = 0.95
    # max gradient norm, 0 = no clipping. SGTM reference: none (trainer.py:556 "loss.backward()",
    # then :563 'optimizers["joint"].step()'); nor the gradient routing TinyStories script
    # (tinystories_era.py:584 "loss.backward()", :589 "optim.step()"). Methods built on HF Trainer
    # set 1.0 (TrainingArguments.max_grad_norm's default) in their training defaults
    grad_clip: float = 0.0
    context: int = 0  # tokens per block; 0 = the model preset's context
    eval_every: int = 0  # steps between periodic evaluations (0 = only at the end)
    eval_blocks: int = 48  # test blocks per split in every loss evaluation
    device: str = "cpu"  # ours: CPU unless told (the references train on GPUs)
    bf16: bool = False  # bf16 autocast
    compile: bool = False  # torch.compile the model (ours: off, it changes numbers by rounding)
    # fused attention and GELU kernels (models/kernels.py): the same functions as HF's eager GPT-Neo
    # up to rounding (every method trains the same model to 1e-4: tests/test_fused_kernels.py),
    # faster on CPU and GPU (scripts/bench_throughput.py --fused). Ours: on; false = HF's eager code
    fused_kernels: bool = True
    checkpoint_every: int = 0  # steps between checkpoints (0 = none); not part of the config hash
    save_model: bool = True  # ours: keep the final model (HF format) for evaluations
    # steps between saved snapshots of the model under training, with their losses (0 = none);
    # they add files and record entries but do not change the run: not part of the config hash
    snapshot_every: int = 0
    # added after runs were recorded: left out of the hash at their default (see `options_dict`)
    # (every run recorded before weight_decay_groups existed used "matrices": same id, same numbers).
    # fused_kernels is always hashed: its default changed (eager before), so the runs recorded with
    # eager kernels by default keep ids that no fused run can take
    OMIT_AT_DEFAULT: typing.ClassVar[tuple[str, ...]] = ("weight_decay_groups", "lr_decay")


_UNHASHED_TRAIN_FIELDS = ("checkpoint_every", "snapshot_every")


@dataclass(frozen=True)
class LabelConfig:
    recall: float = 1.0  # P(forget document labeled forget)
    retain_label_rate: float = 0.25  # P(retain document labeled retain); SGTM TinyStories: 25%
    adjacent_label_rate: float = 0.0  # P(adjacent document labeled retain)
    false_positive_rate: float = 0.0  # P(adjacent document mislabeled forget)


# where a run starts (`RunConfig.base`): a freshly initialized model, the matching no-filter run
# (results/matching.py), or a saved model (a path or hub name)
SCRATCH, NO_FILTER = "scratch", "no-filter"
BASE_DEFAULTS = {"training": SCRATCH, "posthoc": NO_FILTER}  # by method kind
# the keys that set it (`method.base`: where configs put it when it was a method option; the last
# one present wins)
RUN_KEYS = ("method.base", "base")


@dataclass(frozen=True)
class RunConfig:
    method: str
    benchmark: str
    model: str
    seed: int
    train: TrainConfig = TrainConfig()
    labels: LabelConfig = LabelConfig()
    method_options: dict = field(default_factory=dict)
    benchmark_options: dict = field(default_factory=dict)
    # the method's version (`register_method(version=...)`): a change that alters a method's
    # numbers bumps it, so records made before are not served as current. In the hash from 2 on.
    method_version: int = 1
    # where the run starts: "" = its method's default (BASE_DEFAULTS), else "scratch", "no-filter"
    # or a saved model's path or hub name (post-hoc methods only; see `resolve_base`)
    base: str = ""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def config_hash(self) -> str:
        """Hash of everything but the seed: runs that differ only by seed share it."""
        d = self.to_dict()
        d.pop("seed")
        if d["method_version"] == 1:  # runs recorded before versions existed keep their ids
            d.pop("method_version")
        if not d["base"]:  # the method's default start: left out, as before the setting existed
            d.pop("base")
        d["train"] = options_dict(self.train)
        for name in _UNHASHED_TRAIN_FIELDS:  # settings that cannot change a run's results
            d["train"].pop(name, None)
        blob = json.dumps(d, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    @property
    def run_id(self) -> str:
        return f"{self.method}__{self.benchmark}__{self.model}__s{self.seed}__{self.config_hash}"

    @staticmethod
    def from_dict(d: dict) -> RunConfig:
        d = upgrade_config(d)
        return RunConfig(
            method=d["method"],
            benchmark=d["benchmark"],
            model=d["model"],
            seed=int(d["seed"]),
            train=TrainConfig(**d.get("train", {})),
            labels=LabelConfig(**d.get("labels", {})),
            method_options=dict(d.get("method_options", {})),
            benchmark_options=dict(d.get("benchmark_options", {})),
            method_version=int(d.get("method_version", 1)),
            base=str(d.get("base") or ""),
        )


def upgrade_config(d: dict) -> dict:
    """A recorded run config in today's layout: records written before the run-level `base`
    setting hold it as the method option `base` ("" = the no-filter run)."""
    options = d.get("method_options") or {}
    if "base" not in options:
        return d
    options = dict(options)
    old = options.pop("base")
    return {**d, "method_options": options, "base": d.get("base") or str(old or "")}


def resolve_base(base: str, kind: str, method: str) -> str:
    """The run-level base setting for a method of `kind`, with the kind's default as "" (so one
    run has one id); a training-time method starts from scratch and refuses any other base."""
    base = str(base or "").strip()
    if base in ("", BASE_DEFAULTS[kind]):
        return ""
    if kind == "training":
        raise ConfigError(
            f"{method} is a training-time method: it trains from scratch, so base={base!r} does "
            "not apply (base is for post-hoc methods)"
        )
    return base


def parse_value(raw, typ, key: str):
    """Parse a command-line string (or a YAML value) into the field's type."""
    origin = typing.get_origin(typ)
    args = typing.get_args(typ)
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        if raw is None or (isinstance(raw, str) and raw.lower() in ("none", "null", "")):
            if type(None) in args:
                return None
        for a in args:
            if a is type(None):
                continue
            try:
                return parse_value(raw, a, key)
            except ConfigError:
                continue
        raise ConfigError(f"bad value for {key}: {raw!r}")
    if origin in (tuple, list):
        inner = args[0] if args else str
        items = raw if isinstance(raw, list | tuple) else [s for s in str(raw).split(",") if s]
        return tuple(parse_value(x, inner, key) for x in items)
    try:
        if typ is bool:
            if isinstance(raw, bool):
                return raw
            s = str(raw).lower()
            if s in ("1", "true", "yes", "on"):
                return True
            if s in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if typ is int:
            if isinstance(raw, float) and not raw.is_integer():
                raise ValueError
            if isinstance(raw, bool):
                raise ValueError
            return int(float(raw)) if isinstance(raw, str) and "e" in raw.lower() else int(raw)
        if typ is float:
            v = float(raw)
            if not math.isfinite(v):  # NaN and infinities are never meaningful settings
                raise ValueError
            return v
        if typ is str:
            return str(raw)
    except (TypeError, ValueError, OverflowError):  # OverflowError: int("1e999")
        name = getattr(typ, "__name__", str(typ))
        raise ConfigError(f"bad value for {key}: {raw!r} is not a valid {name}") from None
    return raw


def _fields(cls) -> dict[str, type]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def parse_assignments(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def load_config_file(path: str | Path) -> dict:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    data = read_yaml(p, "config file") or {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p} must hold a mapping of key: value")
    flat: dict = {}
    for k, v in data.items():
        if not isinstance(k, str) or (isinstance(v, dict) and not all(map(_is_str, v))):
            raise ConfigError(f"config file {p}: keys must be names, got {k!r}: {v!r}")
        if k in ("train", "labels", "method", "benchmark") and isinstance(v, dict):
            flat.update({f"{k}.{kk}": vv for kk, vv in v.items()})
        elif k in ("source", "sources", "description", "notes"):
            continue  # documentation in preset files
        else:
            flat[k] = v
    return flat


def _is_str(x) -> bool:
    return isinstance(x, str)


def read_yaml(path: Path, what: str):
    """The YAML document in `path` (a config file, a suite, a sweep spec: `what`), or a one-line
    ConfigError naming the file when it cannot be read, is not UTF-8 or is not YAML."""
    import yaml

    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{what} {path} is not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise ConfigError(f"cannot read {what} {path}: {e.strerror or e}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{what} {path} is not valid YAML: {str(e).splitlines()[0]}") from None


def resolve(
    method: str,
    benchmark: str,
    model: str,
    seed: int,
    overrides: dict | None = None,
    method_options_cls=None,
    benchmark_options_cls=None,
    method_train_defaults: dict | None = None,
    method_version: int = 1,
    method_kind: str | None = None,
) -> RunConfig:
    """Apply overrides (already layered by the caller: defaults < file < --set) to a RunConfig.
    `base` (or `method.base`, where presets written before it was a run-level setting put it) is
    the run's base setting, checked against `method_kind` when given."""
    sections = {
        "train": _fields(TrainConfig),
        "labels": _fields(LabelConfig),
        "method": _fields(method_options_cls) if method_options_cls else {},
        "benchmark": _fields(benchmark_options_cls) if benchmark_options_cls else {},
    }
    values: dict[str, dict] = {s: {} for s in sections}
    for k, v in (method_train_defaults or {}).items():
        values["train"][k] = v
    overrides = dict(overrides or {})
    base = ""
    for key in RUN_KEYS:
        if key in overrides:
            base = overrides.pop(key)
    base = "" if base is None else str(base)
    if method_kind is not None:
        base = resolve_base(base, method_kind, method)
    for key, raw in overrides.items():
        section, name = _locate(key, sections)
        values[section][name] = parse_value(raw, sections[section][name], key)
    try:
        train = TrainConfig(**values["train"])
        labels = LabelConfig(**values["labels"])
        mopts = method_options_cls(**values["method"]) if method_options_cls else None
        bopts = benchmark_options_cls(**values["benchmark"]) if benchmark_options_cls else None
    except TypeError as e:
        raise ConfigError(str(e)) from None
    cfg = RunConfig(
        method=method,
        benchmark=benchmark,
        model=model,
        seed=seed,
        train=train,
        labels=labels,
        method_options=options_dict(mopts) if mopts else {},
        benchmark_options=dataclasses.asdict(bopts) if bopts else {},
        method_version=method_version,
        base=base,
    )
    validate(cfg)
    return cfg


def options_dict(options) -> dict:
    """A method's options as the run config holds them. Fields its class names in the ClassVar
    `OMIT_AT_DEFAULT` are left out while they hold their default: an option added to a method later
    does not change the hash (the name) of the runs recorded before it."""
    d = dataclasses.asdict(options)
    defaults = {f.name: f.default for f in dataclasses.fields(options)}
    for name in getattr(type(options), "OMIT_AT_DEFAULT", ()):
        if d[name] == defaults[name]:
            del d[name]
    return d


def _locate(key: str, sections: dict[str, dict]) -> tuple[str, str]:
    if "." in key:
        section, name = key.split(".", 1)
        if section in sections and name in sections[section]:
            return section, name
    else:
        hits = [s for s, f in sections.items() if key in f]
        if len(hits) == 1:
            return hits[0], key
        if len(hits) > 1:
            raise ConfigError(
                f"key {key!r} is ambiguous; qualify it as one of "
                + ", ".join(f"{s}.{key}" for s in hits)
            )
    valid = sorted({n for f in sections.values() for n in f} | {"base"})
    raise ConfigError(unknown_name("key", key, valid, 0.6, closest_to=key.split(".")[-1]))


# seeds are 32-bit unsigned integers: what every generator a run seeds (torch, numpy) accepts
MAX_SEED = 2**32 - 1
# ours: a block predicts each token from those before it; with one token there is nothing before
MIN_CONTEXT = 2


def validate(cfg: RunConfig) -> None:
    t, lab = cfg.train, cfg.labels
    if not 0 <= cfg.seed <= MAX_SEED:
        raise ConfigError(f"seed must be in [0, {MAX_SEED}], got {cfg.seed}")
    for name in ("recall", "retain_label_rate", "adjacent_label_rate", "false_positive_rate"):
        v = getattr(lab, name)
        if not 0.0 <= v <= 1.0:
            raise ConfigError(f"{name} must be in [0, 1], got {v}")
    if lab.adjacent_label_rate + lab.false_positive_rate > 1.0:
        raise ConfigError("adjacent_label_rate + false_positive_rate must be at most 1")
    if t.steps < 1:  # 0 steps would record an untrained model as if it were a result
        raise ConfigError(f"steps must be >= 1, got {t.steps}")
    if t.batch_size < 1 or t.micro_batch_size < 1:
        raise ConfigError("batch_size and micro_batch_size must be >= 1")
    if t.micro_batch_size > t.batch_size:  # a micro-batch is a part of the batch
        raise ConfigError(
            f"micro_batch_size ({t.micro_batch_size}) must be at most batch_size ({t.batch_size})"
        )
    if t.lr <= 0:
        raise ConfigError(f"lr must be > 0, got {t.lr}")
    if t.checkpoint_every < 0:
        raise ConfigError(f"checkpoint_every must be >= 0, got {t.checkpoint_every}")
    if t.snapshot_every < 0:
        raise ConfigError(f"snapshot_every must be >= 0, got {t.snapshot_every}")
    if t.warmup_steps < 0 or t.eval_every < 0 or t.eval_blocks < 1 or t.context < 0:
        raise ConfigError("warmup_steps, eval_every, context must be >= 0 and eval_blocks >= 1")
    if not 0.0 <= t.min_lr_ratio <= 1.0 or not 0.0 <= t.warmup_start_factor <= 1.0:
        raise ConfigError("min_lr_ratio must be in [0, 1] and warmup_start_factor in [0, 1]")
    if t.lr_decay not in ("cosine", "linear", "constant"):
        raise ConfigError(f"lr_decay must be 'cosine', 'linear' or 'constant', got {t.lr_decay!r}")
    if t.weight_decay_groups not in ("all", "matrices"):
        raise ConfigError(
            f"weight_decay_groups must be 'all' or 'matrices', got {t.weight_decay_groups!r}"
        )
    if t.grad_clip < 0:
        raise ConfigError(f"grad_clip must be >= 0 (0 = no clipping), got {t.grad_clip}")
    for name in ("beta1", "beta2"):  # Adam's moving averages: a rate in [0, 1) (torch's rule)
        if not 0.0 <= getattr(t, name) < 1.0:
            raise ConfigError(f"{name} must be in [0, 1), got {getattr(t, name)}")
    if t.weight_decay < 0:  # a negative decay grows the weights
        raise ConfigError(f"weight_decay must be >= 0, got {t.weight_decay}")
    if 0 < t.context < MIN_CONTEXT:
        raise ConfigError(
            f"context must be 0 (the model's) or at least {MIN_CONTEXT}, got {t.context}"
        )
    check_device(t.device)
    _validate_benchmark_options(cfg.benchmark, cfg.benchmark_options)
    _validate_context(cfg)


# set while a sweep plans runs that will train on other machines (SLURM jobs): their CUDA device
# is the job's, not this machine's (a cluster's login node has none)
_DEVICE_ELSEWHERE: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "device_elsewhere", default=False
)


@contextlib.contextmanager
def device_checked_elsewhere(elsewhere: bool = True):
    """Within it (when `elsewhere`), `check_device` checks a device's name but not that this
    machine has it."""
    token = _DEVICE_ELSEWHERE.set(elsewhere)
    try:
        yield
    finally:
        _DEVICE_ELSEWHERE.reset(token)


def check_device(device: str) -> None:
    """`cpu`, or a CUDA device this machine has (a missing one would fail at the first tensor)."""
    import re

    found = re.fullmatch(r"cuda(?::(\d+))?", device)
    if device != "cpu" and not found:
        raise ConfigError(f"device must be cpu, cuda or cuda:N, got {device!r}")
    if found and not _DEVICE_ELSEWHERE.get():
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(found.group(1) or 0)
        if index >= count:
            have = f"{count} CUDA device(s)" if count else "no CUDA device"
            raise ConfigError(f"device={device}: this machine has {have}")


# benchmark options that count something (documents, stories, tokens): never negative, and a
# vocabulary of at least one token; a text column is named
_COUNT_PREFIXES = ("n_", "max_")


def _validate_benchmark_options(benchmark: str, options: dict) -> None:
    for name, value in options.items():
        if isinstance(value, bool):
            continue
        if name == "vocab_size" and isinstance(value, int) and value < 1:
            raise ConfigError(f"benchmark {benchmark!r}: vocab_size must be >= 1, got {value}")
        if name.startswith(_COUNT_PREFIXES) and isinstance(value, int) and value < 0:
            raise ConfigError(f"benchmark {benchmark!r}: {name} must be >= 0, got {value}")
        if name.endswith("_column") and name != "id_column" and not str(value).strip():
            raise ConfigError(f"benchmark {benchmark!r}: {name} must name a column, got ''")


# the environment variables the harness reads (progress.py, data/tokenizer.py; the last one the
# test suite's, set by CI): a misspelt one would be ignored without a word
ENVIRONMENT = (
    "UNLEARNBENCH_CACHE",
    "UNLEARNBENCH_LOG_EVERY",
    "UNLEARNBENCH_PROGRESS",
    "UNLEARNBENCH_OLDEST_PYTHON",
)


def check_environment(environ) -> None:
    """Refuse an `UNLEARNBENCH_*` variable the harness does not read, or a value it cannot use."""
    from unlearnbench.progress import MODES

    for name in sorted(k for k in environ if k.startswith("UNLEARNBENCH_")):
        value = environ[name].strip()
        if name not in ENVIRONMENT:
            raise ConfigError(unknown_name("variable", name, ENVIRONMENT, 0.6))
        if name == "UNLEARNBENCH_PROGRESS" and value.lower() not in (*MODES, ""):
            raise ConfigError(f"{name} must be one of {', '.join(MODES)}, got {value!r}")
        if name == "UNLEARNBENCH_LOG_EVERY" and value and not (value.isdigit() and int(value)):
            raise ConfigError(f"{name} must be a whole number of steps >= 1, got {value!r}")
        if name == "UNLEARNBENCH_CACHE" and value:
            p = Path(value).expanduser().absolute()
            while not p.exists() and p != p.parent:
                p = p.parent
            if not p.is_dir():
                raise ConfigError(f"{name}={value}: {p} is a file, not a cache directory")


def _validate_context(cfg: RunConfig) -> None:
    """A block longer than the model's positions would fail deep in training: refuse it now. A
    post-hoc base given by path or hub name is checked against its own positions when loaded."""
    from unlearnbench.models.presets import MODEL_PRESETS

    preset = MODEL_PRESETS.get(cfg.model)
    if preset is None or cfg.base not in ("", "scratch", "no-filter"):
        return
    if cfg.train.context > preset.context:
        raise ConfigError(
            f"context={cfg.train.context} is longer than model {cfg.model}'s "
            f"{preset.context} positions"
        )
