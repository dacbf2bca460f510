"""MedREK (Xia et al. 2025, "MedREK: Retrieval-Based Editing for Medical LLMs with Key-Aware
Prompts", §4) and its copy-slot variant, as configurations of `RetrievalNetwork`.

Both: keys from the question only, through the shared query-key MLP that also encodes queries;
the statement (question + answer) through a separate MLP_v gives the knowledge representation
z_v; an attention prompt encoder turns z_v into T continuous prompt tokens; the knowledge
prototype is the sentinel.

- `medrek` (the paper's design): T = 3 prompt tokens (the paper's MedCF++ setting; 8 for
  MedVersa, `prompt_length`) whose queries come from z_v and attend over m = 8 slots projected
  from z_v and 8 encoder slots, the knowledge encoder's own token states of the statement's
  last 8 wordpieces. Nothing of the LLM enters the prompt: it is a function of the knowledge
  encoder's view of the statement. (The paper attends over a single key/value vector, which
  makes its T outputs identical; m > 1 slots let them differ. `encoder_tokens=0` gives the
  z_v-only variant, the `ablations` command's "no-encoder-slots".)
- `medrek_copy` (this project's earlier design, kept under its own name): T = 8 tokens that
  also attend over 16 copy slots, the LLM's own input embeddings of the statement's last tokens,
  initialised so the untrained prompt *is* those tokens. Its prompts are learned mixtures of the
  LLM's embeddings of the statement — close to in-context editing, not a learned knowledge prompt.
"""

from __future__ import annotations

from retrieval.editor import RetrievalEditor
from retrieval.encoder import KnowledgeEncoder
from retrieval.network import NetworkConfig, RetrievalNetwork

# MedREK as published (T = 3: the paper's MedCF++ setting), over 8 knowledge slots projected
# from z_v and 8 encoder slots (the shipped checkpoint's design); each field may be overridden.
MEDREK = dict(name="medrek", key_source="question", shared_query_key=True, prompt_source="value",
              prompt_encoder="attention", prompt_length=3, slots=8, copy_tokens=0, encoder_tokens=8)
# The copy-slot variant: T = 8 tokens over 4 knowledge slots and 16 copy slots, no encoder slots.
MEDREK_COPY = MEDREK | dict(name="medrek_copy", prompt_length=8, slots=4, copy_tokens=16, encoder_tokens=0)


def medrek_config(encoder: KnowledgeEncoder, llm, **overrides) -> NetworkConfig:
    """The published MedREK architecture for this encoder and LLM; `overrides` replace settings."""
    return NetworkConfig.for_models(encoder, llm, **(MEDREK | overrides))


def medrek_copy_config(encoder: KnowledgeEncoder, llm, **overrides) -> NetworkConfig:
    """MedREK with 16 copy slots of the statement's LLM token embeddings and T = 8."""
    return NetworkConfig.for_models(encoder, llm, **(MEDREK_COPY | overrides))


def new_medrek(encoder: KnowledgeEncoder, llm, **overrides) -> RetrievalNetwork:
    """An untrained published-design MedREK network, its prototype from real encoder tokens."""
    return RetrievalNetwork.initialised(medrek_config(encoder, llm, **overrides), encoder)


def new_medrek_copy(encoder: KnowledgeEncoder, llm, **overrides) -> RetrievalNetwork:
    """An untrained copy-slot MedREK network."""
    return RetrievalNetwork.initialised(medrek_copy_config(encoder, llm, **overrides), encoder)


def medrek_editor(checkpoint: str = "medrek", encoder: KnowledgeEncoder | None = None) -> RetrievalEditor:
    """The shipped (or a given) MedREK checkpoint as an editor."""
    return RetrievalEditor.from_checkpoint(checkpoint, encoder)


def medrek_copy_editor(checkpoint: str = "medrek_copy", encoder: KnowledgeEncoder | None = None) -> RetrievalEditor:
    """The shipped (or a given) copy-slot MedREK checkpoint as an editor."""
    return RetrievalEditor.from_checkpoint(checkpoint, encoder)
