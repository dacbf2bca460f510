"""Content-addressed cache of second-moment sums, plus resumable partial sums.

A file's name is a hash of everything that changes its content (model fingerprint, tokenizer,
layer, module, corpus digest, token budget, max length, compute dtype, code version); the same
fields are stored in the file's metadata and re-checked on every load, so a file computed for
another model, layer or shape is refused instead of being used silently. Each file is sealed
(`lm.cache_entries`): a damaged or refused one is moved aside and computed again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from lm.cache_entries import sealed_file, set_aside, verified
from lm.files import atomic_path, cache_root

STATISTIC_VERSION = "1"  # bump when the collected statistic changes meaning


class CovarianceCacheError(ValueError):
    """A cache file exists but does not belong to the requested statistic (the caller sets
    it aside and recomputes: a cache is never the user's mistake)."""


@dataclass(frozen=True)
class StatisticKey:
    model: str
    tokenizer: str
    module: str
    layer: int
    corpus: str
    token_budget: int
    max_length: int
    compute_dtype: str
    version: str = STATISTIC_VERSION

    def as_metadata(self) -> dict[str, str]:
        return {name: str(value) for name, value in asdict(self).items()}

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.as_metadata(), sort_keys=True).encode()).hexdigest()[:20]


def tokenizer_fingerprint(tok) -> str:
    """Vocabulary size plus the ids of a fixed probe text: changes whenever tokens would."""
    probe = "Key statistics: 1,234 tokens; naïve café — résumé.\n"
    ids = tok(probe)["input_ids"]
    return hashlib.sha256(f"{len(tok)}:{ids}".encode()).hexdigest()[:16]


def cache_dir(root: Path | None = None) -> Path:
    return Path(root) if root is not None else cache_root() / "covariance"


def statistic_path(key: StatisticKey, root: Path | None = None) -> Path:
    return cache_dir(root) / key.model / f"{key.module}.{key.digest()}.safetensors"


def save_statistic(path: Path, key: StatisticKey, total: torch.Tensor, tokens: int) -> None:
    metadata = {**key.as_metadata(), "tokens": str(tokens)}
    with sealed_file(path) as tmp:
        save_file({"sum": total.contiguous()}, str(tmp), metadata=metadata)


def cached_statistic(path: Path, key: StatisticKey, width: int) -> tuple[torch.Tensor, int] | None:
    """The cached (sum, tokens) if `path` holds this statistic intact; None if it is absent,
    or damaged or another statistic's (then it is moved aside with a warning)."""
    if not verified(path):
        return None
    try:
        return load_statistic(path, key, width)
    except CovarianceCacheError as error:
        set_aside(path, str(error))
        return None


def load_statistic(path: Path, key: StatisticKey, width: int) -> tuple[torch.Tensor, int]:
    """Read and check a cached sum. Raises CovarianceCacheError on any mismatch or damage."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            total = handle.get_tensor("sum")
    except (SafetensorError, OSError, KeyError, ValueError) as error:
        raise CovarianceCacheError(f"Covariance cache file {path} is unreadable ({error}).") from None
    expected = key.as_metadata()
    wrong = sorted(name for name, value in expected.items() if metadata.get(name) != value)
    if wrong:
        details = ", ".join(f"{n}={metadata.get(n)!r} (expected {expected[n]!r})" for n in wrong)
        raise CovarianceCacheError(f"Covariance cache file {path} belongs to another statistic: {details}.")
    if tuple(total.shape) != (width, width) or total.dtype != torch.float64:
        raise CovarianceCacheError(
            f"Covariance cache file {path} holds a {tuple(total.shape)} {total.dtype} matrix; "
            f"this model's layer needs ({width}, {width}) float64."
        )
    try:
        tokens = int(metadata.get("tokens", "0"))
    except ValueError:  # a mangled count is damage, reported below like a zero count
        tokens = 0
    if tokens <= 0 or not torch.isfinite(total).all():
        raise CovarianceCacheError(f"Covariance cache file {path} is damaged (no tokens or non-finite sums).")
    return total, tokens


def partial_path(keys: list[StatisticKey], rank_index: int, world: int, root: Path | None = None) -> Path:
    """Where a rank checkpoints the partial sums of one multi-layer pass."""
    joint = hashlib.sha256("".join(k.digest() for k in keys).encode()).hexdigest()[:20]
    return cache_dir(root) / keys[0].model / f"partial.{joint}.rank{rank_index}-of-{world}.safetensors"


def save_partial(path: Path, sums: dict[int, torch.Tensor], tokens: int, batches_done: int) -> None:
    metadata = {"tokens": str(tokens), "batches_done": str(batches_done)}
    tensors = {f"layer.{layer}": total.contiguous() for layer, total in sums.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def load_partial(path: Path, layers: list[int]) -> tuple[dict[int, torch.Tensor], int, int] | None:
    """The checkpointed (sums, tokens, batches_done), or None if absent or unusable."""
    if not path.is_file():
        return None
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        sums = {layer: tensors[f"layer.{layer}"] for layer in layers}
        return sums, int(metadata["tokens"]), int(metadata["batches_done"])
    except (SafetensorError, OSError, KeyError, ValueError):
        return None  # a damaged checkpoint only costs the work it held; start over
