"""The model card (README.md) written next to every saved model: what made it and how it scored.

The card is for a reader who finds the folder without the run store: method, benchmark, model
preset, seed, the full resolved config, the losses before and after finalize, the evaluations'
headline metrics, and how to load the model with plain `transformers`. It is written with
`huggingface_hub.ModelCard`, its metadata (license, base model, datasets, `model-index`) ready for
the hub.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

SPLITS = ("forget", "adjacent", "retain")
LICENSE = "mit"  # the package's license (pyproject.toml, LICENSE)


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)


HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")  # owner/name, as the hub validates it


def _hub_id(value) -> str | None:
    """`value` when it names a hub repository (not a local path or a run id of the store)."""
    text = str(value or "")
    return text if HUB_ID.match(text) and not Path(text).exists() else None


def headline_results(record: dict) -> list[tuple[str, str, float]]:
    """(metric, title, value): the run's final losses and every evaluation's measured headline."""
    m = record.get("metrics", {})
    out = [(f"{s}_loss", f"{s} loss (nats)", m[f"{s}_loss"]) for s in SPLITS
           if isinstance(m.get(f"{s}_loss"), int | float)]  # fmt: skip
    for key, ev in sorted((record.get("evals") or {}).items()):
        for e in (ev or {}).get("headline") or []:
            if isinstance(e.get("value"), int | float) and not isinstance(e["value"], bool):
                title = f"{key}: {e.get('title') or e['name']}"
                out.append((f"{key}/{e['name']}", title, float(e["value"])))
    return [(k, t, float(v)) for k, t, v in out if math.isfinite(v)]


def card_data(record: dict):
    """The card's metadata: license, tags, `base_model` (a post-hoc run's base, where it is a hub
    model), `datasets` (a hub benchmark's dataset) and the headline metrics as `model-index`."""
    from huggingface_hub import EvalResult, ModelCardData

    options = (record.get("config") or {}).get("benchmark_options") or {}
    name = f"{record['method']}-{record['benchmark']}-{record['model']}-s{record['seed']}"
    results = [
        EvalResult(
            task_type="text-generation",
            dataset_type=f"unlearnbench/{record['benchmark']}",
            dataset_name=record["benchmark"],
            metric_type=metric,
            metric_name=title,
            metric_value=value,
        )
        for metric, title, value in headline_results(record)
    ]
    return ModelCardData(
        language=None,
        license=LICENSE,
        library_name="transformers",
        tags=["unlearnbench", "unlearning", record["method"]],
        base_model=_hub_id(record.get("base")),
        datasets=[d for d in [_hub_id(options.get("dataset"))] if d] or None,
        model_name=name,
        eval_results=results or None,
    )


def model_card(record: dict) -> str:
    """The card (YAML metadata and Markdown) for a run record, as `huggingface_hub.ModelCard`
    writes it: ready for `ModelCard.push_to_hub` or a model's `push_to_hub`."""
    from huggingface_hub import ModelCard

    m = record.get("metrics", {})
    pre = m.get("pre_finalize", {})
    rows = [
        f"| {s} | {_fmt(pre.get(f'{s}_loss'))} | {_fmt(m.get(f'{s}_loss'))} |"
        for s in SPLITS
        if m.get(f"{s}_loss") is not None or pre.get(f"{s}_loss") is not None
    ]
    extra = {
        k: v
        for k, v in m.items()
        if k != "pre_finalize" and not k.endswith("_loss") and isinstance(v, int | float | str)
    }
    base = record.get("base")
    lines = [
        f"# {record['method']} on {record['benchmark']} ({record['model']}, seed {record['seed']})",
        "",
        f"A causal language model trained or unlearned by the `{record['method']}` method of "
        f"unlearnbench ({record.get('kind', '')}), finalized (e.g. ablated or merged) before saving.",
        "",
        f"- run id: `{record['run_id']}`",
        f"- benchmark: `{record['benchmark']}`; model preset: `{record['model']}`",
        f"- base model: `{base}`" if base else "- trained from scratch",
        f"- tokens seen: {record.get('tokens_seen', 0):,}",
        f"- created: {record.get('created', '')}",
        "",
        "## Metrics",
        "",
        "Mean token cross-entropy (nats) on the benchmark's test documents of each split.",
        "",
        "| split | before finalize | final |",
        "|---|---|---|",
        *rows,
        "",
    ]
    if extra:
        lines += [f"- {k}: {_fmt(v)}" for k, v in sorted(extra.items())] + [""]
    evals = [(t, v) for k, t, v in headline_results(record) if "/" in k]
    if evals:
        lines += ["Evaluations (their headline metrics):", ""]
        lines += [f"- {t}: {_fmt(v)}" for t, v in evals] + [""]
    lines += [
        "## Load",
        "",
        "```python",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        "model = AutoModelForCausalLM.from_pretrained(PATH)",
        "tokenizer = AutoTokenizer.from_pretrained(PATH)",
        "```",
        "",
        "## Config",
        "",
        "```json",
        json.dumps(record.get("config", {}), indent=2, sort_keys=True, default=str),
        "```",
        "",
    ]
    card = ModelCard.from_template(
        card_data(record),
        template_str="---\n{{ card_data }}\n---\n\n{{ body }}",
        body="\n".join(lines),
    )
    return str(card)


def write_model_card(model_dir: str | Path, record: dict) -> Path:
    """Write `model_dir/README.md` atomically."""
    from unlearnbench.results.store import write_text_atomic  # the umask's permissions

    path = Path(model_dir) / "README.md"
    write_text_atomic(path, model_card(record))
    return path
