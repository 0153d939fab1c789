"""Linear probes of the hidden states: knowledge planted and then suppressed at the output layer is
read out; knowledge never planted is not."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from transformers import GPTNeoConfig, GPTNeoForCausalLM

from unlearnbench.config import ConfigError
from unlearnbench.data.benchmarks import Benchmark
from unlearnbench.data.storyworld import FactProbe
from unlearnbench.data.tokenizer import train_bpe
from unlearnbench.evals import EvalContext, headline
from unlearnbench.evals.fact_probes import probe_accuracy
from unlearnbench.evals.hidden_probes import HiddenProbeOptions, fit_probe, last_token_states
from unlearnbench.registry import evals

VALUES = {"forget": ("cave", "barn", "nest", "pond"), "retain": ("hill", "tent", "shed", "lake")}
N_ENTITIES = 40  # per split: 20 train the probe, 20 test it


def world():
    """Entities with one fact (home) each; forget and retain draw from different value sets."""
    rng = random.Random(0)
    syllables = [c + v for c in "bdfgkmnprstvz" for v in "aeiou"]
    names = rng.sample([a + b for a in syllables for b in syllables], 2 * N_ENTITIES)
    facts = []  # (name, split, value index)
    for k, name in enumerate(names):
        split = "forget" if k < N_ENTITIES else "retain"
        facts.append((name.capitalize(), split, k % 4))
    return facts


def sentence(name: str, value: str) -> str:
    return f"{name} lives in the {value}."


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # tensors of a few dozen rows: thread hand-offs cost more than they save
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def setup():
    facts = world()
    texts = [sentence(n, VALUES[s][v]) for n, s, v in facts]
    tok = train_bpe(texts, 400)
    for vs in VALUES.values():  # each value is one token: the output change below hits it whole
        assert all(len(tok(" " + v)["input_ids"]) == 1 for v in vs)
    probes = []
    for n, s, v in facts:
        p = FactProbe(f"{n}/home/en", f"{n} lives in the", tuple(" " + x for x in VALUES[s]), v, n,
                      "home", s, "en")  # fmt: skip
        probes.append((p, s))
    bench = Benchmark("planted", [], {}, tok, probes=probes)
    retain_only = [sentence(n, VALUES[s][v]) for n, s, v in facts if s == "retain"]
    return bench, train_lm(tok, texts), train_lm(tok, retain_only)


def train_lm(tok, texts: list[str], steps: int = 150) -> GPTNeoForCausalLM:
    """A 2-layer GPT-Neo fitted to `texts` (full batch): it memorizes every stated fact."""
    cfg = GPTNeoConfig(
        vocab_size=len(tok), max_position_embeddings=16, hidden_size=64, num_layers=2,
        attention_types=[[["global", "local"], 1]], num_heads=4, intermediate_size=128,
        window_size=8, resid_dropout=0.0, embed_dropout=0.0, attention_dropout=0.0,
    )  # fmt: skip
    torch.manual_seed(0)
    model = GPTNeoForCausalLM(cfg)
    ids = [tok(t)["input_ids"] for t in texts]
    T = max(map(len, ids))
    x = torch.zeros(len(ids), T, dtype=torch.long)
    mask = torch.zeros(len(ids), T, dtype=torch.bool)
    for i, s in enumerate(ids):
        x[i, : len(s)], mask[i, : len(s)] = torch.tensor(s), True
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    for _ in range(steps):
        logits = model(input_ids=x).logits[:, :-1]
        loss = F.cross_entropy(logits[mask[:, 1:]], x[:, 1:][mask[:, 1:]])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def suppressed(model: GPTNeoForCausalLM, tok) -> GPTNeoForCausalLM:
    """The same model with an untied output layer whose forget-value rows are rotated: it names
    the wrong home of every forget entity; every hidden state is unchanged."""
    import copy

    out = copy.deepcopy(model)
    W = out.transformer.wte.weight.detach().clone()
    rows = [tok(" " + v)["input_ids"][0] for v in VALUES["forget"]]
    W[rows] = W[rows[1:] + rows[:1]]
    out.lm_head = torch.nn.Linear(W.shape[1], W.shape[0], bias=False)
    out.lm_head.weight = torch.nn.Parameter(W)
    out.config.tie_word_embeddings = False
    return out


def run_eval(bench, model, **options):
    spec = evals.get("hidden-probes")
    ctx = EvalContext({"seed": 0, "run_id": "x"}, bench, model, 16, {}, store=None)
    summary = spec.run(ctx, HiddenProbeOptions(**options)).summary
    return summary, headline(spec.metrics, summary)


def facts_accuracy(bench, model, split):
    return probe_accuracy(model, bench.tokenizer, [p for p, s in bench.probes if s == split])


def test_knowledge_suppressed_at_the_output_layer_is_read_by_the_probe(setup):
    bench, planted, never = setup
    hidden = suppressed(planted, bench.tokenizer)
    # the knowledge was planted, and the output change hides it from the fact probes
    assert facts_accuracy(bench, planted, "forget")["accuracy"] >= 0.9
    assert facts_accuracy(bench, hidden, "forget")["accuracy"] <= 0.1
    assert facts_accuracy(bench, hidden, "retain")["accuracy"] >= 0.9

    planted_summary, _ = run_eval(bench, planted)
    summary, head = run_eval(bench, hidden)
    forget = summary["forget"]
    assert forget["chance"] == 0.25 and forget["n_test"] == forget["n_entities"]["test"]
    assert forget["n_entities"]["train"] + forget["n_entities"]["test"] == N_ENTITIES
    assert forget["best_accuracy"] >= 0.8 > forget["chance"] + 0.4
    assert forget["accuracy"] == planted_summary["forget"]["accuracy"]  # same hidden states
    assert set(forget["accuracy"]) == {"0", "1", "2"}  # embeddings, block 1, after the final norm
    assert forget["accuracy"]["0"] <= 0.5  # a name's embedding alone does not give its home
    assert {e["name"]: e["value"] for e in head}["forget_probe_accuracy"] == forget["best_accuracy"]

    # a model that never saw the forget facts (trained on the retain facts): nothing to read
    clean, head = run_eval(bench, never)
    assert clean["forget"]["best_accuracy"] <= 0.5
    assert clean["retain"]["best_accuracy"] >= 0.8
    by_name = {e["name"]: e for e in head}
    assert by_name["retain_probe_accuracy"]["direction"] == "higher"
    assert by_name["forget_probe_accuracy"]["direction"] == "lower"
    assert "forget_over_perfect_filter" not in by_name  # a comparison: made at table time


def test_layers_option_and_classes_need_enough_training_items(setup):
    bench, planted, _ = setup
    summary, _ = run_eval(bench, planted, layers=(2,))
    assert set(summary["forget"]["accuracy"]) == {"2"} and summary["forget"]["best_layer"] == 2
    # no value has 50 training items: no class, nothing measured, said so
    summary, head = run_eval(bench, planted, min_per_class=50)
    assert summary["forget"]["n_test"] == 0 and "reason" in summary["forget"]
    assert all(e["value"] is None for e in head)
    with pytest.raises(ConfigError, match="layer 7"):
        run_eval(bench, planted, layers=(7,))


def test_the_probe_generalizes_only_through_a_shared_code():
    """fit_probe reads a value coded along one direction per class, for new items too, and stays
    at chance on features unrelated to the labels."""
    g = torch.Generator().manual_seed(0)
    y = torch.arange(200) % 4
    codes = torch.randn(4, 16, generator=g)
    x = codes[y] + 0.5 * torch.randn(200, 16, generator=g)
    predict = fit_probe(x[:100], y[:100], 4, l2=1e-2, max_iter=100)
    assert (predict(x[100:]) == y[100:]).float().mean() >= 0.95
    noise = torch.randn(200, 16, generator=g)
    predict = fit_probe(noise[:100], y[:100], 4, l2=1e-2, max_iter=100)
    assert (predict(noise[100:]) == y[100:]).float().mean() <= 0.45


def test_last_token_states_ignore_padding_and_match_a_single_forward(setup):
    bench, planted, _ = setup
    prompts = [p.prompt for p, _ in bench.probes[:5]] + ["Ba"]
    batched = last_token_states(planted, bench.tokenizer, prompts, batch_size=6)
    one = last_token_states(planted, bench.tokenizer, prompts[-1:], batch_size=1)
    assert batched.shape == (3, 6, 64)
    torch.testing.assert_close(batched[:, -1], one[:, 0], atol=1e-5, rtol=1e-5)


def test_no_fact_probes_is_not_applicable_and_bad_options_are_refused(setup):
    bench, planted, _ = setup
    summary, head = run_eval(replace(bench, probes=[]), planted)
    assert summary["applicable"] is False and all(e["value"] is None for e in head)
    for bad in ({"min_per_class": 0}, {"l2": -1.0}, {"layers": (-1,)}):
        with pytest.raises(ConfigError):
            HiddenProbeOptions(**bad)


def test_the_gap_to_the_perfect_filter_is_read_from_its_own_result():
    """At table time the run's best forget probe accuracy minus the perfect filter's own; named
    when the filter has no such result; the perfect filter's own gap is 0."""
    from unlearnbench.results import references

    def rec(run_id, acc):
        return {"run_id": run_id, "evals": {"k": {"forget": {"best_accuracy": acc}}}}

    run, pf = rec("run", 0.7), rec("pf", 0.4)
    assert references.hidden_probe_gap(references.Joined(run, perfect_filter=pf), "k") == (
        pytest.approx(0.3)
    )
    assert references.hidden_probe_gap(references.Joined(pf, perfect_filter=pf), "k") == 0.0
    missing = references.Joined(run, perfect_filter={"run_id": "pf", "evals": {}})
    assert references.hidden_probe_gap(missing, "k") is references.REFERENCE_NOT_MEASURED


