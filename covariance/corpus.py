"""Turn a text corpus into the deterministic list of token sequences the statistics are summed over.

The same (text, tokenizer, max_length, token_budget) always gives the same sequences in the same
order, which is what makes shards, resumption and caching exact.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from data.corpus import CORPUS_NAMES, CorpusError, corpus_file_text, corpus_text

DEFAULT_CORPUS = "wikitext2-valid"


@dataclass(frozen=True)
class Corpus:
    """A named text; `digest` identifies its content in cache keys."""

    name: str
    text: str

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()[:16]


def load_corpus(source: str = DEFAULT_CORPUS) -> Corpus:
    """A shipped corpus by name, a local text file, or (when the `datasets` package is
    installed) an HF dataset written `hf:NAME[:CONFIG[:SPLIT]]`."""
    if source.startswith("hf:"):
        return _hf_corpus(source)
    if source in CORPUS_NAMES:
        return Corpus(source, corpus_text(source))
    if not Path(source).expanduser().is_file():
        known = ", ".join(CORPUS_NAMES)
        raise CorpusError(f"Corpus {source!r} is neither a shipped corpus ({known}) nor an existing file.")
    return Corpus(source, corpus_file_text(Path(source).expanduser()))


def _hf_corpus(source: str) -> Corpus:
    name, config, split = (source[3:].split(":") + [None, None])[:3]
    try:
        import datasets as hf_datasets  # optional; not a dependency of editscope
    except ImportError:
        raise CorpusError(f"Corpus {source!r} needs the `datasets` package (pip install datasets).") from None
    try:
        table = hf_datasets.load_dataset(name, config, split=split or "train")
    except Exception as error:  # the hub raises many types; the user needs one sentence
        raise CorpusError(f"Cannot load HF dataset {name!r}: {str(error).splitlines()[0]}") from None
    return Corpus(source, "\n".join(table["text"]))


def token_sequences(tok, corpus: Corpus, max_length: int, token_budget: int) -> list[list[int]]:
    """Paragraphs (non-empty lines) tokenised and truncated to `max_length`, taken in corpus
    order until exactly `token_budget` tokens are collected (the last one is cut to fit).

    Raises CorpusError if the corpus holds fewer tokens than the budget asks for.
    """
    if token_budget <= 0:
        raise CorpusError(f"The token budget must be positive, not {token_budget}.")
    if max_length < 2:
        raise CorpusError(f"The maximum sequence length must be at least 2, not {max_length}.")
    paragraphs = [line.strip() for line in corpus.text.splitlines() if line.strip()]
    sequences: list[list[int]] = []
    collected = 0
    chunk = 512  # tokenise in chunks so a small budget does not tokenise the whole corpus
    for start in range(0, len(paragraphs), chunk):
        for ids in tok(paragraphs[start : start + chunk])["input_ids"]:
            ids = ids[: min(max_length, token_budget - collected)]
            if len(ids) < 2:  # a lone token has no context; skip it rather than pad
                continue
            sequences.append(ids)
            collected += len(ids)
            if collected >= token_budget:
                return sequences
    raise CorpusError(
        f"Corpus {corpus.name!r} holds only {collected} usable tokens; "
        f"lower the token budget (asked for {token_budget})."
    )


def length_sorted_batches(sequences: list[list[int]], batch_size: int) -> list[list[list[int]]]:
    """Group sequences of similar length (stable sort, longest first) to waste little padding."""
    ordered = sorted(sequences, key=len, reverse=True)
    return [ordered[i : i + batch_size] for i in range(0, len(ordered), batch_size)]
