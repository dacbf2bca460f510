"""The common path of the key–value editors (MEMIT, PMET, MEMIT-Merge, AlphaEdit).

validate → key sites and targets → covariance (fails fast, before the costly part) → batched value
optimisation (groups solved before are reused, `editors.value_cache`) → spread over layers →
check every delta → apply. Subclasses choose the groups of requests that share a value, where δ
is inserted, which output the spread targets, and the closed-form solve; nothing here names an
architecture.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from editors.applied import WeightEdit
from editors.covariances import CorpusCovariance, CovarianceSource, fetch_moments
from editors.hparams import ValueOptimisationHparams
from editors.keys import KeySite, essence_sites, request_sites, target_ids
from data.requests import EditRequest, validate_requests
from editors.spread import SpreadResult, spread_over_layers
from editors.templates import context_prefixes
from editors.value_cache import ValueCache, optimise_reusing, values_root
from editors.values import ValueOptions, ValueProblem, ValueResult
from lm.adapters import ArchAdapter, adapter_for
from lm.progress import StageProgress



@dataclass(frozen=True)
class EditBatch:
    """A validated batch, tokenised once: key sites, drift probes, target ids, context prefixes."""

    requests: tuple[EditRequest, ...]
    sites: list[list[KeySite]]
    essence: list[KeySite | None]
    targets: list[tuple[int, ...]]
    prefixes: tuple[str, ...]


def prepare_batch(model, tok, requests: Sequence[EditRequest], hparams: ValueOptimisationHparams,
                  cache_root: Path | None = None) -> EditBatch:
    """Check the requests and locate everything the editors read; raises naming the request."""
    validate_requests(requests)
    hparams.check_fits(adapter_for(model).num_layers(model))
    targets = target_ids(tok, requests)
    prefixes = context_prefixes(
        model, tok, hparams.n_templates, hparams.template_len, hparams.template_seed, cache_root
    )
    sites = request_sites(tok, requests, hparams.key_token, prefixes)
    essence = essence_sites(tok, requests, hparams.key_token)
    return EditBatch(tuple(requests), sites, essence, targets, prefixes)


class KeyValueEditor:
    """Base of the key–value editors; an instance belongs to one model (its hparams family).

    `covariance` defaults to `hparams.mom2_tokens` tokens of the shipped corpus. The statistics
    are fetched once per model object and kept on the instance, so sequential batches preserve
    the keys of the original model (as the reference does), not of the model edited so far.

    `reuse_values` looks every group's optimised value up in the value cache (under
    `cache_root`, default the global cache root) and optimises only the groups not found;
    turn it off to time the optimisation itself.
    """

    name = "key-value"
    # Requests whose keys coincide overwrite each other's value (protocol.KeyValueWriter).
    merges_shared_keys = False

    def __init__(
        self,
        hparams: ValueOptimisationHparams,
        covariance: CovarianceSource | None = None,
        progress: StageProgress | None = None,
        cache_root: Path | None = None,
        reuse_values: bool = True,
    ):
        self.hparams = hparams
        self.reuse_values = reuse_values
        if covariance is None:
            statistics_root = None if cache_root is None else Path(cache_root) / "covariance"
            covariance = CorpusCovariance(token_budget=hparams.mom2_tokens, cache_root=statistics_root)
        self.covariance = covariance
        self.progress = progress
        self.cache_root = cache_root
        self._moments_of: tuple[object, dict] | None = None

    # ----- the shared path ---------------------------------------------------------------------

    def apply(self, model, tok, requests: Sequence[EditRequest]) -> WeightEdit:
        started = time.perf_counter()
        batch = prepare_batch(model, tok, requests, self.hparams, self.cache_root)
        moments = self.moments(model, tok)
        adapter = adapter_for(model)
        groups = self.groups(model, batch)
        values_started = time.perf_counter()
        # Keyed on the model as it is now: after any applied edit nothing earlier matches.
        cache = ValueCache.for_model(values_root(self.cache_root), model) if self.reuse_values else None
        values = self.optimise(model, adapter, batch, groups, cache)
        values_seconds = time.perf_counter() - values_started
        spread_started = time.perf_counter()
        output = self.output_site(adapter)
        spread = spread_over_layers(
            model,
            batch.sites,
            groups,
            self.hparams.layers,
            output,
            values.targets(output),
            solve=lambda layer, R, K: self.solve(layer, R, K, moments),
            rule=self.spread_rule,
            progress=self.progress,
        )
        info = self.describe(batch, groups, values, spread)
        info["seconds"] = {
            "values": values_seconds,  # spent now (lookups included)
            "values_reused": values.reused_seconds,  # what the reused groups cost when optimised
            "spread": time.perf_counter() - spread_started,
            "total": time.perf_counter() - started,
        }
        edit = WeightEdit.apply(model, tok, spread.deltas, info)
        self.after_apply(edit, spread)
        return edit

    def prepare(self, model, tok) -> None:
        """Compute (or read from their caches) what every batch for `model` needs before the
        first apply: the context prefixes and the covariance statistics. Optional: `apply`
        fetches them itself; this lets a caller do it once before starting parallel workers."""
        context_prefixes(model, tok, self.hparams.n_templates, self.hparams.template_len,
                         self.hparams.template_seed, self.cache_root)
        self.moments(model, tok)

    @property
    def key_layer(self) -> int:
        """l*, where the keys the values are written under are read (protocol.KeyValueWriter)."""
        return self.hparams.last_layer

    @property
    def key_token(self) -> str:
        return self.hparams.key_token

    def moments(self, model, tok) -> dict:
        """The covariance statistics of the edited layers (fetched once per model object)."""
        if self._moments_of is None or self._moments_of[0] is not model:
            self._moments_of = (model, fetch_moments(self.covariance, model, tok, self.hparams.layers))
        return self._moments_of[1]

    def optimise(self, model, adapter: ArchAdapter, batch: EditBatch, groups,
                 cache: ValueCache | None) -> ValueResult:
        problem = ValueProblem(self.hparams.last_layer, batch.sites, batch.essence, batch.targets, groups,
                               self.value_sites(adapter))
        return optimise_reusing(cache, model, problem, self.value_options(), self.progress)

    def describe(self, batch: EditBatch, groups, values: ValueResult, spread: SpreadResult) -> dict:
        return {
            "editor": self.name,
            "hparams": self.hparams.to_dict(),
            "requests": len(batch.requests),
            "groups": len(groups),
            "context_prefixes": list(batch.prefixes),
            "value_loss_mean": float(values.loss.nanmean()),
            "value_nll_mean": float(values.nll.nanmean()),
            "value_groups_reused": values.reused_groups,
            "converged": float((values.loss < self.hparams.early_stop_loss).float().mean()),
            "residual_norms": spread.residual_norms,
        }

    # ----- what subclasses choose -----------------------------------------------------------------

    spread_rule = "linear"

    def groups(self, model, batch: EditBatch) -> list[list[int]]:
        """Requests that share one value vector and one key column (default: one each)."""
        return [[index] for index in range(len(batch.requests))]

    def value_sites(self, adapter: ArchAdapter) -> tuple[str, ...]:
        return (adapter.block_name(self.hparams.last_layer),)

    def output_site(self, adapter: ArchAdapter) -> str:
        return adapter.block_name(self.hparams.last_layer)

    def value_options(self) -> ValueOptions:
        return ValueOptions.from_hparams(self.hparams)

    def solve(self, layer: int, residuals: torch.Tensor, keys: torch.Tensor, moments: dict) -> torch.Tensor:
        raise NotImplementedError

    def after_apply(self, edit: WeightEdit, spread: SpreadResult) -> None:
        """Hook for editors that remember applied batches (AlphaEdit)."""
