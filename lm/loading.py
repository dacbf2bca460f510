"""Load a causal LM and its tokenizer: the embedded default, a local folder, or an HF model id."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import pickle
import zlib
from pathlib import Path
from typing import Iterator

import torch

from lm.adapters import adapter_for
from lm.embedded import ModelNotAvailable, embedded_model_dir
from lm.errors import UsageError

DEFAULT_MODEL = "default"
# The precision models are loaded in, by name (the CLI's --load-dtype sets the variable, so
# worker processes and torchrun ranks load the same way).
LOAD_DTYPE_ENV = "EDITSCOPE_LOAD_DTYPE"
LOAD_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def load_dtype_name() -> str:
    """`EDITSCOPE_LOAD_DTYPE` if set, else float32."""
    name = os.environ.get(LOAD_DTYPE_ENV) or "float32"
    if name not in LOAD_DTYPES:
        raise UsageError(f"{LOAD_DTYPE_ENV}={name!r} is not a precision; choose from {', '.join(LOAD_DTYPES)}.")
    return name


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_model_source(name: str) -> str:
    """The folder or hub id behind a user-facing model name (builds the default on first use)."""
    if name == DEFAULT_MODEL:
        return str(embedded_model_dir())
    return name


def load(
    name: str = DEFAULT_MODEL,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    trust_remote_code: bool = False,
):
    """Return `(model, tokenizer)` in eval mode, gradients off for every parameter, with its
    weights in `dtype` (default: `load_dtype_name()`, float32 unless the user chose otherwise).

    Raises `ModelNotAvailable` with one sentence when the name is neither `default`, an
    existing folder, nor a model id that can be found in the local HF cache or downloaded;
    when an existing folder cannot be loaded (a truncated weights file, a refused pickle, a
    broken config); and when the model's outputs on a probe text are not finite.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = resolve_model_source(name)
    folder = Path(source).expanduser()
    looks_like_path = folder.exists() or source.startswith((".", "/", "~"))
    if looks_like_path and not folder.is_dir():
        raise ModelNotAvailable(f"Model folder {source!r} does not exist.")
    if folder.is_dir() and not (folder / "config.json").is_file():
        raise ModelNotAvailable(f"{source!r} is not a model folder: it holds no config.json.")
    kwargs = dict(dtype=dtype or LOAD_DTYPES[load_dtype_name()], trust_remote_code=trust_remote_code)
    try:
        with quiet_transformers():
            model = _from_pretrained(AutoModelForCausalLM, source, **kwargs)
            tok = _from_pretrained(AutoTokenizer, source, trust_remote_code=trust_remote_code)
    except Exception as error:  # noqa: BLE001 - whatever the loaders raise, it is about these files
        if folder.is_dir():
            raise ModelNotAvailable(f"Model folder {source!r} exists but cannot be loaded: "
                                    f"{_load_failure(error)}.") from None
        if not isinstance(error, (OSError, ValueError)):
            raise
        raise ModelNotAvailable(
            f"Cannot load model {name!r}: it is not 'default', a model folder, or a model id "
            f"available offline or downloadable ({_first_line(error)})."
        ) from None
    adapter_for(model)  # refuse unsupported architectures at load time, not mid-edit
    model.to(device or default_device()).eval()
    model.requires_grad_(False)
    check_finite_outputs(model, tok, f"Model {name!r}")
    return model, tok


PROBE_TEXT = "The capital of France is"


def check_finite_outputs(model, tok, what: str) -> None:
    """Refuse a model whose logits on a short probe text hold NaN or infinity (damaged weights,
    or a dtype that overflows): every later step would fail on it, less clearly. One forward
    of a few tokens: milliseconds."""
    device = next(model.parameters()).device
    ids = torch.tensor([tok(PROBE_TEXT)["input_ids"]], device=device)
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    if not torch.isfinite(logits).all():
        raise ModelNotAvailable(f"{what} produces non-finite outputs (NaN or infinity) on the probe text "
                                f"{PROBE_TEXT!r}; its weights are damaged or its dtype overflows.")


def _load_failure(error: Exception) -> str:
    """What went wrong reading a model folder, in a few words."""
    if isinstance(error, pickle.UnpicklingError):
        return ("its pickled weights file was refused, since loading it could run code; "
                "convert it to safetensors")
    if type(error).__name__ == "SafetensorError":
        return f"a safetensors file is damaged or truncated ({_first_line(error)})"
    return _first_line(error)


def _first_line(error: Exception) -> str:
    lines = str(error).strip().splitlines() or [type(error).__name__]
    return lines[0].rstrip(".")[:300]


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence per-tensor progress bars and hub retry warnings while loading; our callers
    report errors as one sentence and progress through their own bars."""
    from transformers.utils import logging as hf_logging

    bars_were_on = hf_logging.is_progress_bar_enabled()
    hub_logger = logging.getLogger("huggingface_hub")
    hub_level = hub_logger.level
    hf_logging.disable_progress_bar()
    hub_logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        hub_logger.setLevel(hub_level)
        if bars_were_on:
            hf_logging.enable_progress_bar()


def _from_pretrained(auto_class, source: str, **kwargs):
    """Prefer the local HF cache; fall back to the hub only when the id is not cached."""
    try:
        return auto_class.from_pretrained(source, local_files_only=True, **kwargs)
    except OSError:
        if Path(source).expanduser().is_dir():
            raise
        return auto_class.from_pretrained(source, **kwargs)


def model_fingerprint(model: torch.nn.Module) -> str:
    """A content hash of the weights: names, shapes, dtypes and a CRC-32 of every tensor's
    bytes. Every byte is read, so changing any single entry changes the fingerprint (a
    strided sample would miss most single-entry edits); CRC-32 runs at memory speed
    (~0.3 s for the 135M default model on one CPU core) and is independent of threading."""
    digest = hashlib.sha256()
    digest.update(str(getattr(model.config, "model_type", "")).encode())
    for name, tensor in sorted(model.state_dict().items()):
        raw = tensor.detach().reshape(-1).contiguous().view(torch.uint8).cpu().numpy()
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}:{zlib.crc32(raw)}".encode())
    return digest.hexdigest()[:24]
