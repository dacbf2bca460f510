"""Regenerate the compressed benchmark and corpus files under `data/files/` from the shared copy.

    python -m data.pack SHARED_DIR

SHARED_DIR holds `datasets/<benchmark>/<split>.json` and `corpus/<name>.txt`, exactly as
published. The bytes are compressed unchanged (no JSON re-serialisation) and with a zero gzip
timestamp and no stored file name, so packing the same input twice gives identical files and a
clean diff.
"""

from __future__ import annotations

import argparse
import gzip
import io
from pathlib import Path

from data.benchmarks import BENCHMARKS, shipped_file
from data.corpus import CORPUS_NAMES, shipped_corpus_file
from lm.files import atomic_path

# The published zsRE subset is named after its size; it is shipped as the benchmark's only split.
SOURCE_STEM_OVERRIDES = (("zsre", "train", "train-1k"),)


def source_stem(benchmark: str, split: str) -> str:
    """File stem of a split in the shared datasets folder."""
    for name, override_split, stem in SOURCE_STEM_OVERRIDES:
        if (name, override_split) == (benchmark, split):
            return stem
    return split


def deterministic_gzip(payload: bytes) -> bytes:
    """gzip bytes that depend only on the payload (mtime 0, empty file name)."""
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, compresslevel=9, mtime=0) as out:
        out.write(payload)
    return buffer.getvalue()


def pack(shared_dir: Path) -> list[tuple[Path, int, int]]:
    """Compress every shipped file from `shared_dir`; returns (destination, raw, packed) sizes."""
    datasets, corpora = shared_dir / "datasets", shared_dir / "corpus"
    jobs = [
        (datasets / name / f"{source_stem(name, split)}.json", shipped_file(name, split))
        for name, benchmark in BENCHMARKS.items()
        for split in benchmark.splits
    ]
    jobs += [(corpora / f"{name}.txt", shipped_corpus_file(name)) for name in CORPUS_NAMES]
    missing = [str(source) for source, _ in jobs if not source.is_file()]
    if missing:
        # Checked up front so a wrong SHARED_DIR changes nothing instead of half the files.
        raise SystemExit(f"Cannot pack: {len(missing)} source files are missing, e.g. {missing[0]}")
    written = []
    for source, destination in jobs:
        raw = source.read_bytes()
        packed = deterministic_gzip(raw)
        with atomic_path(destination) as temporary:
            temporary.write_bytes(packed)
        written.append((destination, len(raw), len(packed)))
    return written


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m data.pack",
                                     description="Rebuild data/files/ from a shared folder.")
    parser.add_argument("shared_dir", type=Path, help="folder holding datasets/ and corpus/")
    written = pack(parser.parse_args().shared_dir)
    for destination, raw, packed in written:
        print(f"{destination}: {raw:,} -> {packed:,} bytes")
    total_raw = sum(raw for _, raw, _ in written)
    total_packed = sum(packed for _, _, packed in written)
    print(f"total: {total_raw:,} -> {total_packed:,} bytes")


if __name__ == "__main__":
    main()
