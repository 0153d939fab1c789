"""A saved model read through another benchmark's tokenizer is refused wherever one is loaded: a
post-hoc base and a `checkpoint=` (tests/test_reliability_inputs.py) and the base a direction
ablation compares with (here); a model that fits passes."""

from types import SimpleNamespace

import pytest

from unlearnbench.config import ConfigError
from unlearnbench.data.benchmarks import load_benchmark, option_defaults
from unlearnbench.models.build import build_model, load_model, save_model
from unlearnbench.models.compat import check_compatible
from unlearnbench.results.store import RunStore


@pytest.fixture(scope="module")
def benches():
    return {
        b: load_benchmark(b, option_defaults(b) | {"n_stories": 300})
        for b in ("storyworld-lang", "storyworld-topic")
    }


@pytest.fixture(scope="module")
def lang_model(benches, tmp_path_factory):
    tok = benches["storyworld-lang"].tokenizer
    path = tmp_path_factory.mktemp("models") / "lang"
    save_model(build_model("tiny", len(tok), tok.eos_token_id, 0), tok, path)
    return str(path)


def test_a_direction_ablation_base_with_another_tokenizer_is_refused(benches, lang_model, tmp_path):
    from unlearnbench.evals.direction_ablation import _load_base

    ctx = SimpleNamespace(
        benchmark=benches["storyworld-topic"],
        device="cpu",
        record={"run_id": "rmu-run", "base": lang_model},
        store=RunStore(tmp_path),
    )
    n_topic = len(benches["storyworld-topic"].tokenizer)
    with pytest.raises(ConfigError, match=f"agrees with storyworld-topic's \\({n_topic} ids\\) on"):
        _load_base(ctx)


def test_a_model_of_the_same_benchmark_passes_even_with_a_larger_output_layer(
    benches, lang_model, tmp_path
):
    lang = benches["storyworld-lang"]
    assert check_compatible(load_model(lang_model), lang_model, lang, "base model", 256)
    # a GPT-2-vocabulary preset on the built-in world: 50,257 rows, the world's own (smaller) tokenizer
    wide = build_model("8M", len(lang.tokenizer), lang.eos_id, 0)
    save_model(wide, lang.tokenizer, tmp_path / "wide")
    assert check_compatible(load_model(tmp_path / "wide"), tmp_path / "wide", lang, "base", 512)
    with pytest.raises(ConfigError, match="context=1024 is longer than base .* 512 positions"):
        check_compatible(wide, tmp_path / "wide", lang, "base", 1024)
