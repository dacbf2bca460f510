"""Pre-edit reference values, computed once on the unedited model and cached as JSON.

Locality compares the edited model with the *unedited* model's argmax on each probe, and
perplexity "after" is read against perplexity "before". Both references depend only on the
model, the tokenizer and the text scored, so they are cached under
`<cache root>/baselines/<model fingerprint>/` with a key hashed from the tokenizer's vocabulary
and the exact texts (for locality: every probe of the records, in order). Equal records drawn
from the same file with the same indices therefore share one file across runs and editors;
the file also names the records' indices and data set for a human reader. Files are sealed
(`lm.cache_entries`); a damaged or mismatched one is moved aside and recomputed, never trusted.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from data.requests import EditRequest
from experiments.heldout import HeldoutText, PieceLosses, heldout_losses
from experiments.scoring import locality_predictions
from lm.cache_entries import read_sealed_json, set_aside, write_sealed_json
from lm.files import cache_root
from lm.scoring import LMScorer

# Bump when the way a reference value is computed changes, so older files stop matching.
BASELINE_VERSION = 2  # 2: held-out pieces scored after their preceding words, losses per piece


class BaselineCache:
    """Reference values of one unedited model; call before any edit is applied."""

    def __init__(self, model: Any, tok: Any, fingerprint: str, directory: Path | None = None):
        self.scorer = LMScorer.within_budget(model, tok)
        self.directory = Path(directory or cache_root() / "baselines") / fingerprint
        self.fingerprint = fingerprint
        self.tokenizer_digest = _digest(sorted(tok.get_vocab().items()))

    def locality(self, requests: Sequence[EditRequest], about: Mapping[str, Any]) -> list[dict[str, list[list[int]]]]:
        """Unedited argmax ids on every locality probe of every request (request order).

        `about` (e.g. the data set and record indices) is stored in the file for readers only.
        """
        probes = [[[group, [[p.prompt, p.ground_truth] for p in group_probes]]
                   for group, group_probes in request.locality.items()] for request in requests]
        path = self.directory / f"locality-{self._key(probes)}.json"
        cached = _read_json(path)
        if cached is not None:
            if _fits(cached.get("predictions"), requests):
                return cached["predictions"]
            set_aside(path, "its predictions do not fit the requests")
        predictions = locality_predictions(self.scorer, requests)
        write_sealed_json(path, {**self._header(), "about": dict(about), "predictions": predictions})
        return predictions

    def perplexity(self, text: HeldoutText) -> PieceLosses:
        """Per-piece losses of the held-out text under the unedited model."""
        path = self.directory / f"perplexity-{self._key([text.prompts, text.targets])}.json"
        cached = _read_json(path)
        if cached is not None:
            if _fits_pieces(cached, len(text.targets)):
                return PieceLosses(tuple(cached["piece_nll"]), tuple(cached["piece_tokens"]))
            set_aside(path, "it holds no per-piece losses for this text")
        losses = heldout_losses(self.scorer, text)
        write_sealed_json(path, {**self._header(), "corpus": text.corpus, "tokens": text.tokens,
                                 "perplexity": losses.perplexity, "piece_nll": list(losses.nll),
                                 "piece_tokens": list(losses.tokens)})
        return losses

    def _key(self, content: Any) -> str:
        return _digest([BASELINE_VERSION, self.tokenizer_digest, content])[:32]

    def _header(self) -> dict[str, Any]:
        return {"version": BASELINE_VERSION, "model_fingerprint": self.fingerprint,
                "tokenizer_digest": self.tokenizer_digest}


def _digest(content: Any) -> str:
    return hashlib.sha256(json.dumps(content, ensure_ascii=False).encode()).hexdigest()


def _read_json(path: Path) -> dict[str, Any] | None:
    """The cached object; None if absent or damaged (then set aside, and recomputed)."""
    payload = read_sealed_json(path)
    if payload is None or isinstance(payload, dict):
        return payload
    set_aside(path, "it holds no JSON object")
    return None


def _fits(predictions: Any, requests: Sequence[EditRequest]) -> bool:
    """Whether cached predictions have the groups and probe counts of `requests`."""
    if not isinstance(predictions, list) or len(predictions) != len(requests):
        return False
    for entry, request in zip(predictions, requests):
        if not isinstance(entry, dict) or set(entry) != set(request.locality):
            return False
        for group, probes in request.locality.items():
            if not isinstance(entry[group], list) or len(entry[group]) != len(probes):
                return False
    return True


def _fits_pieces(cached: Mapping[str, Any], pieces: int) -> bool:
    """Whether a cached perplexity file holds one loss and one token count per piece."""
    nll, tokens = cached.get("piece_nll"), cached.get("piece_tokens")
    return (isinstance(nll, list) and isinstance(tokens, list) and len(nll) == len(tokens) == pieces
            and all(isinstance(v, (int, float)) for v in nll)
            and all(isinstance(v, int) and v > 0 for v in tokens))
