"""Reusing optimised value vectors: a content-addressed store with one small file per group.

MEMIT, AlphaEdit and MEMIT-Merge's singleton groups solve the identical value problem when they
edit the same model with the same budget, and `editors.values` optimises every group
independently of the others in its batch. So a group's result can be stored once and reused by
any later call that would pose the same problem — another editor of a comparison, a repeated
run, a tuning sweep that only changes the spread.

A group's key hashes everything `optimise_values` reads for it: the model (its weight
fingerprint, taken once per apply, so values of a model that has since been edited are never
found again; its config, attention implementation and device, which change the numerics), the
layer, the site modules, every `ValueOptions` field, and per member the key sites' token ids and
positions, the essence probe and the target ids. Files (`<root>/<2 hex>/<key>.safetensors`)
are written atomically; one that fails to read, names another key or holds anything unexpected
is ignored and recomputed (then overwritten), never trusted.

A reused group costs nothing now, but it did cost something once: its file keeps its share of
the original call's seconds, and results report `reused_groups` / `reused_seconds`, so timings
can charge each editor the full cost of its values whichever editor happened to pay it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from editors.values import ValueOptions, ValueProblem, ValueResult, combine_results, optimise_values
from lm.files import atomic_path, cache_root
from lm.loading import model_fingerprint
from lm.progress import StageProgress

# Bump when the meaning of a stored file or of the key changes; older files then stop matching.
VALUE_CACHE_FORMAT = 1


def values_root(editor_cache_root: Path | None) -> Path:
    """Where an editor keeps its values: under its own cache root when given, else the global one."""
    return (Path(editor_cache_root) if editor_cache_root is not None else cache_root()) / "values"


def model_key(model) -> str:
    """What of the model decides the optimised values: weights, config and how it computes."""
    config = model.config.to_dict()
    config.pop("_name_or_path", None)  # where it was loaded from does not change a number
    described = {
        "weights": model_fingerprint(model),
        "config": config,
        "attention": getattr(model.config, "_attn_implementation", None),
        "device": next(model.parameters()).device.type,
    }
    return _digest(described)


def group_key(model: str, problem: ValueProblem, options: ValueOptions, members: Sequence[int]) -> str:
    """The content address of one group's optimisation problem (members in group order)."""
    sites, essence, targets = problem.sites, problem.essence, problem.targets
    described = {
        "format": VALUE_CACHE_FORMAT,
        "model": model,
        "layer": problem.layer,
        "site_modules": list(problem.site_modules),
        "options": dataclasses.asdict(options),
        "members": [
            {
                "sites": [[list(site.ids), site.position] for site in sites[r]],
                "essence": None if essence[r] is None else [list(essence[r].ids), essence[r].position],
                "target": list(targets[r]),
            }
            for r in members
        ],
    }
    return _digest(described)


def _digest(described: dict) -> str:
    text = json.dumps(described, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class ValueStore:
    """One-group results on disk, addressed by `group_key`."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.safetensors"

    def save(self, key: str, group: ValueResult, seconds: float) -> None:
        """Store a one-group result and the `seconds` its optimisation cost."""
        tensors = {"loss": group.loss, "nll": group.nll, "updates": group.updates}
        for index, site in enumerate(group.sites):
            tensors[f"initial.{index}"] = group.initial[site][0]
            tensors[f"delta.{index}"] = group.deltas[site][0]
        metadata = {
            "format": str(VALUE_CACHE_FORMAT),
            "key": key,
            "sites": json.dumps(list(group.sites)),
            "seconds": repr(float(seconds)),
        }
        with atomic_path(self.path(key)) as tmp:
            plain = {name: t.detach().contiguous().cpu() for name, t in tensors.items()}
            save_file(plain, str(tmp), metadata)

    def load(self, key: str, site_modules: Sequence[str], width: int) -> ValueResult | None:
        """The stored group as a one-group result marked reused, or None when absent or not
        exactly what `save` writes for this key (any such file is recomputed, not trusted)."""
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            with safe_open(str(path), framework="pt") as handle:
                metadata = handle.metadata() or {}
                tensors = {name: handle.get_tensor(name) for name in handle.keys()}
            return _checked(tensors, metadata, key, tuple(site_modules), width)
        except Exception:  # noqa: BLE001 - any unreadable or foreign file is only a cache miss
            return None


def _checked(tensors: dict, metadata: dict, key: str, sites: tuple[str, ...], width: int) -> ValueResult | None:
    """The result `save` wrote for `key`, or None if anything differs from that form."""
    if (metadata.get("format") != str(VALUE_CACHE_FORMAT) or metadata.get("key") != key
            or json.loads(metadata.get("sites", "null")) != list(sites)):
        return None
    seconds = float(metadata["seconds"])
    vector_names = [f"{kind}.{i}" for kind in ("initial", "delta") for i in range(len(sites))]
    if set(tensors) != {"loss", "nll", "updates", *vector_names} or not (math.isfinite(seconds) and seconds >= 0):
        return None
    vectors = [tensors[name] for name in vector_names]
    if any(v.shape != (width,) or v.dtype != torch.float32 or not torch.isfinite(v).all() for v in vectors):
        return None
    scalars = (tensors["loss"], tensors["nll"], tensors["updates"])
    if any(t.shape != (1,) for t in scalars) or tensors["updates"].dtype != torch.long:
        return None
    return ValueResult(
        sites=sites,
        initial={site: tensors[f"initial.{i}"][None] for i, site in enumerate(sites)},
        deltas={site: tensors[f"delta.{i}"][None] for i, site in enumerate(sites)},
        loss=tensors["loss"].float(),
        nll=tensors["nll"].float(),
        updates=tensors["updates"],
        seconds=0.0,
        reused_groups=1,
        reused_seconds=seconds,
    )


@dataclass(frozen=True)
class ValueCache:
    """The store, and the key of the model state every lookup of one apply call refers to."""

    store: ValueStore
    model: str

    @classmethod
    def for_model(cls, root: Path, model) -> "ValueCache":
        # Fingerprinting reads every weight (~0.3 s for the 135M default), hence once per apply.
        return cls(ValueStore(root), model_key(model))


def optimise_reusing(
    cache: ValueCache | None,
    model,
    problem: ValueProblem,
    options: ValueOptions,
    progress: StageProgress | None = None,
) -> ValueResult:
    """`optimise_values` for the groups the cache lacks; stored results for the rest.

    Without a cache it is exactly `optimise_values`. Newly optimised groups are stored with an
    equal share of the call's seconds (they ran together, so no finer split is measurable).
    """
    if cache is None:
        return optimise_values(model, problem, options, progress)
    started = time.perf_counter()
    groups = problem.groups
    width = model.get_input_embeddings().weight.shape[1]
    keys = [group_key(cache.model, problem, options, members) for members in groups]
    found = [cache.store.load(key, problem.site_modules, width) for key in keys]
    parts: list[tuple[list[int], ValueResult]] = [
        ([g], hit) for g, hit in enumerate(found) if hit is not None
    ]
    missing = [g for g, hit in enumerate(found) if hit is None]
    if missing:
        computed = optimise_values(model, problem.with_groups([groups[g] for g in missing]), options, progress)
        share = computed.seconds / len(missing)
        for position, g in enumerate(missing):
            cache.store.save(keys[g], computed.group(position), share)
        parts.insert(0, (missing, computed))
    combined = combine_results(parts, len(groups))
    # The time spent now includes hashing, reading and writing, not only the optimisation.
    return dataclasses.replace(combined, seconds=time.perf_counter() - started)
