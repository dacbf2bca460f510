"""MedREK (Xia et al., "MedREK: Retrieval-Based Editing for Medical LLMs with Key-Aware Prompts",
§4.2) as a configuration of `RetrievalNetwork`.

Keys from the question only, through the shared query-key MLP that also encodes queries; the
statement (question + answer) through a separate MLP_v into an attention prompt encoder whose
T tokens attend over m knowledge slots and the statement's last tokens (copy slots), so they
can differ (the published single key/value makes them identical). The knowledge prototype is
the sentinel. Ablations: `prompt_encoder="mlp"` (no attention), `shared_query_key=False`.
"""

from __future__ import annotations

import dataclasses

from retrieval.editor import RetrievalEditor
from retrieval.encoder import KnowledgeEncoder
from retrieval.network import NetworkConfig, RetrievalNetwork, llm_embedding_scale


def medrek_config(encoder: KnowledgeEncoder, llm, **overrides) -> NetworkConfig:
    """MedREK's architecture for this encoder and LLM; `overrides` replace single settings."""
    config = NetworkConfig(
        name="medrek",
        key_source="question",
        shared_query_key=True,
        prompt_source="value",
        prompt_encoder="attention",
        encoder_hidden=encoder.hidden_width,
        llm_width=llm.get_input_embeddings().embedding_dim,
        embedding_scale=llm_embedding_scale(llm),
        prompt_length=8,
        slots=4,
        copy_tokens=16,
    )
    return dataclasses.replace(config, **overrides)


def new_medrek(encoder: KnowledgeEncoder, llm, **overrides) -> RetrievalNetwork:
    """An untrained MedREK network, its prototype initialised from real encoder tokens."""
    return RetrievalNetwork.initialised(medrek_config(encoder, llm, **overrides), encoder)


def medrek_editor(checkpoint: str = "medrek", encoder: KnowledgeEncoder | None = None) -> RetrievalEditor:
    """The shipped (or a given) MedREK checkpoint as an editor."""
    return RetrievalEditor.from_checkpoint(checkpoint, encoder)
