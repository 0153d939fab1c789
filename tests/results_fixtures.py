"""Hand-made run records for the leaderboard, plot and report tests (no training)."""

from __future__ import annotations

import copy
import dataclasses

from unlearnbench.config import TrainConfig
from unlearnbench.evals import headline
from unlearnbench.registry import evals as eval_registry
from unlearnbench.registry import methods

# the training config at its defaults, so only what a test changes shows as a setting
TRAIN = dataclasses.asdict(TrainConfig())
LABELS = {
    "recall": 1.0,
    "retain_label_rate": 0.25,
    "adjacent_label_rate": 0.0,
    "false_positive_rate": 0.0,
}
METHOD_OPTIONS = {
    "no-filter": {},
    "filter": {"strict": False},
    "sgtm": {
        "forget_mlp_dim": 64,
        "forget_heads": 1,
        "mask_embeddings": False,
        "optimizer": "shared",
        "layers": [],
        "ablate": True,
    },
}


def record(
    method: str,
    seed: int,
    forget: float,
    retain: float,
    adjacent: float | None = None,
    recall: float = 1.0,
    benchmark: str = "storyworld-topic",
    options: dict | None = None,
    evals: dict | None = None,
    curves: dict | None = None,
    tokens: int = 1000,
    wall: float = 10.0,
    model: str = "tiny",
) -> dict:
    mo = copy.deepcopy(METHOD_OPTIONS.get(method, {})) | (options or {})
    labels = LABELS | {"recall": recall}
    tag = f"r{recall}" + "".join(f"-{k}{v}" for k, v in sorted((options or {}).items()))
    r = {
        "run_id": f"{method}__{benchmark}__{model}__s{seed}__{tag}",
        "config_hash": tag,
        "method": method,
        "kind": "training",
        "benchmark": benchmark,
        "model": model,
        "seed": seed,
        # as the runner writes it: what the run set away from its defaults
        "non_default": {
            "labels": {k: v for k, v in labels.items() if v != LABELS[k]},
            "method_options": dict(options or {}),
            "train": {},
        },
        "config": {
            "method": method,
            "benchmark": benchmark,
            "model": model,
            "seed": seed,
            "train": dict(TRAIN) | methods.get(method).train_defaults,  # the method's defaults
            "labels": labels,
            "method_options": mo,
            "benchmark_options": {"n_stories": 100},
        },
        "metrics": {
            "forget_loss": forget,
            "adjacent_loss": adjacent,
            "retain_loss": retain,
            "pre_finalize": {
                "forget_loss": forget - 0.5,
                "adjacent_loss": adjacent,
                "retain_loss": retain,
            },
        },
        "tokens_seen": tokens,
        "wall_seconds": wall,
        "device": "cpu (x86_64, 1 threads)",
        "versions": {
            "unlearnbench": "0.1.0",
            "torch": "2.x",
            "transformers": "5.x",
            "git": "abc1234",
        },
        "model_path": None,
    }
    if evals is not None:
        r["evals"] = evals
    if curves is not None:
        r["curves"] = curves
    return r


def relearn_rows(start: float, end: float, lrs=(1e-4, 1e-3), steps=(0, 10, 25, 50)) -> list[dict]:
    rows = []
    for i, lr in enumerate(lrs):
        for s in steps:
            frac = s / max(steps)
            loss = start + (end - start) * frac - 0.1 * i * frac  # the larger lr relearns faster
            rows.append(
                {
                    "step": s,
                    "split": "forget",
                    "loss": loss,
                    "lr": lr,
                    "attack_seed": 0,
                    "mode": "full",
                    "budget": max(steps),
                }
            )
            rows.append(
                {
                    "step": s,
                    "split": "retain",
                    "loss": 2.0,
                    "lr": lr,
                    "attack_seed": 0,
                    "mode": "full",
                    "budget": max(steps),
                }
            )
    return rows


def result(eval_name: str, summary: dict, suite: str = "robust", options: dict | None = None):
    """A stored evaluation result as the suite runner writes it: what ran, the summary and the
    headline metrics its evaluation declares, read off the summary."""
    spec = eval_registry.get(eval_name)
    return {
        "eval": eval_name,
        "suite": suite,
        "options": options or {},
        **summary,
        "headline": headline(spec.metrics, summary),
    }


def relearn_summary(by_budget: dict[int, float], recover: int | None) -> dict:
    """A stored relearn result (the summary fields the declared metrics read)."""
    return result(
        "relearn",
        {
            "worst_case": [{"budget": b, "forget_loss": v} for b, v in by_budget.items()],
            "budget": max(by_budget),
            "steps_to_recover": recover,
        },
    )


def probes(forget: float, retain: float) -> dict:
    return result(
        "fact-probes",
        {
            "forget": {"accuracy": forget, "chance": 0.25, "n": 40},
            "retain": {"accuracy": retain, "chance": 0.25, "n": 40},
        },
    )


def sample_records() -> list[dict]:
    """Three methods, two seeds; sgtm at three recalls and a strict variant; relearn and probes
    only on some runs (missing elsewhere)."""
    nf0 = {"robust/relearn": relearn_summary({10: 1.9, 50: 1.8}, 0)}
    sg0 = {"robust/relearn": relearn_summary({10: 2.5, 50: 2.1}, None)}
    sg1 = {"robust/relearn": relearn_summary({10: 2.7, 50: 2.3}, 40)}
    return [
        record(
            "no-filter",
            0,
            2.0,
            1.50,
            1.8,
            evals=nf0,
            curves={"robust/relearn": relearn_rows(2.0, 1.8)},
        ),
        record("no-filter", 1, 2.2, 1.70, 2.0),
        record("filter", 0, 4.0, 1.55, 2.5, evals={"robust/fact-probes": probes(0.30, 0.90)}),
        record("filter", 1, 5.0, 1.65, 2.7, evals={"robust/fact-probes": probes(0.20, 0.80)}),
        record(
            "sgtm",
            0,
            3.0,
            1.60,
            2.2,
            recall=0.9,
            evals=sg0,
            curves={"robust/relearn": relearn_rows(3.0, 2.1)},
        ),
        record(
            "sgtm",
            1,
            3.4,
            1.62,
            2.4,
            recall=0.9,
            evals=sg1,
            curves={"robust/relearn": relearn_rows(3.4, 2.3)},
        ),
        record("sgtm", 0, 2.5, 1.58, 2.1, recall=0.5),
        record("sgtm", 0, 3.3, 1.61, 2.3, recall=0.9, options={"optimizer": "strict"}),
    ]
