"""What a result record says about the software and data behind it: versions and hashes."""

from __future__ import annotations

import hashlib
import platform
import tomllib
from importlib import metadata
from pathlib import Path

# A source checkout that was never pip-installed has no editscope metadata; its version then
# comes from the pyproject.toml beside the packages.
PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def package_versions() -> dict[str, str]:
    """Versions of Python, torch, transformers and editscope ("unknown" if undeterminable)."""
    return {
        "python": platform.python_version(),
        "torch": _installed_version("torch"),
        "transformers": _installed_version("transformers"),
        "editscope": _editscope_version(),
    }


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes (for shipped benchmarks: of the compressed file)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _installed_version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "unknown"


def _editscope_version() -> str:
    installed = _installed_version("editscope")
    if installed != "unknown" or not PYPROJECT.is_file():
        return installed
    with PYPROJECT.open("rb") as handle:
        return str(tomllib.load(handle).get("project", {}).get("version", "unknown"))
