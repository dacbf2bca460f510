"""Plain-text corpora: the shipped WikiText-2 splits and any local text file.

`wikitext2-valid` is the default text for key covariance statistics; `wikitext2-test` is kept
apart as held-out text for perplexity, so the two uses never see the same tokens.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

from lm.errors import UsageError

CORPUS_NAMES = ("wikitext2-valid", "wikitext2-test")

FILES_DIR = Path(__file__).with_name("files")


class CorpusError(UsageError):
    """A corpus name or file cannot be used (one sentence says which and why)."""


def shipped_corpus_file(name: str) -> Path:
    """Where the compressed copy of a shipped corpus lives."""
    return FILES_DIR / "corpus" / f"{name}.txt.gz"


def corpus_text(name: str = "wikitext2-valid") -> str:
    """Full text of a shipped corpus."""
    if name not in CORPUS_NAMES:
        raise CorpusError(f"Unknown corpus {name!r}; choose one of {', '.join(CORPUS_NAMES)}.")
    return corpus_file_text(shipped_corpus_file(name))


def corpus_file_text(path: str | Path) -> str:
    """Full text of a local UTF-8 text file (gzip-compressed when its name ends in .gz)."""
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        text = raw.decode("utf-8")
    except FileNotFoundError:
        raise CorpusError(f"There is no corpus file at {path}.") from None
    except UnicodeDecodeError:
        raise CorpusError(f"{path} is not UTF-8 text.") from None
    except (OSError, EOFError, zlib.error) as error:
        raise CorpusError(f"{path} cannot be read as a corpus file ({error}).") from None
    if not text.strip():
        raise CorpusError(f"{path} holds no text, so it cannot serve as a corpus.")
    return text
