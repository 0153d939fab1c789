"""The labeling model, the train/test split, and config resolution."""

import pytest

from unlearnbench.config import ConfigError, LabelConfig, RunConfig, parse_assignments
from unlearnbench.data.labels import label_document
from unlearnbench.data.splits import is_test
from unlearnbench.runner import resolve_run_config

IDS = [f"doc-{i}" for i in range(4000)]


def test_labels_depend_only_on_seed_and_id():
    cfg = LabelConfig(recall=0.7)
    a = [label_document(i, "forget", cfg, 3) for i in IDS]
    b = [label_document(i, "forget", cfg, 3) for i in reversed(IDS)][::-1]
    assert a == b, "labels must not depend on document order"
    c = [label_document(i, "forget", cfg, 4) for i in IDS]
    assert a != c, "a different seed draws different labels"


def test_label_rates_and_nesting():
    low = [label_document(i, "forget", LabelConfig(recall=0.5), 0).label for i in IDS]
    high = [label_document(i, "forget", LabelConfig(recall=0.9), 0).label for i in IDS]
    assert abs(low.count("forget") / len(IDS) - 0.5) < 0.03
    assert abs(high.count("forget") / len(IDS) - 0.9) < 0.03
    assert all(h == "forget" for lo, h in zip(low, high, strict=True) if lo == "forget")
    assert set(high) == {"forget", "unlabeled"}, "forget documents are never labeled retain"
    retain = [label_document(i, "retain", LabelConfig(), 0).label for i in IDS]
    assert set(retain) == {"retain", "unlabeled"}
    assert abs(retain.count("retain") / len(IDS) - 0.25) < 0.03  # SGTM's 25% default


def test_adjacent_false_positives_and_strict_flags():
    cfg = LabelConfig(recall=1.0, adjacent_label_rate=0.3, false_positive_rate=0.2)
    labs = [label_document(i, "adjacent", cfg, 0) for i in IDS]
    frac = {k: sum(lab.label == k for lab in labs) / len(IDS) for k in ("forget", "retain")}
    assert abs(frac["forget"] - 0.2) < 0.03 and abs(frac["retain"] - 0.3) < 0.03
    assert all(lab.flagged_adjacent for lab in labs), "recall 1: the strict filter flags all"


def test_test_split_is_a_stable_hash_of_the_id():
    first = [is_test(i, 0.1) for i in IDS]
    assert first == [is_test(i, 0.1) for i in IDS]
    assert abs(sum(first) / len(IDS) - 0.1) < 0.02
    assert first != [is_test(i, 0.1, split_seed=1) for i in IDS]


def test_resolve_layers_overrides_and_hash():
    cfg = resolve_run_config(
        "sgtm",
        "storyworld-lang",
        "tiny",
        0,
        {"recall": "0.9", "forget_mlp_dim": "32", "steps": "7"},
    )
    assert (
        cfg.labels.recall == 0.9
        and cfg.method_options["forget_mlp_dim"] == 32
        and cfg.train.steps == 7
    )
    same = resolve_run_config(
        "sgtm",
        "storyworld-lang",
        "tiny",
        1,
        {"labels.recall": 0.9, "method.forget_mlp_dim": 32, "train.steps": 7},
    )
    assert cfg.config_hash == same.config_hash, "the seed is not part of the config hash"
    assert cfg.run_id != same.run_id
    other = resolve_run_config("sgtm", "storyworld-lang", "tiny", 0, {"recall": "0.8"})
    assert other.config_hash != cfg.config_hash
    assert RunConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"recal": "0.9"}, "unknown key 'recal'; did you mean recall"),
        ({"recall": "1.5"}, "recall must be in [0, 1]"),
        ({"steps": "many"}, "not a valid int"),
        ({"mask_embeddings": "maybe"}, "not a valid bool"),
    ],
)
def test_bad_overrides_are_config_errors(overrides, message):
    with pytest.raises(ConfigError) as e:
        resolve_run_config("sgtm", "storyworld-lang", "tiny", 0, overrides)
    assert message in str(e.value)


def test_parse_assignments_requires_key_value():
    assert parse_assignments(["a=1", "b = x=y"]) == {"a": "1", "b": "x=y"}
    with pytest.raises(ConfigError):
        parse_assignments(["novalue"])
