"""A throwaway evaluation for tests/test_eval_contract.py's cross-process test: it counts its own
computations in a file and takes a second, so two processes asking at once would both count."""

import time
from dataclasses import dataclass
from pathlib import Path

from unlearnbench.evals import EvalResult, register_eval

NAME = "slow-reference"


@dataclass(frozen=True)
class SlowOptions:
    references: bool = False
    counter: str = ""


def slow(ctx, options: SlowOptions) -> EvalResult:
    """Appends a line to `counter`, waits a second."""
    with open(options.counter, "a") as f:
        f.write(f"{ctx.record['run_id']}\n")
    time.sleep(1.0)
    return EvalResult({"value": 1.0})


def register() -> None:
    register_eval(NAME, SlowOptions, additive=("references",))(slow)


def evaluate_in_process(store_root: str, run_id: str, counter: str) -> float:
    """One process's request for the run's plain (reference-less) result."""
    from unlearnbench.evals import SuiteEntry
    from unlearnbench.results.store import RunStore
    from unlearnbench.suites import evaluate_entry

    register()
    store = RunStore(Path(store_root))
    entry = SuiteEntry(NAME, NAME, {"counter": counter}, suite="robust")
    return evaluate_entry(store.load(run_id), entry, store, progress=False)["value"]
