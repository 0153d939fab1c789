"""`lm-eval`: lm-evaluation-harness tasks on a run's model, in memory and offline (optional extra:
`pip install "unlearnbench[lm-eval]"`).

The model is wrapped with `HFLM(pretrained=model, tokenizer=...)` (no reload from disk). Tasks are
local task YAMLs whose data are local files (`dataset_path: json`), so nothing is downloaded:
- by default the tasks shipped in `unlearnbench/lm_eval_tasks/` (`story_cloze_en`, `story_cloze_es`:
  next-word choices in children's-story English and Spanish), whose data paths are relative to
  their YAML and are made absolute here (lm-eval would read them relative to the working directory);
- with `include_path`, the tasks of that directory, as lm-eval loads them
  (`TaskManager(include_path=DIR, include_defaults=False)`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from unlearnbench.config import ConfigError
from unlearnbench.evals import HIGHER, EvalContext, EvalResult, Metric, register_eval
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


def shipped_task_config(name: str) -> dict:
    """A shipped task's YAML as an lm-eval config dict, its data files made absolute."""
    import yaml

    config = yaml.safe_load((LM_EVAL_TASKS_DIR / f"{name}.yaml").read_text())
    files = config.get("dataset_kwargs", {}).get("data_files", {})
    for split, path in files.items():
        files[split] = str(LM_EVAL_TASKS_DIR / path)
    return config


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
    if options.include_path:
        manager = TaskManager(include_path=options.include_path, include_defaults=False)
        tasks = list(options.tasks)
    else:  # the shipped tasks, as config dicts (their data paths resolved)
        manager = TaskManager(include_defaults=False)
        tasks = [shipped_task_config(name) for name in options.tasks]
    out = lm_eval.simple_evaluate(
        model=lm,
        tasks=tasks,
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


def _task_metric(metric: str):
    """Read `metric` per task from the summary: lm-eval names it `METRIC,FILTER`; the unfiltered
    one (`none`), else the first filter's."""

    def read(summary: dict) -> dict:
        out = {}
        for task, metrics in (summary.get("results") or {}).items():
            keys = [k for k in metrics if k.split(",")[0] == metric]
            if keys:
                out[task] = metrics.get(f"{metric},none", metrics[sorted(keys)[0]])
        return out

    return read


@register_eval(
    "lm-eval",
    options=LMEvalOptions,
    metrics=[Metric("acc", HIGHER, _task_metric("acc"), "{} acc", "accuracy")],
    requires=("lm_eval",),
)
def run(ctx: EvalContext, options: LMEvalOptions) -> EvalResult:
    """lm-evaluation-harness tasks from local task files, on the run's model in memory."""
    return EvalResult(
        {"results": evaluate_tasks(ctx.model, ctx.benchmark.tokenizer, options, ctx.device)}
    )
