"""Where keys are read (token sites) and reading them: MLP keys and block outputs at given tokens.

A `KeySite` is one tokenised text (optional context prefix + edit prompt) and the index of its key
token: the subject's last token, or the prompt's last token when asked for or when the request
has no subject span. Every request has one site per context: the bare prompt first, then one per
generated prefix. MEMIT's key for a request averages its sites, the bare prompt weighing 1/2 and
the prefixed variants sharing the other 1/2 (the reference weighting).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Mapping, Sequence

import torch

from data.requests import EditRequest, EditRequestError
from editors.memory_plan import spread_request_bytes
from editors.upper import SplitBatch, block_input_state, run_upper
from lm.adapters import adapter_for
from lm.hooks import on_inputs, on_outputs, stop_after
from lm.memory import MemoryBudget, ModelShape, chunk_for, run_in_chunks

READ_BATCH = 64  # sequences per forward when reading; bounds memory, not results


@dataclass(frozen=True)
class KeySite:
    """A tokenised text and the position of its key token."""

    ids: tuple[int, ...]
    position: int


def key_site(tok, text: str, subject_end: int | None) -> KeySite:
    """The site whose key token covers character `subject_end - 1` of `text` (None: last token)."""
    encoding = tok(text, return_offsets_mapping=True)
    ids = tuple(encoding["input_ids"])
    if not ids:
        raise ValueError(f"{text!r} encodes to no tokens")
    if subject_end is None:
        return KeySite(ids, len(ids) - 1)
    last_char = subject_end - 1
    for index, (begin, end) in enumerate(encoding["offset_mapping"]):
        if begin <= last_char < end:
            return KeySite(ids, index)
    raise ValueError(f"no token of {text!r} covers the end of the subject")


def request_sites(
    tok, requests: Sequence[EditRequest], key_token: str, prefixes: Sequence[str]
) -> list[list[KeySite]]:
    """Per request: the bare prompt's site, then one per context prefix."""
    if key_token not in ("subject_last", "prompt_last"):
        raise ValueError(f"key_token must be 'subject_last' or 'prompt_last', not {key_token!r}.")
    all_sites = []
    for index, request in enumerate(requests):
        subject_end = None
        if key_token == "subject_last" and request.subject is not None:
            start = request.prompt.find(request.subject)
            if start < 0:
                raise EditRequestError(
                    f"Request {index}: subject {request.subject!r} does not occur in prompt {request.prompt!r}."
                )
            subject_end = start + len(request.subject)
        sites = []
        for prefix in ("", *prefixes):
            end = None if subject_end is None else len(prefix) + subject_end
            try:
                sites.append(key_site(tok, prefix + request.prompt, end))
            except ValueError as problem:
                raise EditRequestError(f"Request {index}: {problem}.") from None
        all_sites.append(sites)
    return all_sites


def essence_sites(tok, requests: Sequence[EditRequest], key_token: str) -> list[KeySite | None]:
    """MEMIT's drift probe "{subject} is a" per request (None without a subject span)."""
    sites: list[KeySite | None] = []
    for request in requests:
        if request.subject is None:
            sites.append(None)
            continue
        text = f"{request.subject} is a"
        sites.append(key_site(tok, text, len(request.subject) if key_token == "subject_last" else None))
    return sites


def target_ids(tok, requests: Sequence[EditRequest]) -> list[tuple[int, ...]]:
    """Each target as the scorer tokenises it: " " + target, no special tokens."""
    encoded = []
    for index, request in enumerate(requests):
        ids = tuple(tok(" " + request.target_new.lstrip(), add_special_tokens=False)["input_ids"])
        if not ids:
            raise EditRequestError(f"Request {index}: target_new {request.target_new!r} encodes to no tokens.")
        encoded.append(ids)
    return encoded


