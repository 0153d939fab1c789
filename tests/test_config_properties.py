"""Property-based tests (hypothesis) of config parsing and of the split and labeling rules."""

import dataclasses
import math

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from unlearnbench.config import (
    ConfigError,
    LabelConfig,
    RunConfig,
    TrainConfig,
    parse_value,
    resolve,
)
from unlearnbench.data.labels import label_document
from unlearnbench.data.splits import is_test, stable_uniform

FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
doc_ids = st.text(min_size=1, max_size=20)
rates = st.floats(0.0, 1.0)


@dataclasses.dataclass(frozen=True)
class Opts:
    width: int = 4
    scale: float = 1.0
    layers: tuple[int, ...] = ()
    name: str = "a"
    flag: bool = False
    checkpoint: str | None = None


# ---- parse_value -------------------------------------------------------------------------------


@FAST
@given(st.integers(-(10**12), 10**12))
def test_int_round_trips_through_text(v):
    assert parse_value(str(v), int, "k") == v


@FAST
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_float_round_trips_through_text(v):
    assert parse_value(repr(v), float, "k") == v


@FAST
@given(st.booleans(), st.sampled_from([str, str.upper, str.lower]))
def test_bool_accepts_its_spellings(v, case):
    spellings = ["true", "1", "yes", "on"] if v else ["false", "0", "no", "off"]
    for s in spellings:
        assert parse_value(case(s), bool, "k") is v


@FAST
@given(st.lists(st.integers(-1000, 1000), max_size=6))
def test_int_tuples_parse_from_commas(xs):
    assert parse_value(",".join(map(str, xs)), tuple[int, ...], "k") == tuple(xs)


numberish = st.one_of(
    st.text(max_size=12),
    st.from_regex(r"-?[0-9]{1,3}(\.[0-9]*)?[eE]-?[0-9]{1,4}", fullmatch=True),
    st.sampled_from(["inf", "-inf", "nan", "Infinity", "1e999", "-1e999", "0x10", " 3 "]),
)


@FAST
@given(numberish, st.sampled_from([int, float, bool, tuple[int, ...], int | None]))
def test_any_text_parses_or_is_a_config_error(raw, typ):
    """Never a crash with another exception type: a bad value is the user's mistake."""
    try:
        out = parse_value(raw, typ, "key")
    except ConfigError as e:
        assert "key" in str(e)
        return
    if typ is int:
        assert isinstance(out, int) and not isinstance(out, bool)
    elif typ is float:
        assert isinstance(out, float) and math.isfinite(out), "NaN and infinity must be refused"
    elif typ is bool:
        assert isinstance(out, bool)


@FAST
@given(st.floats(allow_nan=False, allow_infinity=False).filter(lambda v: not v.is_integer()))
def test_non_integral_float_is_not_an_int(v):
    try:
        parse_value(v, int, "k")
    except ConfigError:
        return
    raise AssertionError(f"{v} was accepted as an int")


# ---- resolve -----------------------------------------------------------------------------------

KEYS = ["steps", "lr", "recall", "retain_label_rate", "width", "scale", "method.layers", "flag"]
KEYS += ["train.batch_size", "labels.false_positive_rate", "nonsense", "lrr", "method.nope"]


@FAST
@given(st.dictionaries(st.sampled_from(KEYS), st.text(max_size=8), max_size=5))
def test_resolve_returns_a_valid_config_or_a_config_error(overrides):
    try:
        cfg = resolve("m", "b", "tiny", 0, overrides, method_options_cls=Opts)
    except ConfigError:
        return
    assert 0.0 <= cfg.labels.recall <= 1.0
    assert cfg.train.steps >= 1 and cfg.train.lr > 0
    assert cfg.train.micro_batch_size <= cfg.train.batch_size
    assert RunConfig.from_dict(cfg.to_dict()) == cfg, "a resolved config must survive its record"


