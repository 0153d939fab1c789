"""A throwaway evaluation for tests/test_eval_contract.py's cross-process test: it counts its own
computations in a file and takes a second, so two processes asking at once would both count."""

import time
from dataclasses import dataclass
from pathlib import Path

from unlearnbench.evals import EvalResult, register_eval

NAME = "slow-reference"


@dataclass(frozen=True)
class SlowOptions:
    counter: str = ""


def slow(ctx, options: SlowOptions) -> EvalResult:
    """Appends a line to `counter`, waits a second."""
    with open(options.counter, "a") as f:
        f.write(f"{ctx.record['run_id']}\n")
    time.sleep(1.0)
    return EvalResult({"value": 1.0})


def register() -> None:
    register_eval(NAME, SlowOptions)(slow)


def references_in_process(store_root: str, run_id: str, suite: str) -> str:
    """One process's request that the run's references hold `suite` (as two runs of a sweep that
    share a perfect filter ask at once); returns the perfect filter's run id."""
    from unlearnbench.results.matching import matching_perfect_filter
    from unlearnbench.results.store import RunStore
    from unlearnbench.suites import run_references

    register()
    store = RunStore(Path(store_root))
    run_references(store.load(run_id), suite, store, progress=False)
    return matching_perfect_filter(store.load(run_id), store.records())["run_id"]
