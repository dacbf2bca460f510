"""`covariance --null-space-shares`: one row per layer, and the dimensions it reports are the
ranks of the projectors AlphaEdit builds from the same cached statistics."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from cli import main
from covariance.collect import CollectOptions
from covariance.corpus import Corpus
from covariance.stats import second_moments
from editors.solve import energy_null_space_projector, null_space_projector
from lm.loading import load
from tiny_models import CORPUS_TEXT, tiny_model, tiny_tokenizer

SHARES = (0.01, 0.1, 0.5)


@pytest.fixture
def args(tmp_path, tmp_cache) -> list[str]:
    folder = tmp_path / "tiny-llama"
    tiny_model("llama", seed=3).save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(CORPUS_TEXT)
    return ["covariance", "--model", str(folder), "--layers", "0,2", "--tokens", "300", "--max-length", "24",
            "--batch-size", "3", "--dtype", "fp32", "--corpus", str(corpus),
            "--null-space-shares", ",".join(map(str, SHARES))]


def rank(projector: torch.Tensor) -> int:
    return round(float(projector.trace()))  # an orthogonal projector's trace is its rank


def test_null_space_rows_match_the_projectors_alphaedit_builds(args, tmp_path):
    result = CliRunner().invoke(main, [*args, "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)["layers"]
    assert [row["layer"] for row in rows] == [0, 2]

    model, tok = load(args[2], device="cpu")
    corpus = Corpus("tiny", CORPUS_TEXT)
    options = CollectOptions(token_budget=300, max_length=24, batch_size=3, bf16=False)
    moments = second_moments(model, tok, [0, 2], corpus, options)  # the cached files of the run
    for row in rows:
        C = moments[row["layer"]].matrix()
        kept = row["null_space"]
        assert kept["width"] == C.shape[0]
        assert [kept["kept_at_share"][repr(share)] for share in SHARES] == [
            rank(energy_null_space_projector(C, share)) for share in SHARES]
        assert kept["threshold_kept"] == rank(null_space_projector(C, 2e-2))
        assert 0 <= kept["threshold_energy_share"] <= 1

    table = CliRunner().invoke(main, args)  # now a cache hit
    assert table.exit_code == 0, table.output
    assert "Null-space dimension kept" in table.output
    body = [line.split("│")[1].strip() for line in table.output.splitlines() if line.count("│") == len(SHARES) + 5]
    assert body == ["0", "2"]  # one row per layer (the header row is drawn with ┃)


def test_null_space_shares_outside_zero_one_are_a_usage_error(args):
    result = CliRunner().invoke(main, [*args[:-1], "0.01,2"])
    assert result.exit_code == 2 and "(0, 1]" in result.output
