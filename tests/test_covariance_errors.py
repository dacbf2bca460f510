"""Bad input to the statistics: the right error class, one clear sentence, nothing written."""

from __future__ import annotations

import gzip

import pytest

from covariance.collect import CollectOptions
from covariance.corpus import Corpus, load_corpus
from covariance.stats import LayerRangeError, second_moments
from data.corpus import CorpusError
from tiny_models import CORPUS_TEXT, tiny_model

OPTIONS = CollectOptions(token_budget=200, max_length=24, batch_size=4, bf16=False)


@pytest.fixture(scope="module")
def model():
    return tiny_model("llama", seed=3)


def run(model, tok, root, corpus="tiny", layers=(0,), **options):
    corpus = Corpus("tiny", CORPUS_TEXT) if corpus == "tiny" else corpus
    opts = CollectOptions(**{**OPTIONS.__dict__, **options})
    return second_moments(model, tok, list(layers), corpus, opts, cache_root=root)


def check(error, *fragments) -> None:
    message = str(error.value)
    assert "\n" not in message and message.endswith(".") and len(message) < 300, message
    for fragment in fragments:
        assert fragment in message, message


def nothing_written(root) -> bool:
    return not root.exists() or not any(root.rglob("*"))


@pytest.mark.parametrize("budget", [0, -10])
def test_non_positive_token_budget(model, tiny_tok, tmp_path, budget):
    root = tmp_path / "cache"
    with pytest.raises(CorpusError) as error:
        run(model, tiny_tok, root, token_budget=budget)
    check(error, "token budget must be positive", str(budget))
    assert nothing_written(root)


def test_budget_larger_than_corpus(model, tiny_tok, tmp_path):
    root = tmp_path / "cache"
    with pytest.raises(CorpusError) as error:
        run(model, tiny_tok, root, token_budget=10**6)
    check(error, "'tiny'", "lower the token budget", str(10**6))
    assert nothing_written(root)


def test_missing_corpus_file(model, tiny_tok, tmp_path):
    root, missing = tmp_path / "cache", tmp_path / "no-such-corpus.txt"
    with pytest.raises(CorpusError) as error:
        run(model, tiny_tok, root, corpus=str(missing))
    check(error, str(missing), "wikitext2-valid")
    assert nothing_written(root)


@pytest.mark.parametrize("name,content", [("empty.txt", b""), ("blank.txt", b"  \n\n \n"),
                                          ("empty.txt.gz", gzip.compress(b""))])
def test_empty_corpus_file(model, tiny_tok, tmp_path, name, content):
    root, path = tmp_path / "cache", tmp_path / name
    path.write_bytes(content)
    with pytest.raises(CorpusError) as error:
        run(model, tiny_tok, root, corpus=str(path))
    check(error, str(path), "holds no text")
    assert nothing_written(root)


def test_non_utf8_corpus_file(model, tiny_tok, tmp_path):
    root, path = tmp_path / "cache", tmp_path / "latin1.txt"
    path.write_bytes("Café au lait.\n".encode("latin-1"))
    with pytest.raises(CorpusError) as error:
        run(model, tiny_tok, root, corpus=str(path))
    check(error, str(path), "UTF-8")
    assert nothing_written(root)


def test_local_corpus_file_is_used(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(CORPUS_TEXT)
    corpus = load_corpus(str(path))
    assert corpus.text == CORPUS_TEXT and corpus.digest == Corpus("x", CORPUS_TEXT).digest


@pytest.mark.parametrize("layers,fragment", [([3], "[3]"), ([-1], "[-1]"), ([0, 7], "[7]")])
def test_layers_out_of_range(model, tiny_tok, tmp_path, layers, fragment):
    root = tmp_path / "cache"
    with pytest.raises(LayerRangeError) as error:
        run(model, tiny_tok, root, layers=layers)
    check(error, fragment, "layers 0-2")
    assert nothing_written(root)


def test_no_layers(model, tiny_tok, tmp_path):
    root = tmp_path / "cache"
    with pytest.raises(LayerRangeError) as error:
        run(model, tiny_tok, root, layers=[])
    check(error, "No layers")
    assert nothing_written(root)


def test_max_length_too_small(model, tiny_tok, tmp_path):
    root = tmp_path / "cache"
    with pytest.raises(CorpusError) as error:
        run(model, tiny_tok, root, max_length=1)
    check(error, "at least 2")
    assert nothing_written(root)
