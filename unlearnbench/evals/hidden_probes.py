"""`hidden-probes`: can a linear probe read a fact's value out of the frozen model's hidden states?

For every layer, a multinomial logistic-regression probe is trained on the hidden state at the last
token of each fact-probe prompt ("Pip the fox lives in the") to predict the fact's value (" cave"),
one probe per split, fact type and layer. Entities are split in two halves by a seeded hash of
their names (`entity_halves`, as `disjoint-facts` splits them): the probe is trained on the first
half's facts and tested on the second half's. Knowledge a linear probe reads out was not removed,
only hidden: an output-layer change that stops the model from saying a value leaves it readable.

The layer is chosen without the test entities: the training entities are split again by a seeded
hash (`fit_validation`), a probe per layer is fitted on the fit part and scored on the validation
part, and the layer with the best validation accuracy is the headline's; its test accuracy (the
probe refitted on every training entity) is the number reported. Choosing the layer by test
accuracy, as an earlier version did, reports the best of several noisy test scores: optimistic
exactly where the probe reads nothing.

Design. Classes are the values of one fact type (every value with at least `min_per_class`
training items; test items of other values are dropped), so the probe must read the value in a code
shared across entities: the code a model that predicts the value next must hold at the last layers
(the unembedding row of " cave" is one direction for every entity). It cannot memorize entities:
test entities are never seen in training.

Numbers, per split and layer (0 = the embeddings, i = the output of block i, the last = after the
final layer norm, as HF `hidden_states`): `accuracy` over the test items of every fact type,
`validation_accuracy` over the validation items, `chance` = the mean over test items of
1/(classes of its fact type) (the split's own chance: a fact type with 8 values is at 1/8, not the
fact probes' 1/4), `majority` = the accuracy of always predicting the most common training value
of each fact type. The headline (`best_accuracy`) is the test accuracy at `best_layer`, the layer
chosen on validation.
The perfect filter's result of the same evaluation (its own run) is the floor of what the prompt
alone gives away: the comparison is made at table time (results/references.py).

Limits. A probe at chance does not prove removal: the value may sit in a non-linear or entity-
specific code a linear probe trained on other entities cannot read. Above-chance accuracy can come
from the prompt without the fact (storyworld's home values depend on the topic, which the entity's
kind reveals), hence the majority baseline and the perfect-filter reference. A split with few
entities gives a noisy estimate (`n_test`, `n_validation` are reported) and a noisy choice of
layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from unlearnbench.config import ConfigError
from unlearnbench.data.splits import stable_uniform
from unlearnbench.evals import HIGHER, LOWER, EvalContext, EvalResult, Metric, register_eval
from unlearnbench.evals.disjoint_facts import entity_halves
from unlearnbench.evals.fact_probes import probes_by_split


@dataclass(frozen=True)
class HiddenProbeOptions:
    # ours: every hidden state (tiny models have few); EleutherAI/unlearn
    # scripts/train_classification_probes.py (ProbeTrainConfig.layer_stride) probes every 4th layer
    layers: tuple[int, ...] = ()  # () = every hidden state: embeddings, each block
    split_seed: int = 0  # which entities train and which test (the halves `disjoint-facts` uses)
    min_per_class: int = 2  # ours: a value needs this many training items to be a class
    # ours: L2 penalty on the probe's weights over standardized features, fitted full batch; the
    # EleutherAI/unlearn linear probe (a forget-vs-retain token classifier, not a value probe) is
    # trained by AdamW with weight decay 0.01 (ProbeTrainConfig.weight_decay)
    l2: float = 1e-2
    max_iter: int = 100  # ours: L-BFGS iterations per probe (full batch; the loss is within 1% of
    # its value at 200 iterations on tiny, at half the cost)
    max_per_split: int = 0  # 0 = every probe of the split
    batch_size: int = 256  # prompts per forward pass

    def __post_init__(self):
        if self.min_per_class < 1 or self.l2 < 0 or self.max_iter < 1 or self.batch_size < 1:
            raise ConfigError(
                "hidden-probes needs min_per_class >= 1, l2 >= 0, max_iter >= 1, batch_size >= 1"
            )
        if any(layer < 0 for layer in self.layers):
            raise ConfigError(f"hidden-probes layers must be >= 0, got {list(self.layers)}")


@torch.no_grad()
def last_token_states(model, tokenizer, prompts: list[str], batch_size: int = 256) -> torch.Tensor:
    """Hidden state at each prompt's last token, every layer: (n_layers + 1, N, d), float32."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    out = []
    for i in range(0, len(ids), batch_size):
        chunk = ids[i : i + batch_size]
        T = max(len(s) for s in chunk)
        x = torch.zeros(len(chunk), T, dtype=torch.long)  # right-padded: causal, pads come after
        for j, s in enumerate(chunk):
            x[j, : len(s)] = torch.tensor(s)
        hidden = model(input_ids=x.to(device), output_hidden_states=True).hidden_states
        h = torch.stack(hidden).float()  # (L + 1, B, T, d)
        last = torch.tensor([len(s) - 1 for s in chunk], device=h.device)
        out.append(h[:, torch.arange(len(chunk), device=h.device), last].cpu())  # (L + 1, B, d)
    model.train(was_training)
    return torch.cat(out, dim=1)


