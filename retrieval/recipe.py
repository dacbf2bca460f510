"""RECIPE (Chen et al., "Lifelong Knowledge Editing for LLMs with Retrieval-Augmented Continuous
Prompt Learning", 2024, §4) as a configuration of `RetrievalNetwork`.

Keys from the statement (prompt + target) through MLP_K, queries through a separate MLP_Q,
prompt = MLP_P(MLP_K(statement)) with l = 3 continuous prompt tokens, the knowledge sentinel
(c = 10 encoder input embeddings) as threshold. The knowledge encoder stays frozen here (see
retrieval/README.md): its features are computed once, which is what makes training affordable.
"""

from __future__ import annotations

from retrieval.editor import RetrievalEditor
from retrieval.encoder import KnowledgeEncoder
from retrieval.network import NetworkConfig, RetrievalNetwork


# RECIPE as published; each field may be overridden per network.
RECIPE = dict(name="recipe", key_source="statement", shared_query_key=False, prompt_source="key",
              prompt_encoder="mlp", prompt_length=3)


def recipe_config(encoder: KnowledgeEncoder, llm, **overrides) -> NetworkConfig:
    """RECIPE's architecture for this encoder and LLM; `overrides` replace single settings."""
    return NetworkConfig.for_models(encoder, llm, **(RECIPE | overrides))


def new_recipe(encoder: KnowledgeEncoder, llm, **overrides) -> RetrievalNetwork:
    """An untrained RECIPE network, its sentinel initialised from real encoder tokens."""
    return RetrievalNetwork.initialised(recipe_config(encoder, llm, **overrides), encoder)


def recipe_editor(checkpoint: str = "recipe", encoder: KnowledgeEncoder | None = None) -> RetrievalEditor:
    """The shipped (or a given) RECIPE checkpoint as an editor."""
    return RetrievalEditor.from_checkpoint(checkpoint, encoder)