def read_at_sites(
    model,
    sites: Sequence[KeySite],
    reads: Mapping[str, tuple[str, str]],
    stop_module: str,
) -> dict[str, torch.Tensor]:
    """For each read `name -> (module name, "input" | "output")`, the [N, width] float32 rows of
    that module's input or output at every site's key token. The forward stops after
    `stop_module` (the highest block read)."""
    device = next(model.parameters()).device
    modules_by_kind: dict[str, dict[str, torch.nn.Module]] = {"input": {}, "output": {}}
    for name, (module_name, kind) in reads.items():
        modules_by_kind[kind][name] = model.get_submodule(module_name)
    pieces: dict[str, list[torch.Tensor]] = {name: [] for name in reads}
    pad_id = 0  # padded slots are masked and never read, so any id will do
    for start in range(0, len(sites), READ_BATCH):
        chunk = sites[start : start + READ_BATCH]
        ids = torch.full((len(chunk), max(len(s.ids) for s in chunk)), pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, site in enumerate(chunk):
            ids[row, : len(site.ids)] = torch.tensor(site.ids)
            mask[row, : len(site.ids)] = 1
        rows = torch.arange(len(chunk), device=device)
        cols = torch.tensor([s.position for s in chunk], device=device)

        def keep(name: str, tensor: torch.Tensor) -> None:
            pieces[name].append(tensor[rows, cols].float())

        with torch.no_grad(), on_inputs(modules_by_kind["input"], keep), on_outputs(
            modules_by_kind["output"], keep
        ), stop_after(model.get_submodule(stop_module)):
            model(input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False)
    return {name: torch.cat(parts) for name, parts in pieces.items()}


def average_over_contexts(per_site: torch.Tensor, contexts: int) -> torch.Tensor:
    """[B * contexts, w] rows (bare first per request) -> [B, w] with the bare prompt weighing 1/2."""
    grouped = per_site.reshape(-1, contexts, per_site.shape[-1])
    if contexts == 1:
        return grouped[:, 0]
    return 0.5 * grouped[:, 0] + 0.5 * grouped[:, 1:].mean(dim=1)


def request_keys(
    model,
    sites: Sequence[Sequence[KeySite]],
    layers: Sequence[int],
    also_outputs: Mapping[str, str] | None = None,
    stop_layer: int | None = None,
) -> tuple[dict[int, torch.Tensor], dict[str, torch.Tensor]]:
    """Context-averaged keys [B, d_ff] per layer, plus (optionally) outputs of other modules at
    each request's bare-prompt site (`name -> module name`, [B, d] each), in one pass that
    stops after block `stop_layer` (default: the highest key layer; pass the block holding the
    output modules when they sit higher).

    The outputs are read at the bare prompt only: they are the "current value" that MEMIT
    compares with its target, which was optimised at the bare prompt's key token.
    """
    adapter = adapter_for(model)
    contexts = len(sites[0])
    flat = [site for request_sites_ in sites for site in request_sites_]
    reads = {f"key.{layer}": (adapter.mlp_out_name(layer), "input") for layer in layers}
    reads.update({f"out.{name}": (module, "output") for name, module in (also_outputs or {}).items()})
    stop = max(layers) if stop_layer is None else max(stop_layer, *layers)
    found = read_at_sites(model, flat, reads, adapter.block_name(stop))
    keys = {layer: average_over_contexts(found[f"key.{layer}"], contexts) for layer in layers}
    outputs = {
        name: found[f"out.{name}"].reshape(-1, contexts, found[f"out.{name}"].shape[-1])[:, 0]
        for name in also_outputs or {}
    }
    return keys, outputs



class LayerwiseKeys:
    """Keys of one batch read layer after layer while the layers below are being edited.

    MEMIT's spread reads K_l (and the current output at l*) from the partially edited model,
    then edits layer l, then reads the next layer. The hidden state entering the block of the
    last layer read cannot change when that layer or later ones are edited, so each read starts
    from it (cached) instead of from the embeddings. Read layers in ascending order and edit
    only layers at or above the last one read.

    Each read runs the requests in chunks that fit `memory` (default `MemoryBudget.resolve`)
    by `editors.memory_plan.spread_request_bytes`; a chunk that runs out of memory anyway is
    halved, for this read and the later ones. Requests are independent, so chunks change only
    the peak (and float rounding).
    """

    def __init__(self, model, sites: Sequence[Sequence[KeySite]], output_module: str, output_layer: int,
                 memory: MemoryBudget | None = None):
        self.model = model
        self.adapter = adapter_for(model)
        self.contexts = len(sites[0])
        self.requests = len(sites)
        flat = [site for request_sites_ in sites for site in request_sites_]
        batch = SplitBatch.build([[] for _ in flat], [site.ids for site in flat], pad_id=0)
        self.state = block_input_state(model, self.adapter, batch, 0)
        self.positions = torch.tensor([site.position for site in flat])
        self.output_module, self.output_layer = output_module, output_layer
        device = self.state.block_inputs.device
        cost = spread_request_bytes(ModelShape.from_model(model), self.contexts, self.state.block_inputs.shape[1])
        self.requests_per_read = chunk_for((memory or MemoryBudget.resolve(device)).room(device),
                                           [cost] * self.requests)

    def read(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(context-averaged keys [B, d_ff] at `layer`, output of the output module [B, d] at
        each request's bare-prompt key token)."""
        if layer < self.state.start:
            raise ValueError(f"Layers must be read in ascending order ({layer} after {self.state.start}).")
        device = self.state.block_inputs.device
        parts = [part for _, part in run_in_chunks(
            self.requests, self.requests_per_read, lambda chosen: self._read_requests(layer, chosen), device,
            on_shrink=self._shrink)]
        keys, current = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        if layer > self.state.start:  # the next read starts from the inputs of this block
            self.state = dataclasses.replace(self.state, start=layer,
                                             block_inputs=torch.cat([p[2] for p in parts]))
        return keys, current

    def _shrink(self, requests: int, _error: BaseException) -> None:
        """A chunk ran out of memory: later reads start from the smaller chunk too."""
        self.requests_per_read = requests

    def _read_requests(self, layer: int, chosen: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """`read` for the requests `chosen` (consecutive), plus their rows' input to block
        `layer` (None when the read starts at that block)."""
        device = self.state.block_inputs.device
        first, last = chosen[0] * self.contexts, (chosen[-1] + 1) * self.contexts
        whole = first == 0 and last == len(self.positions)
        state = self.state if whole else self.state.select(torch.arange(first, last, device=device))
        rows = torch.arange(last - first, device=device)
        cols = self.positions[first:last].to(device)
        bare = torch.arange(0, last - first, self.contexts, device=device)
        seen: dict[str, torch.Tensor] = {}

        def keep(name: str, tensor: torch.Tensor) -> None:
            seen[name] = tensor.detach()

        watched = {"key": self.model.get_submodule(self.adapter.mlp_out_name(layer))}
        if layer > state.start:  # block `start` itself is fed from the cache
            watched["block"] = self.model.get_submodule(self.adapter.block_name(layer))
        stop = self.model.get_submodule(self.adapter.block_name(layer))
        with torch.no_grad(), on_inputs(watched, keep), stop_after(stop):
            run_upper(self.model, self.adapter, state)
        keys = average_over_contexts(seen.pop("key")[rows, cols].float(), self.contexts)

        output = self.model.get_submodule(self.output_module)
        stop = self.model.get_submodule(self.adapter.block_name(self.output_layer))
        with torch.no_grad(), on_outputs({"out": output}, keep), stop_after(stop):
            run_upper(self.model, self.adapter, state.select(bare))
        current = seen["out"][torch.arange(len(bare), device=device), cols[bare]].float()
        return keys, current, seen.get("block")
