"""The model card (README.md) written next to every saved model: what made it and how it scored.

The card is for a reader who finds the folder without the run store: method, benchmark, model
preset, seed, the full resolved config, the losses before and after finalize, and how to load the
model with plain `transformers`.
"""

from __future__ import annotations

import json
from pathlib import Path

SPLITS = ("forget", "adjacent", "retain")


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)


def model_card(record: dict) -> str:
    """Markdown (with Hugging Face metadata) for a run record."""
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
    lines = [
        "---",
        "library_name: transformers",
        "tags: [unlearnbench, gpt_neo, unlearning]",
        "---",
        "",
        f"# {record['method']} on {record['benchmark']} ({record['model']}, seed {record['seed']})",
        "",
        f"A GPT-Neo trained or unlearned by the `{record['method']}` method of unlearnbench "
        f"({record.get('kind', '')}), finalized (e.g. ablated or merged) before saving.",
        "",
        f"- run id: `{record['run_id']}`",
        f"- benchmark: `{record['benchmark']}`; model preset: `{record['model']}`",
        f"- base model: `{record['base']}`" if record.get("base") else "- trained from scratch",
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
    return "\n".join(lines)


def write_model_card(model_dir: str | Path, record: dict) -> Path:
    """Write `model_dir/README.md` atomically."""
    from unlearnbench.results.store import write_text_atomic  # the umask's permissions

    path = Path(model_dir) / "README.md"
    write_text_atomic(path, model_card(record))
    return path
