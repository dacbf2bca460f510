"""Answer a covariance request from the cache without loading the model, when that is certain.

A cache key needs the model's weight fingerprint and tokenizer probe, which normally cost a full
model load (transformers import, weights, a pass over every byte). For a local model folder
(including the embedded default's) the `ModelFacts` measured on the last full load is kept
in a folder memo (`lm.folder_memo`) that is void as soon as any file in the folder changes.
`cached_second_moments` uses it to rebuild the exact keys and read the cached files; whenever
anything is uncertain (a hub id, no memo, a changed folder, a missing or unusable cache file,
a layer out of range) it returns None and the caller takes the full path, which also refreshes
the memo. So correctness never rests on this shortcut: it returns only what the full path would.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Sequence

import torch

from covariance.cache import cached_statistic, statistic_path
from covariance.collect import CollectOptions
from covariance.corpus import Corpus
from covariance.identity import ModelFacts, keys_for_identity
from covariance.stats import SecondMoment
from lm.adapters import UnsupportedArchitecture, adapter_for_type
from lm.embedded import ModelNotAvailable
from lm.folder_memo import Snapshot, folder_snapshot, recall, remember
from lm.loading import resolve_model_source

# Bump when `model_fingerprint`, `tokenizer_fingerprint` or `ModelFacts` change meaning:
# memos written by older code would otherwise name the old keys.
IDENTITY_VERSION = "1"


@dataclass(frozen=True)
class LocalModel:
    """A model name that resolves to a local folder, and the folder's files before loading."""

    folder: Path
    snapshot: Snapshot

    @classmethod
    def find(cls, model_name: str) -> "LocalModel | None":
        """None for hub ids (their files live in the hub cache and may move to another revision)
        and for names that do not resolve; the full path reports those."""
        try:
            folder = Path(resolve_model_source(model_name)).expanduser()
            return cls(folder, folder_snapshot(folder)) if folder.is_dir() else None
        except (ModelNotAvailable, OSError):
            return None


def memo_kind(load_dtype: torch.dtype) -> str:
    """The identity depends on the load dtype (the fingerprint hashes the loaded tensors) and on
    the libraries that turn files into tensors and token ids, so each combination has its memo."""
    versions = ",".join(f"{package}={_version(package)}" for package in ("transformers", "tokenizers"))
    return f"covariance-identity-v{IDENTITY_VERSION}:{load_dtype}:torch={torch.__version__},{versions}"


def remember_identity(local: LocalModel, model, tok, load_dtype: torch.dtype) -> None:
    """Record the identity of a model just loaded from `local.folder` (before any edit), unless
    an up-to-date memo exists already (measuring it reads every weight byte)."""
    kind = memo_kind(load_dtype)
    if recall(local.folder, kind) is not None:
        return
    loaded_from = Path(getattr(model, "name_or_path", "") or "").expanduser()
    if not loaded_from.is_dir() or loaded_from.resolve() != local.folder.resolve():
        return  # the name resolved elsewhere by the time it was loaded; do not guess
    remember(local.folder, kind, local.snapshot, ModelFacts.of(model, tok).as_json())


def cached_second_moments(
    local: LocalModel,
    layers: Sequence[int],
    corpus: Corpus,
    options: CollectOptions,
    load_dtype: torch.dtype,
    cache_root: Path | None = None,
) -> dict[int, SecondMoment] | None:
    """Every requested layer's cached statistic, exactly as `second_moments` on the loaded model
    would return it (layers sorted, duplicates dropped), or None to say "take the full path"."""
    facts = recall(local.folder, memo_kind(load_dtype))
    identity = ModelFacts.from_json(facts) if facts is not None else None
    if identity is None or _config_model_type(local.folder) != identity.model_type:
        return None
    try:
        adapter_for_type(identity.model_type)
    except UnsupportedArchitecture:
        return None
    layers = sorted(set(layers))
    if not layers or not all(0 <= layer < identity.num_layers for layer in layers):
        return None
    found = {}
    for layer, key in keys_for_identity(identity, layers, corpus, options).items():
        path = statistic_path(key, cache_root)
        cached = cached_statistic(path, key, identity.mlp_width)
        if cached is None:
            return None  # absent or set aside as damaged: the full path computes it
        found[layer] = SecondMoment(layer, *cached, path)
    return found


def _config_model_type(folder: Path) -> str | None:
    """`model_type` from config.json read as plain JSON (no transformers import): a cross-check
    that the memo describes this kind of model."""
    try:
        return json.loads((folder / "config.json").read_text()).get("model_type")
    except (OSError, ValueError, AttributeError):
        return None


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "absent"