def test_the_layer_is_chosen_on_held_out_training_entities_not_on_the_test_items(setup):
    """The headline layer is the best on a validation part of the training entities; the number
    reported is the test accuracy there. Choosing on the test items (the earlier rule) reports
    the best of several noisy test scores, above what the chosen layer gives where the probe
    reads nothing (a model that never saw the forget facts)."""
    bench, planted, never = setup
    optimistic = []
    for split_seed in (0, 1, 2):
        summary, head = run_eval(bench, never, split_seed=split_seed)
        for split in ("forget", "retain"):
            part = summary[split]
            ents = part["n_entities"]
            assert ents["fit"] + ents["validation"] == ents["train"] and part["n_validation"] > 0
            val = part["validation_accuracy"]
            chosen = max(range(3), key=lambda k: val[str(k)])  # ties: the lowest layer
            assert part["best_layer"] == chosen
            assert part["best_accuracy"] == part["accuracy"][str(chosen)]
            # the split's own chance: 1/classes of each test item's fact type, not a fixed 0.25
            facts = [f for f in part["per_fact"].values() if f["n_test"]]
            own = sum(f["n_test"] / f["classes"] for f in facts) / part["n_test"]
            assert part["chance"] == pytest.approx(own)
        optimistic.append(
            max(summary["forget"]["accuracy"].values()) - summary["forget"]["best_accuracy"]
        )
        assert {e["name"]: e["value"] for e in head}["forget_probe_accuracy"] == (
            summary["forget"]["best_accuracy"]
        )
    assert all(gap >= 0 for gap in optimistic) and max(optimistic) > 0.05
    # a split whose classes need 3 training items keeps fewer values: its chance is its own
    summary, _ = run_eval(bench, planted, min_per_class=3)
    part = summary["retain"]
    assert part["chance"] == pytest.approx(
        sum(f["n_test"] / f["classes"] for f in part["per_fact"].values() if f["n_test"])
        / part["n_test"]
    )


