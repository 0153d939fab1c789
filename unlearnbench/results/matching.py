"""The reference runs a run is measured against: its matching `no-filter` run and perfect filter.

One rule, used by the runner (the base a post-hoc run starts from, the references of an attack),
the leaderboard's deltas and the figures' reference lines. A pure function of run records (or run
configs as dicts, `RunConfig.to_dict()`): it imports neither torch nor a registry.

The matching no-filter run of a run R is a `no-filter` record with
- R's benchmark, model and seed, R's benchmark options, at any labels (no-filter ignores them; of
  several, the one at the default labels wins, then one at R's labels);
- R's training settings, every one that changes results (not where it ran or what it saved,
  `IGNORED_TRAIN_KEYS`), so both saw the same budget and are measured on the same test blocks;
- plain options: not the `forget_after` curriculum nor any other non-default option, unless
  `options` asks for that variant.
A post-hoc R is matched through its base: when the base is a recorded run, R's setup is the base's.
Otherwise only the settings a post-hoc run passes on to the base it trains must agree
(`BASE_SHARED_TRAIN_KEYS`), and of several such runs the one closest to the default training
config wins (the one the runner would have trained).

The matching perfect filter is the same rule for `filter` at recall 1.0 and R's false-positive
rate, not strict, at any retain and adjacent label rates (a plain filter reads only which documents
are labeled forget: the rest is trained alike, whatever its label).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable

from unlearnbench.config import LabelConfig, TrainConfig

# train settings a post-hoc run passes on to its no-filter base: what is measured (block length,
# test blocks) and where (device, precision); not the method's own steps, lr or batch
BASE_SHARED_TRAIN_KEYS = ("context", "eval_blocks", "device", "bf16")

# where a run ran and what it kept: two runs that differ only here are the same run
IGNORED_TRAIN_KEYS = ("device", "save_model", "checkpoint_every", "snapshot_every")

# the reference methods' options at their defaults (methods/no_filter.py, methods/filter.py); an
# option not listed counts as a non-default one (a test holds this table to the registry)
REFERENCE_OPTION_DEFAULTS = {
    "no-filter": {"forget_after": 0.0},
    "filter": {"strict": False, "sampling": "mixed", "skip_forget_steps": False},
}

# reference name -> (method, labels it changes; None: any labels, the method ignores them)
REFERENCES = {"no-filter": ("no-filter", None), "perfect-filter": ("filter", {"recall": 1.0})}
# the labels a plain reference reads (all: not listed): the plain filter drops what is labeled
# forget (the forget documents found, the adjacent ones mislabeled forget) and trains the rest
# alike, so retain and adjacent label rates cannot change its run (e.g. SGTM's Wikipedia setup
# labels 10% of retain and adjacent documents, the reference's filters label none: wiki/run.sh)
LABELS_READ = {"filter": ("recall", "false_positive_rate")}


def matching_no_filter(run: dict, records: Iterable[dict], options: dict | None = None):
    """The matching plain `no-filter` record of `run` (module docstring), or the variant with
    `options` (e.g. {"forget_after": 0.5}); None when `records` hold none."""
    return matching_reference(run, records, "no-filter", options)


def matching_perfect_filter(run: dict, records: Iterable[dict]):
    """The matching perfect filter (`filter`, recall 1.0, not strict) of `run`, or None."""
    return matching_reference(run, records, "perfect-filter")


def matching_reference(
    run: dict, records: Iterable[dict], name: str, options: dict | None = None
) -> dict | None:
    """The matching `name` ("no-filter" | "perfect-filter") record of `run`, or None."""
    records = [r for r in records if isinstance(r, dict) and "config" in r]
    method, target, keys = _target(run, records, name)
    wanted = non_default_options(method, options)
    # the run the runner would train: the shared settings, the rest at their defaults
    expected = _train({}) | {k: target["train"].get(k) for k in keys}

    def fits(c: dict) -> bool:
        cfg = c["config"]
        train = _train(cfg)
        return (
            c.get("method") == method
            and (c.get("benchmark"), c.get("model"), c.get("seed")) == target["run"]
            and _canon(cfg.get("benchmark_options") or {}) == target["benchmark_options"]
            and (
                target["labels"] is None
                or _read(_labels(cfg), target["labels"]) == target["labels"]
            )
            and all(_canon(train.get(k)) == _canon(target["train"].get(k)) for k in keys)
            and non_default_options(method, cfg.get("method_options")) == wanted
        )

    def distance(c: dict) -> tuple:
        train = _train(c["config"])
        differs = sum(
            _canon(train.get(k)) != _canon(v)
            for k, v in expected.items()
            if k not in IGNORED_TRAIN_KEYS
        )
        labels = _labels(c["config"])
        label_rank = 0 if labels == _labels({}) else 1 if labels == target["own_labels"] else 2
        device = train.get("device") != target["train"].get("device")
        # of the candidates a post-hoc run's shared settings admit, the plain run (trained at its
        # method's defaults, as its record states, where it ran aside) before a variant (e.g. a
        # grad-clip filter)
        variant = bool(trained_apart(c))
        return variant, differs, label_rank, device, str(c["run_id"])

    return min((c for c in records if fits(c)), key=distance, default=None)


def reference_overrides(
    run: dict, records: Iterable[dict], name: str, options: dict | None = None
) -> tuple[str, dict]:
    """(method, `--set` overrides) of the matching `name` run, to train it when none is recorded;
    the run trained from them is the one `matching_reference` finds afterwards."""
    records = [r for r in records if isinstance(r, dict) and "config" in r]
    method, target, keys = _target(run, records, name)
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    train = [k for k in (*keys, "device") if k in known]
    overrides = (
        {f"benchmark.{k}": v for k, v in target["benchmark_options"].items()}
        | {f"labels.{k}": v for k, v in (target["labels"] or {}).items()}
        | {f"train.{k}": target["train"][k] for k in train if k in target["train"]}
        | {f"method.{k}": v for k, v in (options or {}).items()}
    )
    return method, overrides


def recorded_base(run: dict, records: Iterable[dict]) -> dict | None:
    """The record of the run a post-hoc record started from, or None. The record's `base` is a run
    id or a saved model's directory, which the store names by its run id (so a store that moved
    to another machine still resolves)."""
    base = run.get("base") if "config" in run else None  # a config's `base` is the setting
    if not base:
        return None
    base = str(base).rstrip("/")
    run_id = os.path.basename(base)
    for r in records:
        path = str(r.get("model_path") or "").rstrip("/")
        if r.get("run_id") in (base, run_id) or (path and path == base):
            return r
    return None


def trained_apart(record: dict) -> dict:
    """The training settings a record states it set away from its method's defaults
    (`non_default`, written by the runner) that can change its results: where it ran and what it
    kept (`IGNORED_TRAIN_KEYS`) aside. A record from before `non_default` states none."""
    stated = (record.get("non_default") or {}).get("train") or {}
    return {k: v for k, v in stated.items() if k not in IGNORED_TRAIN_KEYS}


def non_default_options(method: str, options: dict | None) -> dict:
    """A reference method's options less those at their default."""
    defaults = REFERENCE_OPTION_DEFAULTS.get(method, {})
    return {k: v for k, v in _canon(options or {}).items() if k not in defaults or v != defaults[k]}


