"""Retrieval-network checkpoints on disk: safetensors + a JSON header, never pickle.

One file (`network.safetensors`) holds the weights of a `RetrievalNetwork` and, in its header,
the architecture, the LLM it was trained for (fingerprint and width), the knowledge encoder
(name and width), and a checksum of header and tensors. Weights may be stored in bf16 to keep
the shipped checkpoints small; they are always loaded back into fp32 modules.

Loading refuses, with one sentence and before building anything, a file that is truncated,
corrupt or not a checkpoint, and a checkpoint for another LLM width, LLM or encoder width.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from lm.errors import UsageError
from lm.files import atomic_path
from retrieval.memory import ModelIdentity
from retrieval.network import NetworkConfig, RetrievalNetwork

FORMAT_NAME = "editscope.retrieval_network"
FORMAT_VERSION = 1
NETWORK_FILE = "network.safetensors"
TRAINING_LOG_FILE = "training-log.json"  # written beside the network by `train --export`
SHIPPED_DIR = Path(__file__).with_name("checkpoints")
_STORAGE_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


class CheckpointError(UsageError):
    """A retrieval checkpoint cannot be used here (one sentence says which file and why)."""


@dataclasses.dataclass(frozen=True)
class NetworkCheckpoint:
    """A loaded checkpoint: the network (fp32, eval mode) and what it was trained with."""

    network: RetrievalNetwork
    llm: ModelIdentity
    encoder: ModelIdentity
    path: Path
    checksum: str  # of the file's header and tensors: which trained weights these are


def save_network(
    path: str | os.PathLike,
    network: RetrievalNetwork,
    *,
    llm: ModelIdentity,
    encoder: ModelIdentity,
    storage_dtype: torch.dtype = torch.float32,
) -> None:
    """Write `network` atomically to `path` (a file; see module docstring)."""
    if storage_dtype not in _STORAGE_DTYPES.values():
        raise ValueError(f"storage_dtype must be one of {sorted(_STORAGE_DTYPES)}, got {storage_dtype}.")
    if llm.width != network.config.llm_width:
        raise ValueError(
            f"The network prompts an LLM of width {network.config.llm_width}, not {llm.width}."
        )
    tensors = {
        name: tensor.detach().to("cpu", storage_dtype).contiguous()
        for name, tensor in network.state_dict().items()
    }
    header = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "config": network.config.to_json(),
        "llm": dataclasses.asdict(llm),
        "encoder": dataclasses.asdict(encoder),
    }
    header["checksum"] = tensor_checksum(header, tensors)
    with atomic_path(path) as temporary:
        save_file(tensors, temporary, metadata={FORMAT_NAME: json.dumps(header)})


def load_network(
    path: str | os.PathLike,
    *,
    expect_llm: ModelIdentity | None,
    expect_encoder: ModelIdentity | None = None,
) -> NetworkCheckpoint:
    """Read a checkpoint written by `save_network` (a file, or a folder holding network.safetensors).

    `expect_llm` / `expect_encoder` None skip those checks on purpose (to inspect a file).
    """
    path = Path(path)
    if path.is_dir():
        path = path / NETWORK_FILE
    if not path.is_file():
        raise CheckpointError(f"There is no retrieval checkpoint at {path}.")
    header, tensors = read_checked(path, FORMAT_NAME, "Retrieval checkpoint")
    try:
        config = NetworkConfig.from_json(header["config"])
        llm = ModelIdentity(str(header["llm"]["fingerprint"]), int(header["llm"]["width"]))
        encoder = ModelIdentity(str(header["encoder"]["fingerprint"]), int(header["encoder"]["width"]))
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"Retrieval checkpoint {path} has a malformed header ({error}).") from None
    refusal = _unsuitable(trained_for=(llm, encoder), expected=(expect_llm, expect_encoder))
    if refusal:
        raise CheckpointError(f"Retrieval checkpoint {path} {refusal}.")
    network = RetrievalNetwork(config)
    state = {name: tensor.float() for name, tensor in tensors.items()}
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as error:
        first = str(error).splitlines()[0]
        raise CheckpointError(
            f"Retrieval checkpoint {path} does not match its own architecture ({first})."
        ) from None
    return NetworkCheckpoint(network.eval(), llm, encoder, path, tensor_checksum(header, tensors))


def shipped_checkpoint(name: str) -> Path:
    """Folder of a checkpoint committed with the project (`recipe`, `medrek`)."""
    folder = SHIPPED_DIR / name
    if not (folder / NETWORK_FILE).is_file():
        available = sorted(p.name for p in SHIPPED_DIR.glob("*") if (p / NETWORK_FILE).is_file())
        raise CheckpointError(
            f"No shipped retrieval checkpoint named {name!r}; available: {', '.join(available) or 'none'}."
        )
    return folder


def tensor_checksum(header: dict, tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over a JSON header (without its checksum) and every tensor's name, dtype, shape, bytes."""
    digest = hashlib.sha256(json.dumps(header, sort_keys=True).encode())
    for name in sorted(tensors):
        tensor = tensors[name].contiguous()
        digest.update(f"{name}:{tensor.dtype}:{list(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def read_checked(path: Path, format_name: str, what: str) -> tuple[dict, dict[str, torch.Tensor]]:
    """Header and tensors of a safetensors file written with `format_name`, checksum verified."""
    try:
        with safe_open(path, framework="pt") as reader:
            raw = (reader.metadata() or {}).get(format_name)
            tensors = {name: reader.get_tensor(name) for name in reader.keys()}
    except Exception as error:  # safetensors reports each kind of damage with its own type
        raise CheckpointError(f"{what} {path} is truncated or corrupt ({error}).") from None
    if raw is None:
        raise CheckpointError(f"{path} is a safetensors file but not an editscope {what.lower()}.")
    try:
        header = json.loads(raw)
    except ValueError as error:
        raise CheckpointError(f"{what} {path} has a corrupt header ({error}).") from None
    if not isinstance(header, dict) or header.get("format") != format_name:
        raise CheckpointError(f"{path} is a safetensors file but not an editscope {what.lower()}.")
    if header.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{what} {path} has format version {header.get('format_version')!r}; "
            f"this editscope reads version {FORMAT_VERSION}."
        )
    stored = header.pop("checksum", None)
    if stored != tensor_checksum(header, tensors):
        raise CheckpointError(f"{what} {path} is corrupt: its checksum does not match its contents.")
    return header, tensors



def _unsuitable(trained_for: tuple[ModelIdentity, ModelIdentity],
                expected: tuple[ModelIdentity | None, ModelIdentity | None]) -> str | None:
    """Why a network trained for (LLM, encoder) `trained_for` cannot run with the `expected` ones
    (None: not checked), or None. Widths come before fingerprints so that the common mistake gets
    the most useful sentence."""
    roles = (("an LLM", "this model", "; train a checkpoint for this model"),
             ("a knowledge encoder", "the encoder", ""))
    for (role, this, advice), was, now in zip(roles, trained_for, expected):
        if now is not None and now.width != was.width:
            return f"was trained for {role} of width {was.width}, but {this} has width {now.width}{advice}"
        if now is not None and now.fingerprint != was.fingerprint:
            return f"was trained for {role} {was.describe()}, not for {now.describe()}{advice}"
    return None