@FAST
@given(
    st.integers(1, 10_000),  # 0 steps is refused: it would record an untrained model
    st.floats(1e-6, 10.0),
    rates,
    st.lists(st.integers(0, 7), max_size=3),
    st.integers(0, 1000),
)
def test_resolve_applies_values_and_the_hash_ignores_only_seed_and_checkpoints(
    steps, lr, recall, layers, every
):
    overrides = {
        "steps": str(steps),
        "train.lr": repr(lr),
        "recall": repr(recall),
        "method.layers": ",".join(map(str, layers)),
    }
    cfg = resolve("m", "b", "tiny", 0, overrides, method_options_cls=Opts)
    assert (cfg.train.steps, cfg.train.lr, cfg.labels.recall) == (steps, lr, recall)
    assert cfg.method_options["layers"] == tuple(layers)
    other_seed = dataclasses.replace(cfg, seed=1)
    ckpt = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, checkpoint_every=every))
    assert cfg.config_hash == other_seed.config_hash == ckpt.config_hash
    changed = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, steps=steps + 1))
    assert changed.config_hash != cfg.config_hash


@FAST
@given(st.sampled_from(["recall", "retain_label_rate", "adjacent_label_rate"]), st.floats())
def test_rates_outside_unit_interval_are_refused(name, v):
    assume(v == v)
    try:
        cfg = resolve("m", "b", "tiny", 0, {name: repr(v)})
    except ConfigError:
        assert not 0.0 <= v <= 1.0
        return
    assert 0.0 <= getattr(cfg.labels, name) <= 1.0


# ---- split and labeling rules ------------------------------------------------------------------


@FAST
@given(st.lists(st.text(max_size=10), max_size=4))
def test_stable_uniform_is_in_unit_interval_and_deterministic(parts):
    u = stable_uniform(*parts)
    assert 0.0 <= u < 1.0 and u == stable_uniform(*parts)


@FAST
@given(doc_ids, rates, rates, st.integers(0, 5))
def test_test_membership_is_monotone_in_the_fraction(doc, a, b, seed):
    lo, hi = sorted((a, b))
    if is_test(doc, lo, seed):
        assert is_test(doc, hi, seed), "a larger test fraction must keep every test document"
    assert not is_test(doc, 0.0, seed)
    assert is_test(doc, 1.0, seed)


@FAST
@given(doc_ids, rates, rates, st.integers(0, 5))
def test_forget_labels_are_nested_in_recall(doc, a, b, seed):
    lo, hi = sorted((a, b))
    small = label_document(doc, "forget", LabelConfig(recall=lo), seed)
    large = label_document(doc, "forget", LabelConfig(recall=hi), seed)
    assert small.label in ("forget", "unlabeled") and large.label in ("forget", "unlabeled")
    if small.label == "forget":
        assert large.label == "forget"
    assert label_document(doc, "forget", LabelConfig(recall=1.0), seed).label == "forget"
    assert label_document(doc, "forget", LabelConfig(recall=0.0), seed).label == "unlabeled"


@FAST
@given(doc_ids, rates, rates, rates, st.integers(0, 5))
def test_labels_never_reveal_more_than_the_rates_allow(doc, retain_rate, adj_rate, fp, seed):
    assume(adj_rate + fp <= 1.0)
    cfg = LabelConfig(
        recall=1.0,
        retain_label_rate=retain_rate,
        adjacent_label_rate=adj_rate,
        false_positive_rate=fp,
    )
    retain = label_document(doc, "retain", cfg, seed)
    assert retain.label in ("retain", "unlabeled"), "a retain document is never labeled forget"
    assert not retain.flagged_adjacent
    if retain_rate == 0.0:
        assert retain.label == "unlabeled"
    adjacent = label_document(doc, "adjacent", cfg, seed)
    if fp == 0.0:
        assert adjacent.label != "forget", "only false positives label adjacent data forget"
    if adj_rate == 0.0:
        assert adjacent.label != "retain"
    # the label does not depend on the order of calls or on other documents
    assert label_document(doc, "adjacent", cfg, seed) == adjacent


@FAST
@given(doc_ids, st.integers(0, 5), st.integers(0, 5))
def test_seeds_change_draws_but_never_the_rules(doc, s1, s2):
    for seed in (s1, s2):
        assert label_document(doc, "retain", LabelConfig(retain_label_rate=0.0), seed).label == (
            "unlabeled"
        )


def test_defaults_are_valid():
    resolve("m", "b", "tiny", 0, {})
    assert TrainConfig().checkpoint_every == 0
