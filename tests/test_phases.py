"""A method's phases through the runner: every phase counted in the record, each checkpointed, and a
run killed mid-phase resumes mid-phase to the uninterrupted run's weights, bit for bit."""

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from transformers import GPTNeoForCausalLM

from unlearnbench.losses import lm_loss
from unlearnbench.methods import MethodSpec, Phase, Plan, Stage
from unlearnbench.registry import methods
from unlearnbench.results.store import RunStore
from unlearnbench.runner import execute, resolve_run_config
from unlearnbench.training import Objective

SETS = {
    "n_stories": "200",
    "context": "32",
    "batch_size": "4",
    "micro_batch_size": "2",
    "eval_blocks": "2",
    "warmup_steps": "1",
    "steps": "5",
    "checkpoint_every": "1",
}
KILL = {"at": None}  # (phase name, step): raise there, as a SIGKILL would stop the process


class Killed(Exception):
    pass


@dataclass(frozen=True)
class TwoPhaseOptions:
    first_steps: int = 3


def _two_phase_setup(ctx, options):
    """Phase `a` fits a vector with the model frozen (like tuned lenses); phase `b`, built on the
    model `a` left, trains the model with a loss that reads that vector; a merge-like stage."""
    d = ctx.model.config.hidden_size
    vec = torch.nn.Parameter(torch.zeros(d))

    def loss_a(m, inputs, targets, label):
        return lm_loss(m, inputs, targets) + ((vec - 0.5) ** 2).sum()

    def kill_hook(name):
        def on_step(step, total):
            if KILL["at"] == (name, step):
                raise Killed(name)

        return on_step

    a = Objective(
        model=ctx.model, loss=loss_a, trainable=[], extra_parameters=[vec], on_step=kill_hook("a")
    )

    def build_b(model):
        def loss_b(m, inputs, targets, label):
            return lm_loss(m, inputs, targets) + (vec.detach() * m.transformer.wte.weight[1]).sum()

        names = [n for n, _ in model.named_parameters()]
        return Objective(
            model=model,
            loss=loss_b,
            trainable=names,
            trains_on=lambda g: g.label == "retain",
            on_step=kill_hook("b"),
        )

    return Plan(
        phases=[Phase("a", a, train={"steps": options.first_steps}), Phase("b", build_b)],
        finalize=[Stage("noop", lambda m: m)],
        metrics={"vec_norm_at_setup": 0.0},
    )


@pytest.fixture
def two_phase(monkeypatch):
    methods.names()  # discover the real methods first
    spec = MethodSpec("two-phase", "training", TwoPhaseOptions, _two_phase_setup)
    monkeypatch.setitem(methods._entries, "two-phase", spec)
    KILL["at"] = None
    yield resolve_run_config("two-phase", "storyworld-lang", "tiny", 0, SETS)
    KILL["at"] = None


def _weights(record) -> dict:
    model = GPTNeoForCausalLM.from_pretrained(record["model_path"])
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_the_record_counts_every_phase(two_phase, tmp_path):
    record = execute(two_phase, RunStore(tmp_path), progress=False)
    phases = record["phases"]
    assert [p["name"] for p in phases] == ["a", "b"]
    assert [p["steps"] for p in phases] == [3, 5]
    assert record["tokens_seen"] == (3 + 5) * 4 * 32 == sum(p["tokens_seen"] for p in phases)
    assert record["train_seconds"] == sum(p["seconds"] for p in phases)
    assert all(p["seconds"] > 0 for p in phases)
    # phase b trains on retain-labeled blocks only: its tokens are all of the retain split
    assert set(phases[1]["tokens_by_split"]) == {"retain"}
    assert [h["phase"] for h in record["history"]] == ["a"] * 3 + ["b"] * 5
    assert set(record["metrics"]["pre_finalize"]) == {"forget_loss", "adjacent_loss", "retain_loss"}


@pytest.mark.parametrize("kill_at", [("b", 2), ("a", 2)])
def test_a_run_killed_mid_phase_resumes_mid_phase_bit_identically(two_phase, tmp_path, kill_at):
    whole = execute(two_phase, RunStore(tmp_path / "whole"), progress=False)
    store = RunStore(tmp_path / "killed")
    KILL["at"] = kill_at
    with pytest.raises(Killed):
        execute(two_phase, store, progress=False)
    KILL["at"] = None
    ckpt = torch.load(store.checkpoint_path(two_phase.run_id), weights_only=True)
    assert ckpt["phase"] == ["a", "b"].index(kill_at[0]) and ckpt["step"] == kill_at[1]
    resumed = execute(two_phase, store, progress=False, resume=True)
    assert resumed["resumed_in_phase"] == kill_at[0]
    phase = resumed["phases"][["a", "b"].index(kill_at[0])]
    assert phase["resumed_from"] == kill_at[1]
    assert not Path(store.checkpoint_path(two_phase.run_id)).exists()
    a, b = _weights(whole), _weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed weights differ"
    assert resumed["metrics"] == whole["metrics"]
    assert resumed["tokens_seen"] == whole["tokens_seen"]
    assert resumed["tokens_by_split"] == whole["tokens_by_split"]
    assert [h["loss"] for h in resumed["history"]] == [h["loss"] for h in whole["history"]]


def test_no_method_file_imports_the_loop():
    """Methods return phases; the runner trains them. A method file never calls train()."""
    root = Path(__file__).resolve().parents[1] / "unlearnbench" / "methods"
    offenders = []
    for path in sorted(root.glob("*.py")):
        for line in path.read_text().splitlines():
            s = line.strip()
            if s.startswith(("from unlearnbench.training import", "import unlearnbench.training")):
                if "train," in s or s.endswith(" train") or "train " in s.split("import")[1]:
                    offenders.append(f"{path.name}: {s}")
            if " train(" in s or s.startswith("train("):
                offenders.append(f"{path.name}: {s}")
    assert not offenders, offenders
