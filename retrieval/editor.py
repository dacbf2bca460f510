"""A retrieval editor behind the one seam (DESIGN.md): `apply` adds entries to an edit memory and
returns a handle whose `scorer` retrieves and injects; `undo` removes exactly those entries.

Per query text the scorer encodes it, takes the top-1 memory key by cosine similarity and uses
that entry's continuous prompt only if the key beats the sentinel (RECIPE, Chen et al. 2024, §4.2, eq. 9);
rows that retrieve nothing run through the plain model, so they are scored exactly as unedited.
"""

from __future__ import annotations

import os
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from data.requests import EditRequest, validate_requests
from lm.loading import model_fingerprint
from lm.memory import scorer_batch_size
from lm.scoring import BATCH_SIZE, LMScorer
from retrieval.checkpoint import CheckpointError, load_network, shipped_checkpoint
from retrieval.encoder import KnowledgeEncoder
from retrieval.injection import prompted_generate, prompted_hidden
from retrieval.memory import EditMemory, ModelIdentity, NetworkIdentity
from retrieval.network import RetrievalNetwork


@dataclass(frozen=True)
class RetrievalOutcome:
    """Per query: the memory id used (None: nothing beat the sentinel), the top-1 id (None: empty
    memory) and its cosine similarity, and the similarity to the sentinel (MedREK Fig. 5)."""

    retrieved: tuple[int | None, ...]
    top_ids: tuple[int | None, ...]
    top_similarities: tuple[float, ...]
    sentinel_similarities: tuple[float, ...]