def fit_probe(x: torch.Tensor, y: torch.Tensor, n_classes: int, l2: float, max_iter: int):
    """Multinomial logistic regression on standardized features, full-batch L-BFGS from zeros
    (deterministic). x (N, d), y (N,) class ids; returns predict(x) -> class ids."""
    x = x.float()
    mean, std = x.mean(0), x.std(0, unbiased=False).clamp_min(1e-6)
    z = (x - mean) / std
    W = torch.zeros(z.shape[1], n_classes, dtype=z.dtype, requires_grad=True)
    b = torch.zeros(n_classes, dtype=z.dtype, requires_grad=True)
    opt = torch.optim.LBFGS([W, b], max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(z @ W + b, y) + l2 * (W**2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    W, b = W.detach(), b.detach()
    return lambda x_new: (((x_new.float() - mean) / std) @ W + b).argmax(-1)


def value_of(probe) -> str:
    return probe.options[probe.answer].strip()


def _labels(probes: list, items: list[int], index: dict[str, int]) -> torch.Tensor:
    """Class ids (N,) of the probes `items` by their value."""
    return torch.tensor([index[value_of(probes[i])] for i in items], dtype=torch.long)


def fit_validation(entities: set[str], split_seed: int) -> tuple[set[str], set[str]]:
    """(fit, validation) halves of the training entities, by a seeded hash of the name (another
    hash than `entity_halves`', so the halves are not the same cut again)."""
    fit = {n for n in entities if stable_uniform("hidden-probes-validation", split_seed, n) < 0.5}
    return fit, entities - fit


def probe_split(model, tokenizer, probes: list, options: HiddenProbeOptions) -> dict:
    """Per-layer accuracy of value probes trained on one half of the split's entities, tested on
    the other half; the headline layer chosen on a validation part of the training entities
    (module docstring)."""
    first, second = entity_halves(probes, options.split_seed)
    fit, validation = fit_validation(first, options.split_seed)
    states = last_token_states(model, tokenizer, [p.prompt for p in probes], options.batch_size)
    n_states = states.shape[0]
    layers = list(options.layers) or list(range(n_states))
    if max(layers) >= n_states:
        raise ConfigError(f"hidden-probes layer {max(layers)} > the model's {n_states - 1}")
    correct, val_correct = torch.zeros(len(layers)), torch.zeros(len(layers))
    n_test, n_val, chance, majority = 0, 0, 0.0, 0.0
    per_fact = {}
    for fact in sorted({p.fact for p in probes}):
        # phase: the fact's classes (values with enough training items) and its parts
        rows = [i for i, p in enumerate(probes) if p.fact == fact]
        train = [i for i in rows if probes[i].entity in first]
        counts: dict[str, int] = {}
        for i in train:
            counts[value_of(probes[i])] = counts.get(value_of(probes[i]), 0) + 1
        classes = sorted(v for v, c in counts.items() if c >= options.min_per_class)
        index = {v: k for k, v in enumerate(classes)}
        train = [i for i in train if value_of(probes[i]) in index]
        test = [i for i in rows if probes[i].entity in second and value_of(probes[i]) in index]
        if len(classes) < 2 or not test:
            per_fact[fact] = {"classes": len(classes), "n_test": 0, "skipped": True}
            continue
        part_fit = [i for i in train if probes[i].entity in fit]
        part_val = [i for i in train if probes[i].entity in validation]
        if not part_fit or not part_val:  # too few training entities to hold some out
            part_val = []
        y_train, y_test, y_fit, y_val = (
            _labels(probes, items, index) for items in (train, test, part_fit, part_val)
        )
        # phase: per layer, a probe on the fit part scored on validation (the choice of layer)
        # and a probe on every training entity scored on the test entities (the number)
        acc = []
        for k, layer in enumerate(layers):
            if part_val:
                predict = fit_probe(states[layer, part_fit], y_fit, len(classes), options.l2,
                                    options.max_iter)  # fmt: skip
                val_correct[k] += int((predict(states[layer, part_val]) == y_val).sum())
            predict = fit_probe(
                states[layer, train], y_train, len(classes), options.l2, options.max_iter
            )
            hits = int((predict(states[layer, test]) == y_test).sum())
            correct[k] += hits
            acc.append(hits / len(test))
        most_common = max(range(len(classes)), key=lambda c: int((y_train == c).sum()))
        n_test += len(test)
        n_val += len(part_val)
        chance += len(test) / len(classes)
        majority += float((y_test == most_common).sum())
        per_fact[fact] = {
            "classes": len(classes),
            "n_train": len(train),
            "n_validation": len(part_val),
            "n_test": len(test),
            "accuracy": {str(layer): a for layer, a in zip(layers, acc, strict=True)},
        }
    if not n_test:
        return {"n_test": 0, "reason": "no fact type has two values with enough training items"}
    accuracy = (correct / n_test).tolist()
    out = {
        "accuracy": {str(layer): a for layer, a in zip(layers, accuracy, strict=True)},
        "chance": chance / n_test,
        "majority": majority / n_test,
        "n_test": n_test,
        "n_validation": n_val,
        "n_entities": {
            "train": len(first),
            "test": len(second),
            "fit": len(fit),
            "validation": len(validation),
        },  # fmt: skip
        "per_fact": per_fact,
    }
    if len(layers) == 1:  # nothing to choose
        best = 0
    elif not n_val:
        return out | {"best_layer": None, "best_accuracy": None,
                      "reason": "too few training entities to hold some out for the layer"}  # fmt: skip
    else:
        validation_accuracy = (val_correct / n_val).tolist()
        out["validation_accuracy"] = dict(zip(map(str, layers), validation_accuracy, strict=True))
        best = max(range(len(layers)), key=lambda k: validation_accuracy[k])  # ties: lowest layer
    return out | {"best_layer": layers[best], "best_accuracy": accuracy[best]}


def probe_model(model, bench, options: HiddenProbeOptions) -> dict:
    """{split: probe_split(...)} over the benchmark's fact probes."""
    groups = probes_by_split(bench, options.max_per_split)
    return {s: probe_split(model, bench.tokenizer, ps, options) for s, ps in sorted(groups.items())}


def _best(split: str):
    return lambda summary: (summary.get(split) or {}).get("best_accuracy")


HIDDEN_PROBE_METRICS = [
    Metric("forget_probe_accuracy", LOWER, _best("forget"), "forget facts linear probe acc",
           "accuracy"),
    Metric("retain_probe_accuracy", HIGHER, _best("retain"), "retain facts linear probe acc",
           "accuracy"),
]  # fmt: skip


@register_eval(
    "hidden-probes",
    options=HiddenProbeOptions,
    metrics=HIDDEN_PROBE_METRICS,
)
def run(ctx: EvalContext, options: HiddenProbeOptions) -> EvalResult:
    """Per-layer linear probes of fact values in the hidden states (train/test by entity)."""
    if not ctx.benchmark.probes:
        return EvalResult({"applicable": False, "reason": "the benchmark has no fact probes"})
    # the halves are hashed and the fits start from zeros: nothing draws at random; seeded anyway
    torch.manual_seed(ctx.seed)
    summary: dict = probe_model(ctx.model, ctx.benchmark, options)
    return EvalResult(summary)
