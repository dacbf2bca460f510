"""Pooled knowledge-encoder vectors of a fixed set of texts, computed once and cached on disk.

Training keeps the encoder frozen, so every text it will ever see (edit prompts, statements,
rephrasings, locality prompts) can be encoded in one pass; a training step then only looks
rows up. The cache file is keyed by the encoder's content fingerprint and a hash of the texts,
so a table can never be reused for another encoder or another data set.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Iterable, Sequence

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from lm.cache_entries import sealed_file, set_aside, verified
from lm.progress import Progress

FORMAT_NAME = "editscope.encoder_features"
_CHUNK = 512  # texts per encoder call between progress reports


class FeatureTable:
    """Rows of pooled vectors [N, 4h] (stored fp16, returned fp32) looked up by text."""

    def __init__(self, texts: Sequence[str], features: torch.Tensor):
        if features.shape[0] != len(texts):
            raise ValueError(f"{features.shape[0]} feature rows for {len(texts)} texts.")
        self._rows = {text: row for row, text in enumerate(texts)}
        self.features = features

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, text: str) -> bool:
        return text in self._rows

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        """fp32 vectors [len(texts), 4h]; KeyError names a text that was never encoded."""
        try:
            rows = [self._rows[text] for text in texts]
        except KeyError as error:
            raise KeyError(f"No encoder features for text {error.args[0]!r}.") from None
        return self.features[torch.tensor(rows, dtype=torch.long)].float()

    @classmethod
    def build(
        cls,
        encoder,
        texts: Iterable[str],
        cache_dir: Path | None = None,
        progress: Progress | None = None,
    ) -> "FeatureTable":
        """Encode the distinct `texts` (sorted), or read them from `cache_dir` if encoded before.

        `progress(done, total)` is called after each chunk of texts.
        """
        ordered = sorted(set(texts))
        path = None
        if cache_dir is not None:
            key = _cache_key(encoder.identity().fingerprint, ordered)
            path = Path(cache_dir) / f"features-{key}.safetensors"
            cached = _read(path, len(ordered))
            if cached is not None:
                return cls(ordered, cached)
        chunks = []
        with torch.no_grad():
            for start in range(0, len(ordered), _CHUNK):
                chunk = ordered[start : start + _CHUNK]
                chunks.append(encoder.encode(chunk).to("cpu", torch.float16))
                if progress is not None:
                    progress(start + len(chunk), len(ordered))
        features = torch.cat(chunks) if chunks else torch.empty(0, encoder.output_width, dtype=torch.float16)
        if path is not None:
            with sealed_file(path) as temporary:
                save_file(
                    {"features": features.contiguous()}, temporary,
                    metadata={FORMAT_NAME: json.dumps({"count": len(ordered)})},
                )
        return cls(ordered, features)


def _cache_key(encoder_fingerprint: str, ordered_texts: Sequence[str]) -> str:
    digest = hashlib.sha256(encoder_fingerprint.encode())
    for text in ordered_texts:
        digest.update(text.encode())
        digest.update(b"\0")  # so ("ab", "c") and ("a", "bc") differ
    return digest.hexdigest()[:24]


def _read(path: Path, count: int) -> torch.Tensor | None:
    """The cached features, or None when the file is absent or unusable (it is then set aside
    with a warning, and rebuilt)."""
    if not verified(path):
        return None
    try:
        with safe_open(path, framework="pt") as reader:
            header = json.loads((reader.metadata() or {}).get(FORMAT_NAME, "null"))
            features = reader.get_tensor("features")
    except Exception as error:  # noqa: BLE001 - a damaged cache is only a cache: recompute it
        set_aside(path, f"unreadable ({error})")
        return None
    if not isinstance(header, dict) or header.get("count") != count or features.shape[0] != count:
        set_aside(path, f"it does not hold {count} feature rows")
        return None
    return features