class KnowledgeStore:
    """A trained network, its frozen encoder and an edit memory: edits in, prompts out."""

    def __init__(self, network: RetrievalNetwork, encoder: KnowledgeEncoder, memory: EditMemory):
        self.network = network.eval()
        self.encoder = encoder.eval()
        self.memory = memory
        # The request behind each entry added through this store (entries loaded from a file
        # are known only by their metadata).
        self.requests: dict[int, EditRequest] = {}
        with torch.no_grad():
            self.sentinel_key = network.sentinel_key(encoder)  # [1, r], fixed once trained

    def add(self, requests: Sequence[EditRequest], llm, tok) -> list[int]:
        """Encode the edits' keys and prompts and store them; returns their memory ids."""
        with torch.no_grad():
            keys, values = self.encode_entries(requests, llm, tok)
        metadata = [
            {"prompt": request.prompt, "target_new": request.target_new, "subject": request.subject}
            for request in requests
        ]
        ids = self.memory.add(keys, values, metadata)
        self.requests.update(zip(ids, requests))
        return ids

    def encode_entries(self, requests: Sequence[EditRequest], llm, tok) -> tuple[torch.Tensor, torch.Tensor]:
        """(unit keys [N, r], continuous prompts [N, T, d]) of the edits."""
        statements = [self.network.value_text(request) for request in requests]
        key_texts = [self.network.key_text(request) for request in requests]
        # One encoder call for both kinds of text: for a single edit the per-call overhead
        # is a large part of the time to add it.
        distinct = list(dict.fromkeys(statements + key_texts))
        encoded = self.encoder.encode(distinct)
        row = {text: index for index, text in enumerate(distinct)}
        value_features = encoded[[row[text] for text in statements]]
        key_features = encoded[[row[text] for text in key_texts]]
        keys = self.network.keys(key_features)
        return keys, self.network.statement_prompts(value_features, statements, llm, tok)

    def remove(self, ids: Sequence[int]) -> None:
        self.memory.remove(ids)
        for entry in ids:
            self.requests.pop(entry, None)

    def retrieve(self, texts: Sequence[str]) -> RetrievalOutcome:
        """What each query text retrieves (see RetrievalOutcome)."""
        with torch.no_grad():
            queries = self.network.queries(self.encoder.encode(list(texts)))
            sentinel = (queries @ self.sentinel_key.T).squeeze(1).cpu()
        top_scores, top_ids = self.memory.search(queries, k=1)
        top_scores, top_ids = top_scores[:, 0], top_ids[:, 0]
        hit = top_scores > sentinel
        return RetrievalOutcome(
            retrieved=tuple(int(i) if h else None for i, h in zip(top_ids.tolist(), hit.tolist())),
            top_ids=tuple(int(i) if i >= 0 else None for i in top_ids.tolist()),
            top_similarities=tuple(top_scores.tolist()),
            sentinel_similarities=tuple(sentinel.tolist()),
        )

    def prompts_for(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(hit [B] bool, prompts [hits, T, d]) for a batch of query texts."""
        retrieved = self.retrieve(texts).retrieved
        hit = torch.tensor([entry is not None for entry in retrieved], dtype=torch.bool)
        return hit, self.memory.values_for([entry for entry in retrieved if entry is not None])


class RetrievalScorer(LMScorer):
    """`LMScorer` whose forward pass and generation go through retrieval and prompt injection."""

    def __init__(self, model, tok, store: KnowledgeStore, batch_size: int = BATCH_SIZE):
        super().__init__(model, tok, batch_size=batch_size)
        self.store = store

    def forward_hidden(self, input_ids, attention_mask, prompts):
        hit, values = self.store.prompts_for(prompts)
        if not hit.any():
            return super().forward_hidden(input_ids, attention_mask, prompts)
        hit = hit.to(input_ids.device)
        values = values.to(self.device, self._embedding_dtype)
        edited = prompted_hidden(self.model, input_ids[hit], attention_mask[hit], values)
        if hit.all():
            return edited
        plain = super().forward_hidden(input_ids[~hit], attention_mask[~hit], _rows(prompts, ~hit))
        hidden = edited.new_empty(input_ids.shape[0], *edited.shape[1:])
        hidden[hit], hidden[~hit] = edited, plain
        return hidden

    def generate_ids(self, input_ids, attention_mask, prompts, max_new_tokens, decoding=None):
        hit, values = self.store.prompts_for(prompts)
        if not hit.any():
            return super().generate_ids(input_ids, attention_mask, prompts, max_new_tokens, decoding)
        hit = hit.to(input_ids.device)
        values = values.to(self.device, self._embedding_dtype)
        edited = prompted_generate(
            self.model, input_ids[hit], attention_mask[hit], values, max_new_tokens, self.pad_id, decoding
        )
        if hit.all():
            return edited
        plain = super().generate_ids(
            input_ids[~hit], attention_mask[~hit], _rows(prompts, ~hit), max_new_tokens, decoding
        )
        width = max(edited.shape[1], plain.shape[1])
        new_ids = torch.full((input_ids.shape[0], width), self.pad_id, dtype=torch.long, device=edited.device)
        new_ids[hit, : edited.shape[1]] = edited
        new_ids[~hit, : plain.shape[1]] = plain
        return new_ids

    @property
    def _embedding_dtype(self) -> torch.dtype:
        return self.model.get_input_embeddings().weight.dtype


def _rows(texts: Sequence[str], keep: torch.Tensor) -> list[str]:
    return [text for text, kept in zip(texts, keep.tolist()) if kept]


MEMORY_FILE = "memory.safetensors"  # what `RetrievalApplied.save` writes (`EditMemory.save`)


class RetrievalApplied:
    """A live retrieval edit: `scorer` sees it, `undo()` removes exactly its memory entries."""

    def __init__(self, editor: str, scorer: RetrievalScorer, ids: Sequence[int]):
        self.editor = editor
        self.scorer = scorer
        self.ids = tuple(ids)  # memory ids, aligned with the applied requests
        self._undone = False

    @property
    def store(self) -> KnowledgeStore:
        return self.scorer.store

    @property
    def info(self) -> Mapping[str, Any]:
        return {"editor": self.editor, "requests": len(self.ids), "memory_entries": len(self.store.memory)}

    def save(self, folder: Path) -> None:
        """The whole edit memory (this edit's entries and any added before it), for this LLM."""
        self.store.memory.save(Path(folder) / MEMORY_FILE)

    def retrieve(self, texts: Sequence[str]) -> RetrievalOutcome:
        return self.store.retrieve(texts)

    def retrieval_outcomes(self, texts: Sequence[str]) -> list[EditRequest | None]:
        """Per query, the request whose entry it retrieved (None: nothing, or an entry loaded
        from a file); the harness's hook for retrieval diagnostics across sequential edits."""
        return [None if entry is None else self.store.requests.get(entry)
                for entry in self.retrieve(texts).retrieved]

    def retrieved_entries(self, texts: Sequence[str]) -> list[Mapping[str, Any] | None]:
        """Per query, the metadata of the stored entry it retrieved (None: nothing)."""
        found = self.retrieve(texts).retrieved
        return [None if entry is None else self.store.memory.metadata_for([entry])[0] for entry in found]

    def undo(self) -> None:
        """Remove this edit's entries (a second call does nothing)."""
        if not self._undone:
            self.store.remove(self.ids)
            self._undone = True


class RetrievalEditor:
    """RECIPE or MedREK (whichever `network` is): `apply(model, tok, requests) -> RetrievalApplied`.

    Edits accumulate in one memory per editor (lifelong editing); each handle's `undo()` takes
    back only its own. `trained_for` is the LLM the network was trained for (None: unchecked,
    e.g. during training); a model of another width or fingerprint is refused.
    """

    def __init__(
        self,
        network: RetrievalNetwork,
        encoder: KnowledgeEncoder,
        *,
        trained_for: ModelIdentity | None = None,
        source: str = "the retrieval network",
        batch_size: int | None = None,
        network_identity: NetworkIdentity | None = None,
    ):
        self.network = network.eval()
        self.encoder = encoder
        self.name = network.config.name
        self.trained_for = trained_for
        self.source = source
        self.batch_size = batch_size  # of its scorers; None: sized from the memory budget
        self.network_identity = network_identity  # recorded in saved memories, checked on load
        self.hparams = None  # its settings are the trained network's (`network.config`)
        self.memory: EditMemory | None = None
        self._store: KnowledgeStore | None = None
        # Fingerprinting reads every weight tensor; remember it per model object.
        self._identities: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()

    @classmethod
    def from_checkpoint(
        cls, name_or_path: str | os.PathLike, encoder: KnowledgeEncoder | None = None, **kwargs
    ) -> "RetrievalEditor":
        """Load a shipped checkpoint by name (`recipe`, `medrek`) or a checkpoint folder/file."""
        path = name_or_path if os.path.exists(name_or_path) else shipped_checkpoint(str(name_or_path))
        encoder = KnowledgeEncoder.load("default") if encoder is None else encoder
        checkpoint = load_network(path, expect_llm=None, expect_encoder=encoder.identity())
        return cls(
            checkpoint.network, encoder, trained_for=checkpoint.llm, source=str(checkpoint.path),
            network_identity=NetworkIdentity(checkpoint.network.config.name, checkpoint.checksum), **kwargs
        )

    def llm_identity(self, model) -> ModelIdentity:
        if model not in self._identities:
            width = model.get_input_embeddings().embedding_dim
            self._identities[model] = ModelIdentity(model_fingerprint(model), width)
        return self._identities[model]

    def prepare(self, model, tok) -> None:
        """Refuse a model the network was not trained for now; nothing else is precomputed."""
        self.check_model(model)

    # What a memory entry holds and how queries use it; the in-context editor swaps both.
    store_type = KnowledgeStore
    scorer_type = RetrievalScorer

    def apply(self, model, tok, requests: Sequence[EditRequest]) -> RetrievalApplied:
        validate_requests(requests)
        store = self._store_for(model)
        ids = store.add(requests, model, tok)
        return RetrievalApplied(self.name, self.scorer_type(model, tok, store, self._scorer_batch(model)), ids)

    def knowledge_keys(self, requests: Sequence[EditRequest]) -> torch.Tensor:
        """The memory keys `apply` would store for `requests` (protocol.KnowledgeKeys)."""
        with torch.no_grad():
            return self.network.keys(self.encoder.encode([self.network.key_text(r) for r in requests]))

    def value_shape(self) -> tuple[int, ...]:
        """Shape of one memory entry's value: the continuous prompt [T, d]."""
        return (self.network.config.prompt_length, self.network.config.llm_width)

    def load_memory(self, path: str | os.PathLike, model) -> None:
        """Replace this editor's memory by one saved with `memory.save` for this model."""
        identity = self.check_model(model)
        memory = EditMemory.load(
            path, expect_llm=identity, expect_key_width=self.network.config.width,
            expect_encoder=self.encoder.identity(), expect_network=self.network_identity,
        )
        if memory.value_shape != self.value_shape():
            # e.g. an `ike` memory (no values) opened by `medrek`, which shares its network.
            raise CheckpointError(
                f"{path} holds values of shape {memory.value_shape}, but the {self.name} editor "
                f"stores {self.value_shape()}; open it with the editor that saved it."
            )
        self.memory, self._store = memory, self.store_type(self.network, self.encoder, memory)

    def load_saved(self, folder: str | os.PathLike, model, tok) -> RetrievalApplied:
        """The edit `RetrievalApplied.save` wrote to `folder`, live on `model`; the handle holds
        every loaded entry (its `undo()` empties the memory)."""
        self.load_memory(Path(folder) / MEMORY_FILE, model)
        return RetrievalApplied(self.name, self.scorer_type(model, tok, self._store, self._scorer_batch(model)),
                                self.memory.ids)

    def _scorer_batch(self, model) -> int:
        return self.batch_size or scorer_batch_size(model)

    def _store_for(self, model) -> KnowledgeStore:
        identity = self.check_model(model)
        if self.memory is None:
            self.memory = EditMemory(
                self.network.config.width, self.value_shape(),
                llm=identity, encoder=self.encoder.identity(), network=self.network_identity,
            )
        elif self.memory.llm != identity:
            raise CheckpointError(
                f"This {self.name} editor's memory holds edits for LLM {self.memory.llm.describe()}, "
                f"not for {identity.describe()}."
            )
        if self._store is None or self._store.memory is not self.memory:
            self._store = self.store_type(self.network, self.encoder, self.memory)
        return self._store

    def check_model(self, model) -> ModelIdentity:
        """This model's identity; CheckpointError if the network was trained for another LLM."""
        width = model.get_input_embeddings().embedding_dim
        if width != self.network.config.llm_width:
            raise CheckpointError(
                f"{self.source} was trained for an LLM of width {self.network.config.llm_width}, "
                f"but this model has width {width}; train a checkpoint for this model."
            )
        identity = self.llm_identity(model)
        if self.trained_for is not None and self.trained_for != identity:
            raise CheckpointError(
                f"{self.source} was trained for LLM {self.trained_for.describe()}, not for "
                f"{identity.describe()}; train a checkpoint for this model."
            )
        return identity
