import pytest
from transformers import AutoTokenizer

from unlearnbench.data import storyworld as sw
from unlearnbench.data.tokenizer import EOS, cached_bpe, encode_batch, train_bpe


@pytest.fixture(scope="module")
def docs():
    return sw.generate_documents(1500, seed=0, languages=("en", "es"), spanish_fraction=0.4)


@pytest.fixture(scope="module")
def tok(docs):
    return train_bpe((d.text for d in docs), 1024)


def test_special_tokens(tok):
    assert tok.eos_token == EOS and tok.pad_token == EOS
    assert tok.eos_token_id == 0 and tok.pad_token_id == 0
    assert 900 <= len(tok) <= 1024


def test_round_trip(tok, docs):
    en = next(d.text for d in docs if d.meta["language"] == "en")
    es = next(d.text for d in docs if d.meta["language"] == "es")
    odd = "¡Oh, no!  Ñandú comió maíz… ☃ 中文\n\ttabs  and  spaces "
    texts = [en, es, odd, ""]
    ids = encode_batch(tok, texts)
    for t, i in zip(texts, ids, strict=True):
        assert tok.decode(i) == t
        assert 0 not in i  # no special tokens added
    assert ids[0] == tok(en)["input_ids"]
    assert len(ids[0]) < 2 * len(en.split())  # BPE learned word-level merges


def test_cache(tmp_path, docs):
    calls = []

    def texts():
        calls.append(1)
        return (d.text for d in docs[:500])

    a = cached_bpe(texts, 512, "sw", cache_dir=tmp_path)
    assert calls == [1]
    path = tmp_path / "tokenizers" / "sw-512"
    assert (path / "tokenizer.json").exists()
    assert [p.name for p in (tmp_path / "tokenizers").iterdir()] == ["sw-512"]  # no temp left
    b = cached_bpe(texts, 512, "sw", cache_dir=tmp_path)
    assert calls == [1]
    assert a.get_vocab() == b.get_vocab()
    c = AutoTokenizer.from_pretrained(str(path))
    assert c.get_vocab() == a.get_vocab() and c.eos_token == EOS and c.pad_token_id == 0
    text = docs[0].text
    assert encode_batch(c, [text]) == encode_batch(a, [text])
    assert c.decode(encode_batch(c, [text])[0]) == text


def test_cache_dir_from_env(tmp_path, monkeypatch, docs):
    monkeypatch.setenv("UNLEARNBENCH_CACHE", str(tmp_path))
    cached_bpe(lambda: (d.text for d in docs[:200]), 300, "envkey")
    assert (tmp_path / "tokenizers" / "envkey-300" / "tokenizer.json").exists()


def test_a_saved_tokenizer_names_a_portable_class_and_the_models_context(tmp_path, tok, docs):
    import json

    from unlearnbench.models.build import build_model, save_model

    model = build_model("tiny", len(tok), tok.eos_token_id, seed=0)
    path = save_model(model, tok, tmp_path / "model")
    config = json.loads((path / "tokenizer_config.json").read_text())
    # "TokenizersBackend" (transformers 5's own name) does not load under transformers 4
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert config["model_max_length"] == model.config.max_position_embeddings == 256
    loaded = AutoTokenizer.from_pretrained(str(path))
    assert loaded.model_max_length == 256 and loaded.pad_token_id == loaded.eos_token_id == 0
    text = docs[1].text
    assert encode_batch(loaded, [text]) == encode_batch(tok, [text])
    assert tok.model_max_length > 10**6  # the benchmark's tokenizer itself is left as it was


def test_a_saved_tokenizer_returns_only_what_the_model_takes(tmp_path, tok):
    """`model(**tok(x))` must be `model(input_ids=...)`: transformers 4 reads `model_input_names`
    from the saved config (without it, it returns token_type_ids and GPT-Neo adds the token-type
    embedding at every position; tests/test_oldest_transformers.py checks it under 4.46)."""
    import json

    import torch

    from unlearnbench.models.build import build_model, save_model

    model = build_model("tiny", len(tok), tok.eos_token_id, seed=0).eval()
    path = save_model(model, tok, tmp_path / "model")
    config = json.loads((path / "tokenizer_config.json").read_text())
    assert config["model_input_names"] == ["input_ids", "attention_mask"]
    batch = AutoTokenizer.from_pretrained(str(path))("Pip the fox", return_tensors="pt")
    assert sorted(batch) == ["attention_mask", "input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(
            model(**batch).logits, model(input_ids=batch["input_ids"]).logits
        )


def test_a_damaged_tokenizer_cache_is_named_and_rebuilt(tmp_path, capsys):
    from unlearnbench.data.tokenizer import cached_bpe

    texts = ["the fox lives in the cave", "el zorro vive en la cueva"] * 20
    tok = cached_bpe(lambda: texts, 300, "toy", tmp_path)
    path = next((tmp_path / "tokenizers").iterdir()) / "tokenizer.json"
    path.write_text("{ not json")
    again = cached_bpe(lambda: texts, 300, "toy", tmp_path)
    assert again("the fox")["input_ids"] == tok("the fox")["input_ids"]
    err = capsys.readouterr().err
    assert "tokenizer cache" in err and str(path) in err and "Traceback" not in err
