"""The edit memory of the retrieval editors: keys searched exactly, payloads returned by id.

Each entry holds a key vector (searched by inner product with faiss, exact), a value tensor
(e.g. the continuous prompt [T, d_llm] to inject) and JSON-able metadata (the request). Ids
grow monotonically and are never reused, so an id held by an `Applied` handle can only ever
mean the entry it was given for.

On disk a memory is one safetensors file (keys, values, ids) whose header carries a JSON
description: format version, key width, value shape and dtype, the LLM and encoder it was
built for, the retrieval network that built it (checkpoint name and checksum), the next id,
per-entry metadata and a checksum of header and tensors. Saving is atomic; loading refuses a
memory built for another LLM, key width, encoder or network, and any file that is truncated,
corrupt or not an edit memory, with `MemoryFormatError`.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import faiss
import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from lm.errors import UsageError
from lm.files import atomic_path

FORMAT_NAME = "editscope.edit_memory"
FORMAT_VERSION = 1
_HEADER_KEY = FORMAT_NAME
_TENSOR_NAMES = ("keys", "values", "ids")
_VALUE_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class MemoryFormatError(UsageError):
    """An edit memory file cannot be used: wrong model, wrong shape, truncated or corrupt."""


@dataclasses.dataclass(frozen=True)
class ModelIdentity:
    """What a memory was built for: a fingerprint (or name) and a width."""

    fingerprint: str
    width: int

    def describe(self) -> str:
        return f"{self.fingerprint!r} (width {self.width})"


@dataclasses.dataclass(frozen=True)
class NetworkIdentity:
    """The retrieval network whose keys and prompts a memory stores: checkpoint name and checksum."""

    name: str
    checksum: str

    def describe(self) -> str:
        return f"{self.name!r} (checksum {self.checksum[:16]})"


class EditMemory:
    """Keys [d] + values [*value_shape] + metadata per entry, with exact inner-product search."""

    def __init__(
        self,
        key_width: int,
        value_shape: Sequence[int],
        *,
        llm: ModelIdentity,
        encoder: ModelIdentity | None = None,
        network: NetworkIdentity | None = None,
        value_dtype: torch.dtype = torch.float32,
    ):
        if key_width < 1:
            raise ValueError(f"key_width must be positive, got {key_width}.")
        # A size may be 0: an in-context editor's entries carry no value, only key and statement.
        if any(size < 0 for size in value_shape):
            raise ValueError(f"value_shape must have non-negative sizes, got {tuple(value_shape)}.")
        if value_dtype not in _VALUE_DTYPES.values():
            raise ValueError(
                f"value_dtype must be one of {sorted(_VALUE_DTYPES)}, got {value_dtype}."
            )
        self.key_width = key_width
        self.value_shape = tuple(int(size) for size in value_shape)
        self.value_dtype = value_dtype
        self.llm = llm
        self.encoder = encoder
        self.network = network
        # IndexFlatIP is brute force, hence exact; the id map lets removal keep ids stable.
        self._index = faiss.IndexIDMap(faiss.IndexFlatIP(key_width))
        self._values: dict[int, torch.Tensor] = {}
        self._metadata: dict[int, Any] = {}
        self._next_id = 0

    def __len__(self) -> int:
        return self._index.ntotal

    @property
    def ids(self) -> list[int]:
        """Stored ids in storage order (the order a save writes them)."""
        return faiss.vector_to_array(self._index.id_map).tolist()

    def add(self, keys, values, metadata: Sequence[Any]) -> list[int]:
        """Store N entries (keys [N, d], values [N, *value_shape]) and return their new ids.

        Everything is checked before anything is stored, so a bad batch leaves the memory as
        it was.
        """
        key_array = _as_float32_matrix(keys, "keys")
        count = key_array.shape[0]
        if key_array.shape[1] != self.key_width:
            raise ValueError(
                f"keys have width {key_array.shape[1]}, this memory stores width {self.key_width}."
            )
        value_tensor = torch.as_tensor(values).detach().to("cpu", self.value_dtype)
        expected_shape = (count, *self.value_shape)
        if tuple(value_tensor.shape) != expected_shape:
            raise ValueError(
                f"values have shape {tuple(value_tensor.shape)}, expected {expected_shape}."
            )
        if not torch.isfinite(value_tensor).all():
            raise ValueError("values contain NaN or infinity.")
        if len(metadata) != count:
            raise ValueError(f"got {len(metadata)} metadata entries for {count} keys.")
        # A JSON round trip now makes sure a later save cannot fail on this metadata, and
        # stores exactly what a save/load round trip would give back (tuples become lists).
        try:
            normalized = json.loads(json.dumps(list(metadata), allow_nan=False))
        except (TypeError, ValueError) as error:
            raise ValueError(f"metadata is not JSON-serialisable: {error}") from error

        new_ids = list(range(self._next_id, self._next_id + count))
        self._index.add_with_ids(key_array, np.asarray(new_ids, dtype=np.int64))
        for row, entry_id in enumerate(new_ids):
            # clone() so removing one entry does not keep the caller's whole batch alive.
            self._values[entry_id] = value_tensor[row].clone()
            self._metadata[entry_id] = normalized[row]
        self._next_id += count
        return new_ids

    def remove(self, ids: Iterable[int]) -> None:
        """Remove these entries; if any id is unknown, raise KeyError and remove nothing."""
        doomed = sorted({int(entry_id) for entry_id in ids})
        unknown = [entry_id for entry_id in doomed if entry_id not in self._values]
        if unknown:
            raise KeyError(f"Edit memory has no entries with ids {unknown}; nothing was removed.")
        if not doomed:
            return
        self._index.remove_ids(np.asarray(doomed, dtype=np.int64))
        for entry_id in doomed:
            del self._values[entry_id]
            del self._metadata[entry_id]

    def search(self, queries, k: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-k stored keys by inner product: (scores [M, k] float32, ids [M, k] int64).

        Slots beyond the number of stored entries (all of them, for an empty memory) have id
        -1 and score -inf, so a "retrieve only if better than the sentinel" test rejects them.
        """
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}.")
        query_array = _as_float32_matrix(queries, "queries")
        if query_array.shape[1] != self.key_width:
            raise ValueError(
                f"queries have width {query_array.shape[1]}, "
                f"this memory stores width {self.key_width}."
            )
        scores, ids = self._index.search(query_array, k)
        scores[ids < 0] = -np.inf
        return torch.from_numpy(scores), torch.from_numpy(ids)

    def values_for(self, ids: Iterable[int]) -> torch.Tensor:
        """Stacked values [len(ids), *value_shape] (CPU, stored dtype); KeyError for unknown ids."""
        wanted = self._checked(ids)
        if not wanted:
            return torch.empty(0, *self.value_shape, dtype=self.value_dtype)
        return torch.stack([self._values[entry_id] for entry_id in wanted])

    def metadata_for(self, ids: Iterable[int]) -> list[Any]:
        """Copies of the metadata of these ids; KeyError for unknown ids."""
        return [copy.deepcopy(self._metadata[entry_id]) for entry_id in self._checked(ids)]

    def _checked(self, ids: Iterable[int]) -> list[int]:
        wanted = [int(entry_id) for entry_id in ids]
        unknown = sorted({entry_id for entry_id in wanted if entry_id not in self._values})
        if unknown:
            raise KeyError(f"Edit memory has no entries with ids {unknown}.")
        return wanted

    def save(self, path: str | os.PathLike) -> None:
        """Write the memory to one safetensors file, atomically (see module docstring)."""
        order = self.ids
        tensors = {
            "keys": torch.from_numpy(self._index.index.reconstruct_n(0, len(self))),
            "values": self.values_for(order),
            "ids": torch.tensor(order, dtype=torch.int64),
        }
        header = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "key_width": self.key_width,
            "value_shape": list(self.value_shape),
            "value_dtype": _dtype_name(self.value_dtype),
            "llm": dataclasses.asdict(self.llm),
            "encoder": None if self.encoder is None else dataclasses.asdict(self.encoder),
            "network": None if self.network is None else dataclasses.asdict(self.network),
            "next_id": self._next_id,
            "metadata": [self._metadata[entry_id] for entry_id in order],
        }
        header["checksum"] = _checksum(header, tensors)
        with atomic_path(path) as temporary:
            save_file(tensors, temporary, metadata={_HEADER_KEY: json.dumps(header)})

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        *,
        expect_llm: ModelIdentity | None,
        expect_key_width: int | None,
        expect_encoder: ModelIdentity | None = None,
        expect_network: NetworkIdentity | None = None,
    ) -> "EditMemory":
        """Read a memory saved by `save`, refusing one built for another LLM, key width, encoder
        or retrieval network.

        `expect_llm` and `expect_key_width` must be passed; None skips that check on purpose
        (e.g. to inspect a file), never by accident.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"No edit memory file at {path}.")
        header, tensors = _read_file(path)
        memory = cls._from_header(header, path)
        stored_llm, stored_encoder = memory.llm, memory.encoder
        if expect_llm is not None and stored_llm != expect_llm:
            raise MemoryFormatError(
                f"Edit memory {path} was built for LLM {stored_llm.describe()}, not for "
                f"{expect_llm.describe()}; rebuild it for this model."
            )
        if expect_key_width is not None and memory.key_width != expect_key_width:
            raise MemoryFormatError(
                f"Edit memory {path} stores keys of width {memory.key_width}, "
                f"but keys of width {expect_key_width} were expected."
            )
        if expect_encoder is not None and stored_encoder != expect_encoder:
            stored = (
                "no recorded encoder" if stored_encoder is None
                else f"encoder {stored_encoder.describe()}"
            )
            raise MemoryFormatError(
                f"Edit memory {path} was built with {stored}, "
                f"not with encoder {expect_encoder.describe()}."
            )
        if expect_network is not None and memory.network != expect_network:
            stored = ("records no network" if memory.network is None
                      else f"was built by retrieval network {memory.network.describe()}")
            raise MemoryFormatError(
                f"Edit memory {path} {stored}, not by {expect_network.describe()}; its keys and "
                f"prompts only work with the network that made them, so rebuild it with this one."
            )
        memory._restore_entries(header, tensors, path)
        return memory

    @classmethod
    def _from_header(cls, header: dict, path: Path) -> "EditMemory":
        if header.get("format") != FORMAT_NAME:
            raise MemoryFormatError(
                f"{path} is a safetensors file but not an editscope edit memory."
            )
        if header.get("format_version") != FORMAT_VERSION:
            raise MemoryFormatError(
                f"Edit memory {path} has format version {header.get('format_version')!r}; "
                f"this editscope reads version {FORMAT_VERSION}."
            )
        try:
            encoder, network = header["encoder"], header.get("network")
            return cls(
                int(header["key_width"]),
                [int(size) for size in header["value_shape"]],
                llm=_identity_from_json(header["llm"]),
                encoder=None if encoder is None else _identity_from_json(encoder),
                network=None if network is None else NetworkIdentity(str(network["name"]), str(network["checksum"])),
                value_dtype=_VALUE_DTYPES[header["value_dtype"]],
            )
        except (KeyError, TypeError, ValueError) as error:
            raise MemoryFormatError(
                f"Edit memory {path} has a malformed header ({error!r})."
            ) from error

    def _restore_entries(self, header: dict, tensors: dict[str, torch.Tensor], path: Path) -> None:
        keys, values, ids = tensors["keys"], tensors["values"], tensors["ids"]
        metadata, next_id = header.get("metadata"), header.get("next_id")
        count = ids.shape[0] if ids.dim() == 1 else -1
        expected_values = [count, *self.value_shape]
        problem = None
        if ids.dtype != torch.int64 or count < 0:
            problem = f"ids have dtype {ids.dtype} and shape {list(ids.shape)}, expected int64 [N]"
        elif keys.dtype != torch.float32 or list(keys.shape) != [count, self.key_width]:
            problem = f"keys have shape {list(keys.shape)}, expected {[count, self.key_width]}"
        elif values.dtype != self.value_dtype or list(values.shape) != expected_values:
            problem = f"values have shape {list(values.shape)}, expected {expected_values}"
        elif not isinstance(metadata, list) or len(metadata) != count:
            problem = f"the header does not hold metadata for exactly the {count} stored entries"
        elif not isinstance(next_id, int) or (
            count and not 0 <= int(ids.min()) <= int(ids.max()) < next_id
        ):
            problem = f"ids fall outside [0, next_id={next_id!r})"
        elif len(set(ids.tolist())) != count:
            problem = "ids repeat"
        if problem is not None:
            raise MemoryFormatError(f"Edit memory {path} is inconsistent: {problem}.")
        self._index.add_with_ids(keys.numpy(), ids.numpy())
        for row, entry_id in enumerate(ids.tolist()):
            self._values[entry_id] = values[row].clone()
            self._metadata[entry_id] = metadata[row]
        self._next_id = next_id


def _read_file(path: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """Header and tensors of a memory file, with its checksum verified."""
    try:
        with safe_open(path, framework="pt") as reader:
            raw_header = (reader.metadata() or {}).get(_HEADER_KEY)
            tensors = {name: reader.get_tensor(name) for name in reader.keys()}
    except Exception as error:  # safetensors reports each kind of damage with its own error type
        raise MemoryFormatError(
            f"Edit memory {path} is not a readable safetensors file "
            f"(truncated or corrupt: {error})."
        ) from error
    if raw_header is None or set(tensors) != set(_TENSOR_NAMES):
        raise MemoryFormatError(f"{path} is a safetensors file but not an editscope edit memory.")
    try:
        header = json.loads(raw_header)
    except ValueError as error:
        raise MemoryFormatError(f"Edit memory {path} has a corrupt header ({error}).") from error
    if not isinstance(header, dict):
        raise MemoryFormatError(f"Edit memory {path} has a corrupt header (not a JSON object).")
    stored_checksum = header.pop("checksum", None)
    if stored_checksum != _checksum(header, tensors):
        raise MemoryFormatError(
            f"Edit memory {path} is corrupt: its checksum does not match its contents."
        )
    return header, tensors


def _checksum(header: dict, tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over the header (without its checksum) and every tensor's dtype, shape and bytes."""
    digest = hashlib.sha256(json.dumps(header, sort_keys=True).encode())
    for name in _TENSOR_NAMES:
        tensor = tensors[name].contiguous()
        digest.update(f"{name}:{tensor.dtype}:{list(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def _as_float32_matrix(matrix, what: str) -> np.ndarray:
    """A C-contiguous float32 [N, d] numpy copy of a tensor or array (what faiss accepts)."""
    if isinstance(matrix, torch.Tensor):
        matrix = matrix.detach().to("cpu", torch.float32).numpy()
    array = np.ascontiguousarray(matrix, dtype=np.float32)
    if array.ndim != 2:
        raise ValueError(f"{what} must be a matrix [N, d], got shape {array.shape}.")
    if not np.isfinite(array).all():
        raise ValueError(f"{what} contain NaN or infinity.")
    return array


def _identity_from_json(fields: dict) -> ModelIdentity:
    return ModelIdentity(str(fields["fingerprint"]), int(fields["width"]))


def _dtype_name(dtype: torch.dtype) -> str:
    return next(name for name, candidate in _VALUE_DTYPES.items() if candidate == dtype)
