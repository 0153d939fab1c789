"""`lm-eval`: lm-evaluation-harness tasks on a run's model, in memory and offline (optional extra:
`pip install "unlearnbench[lm-eval]"`).

The model is wrapped with `HFLM(pretrained=model, tokenizer=...)` (no reload from disk), and tasks
come from local task YAML files only (`TaskManager(include_path=DIR, include_defaults=False)`), whose
data are local files (`dataset_path: json`), so nothing is downloaded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from unlearnbench.config import ConfigError
from unlearnbench.evals import HIGHER, EvalContext, EvalResult, Metric, register_eval


@dataclass(frozen=True)
class LMEvalOptions:
    tasks: tuple[str, ...] = ()  # task names defined in include_path
    include_path: str = ""  # directory of local task YAML files
    limit: int = 0  # examples per task; 0 = all
    num_fewshot: int = 0
    batch_size: int = 16


def evaluate_tasks(model, tokenizer, options: LMEvalOptions, device: str = "cpu") -> dict:
    """{task: {metric: value}} from lm-evaluation-harness, offline."""
    try:
        import lm_eval
        from lm_eval.models.huggingface import HFLM
        from lm_eval.tasks import TaskManager
    except ImportError:
        raise ConfigError(
            'the lm-eval evaluation needs lm-evaluation-harness: pip install "unlearnbench[lm-eval]"'
        ) from None
    if not options.tasks or not options.include_path:
        raise ConfigError("lm-eval needs `tasks` and `include_path` (a directory of task YAMLs)")
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=options.batch_size, device=device)
    manager = TaskManager(include_path=options.include_path, include_defaults=False)
    out = lm_eval.simple_evaluate(
        model=lm,
        tasks=list(options.tasks),
        task_manager=manager,
        num_fewshot=options.num_fewshot,
        limit=options.limit or None,
        log_samples=False,
    )
    results = {}
    for task, metrics in out["results"].items():
        results[task] = {
            k: float(v)
            for k, v in metrics.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
        }
    return results


def _task_accuracy(summary: dict) -> dict:
    return {task: m.get("acc") for task, m in (summary.get("results") or {}).items()}


@register_eval(
    "lm-eval",
    options=LMEvalOptions,
    metrics=[Metric("acc", HIGHER, _task_accuracy, "{} acc", "accuracy")],
)
def run(ctx: EvalContext, options: LMEvalOptions) -> EvalResult:
    """lm-evaluation-harness tasks from local task files, on the run's model in memory."""
    return EvalResult(
        {"results": evaluate_tasks(ctx.model, ctx.benchmark.tokenizer, options, ctx.device)}
    )
