"""`ike`: in-context editing (after Zheng et al. 2023, "Can We Edit Factual Knowledge by In-Context
Learning?") through the same edit memory and retriever as MedREK.

An edit is stored under MedREK's key (the question through the shared query-key MLP); a query
that retrieves it, by MedREK's rule (top-1 key beats the knowledge sentinel), gets the edit's
statement prepended *as text* with the fixed `CONTEXT_TEMPLATE`; every other query runs through
the plain model. So the only difference from `medrek` is text instead of a learned continuous
prompt, which is what this baseline is for: whether a learned prompt adds anything over telling
the LLM the new fact. IKE's demonstrations (copy, update and retain examples) are not used: one
fixed template, no training, no examples.

The context costs inference: its tokens are run with every query that retrieves it, which the
harness's "Infer ×" column measures like any other scoring overhead.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch

from lm.scoring import BATCH_SIZE, LMScorer, pad_sequences
from retrieval.editor import KnowledgeStore, RetrievalEditor
from retrieval.encoder import KnowledgeEncoder

# IKE's prompt format for a new fact, followed by the query as written.
CONTEXT_TEMPLATE = "New Fact: {prompt} {target_new}\nPrompt: "


def context_text(entry: Mapping[str, str]) -> str:
    """The text put before a query that retrieved `entry` (memory metadata with prompt, target_new)."""
    return CONTEXT_TEMPLATE.format(prompt=entry["prompt"].strip(), target_new=entry["target_new"].strip())


class InContextStore(KnowledgeStore):
    """Keys by the retrieval network, no values: an entry's statement is its metadata."""

    def encode_entries(self, requests, llm, tok) -> tuple[torch.Tensor, torch.Tensor]:
        key_texts = [self.network.key_text(request) for request in requests]
        keys = self.network.keys(self.encoder.encode(key_texts))
        return keys, torch.empty(len(requests), 0)

    def contexts_for(self, texts: Sequence[str]) -> list[str | None]:
        """Per query text, the context to prepend (None: it retrieved nothing)."""
        retrieved = self.retrieve(texts).retrieved
        found = self.memory.metadata_for([entry for entry in retrieved if entry is not None])
        contexts = iter(context_text(entry) for entry in found)
        return [None if entry is None else next(contexts) for entry in retrieved]


class InContextScorer(LMScorer):
    """`LMScorer` that prepends each retrieving row's context tokens before its first real token.

    The context is tokenised on its own without special tokens; the row's own tokens (with the
    tokenizer's BOS, if any) follow unchanged, so the model sees context ⊕ query. Rows that
    retrieve nothing go through the plain model.
    """

    def __init__(self, model, tok, store: InContextStore, batch_size: int = BATCH_SIZE):
        super().__init__(model, tok, batch_size=batch_size)
        self.store = store

    def _with_context(self, input_ids, attention_mask, prompts, side: str):
        """(rows with context, their re-padded ids and mask, each row's context length)."""
        contexts = self.store.contexts_for(prompts)
        rows = [row for row, context in enumerate(contexts) if context is not None]
        if not rows:
            return rows, None, None, []
        context_ids = self.tok([contexts[row] for row in rows], add_special_tokens=False)["input_ids"]
        sequences = [
            list(context) + input_ids[row][attention_mask[row].bool()].tolist()
            for row, context in zip(rows, context_ids)
        ]
        ids, mask = pad_sequences(sequences, self.pad_id, side, self.device)
        return rows, ids, mask, [len(context) for context in context_ids]

    def forward_hidden(self, input_ids, attention_mask, prompts):
        rows, ids, mask, lengths = self._with_context(input_ids, attention_mask, prompts, "right")
        if not rows:
            return super().forward_hidden(input_ids, attention_mask, prompts)
        edited = super().forward_hidden(ids, mask, [prompts[row] for row in rows])
        hidden = edited.new_zeros(*input_ids.shape, edited.shape[-1])
        for index, (row, length) in enumerate(zip(rows, lengths)):
            # The row's real tokens, whatever its padding, follow the context in the new batch.
            real = attention_mask[row].bool()
            hidden[row, real] = edited[index, length : length + int(real.sum())]
        plain = _other_rows(rows, input_ids.shape[0])
        if plain:
            hidden[plain] = super().forward_hidden(
                input_ids[plain], attention_mask[plain], [prompts[row] for row in plain]
            )
        return hidden

    def generate_ids(self, input_ids, attention_mask, prompts, max_new_tokens, decoding=None):
        rows, ids, mask, _ = self._with_context(input_ids, attention_mask, prompts, "left")
        if not rows:
            return super().generate_ids(input_ids, attention_mask, prompts, max_new_tokens, decoding)
        edited = super().generate_ids(ids, mask, [prompts[row] for row in rows], max_new_tokens, decoding)
        plain_rows = _other_rows(rows, input_ids.shape[0])
        outputs = [(rows, edited)]
        if plain_rows:
            plain = super().generate_ids(
                input_ids[plain_rows], attention_mask[plain_rows], [prompts[row] for row in plain_rows],
                max_new_tokens, decoding,
            )
            outputs.append((plain_rows, plain))
        width = max(new.shape[1] for _, new in outputs)
        new_ids = torch.full((input_ids.shape[0], width), self.pad_id, dtype=torch.long, device=edited.device)
        for which, new in outputs:
            new_ids[which, : new.shape[1]] = new
        return new_ids


def _other_rows(rows: Sequence[int], count: int) -> list[int]:
    taken = set(rows)
    return [row for row in range(count) if row not in taken]


class InContextEditor(RetrievalEditor):
    """`ike`: MedREK's retriever and gate, the retrieved statement as text (module docstring)."""

    store_type = InContextStore
    scorer_type = InContextScorer

    def value_shape(self) -> tuple[int, ...]:
        return (0,)


def ike_editor(checkpoint: str = "medrek", encoder: KnowledgeEncoder | None = None) -> InContextEditor:
    """In-context editing with the retriever of the shipped (or a given) MedREK checkpoint."""
    editor = InContextEditor.from_checkpoint(checkpoint, encoder)
    editor.name = "ike"
    return editor