# ---- helpers ----


def _target(run: dict, records: list[dict], name: str) -> tuple[str, dict, list[str]]:
    """(reference method, the setup it must share, the train keys it must share)."""
    if name not in REFERENCES:
        raise ValueError(f"unknown reference {name!r}; choose {', '.join(REFERENCES)}")
    method, label_change = REFERENCES[name]
    setup = run
    for _ in range(8):  # a post-hoc run's setup is its base's (a chain of bases is short)
        base = recorded_base(setup, records)
        if base is None or base is setup:
            break
        setup = base
    cfg = setup.get("config", setup)
    posthoc = setup.get("kind") == "posthoc"
    train = _train(cfg)
    keys = BASE_SHARED_TRAIN_KEYS if posthoc else tuple(train)
    target = {
        "run": (_get(setup, "benchmark"), _get(setup, "model"), _get(setup, "seed")),
        "benchmark_options": _canon(cfg.get("benchmark_options") or {}),
        "labels": None
        if label_change is None
        else _read(_labels(cfg) | label_change, LABELS_READ.get(method)),
        "own_labels": _labels(cfg),
        "train": train,
    }
    return method, target, [k for k in keys if k not in IGNORED_TRAIN_KEYS]


def _get(run: dict, key: str):
    return run[key] if key in run else (run.get("config") or {}).get(key)


def _train(cfg: dict) -> dict:
    """The training config with a field an older record lacks at its default."""
    return dataclasses.asdict(TrainConfig()) | _canon(cfg.get("train") or {})


def _read(labels: dict, keys) -> dict:
    """The label settings of `keys` (all when None)."""
    return dict(labels) if keys is None else {k: labels[k] for k in keys}


def _labels(cfg: dict) -> dict:
    return dataclasses.asdict(LabelConfig()) | _canon(cfg.get("labels") or {})


def _canon(x):
    """As a JSON record holds it (tuples as lists), so fresh configs and records compare equal."""
    return json.loads(json.dumps(x, sort_keys=True, default=str))
