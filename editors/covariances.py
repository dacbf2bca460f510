"""Where editors get the key second moments C_l (and AlphaEdit its null-space projectors).

A covariance source is anything with `moments(model, tok, layers) -> {layer: SecondMoment}`.
The default collects them with `covariance.stats.second_moments` on a corpus (cached on disk);
tests pass a small token budget and a temporary cache root, or fixed matrices. A damaged
cache file is recomputed (`lm.cache_entries`); what the user must fix (no corpus, a missing
layer) becomes one `EditError` sentence naming the layers, raised before any weight changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Protocol, Sequence

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from covariance.collect import CollectOptions
from covariance.corpus import DEFAULT_CORPUS
from covariance.stats import SecondMoment, second_moments
from editors.hparams import NullSpaceRule
from editors.protocol import EditError
from editors.solve import energy_null_space_projector, null_space_projector
from lm.cache_entries import sealed_file, set_aside, verified
from lm.errors import UsageError
from lm.precision import bf16_is_fast
from lm.progress import Progress


class CovarianceSource(Protocol):
    def moments(self, model, tok, layers: Sequence[int]) -> Mapping[int, SecondMoment]: ...


@dataclass(frozen=True)
class CorpusCovariance:
    """Second moments collected over `token_budget` tokens of `corpus` (cached by content)."""

    corpus: str = DEFAULT_CORPUS
    token_budget: int = 100_000
    max_length: int = 256
    bf16: bool = field(default_factory=bf16_is_fast)  # forward precision; see covariance.collect
    cache_root: Path | None = None
    progress: Progress | None = field(default=None, compare=False)

    def moments(self, model, tok, layers: Sequence[int]) -> Mapping[int, SecondMoment]:
        options = CollectOptions(token_budget=self.token_budget, max_length=self.max_length, bf16=self.bf16)
        return second_moments(
            model, tok, layers, self.corpus, options, progress=self.progress, cache_root=self.cache_root
        )


@dataclass(frozen=True)
class GivenCovariance:
    """Second moments supplied by the caller (tests, or statistics computed elsewhere)."""

    given: Mapping[int, SecondMoment]

    def moments(self, model, tok, layers: Sequence[int]) -> Mapping[int, SecondMoment]:
        return {layer: self.given[layer] for layer in layers if layer in self.given}


def layer_list(layers: Sequence[int]) -> str:
    return ", ".join(str(layer) for layer in layers)


def fetch_moments(source: CovarianceSource, model, tok, layers: Sequence[int]) -> dict[int, SecondMoment]:
    """The statistic of every layer, or an EditError saying which layers have none and why."""
    try:
        found = source.moments(model, tok, layers)
    except (OSError, UsageError) as error:
        reason = str(error).rstrip(".")
        raise EditError(
            f"No covariance for layers {layer_list(layers)} of this batch: none is cached and it "
            f"cannot be computed ({reason}); nothing was applied."
        ) from None
    missing = [layer for layer in layers if layer not in found]
    if missing:
        raise EditError(
            f"No covariance for layers {layer_list(missing)} of this batch and no corpus to compute it "
            "from; nothing was applied."
        )
    return {layer: found[layer] for layer in layers}


def null_space(moment: SecondMoment, rule: NullSpaceRule, value: float) -> torch.Tensor:
    """AlphaEdit's projector for one layer, cached beside the covariance file it comes from.

    `rule` "energy": the smallest-eigenvalue directions holding at most `value` of trace(C)
    (scale-free); "threshold": the eigenvalues below `value` (the reference's absolute rule)."""
    path = _projector_path(moment, rule, value)
    if path is not None and verified(path):
        try:
            projector = load_file(str(path))["projector"]
            width = moment.total.shape[0]
            if projector.shape == (width, width) and projector.dtype == torch.float64:
                return projector
            set_aside(path, f"it holds a {tuple(projector.shape)} {projector.dtype} projector")
        except (SafetensorError, OSError, KeyError) as error:
            set_aside(path, f"unreadable ({error})")
    build = energy_null_space_projector if rule == "energy" else null_space_projector
    projector = build(moment.matrix(), value)
    if path is not None:
        with sealed_file(path) as tmp:
            metadata = {"rule": rule, "value": repr(value), "covariance": moment.path.name,
                        "tokens": str(moment.tokens)}
            save_file({"projector": projector.contiguous()}, str(tmp), metadata=metadata)
    return projector


def preserved_energy_share(projector: torch.Tensor, moment: SecondMoment) -> float:
    """trace(P C) / trace(C): the share of the preserved keys' energy inside the kept subspace."""
    C = moment.matrix().to(torch.float64)
    return float((projector * C).sum() / C.trace())  # trace(P C) = Σ P∘C for symmetric P, C


def _projector_path(moment: SecondMoment, rule: NullSpaceRule, value: float) -> Path | None:
    if moment.path is None:
        return None
    return moment.path.with_name(f"{moment.path.stem}.nullspace-{rule}-{value!r}.safetensors")
