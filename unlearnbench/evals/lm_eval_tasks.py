"""`lm-eval`: lm-evaluation-harness tasks on a run's model, in memory and offline (optional extra:
`pip install "unlearnbench[lm-eval]"`).

The model is wrapped with `HFLM(pretrained=model, tokenizer=...)` (no reload from disk). Tasks are
local task YAMLs whose data are local files (`dataset_path: json`), so nothing is downloaded:
- by default the tasks shipped in `unlearnbench/lm_eval_tasks/` (`story_cloze_en`, `story_cloze_es`:
  400 next-word choices each in children's-story English and Spanish), whose data is read next to
  their YAML (so `lm_eval --include_path` on that folder works from any directory too);
- with `include_path`, the tasks of that directory.
Both are loaded as lm-eval loads them (`TaskManager(include_path=DIR, include_defaults=False)`).
The summary keeps lm-eval's standard errors; the headline shows each accuracy's 95% half-width.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from unlearnbench.config import ConfigError
from unlearnbench.evals import HIGHER, LOWER, EvalContext, EvalResult, Metric, register_eval
from unlearnbench.package_files import LM_EVAL_TASKS_DIR


@dataclass(frozen=True)
class LMEvalOptions:
    # ours: the shipped tasks (one language each: storyworld-lang's retain and forget language)
    tasks: tuple[str, ...] = ("story_cloze_en", "story_cloze_es")
    include_path: str = ""  # a directory of task YAMLs; "" = the shipped ones (ours)
    limit: int = 0  # examples per task; 0 = all (lm-eval's default)
    num_fewshot: int = 0  # lm-eval's default (zero-shot)
    batch_size: int = 16  # ours: a CPU-sized batch of requests

    def __post_init__(self):
        if not self.tasks:
            raise ConfigError("lm-eval needs `tasks` (task names)")
        if not self.include_path:
            known = shipped_tasks()
            unknown = [t for t in self.tasks if t not in known]
            if unknown:
                raise ConfigError(
                    f"lm-eval: no shipped task {', '.join(unknown)} (shipped: {', '.join(known)}; "
                    "set include_path to a directory of your own task YAMLs)"
                )


def shipped_tasks() -> list[str]:
    return sorted(p.stem for p in LM_EVAL_TASKS_DIR.glob("*.yaml"))


def evaluate_tasks(model, tokenizer, options: LMEvalOptions, device: str = "cpu") -> dict:
    """{task: {metric: value}} from lm-evaluation-harness, offline. Metric keys are lm-eval's
    `METRIC,FILTER` (e.g. `acc,none`, `acc_stderr,none`)."""
    try:
        import lm_eval
        from lm_eval.models.huggingface import HFLM
        from lm_eval.tasks import TaskManager
    except ImportError:
        raise ConfigError(
            'the lm-eval evaluation needs lm-evaluation-harness: pip install "unlearnbench[lm-eval]"'
        ) from None
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=options.batch_size, device=device)
    folder = options.include_path or str(LM_EVAL_TASKS_DIR)
    manager = TaskManager(include_path=folder, include_defaults=False)
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


def _task_metric(metric: str, scale: float = 1.0):
    """Read `metric` per task from the summary (times `scale`): lm-eval names it `METRIC,FILTER`;
    the unfiltered one (`none`), else the first filter's."""

    def read(summary: dict) -> dict:
        out = {}
        for task, metrics in (summary.get("results") or {}).items():
            keys = [k for k in metrics if k.split(",")[0] == metric]
            if keys:
                out[task] = scale * metrics.get(f"{metric},none", metrics[sorted(keys)[0]])
        return out

    return read


# the 95% half-width of an accuracy from lm-eval's standard error (normal approximation, as
# lm-eval's own stderr): 400 items near 0.7 give about 0.045, 16 items gave about 0.22
Z95 = 1.959964


@register_eval(
    "lm-eval",
    options=LMEvalOptions,
    metrics=[
        Metric("acc", HIGHER, _task_metric("acc"), "{} acc", "accuracy"),
        # narrower is better: an interval that cannot separate two models is a weak test
        Metric("acc_ci95", LOWER, _task_metric("acc_stderr", Z95), "{} acc ± (95%)", "accuracy"),
    ],
    requires=("lm_eval",),
)
def run(ctx: EvalContext, options: LMEvalOptions) -> EvalResult:
    """lm-evaluation-harness tasks from local task files, on the run's model in memory."""
    return EvalResult(
        {"results": evaluate_tasks(ctx.model, ctx.benchmark.tokenizer, options, ctx.device)}
    )