def test_too_few_training_entities_to_hold_some_out_is_said_not_guessed(setup):
    from unlearnbench.evals.disjoint_facts import entity_halves
    from unlearnbench.evals.hidden_probes import fit_validation

    bench, planted, _ = setup
    forget = [(p, s) for p, s in bench.probes if s == "forget"]
    first, second = entity_halves([p for p, _ in forget], 0)
    fit, _ = fit_validation(first, 0)
    # two training entities with different homes, both in the fit part, and one test entity
    by_value = {}
    for p, _ in forget:
        if p.entity in fit:
            by_value.setdefault(p.answer, p)
    a, b = list(by_value.values())[:2]
    t = next(p for p, _ in forget if p.entity in second and p.answer == a.answer)
    small = replace(bench, probes=[(a, "forget"), (b, "forget"), (t, "forget")])
    summary, head = run_eval(small, planted, min_per_class=1)
    part = summary["forget"]
    assert part["best_layer"] is None and part["best_accuracy"] is None
    assert "hold some out" in part["reason"] and part["n_test"] == 1
    assert all(e["value"] is None for e in head)
    # one layer asked for: nothing to choose, its test accuracy is the number
    summary, _ = run_eval(small, planted, min_per_class=1, layers=(2,))
    assert summary["forget"]["best_layer"] == 2
